"""The phone's BLE: bleak on a BlueZ adapter, or bumble as a central on a controller.

Every personality's phone side scans and connects through a :class:`Radio`, so the same client
code runs on BlueZ (bleak, the default) and on bumble (``--ble-stack bumble``): the bumble side
offers the part of bleak's ``BleakScanner`` and ``BleakClient`` the phone sides use (a scan
callback with ``(device, advertisement)``, ``connect``, ``start_notify``, ``read_gatt_char``,
``write_gatt_char`` with long writes, ``services`` with descriptors, ``read_gatt_descriptor``,
``disconnect``). A phone's bumble device is opened once per transport and process, and closed by
:func:`close_radios`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Radio", "close_radios"]

_centrals: dict[str, Any] = {}
_scans: dict[str, list[str | None]] = {}  # scans in progress by transport: each one's address
_scanning: dict[str, frozenset[str] | None] = {}  # how each transport scans: its accept list
_stack = AsyncExitStack()
_lock = asyncio.Lock()
_scan_lock = asyncio.Lock()
SCAN_INTERVAL_MS = 60.0  # bumble's default, window and interval alike (a phone in the foreground)


@dataclass(frozen=True)
class Radio:
    """Which BLE stack the phone uses: ``bluez`` (bleak, ``adapter``) or ``bumble``
    (``bumble_transport``, a bumble transport moniker or ``local:NAME``)."""

    adapter: str = "hci1"
    stack: str = "bluez"
    bumble_transport: str | None = None
    only: str | None = None  # bumble: the device address the phone looks for, if it knows it

    @asynccontextmanager
    async def scanning(
        self, callback: Callable[[Any, Any], None], service_uuids: list[str]
    ) -> AsyncIterator[None]:
        """Scan while inside; ``callback(device, advertisement)`` as bleak calls it."""
        if self.stack != "bumble":
            from bleak import BleakScanner

            async with BleakScanner(
                callback, service_uuids=service_uuids, bluez={"adapter": self.adapter}
            ):
                yield
            return
        transport = self._transport()
        device = await _central(transport)

        only = self.only

        def on_advertisement(advertisement: Any) -> None:
            # A phone that knows the device's address (a fleet's index) decodes its adverts
            # only: among a thousand devices, the others' cost nothing more than this test.
            if only is None or str(advertisement.address).startswith(only):
                callback(*_bleak_like(advertisement))

        device.on("advertisement", on_advertisement)
        # One phone device, many scans at once (a fleet's onboardings): it scans while any
        # wants it, as BlueZ's discovery sessions do, through its controller's filter accept
        # list while every scan knows its device's address.
        scans = _scans.setdefault(transport, [])
        scans.append(only)
        try:
            await _rescan(transport, device)
            yield
        finally:
            device.remove_listener("advertisement", on_advertisement)
            scans.remove(only)
            with contextlib.suppress(Exception):  # a controller gone: nothing to stop
                await _rescan(transport, device)

    def client(self, device: Any, timeout: float = 20.0) -> Any:
        """A BleakClient (or its bumble equivalent) for ``device`` (found, or an address)."""
        if self.stack != "bumble":
            from bleak import BleakClient

            return BleakClient(device, bluez={"adapter": self.adapter}, timeout=timeout)
        return BumbleClient(self._transport(), device, timeout)

    def _transport(self) -> str:
        from ..errors import ConfigError

        if not self.bumble_transport:
            raise ConfigError("--bumble-transport", "required with --ble-stack bumble")
        return self.bumble_transport


async def _central(transport: str) -> Any:
    """The phone's bumble device on ``transport`` (opened once per process)."""
    async with _lock:
        if transport not in _centrals:
            from ..bumble_stack import open_device

            opened = open_device(transport, "phone")
            _centrals[transport] = await _stack.enter_async_context(opened)
    return _centrals[transport]


