"""A GATT host in memory, for tests: the second implementation of the stack-neutral interface
(:mod:`device_sim.doors.ble.gatt`), with no radio, no D-Bus and no bless.

:class:`MemoryGattHost` serves personalities as the bless host does (their services as data,
writes with the writing central, notifications in order, connection changes), and
:meth:`MemoryGattHost.central` gives a central with the part of bleak's ``BleakClient`` the phone
sides use (connect, start_notify, write_gatt_char, read_gatt_char, disconnect). That a
personality runs end to end here as it does over BlueZ shows the interface is neutral.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ..doors.ble.gatt import BlePersonality, GattChar, Responder

Notified = Callable[[Any, bytearray], None]


class MemoryGattHost:
    """The GATT host interface in memory (a :class:`~device_sim.doors.ble.gatt.GattHost`)."""

    def __init__(self, personalities: Sequence[BlePersonality], notify_size: int = 244) -> None:
        self.personalities = list(personalities)
        self.notify_size = notify_size
        self.values: dict[str, bytes] = {}
        self.chars: dict[str, GattChar] = {}
        self.owner: dict[str, BlePersonality] = {}
        self.advertisements = 0  # advertisement_changed calls
        self._centrals: dict[str, MemoryCentral] = {}
        self._pending: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for personality in self.personalities:
            for service in personality.gatt():
                for char in service.characteristics:
                    self.chars[char.uuid] = char
                    self.owner[char.uuid] = personality
                    self.values[char.uuid] = char.value
        self._pump = asyncio.get_running_loop().create_task(self._deliver())
        for personality in self.personalities:
            personality.attach(self)

    async def stop(self) -> None:
        for personality in self.personalities:
            await personality.stop()
        if self._pump is not None:
            self._pump.cancel()

    # --- the GattHost interface ------------------------------------------------------------------

    def notify(self, char_uuid: str, value: bytes) -> None:
        self._pending.put_nowait((char_uuid, value))

    def advertisement_changed(self) -> None:
        self.advertisements += 1

    # --- centrals --------------------------------------------------------------------------------

    def central(self, name: str) -> MemoryCentral:
        return MemoryCentral(self, name)

    def _connected(self, central: MemoryCentral, up: bool) -> None:
        before = frozenset(self._centrals)
        if up:
            self._centrals[central.name] = central
        else:
            self._centrals.pop(central.name, None)
        after = frozenset(self._centrals)
        for personality in self.personalities:
            personality.on_connections(after, before - after)

    async def _deliver(self) -> None:
        """One writer for all notifications, in the order they were made (as the bless host)."""
        while True:
            uuid, value = await self._pending.get()
            self.values[uuid] = value
            for central in list(self._centrals.values()):
                callback = central.subscribed.get(uuid)
                if callback is not None:
                    callback(uuid, bytearray(value))


class MemoryCentral:
    """One phone's connection to a :class:`MemoryGattHost`, as bleak's BleakClient."""

    def __init__(self, host: MemoryGattHost, name: str) -> None:
        self.host, self.name = host, name
        self.subscribed: dict[str, Notified] = {}
        self.answers: dict[str, bytes] = {}  # request/response characteristics: its answers
        self.is_connected = False

    async def connect(self) -> bool:
        self.is_connected = True
        self.host._connected(self, True)
        return True

    async def disconnect(self) -> bool:
        if self.is_connected:
            self.is_connected = False
            self.host._connected(self, False)
        return True

    async def start_notify(self, uuid: str, callback: Notified) -> None:
        self._char(uuid, "notify")
        self.subscribed[uuid.lower()] = callback

    async def read_gatt_char(self, uuid: str) -> bytearray:
        char = self._char(uuid, "read")
        if char.respond is not None and char.uuid in self.answers:
            return bytearray(self.answers[char.uuid])
        return bytearray(self.host.values[char.uuid])

    async def write_gatt_char(self, uuid: str, data: bytes, response: bool = True) -> None:
        char = self._char(uuid, "write", "write-without-response")
        respond: Responder | None = char.respond
        if respond is not None:
            self.answers[char.uuid] = await respond(bytes(data), self.name)
            return
        self.host.owner[char.uuid].on_write(char.uuid, bytes(data), self.name)
        await asyncio.sleep(0)  # the write lands before the next one, as an ATT write does

    def _char(self, uuid: str, *properties: str) -> GattChar:
        if not self.is_connected:
            raise ConnectionError("not connected")
        char = self.host.chars.get(uuid.lower())
        if char is None or not set(properties) & set(char.properties):
            raise ValueError(f"no characteristic {uuid} with {'/'.join(properties)}")
        return char
