"""Hostile connections for the tests and the flood benchmark: many loopback addresses, each
connection sending part of a request's headers and keeping the connection, opened again as
soon as the device closes it, until told to stop.

::

    async with Flood(url, connections=1100, addresses=50) as flood:
        ...  # a phone onboards meanwhile
    flood.opened, flood.closed_by_device
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from ..lifecycle import Component

__all__ = ["PARTIAL_HEADERS", "Flood"]

PARTIAL_HEADERS = b"GET /events HTTP/1.1\r\nHost: x\r\nX-a: "


class Flood(Component):
    """``connections`` half-open connections to ``url`` from ``addresses`` loopback
    addresses (127.77.A.B), each reopened when the device closes it, ``max_reopen`` times at
    most (bounded in count; the context's exit bounds it in time)."""

    def __init__(
        self,
        url: str,
        *,
        connections: int,
        addresses: int,
        max_reopen: int = 50,
        payload: bytes = PARTIAL_HEADERS,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        self.connections, self.addresses = connections, addresses
        self.max_reopen, self.payload = max_reopen, payload
        self.opened = 0  # connections the device accepted (and that got their bytes out)
        self.failed = 0  # connects refused or reset before the bytes went out
        self.closed_by_device = 0
        self.open_now = 0
        self.peak_open = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._tried = 0
        self.all_tried = asyncio.Event()  # every slot has made its first attempt

    def source(self, index: int) -> str:
        n = index % self.addresses
        return f"127.77.{n // 250}.{n % 250 + 2}"

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._slot(i), name=f"flood-{i}") for i in range(self.connections)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _first_try_done(self) -> None:
        self._tried += 1
        if self._tried == self.connections:
            self.all_tried.set()

    async def _slot(self, index: int) -> None:
        first = True
        for _ in range(self.max_reopen + 1):
            writer: asyncio.StreamWriter | None = None
            try:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, local_addr=(self.source(index), 0)
                )
                writer.write(self.payload)
                await writer.drain()
            except OSError:
                self.failed += 1
                if writer is not None:
                    writer.close()
                if first:
                    first = False
                    self._first_try_done()
                await asyncio.sleep(0.05)  # a refused connect: back off a little, then again
                continue
            self.opened += 1
            if first:
                first = False
                self._first_try_done()
            self.open_now += 1
            self.peak_open = max(self.peak_open, self.open_now)
            try:
                with contextlib.suppress(OSError):
                    while await reader.read(4096):  # until the device closes it
                        pass
                self.closed_by_device += 1
            finally:
                self.open_now -= 1
                writer.close()