async def close_radios() -> None:
    """Close every bumble device the phone opened (a demo's end, a test's)."""
    global _stack, _lock, _scan_lock
    stack, _stack = _stack, AsyncExitStack()
    _lock = asyncio.Lock()  # a later event loop (another test, another command) gets its own
    _scan_lock = asyncio.Lock()
    _centrals.clear()
    _scans.clear()
    _scanning.clear()
    await stack.aclose()


async def _rescan(transport: str, device: Any) -> None:
    """Make the phone's scan on ``transport`` what its scans in progress want: none, through
    the accept list (every scan knows its address), or unfiltered."""
    async with _scan_lock:
        scans = _scans.get(transport, [])
        wanted = None if None in scans else frozenset(str(a) for a in scans)
        off = not scans
        if transport in _scanning and not off and _scanning[transport] == wanted:
            return
        if transport in _scanning:
            del _scanning[transport]
            await device.stop_scanning()
        if off:
            return
        if wanted and await _filtered_scan(device, wanted):
            _scanning[transport] = wanted
            return
        await device.start_scanning(
            filter_duplicates=False, scan_interval=SCAN_INTERVAL_MS, scan_window=SCAN_INTERVAL_MS
        )
        _scanning[transport] = None


async def _filtered_scan(device: Any, addresses: frozenset[str]) -> bool:
    """Scan reporting ``addresses`` only, through the controller's filter accept list (the
    address of either type: a string does not say which). bumble's ``start_scanning`` always
    scans unfiltered, so this sends its commands with the filtered policy and keeps its
    bookkeeping. False when the controller cannot (no extended scanning, a list too short):
    the caller scans unfiltered, and the phone's own address test still picks its device."""
    from bumble import hci
    from bumble.core import BaseBumbleError

    if not device.supports_le_extended_advertising:
        return False
    params = hci.HCI_LE_Set_Extended_Scan_Parameters_Command
    try:
        await device.send_sync_command(hci.HCI_LE_Clear_Filter_Accept_List_Command())
        for text in sorted(addresses):
            for kind in (hci.Address.RANDOM_DEVICE_ADDRESS, hci.Address.PUBLIC_DEVICE_ADDRESS):
                await device.send_sync_command(
                    hci.HCI_LE_Add_Device_To_Filter_Accept_List_Command(
                        address_type=kind, address=hci.Address(text, kind)
                    )
                )
        await device.send_sync_command(
            params(
                own_address_type=hci.OwnAddressType.RANDOM,
                scanning_filter_policy=params.BASIC_FILTERED_POLICY,
                scanning_phys=1 << hci.HCI_LE_1M_PHY_BIT,
                scan_types=[params.ACTIVE_SCANNING],
                scan_intervals=[int(SCAN_INTERVAL_MS / 0.625)],
                scan_windows=[int(SCAN_INTERVAL_MS / 0.625)],
            )
        )
        await device.send_sync_command(
            hci.HCI_LE_Set_Extended_Scan_Enable_Command(
                enable=1, filter_duplicates=0, duration=0, period=0
            )
        )
    except (BaseBumbleError, ValueError):
        return False
    device.advertisement_accumulators = {}  # what start_scanning resets and sets
    device.scanning_is_passive = False
    device.scanning = True
    return True


def _uuid(uuid: Any) -> str:
    """A bumble UUID as bleak writes one: 128 bits, lowercase."""
    raw = uuid.to_bytes(force_128=True)[::-1].hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


@dataclass
class Found:
    """A scanned device as bleak's BLEDevice shows it."""

    address: str
    name: str | None
    bumble_address: Any = field(repr=False, default=None)


@dataclass
class Advertisement:
    """An advertisement as bleak's AdvertisementData shows it."""

    local_name: str | None
    service_uuids: list[str]
    service_data: dict[str, bytes]
    manufacturer_data: dict[int, bytes]
    rssi: int


