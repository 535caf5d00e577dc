"""The lifecycle every long-lived component shares: start/stop as an async context manager."""

from __future__ import annotations

import abc
import asyncio
from types import TracebackType
from typing import Self


class Component(abc.ABC):
    """``async with component:`` calls :meth:`start`, then :meth:`stop` even after a failure."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Acquire the component's resources."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release everything; safe to call twice and after a failed start."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def cancel_and_wait(task: asyncio.Task[object] | asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if it runs) and wait until it has unwound."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
