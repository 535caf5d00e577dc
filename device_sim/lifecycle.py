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


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft descriptor limit to the hard one (systemd gives a service 1,024 soft):
    listeners cap their connections from it. Returns the (old, new) soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # e.g. a hard limit the kernel will not take as soft
            return soft, soft
        return soft, hard
    return soft, soft