def _bleak_like(advertisement: Any) -> tuple[Found, Advertisement]:
    from bumble.core import AdvertisingData as AD

    data = advertisement.data
    uuids = [
        _uuid(u)
        for kind in (
            AD.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
            AD.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
            AD.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
            AD.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        )
        for found in data.get_all(kind)
        for u in found
    ]
    service_data = {
        _uuid(u): bytes(value)
        for kind in (AD.SERVICE_DATA_16_BIT_UUID, AD.SERVICE_DATA_128_BIT_UUID)
        for u, value in data.get_all(kind)
    }
    makers = {
        company: bytes(value) for company, value in data.get_all(AD.MANUFACTURER_SPECIFIC_DATA)
    }
    name = data.get(AD.COMPLETE_LOCAL_NAME) or data.get(AD.SHORTENED_LOCAL_NAME)
    address = str(advertisement.address).split("/")[0]
    found = Found(address, name, advertisement.address)
    return found, Advertisement(name, uuids, service_data, makers, int(advertisement.rssi))


@dataclass
class _Descriptor:
    uuid: str
    handle: int


@dataclass
class _Characteristic:
    uuid: str
    proxy: Any
    descriptors: list[_Descriptor]


@dataclass
class _Service:
    uuid: str
    characteristics: list[_Characteristic]


class _Services:
    def __init__(self, services: list[_Service]) -> None:
        self._services = services

    def get_service(self, uuid: str) -> _Service | None:
        return next((s for s in self._services if s.uuid == uuid.lower()), None)


class BumbleClient:
    """A GATT connection from the phone's bumble device, with BleakClient's methods."""

    MTU = 517  # asked for at connection, as BlueZ does

    def __init__(self, transport: str, device: Any, timeout: float) -> None:
        self._transport = transport
        self._target = device
        self._timeout = timeout
        self._connection: Any = None
        self._peer: Any = None
        self._chars: dict[str, _Characteristic] = {}
        self.services = _Services([])

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    @property
    def mtu_size(self) -> int:
        return int(self._peer.gatt_client.mtu) if self._peer is not None else 23

    async def connect(self) -> bool:
        from bumble.device import Peer
        from bumble.hci import Address

        central = await _central(self._transport)
        target = self._target
        address = getattr(target, "bumble_address", None) or Address(
            str(getattr(target, "address", target)), Address.RANDOM_DEVICE_ADDRESS
        )
        async with asyncio.timeout(self._timeout):
            self._connection = await central.connect(address)
            self._peer = Peer(self._connection)
            await self._peer.request_mtu(self.MTU)
            await self._peer.discover_services()
            services = []
            for service in self._peer.services:
                await service.discover_characteristics()
                chars = []
                for char in service.characteristics:
                    await char.discover_descriptors()
                    made = _Characteristic(
                        _uuid(char.uuid),
                        char,
                        [_Descriptor(_uuid(d.type), d.handle) for d in char.descriptors],
                    )
                    self._chars[made.uuid] = made
                    chars.append(made)
                services.append(_Service(_uuid(service.uuid), chars))
        self.services = _Services(services)
        return True

    def _char(self, uuid: str) -> Any:
        try:
            return self._chars[uuid.lower()].proxy
        except KeyError:
            raise ValueError(f"the device has no characteristic {uuid}") from None

    async def start_notify(self, uuid: str, callback: Callable[[Any, bytearray], None]) -> None:
        char = self._char(uuid)
        await self._peer.subscribe(char, lambda value: callback(char, bytearray(value)))

    async def read_gatt_char(self, uuid: str) -> bytearray:
        return bytearray(await self._peer.read_value(self._char(uuid)))

    async def read_gatt_descriptor(self, handle: int) -> bytearray:
        return bytearray(await self._peer.read_value(handle))

    async def write_gatt_char(self, uuid: str, data: bytes, response: bool = True) -> None:
        await self._peer.write_value(self._char(uuid), bytes(data), with_response=response)

    async def disconnect(self) -> bool:
        connection, self._connection, self._peer = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()
        return True
