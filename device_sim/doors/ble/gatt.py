"""The GATT host interface, neutral to the BLE stack: what a personality gives a BLE host and
what it gets back.

A personality describes its GATT services as data with callables (:class:`GattService`,
:class:`GattChar`, :class:`Advertised`) and receives the host's calls (:class:`BlePersonality`):
writes with the central that made them, changes of the connected centrals. The host
(:class:`GattHost`) advertises, serves reads from the values it was given, notifies in order,
and re-advertises when told. The product host is bless on BlueZ (:mod:`.host`); a test-only host
runs in memory (:mod:`device_sim.testing.memory_gatt`). A personality imports this module, never
a stack: every stack's quirks stay in its host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, Protocol

PROPERTIES = ("read", "write", "write-without-response", "notify", "indicate")

# A request/response characteristic's handler: (request, central) -> the answer that central
# reads back. The central is the stack's name for the connection (BlueZ: an object path).
Responder = Callable[[bytes, "str | None"], Awaitable[bytes]]


class GattChar(NamedTuple):
    uuid: str
    properties: tuple[str, ...]  # some of PROPERTIES
    value: bytes  # the initial value
    # (descriptor UUID, value) of read-only descriptors, e.g. a 0x2901 user description
    descriptors: tuple[tuple[str, bytes], ...] = ()
    # A request/response characteristic: a write is answered by respond(request, central) and
    # the answer read back by that central; on_write is not called for it.
    respond: Responder | None = None


class GattService(NamedTuple):
    uuid: str
    characteristics: list[GattChar]


class Advertised(NamedTuple):
    """What one personality puts in its advertisement."""

    service_uuids: list[str]
    service_data: dict[str, bytes]
    manufacturer_data: dict[int, bytes]

    def length(self) -> int:
        """Its advertising data in bytes, as BlueZ builds it: the flags (3), the service UUIDs
        (one AD of 2 + 16 per 128-bit UUID, 2 + 2 per 16-bit one), each service data (2 + the
        UUID + the data) and each manufacturer data (2 + 2 + the data). The local name goes in
        the scan response (BlueZ puts LocalName there), so it is not counted."""
        sizes = [_uuid_size(u) for u in self.service_uuids]
        total = 3 + sum(2 + sum(s for s in sizes if s == n) for n in (2, 16) if n in sizes)
        total += sum(2 + _uuid_size(u) + len(d) for u, d in self.service_data.items())
        return total + sum(2 + 2 + len(d) for d in self.manufacturer_data.values())


def _uuid_size(uuid: str) -> int:
    """2 for a 16-bit UUID (short, or the Bluetooth base UUID's), else 16."""
    return 2 if len(uuid) <= 8 or uuid.lower().endswith("-0000-1000-8000-00805f9b34fb") else 16


class Centrals:
    """The centrals connected to a host, as every host keeps them: who came and who left told
    to each personality (:meth:`BlePersonality.on_connections`), and :attr:`no_phone` set
    while none is connected (a host refreshes its advertisement only then)."""

    def __init__(self, personalities: Sequence[BlePersonality]) -> None:
        self.personalities = personalities
        self.connected: frozenset[str] = frozenset()
        self.no_phone = asyncio.Event()
        self.no_phone.set()

    def changed(self, connected: frozenset[str]) -> None:
        gone, self.connected = self.connected - connected, connected
        if connected:
            self.no_phone.clear()
        else:
            self.no_phone.set()
        for personality in self.personalities:
            personality.on_connections(connected, gone)


class GattHost(Protocol):
    """What a personality may call on the host that serves it (from :meth:`attach` on)."""

    notify_size: int  # the largest value a notification carries (the negotiated MTU - 3)

    def notify(self, char_uuid: str, value: bytes) -> None:
        """Set a characteristic's value and notify subscribers, in order with all others."""

    def advertisement_changed(self) -> None:
        """The personality's advertised data changed: advertise it anew (when no phone is
        connected: a connected phone reads the characteristics)."""


class BlePersonality(Protocol):
    """One protocol a BLE host presents (the native service, Improv Wi-Fi, ...)."""

    name: str

    def gatt(self) -> list[GattService]:
        """Its services and characteristics, with initial values."""

    def advertised(self) -> Advertised:
        """Its service UUIDs, service data and manufacturer data (read at every refresh)."""

    def attach(self, host: GattHost) -> None:
        """The services are registered: the personality may notify from now on."""

    def on_write(self, char_uuid: str, value: bytes, central: str | None) -> None:
        """``central`` (None if the stack did not say) wrote one of its characteristics."""

    def on_connections(self, connected: frozenset[str], gone: frozenset[str]) -> None:
        """The set of connected centrals changed (``gone`` left)."""

    async def stop(self) -> None:
        """Release timers and tasks."""
