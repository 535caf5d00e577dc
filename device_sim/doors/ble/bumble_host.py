"""The BLE host on bumble: the same personalities as :mod:`.host`, with no BlueZ and no D-Bus.

It implements :class:`.gatt.GattHost` over a bumble :class:`~bumble.device.Device` on the
controller a transport moniker reaches (:func:`device_sim.bumble_stack.open_device`): the
Android emulator's netsim, a TCP or serial HCI, a USB dongle or a kernel HCI socket without
bluetoothd, or a virtual controller of this process. Each personality gets its own advertising
set (legacy PDUs: what any phone scans), its name in the scan response; reads are served from
the values given, writes reach the personality with the writing central's address (the hijack
protections need it); one queue sends notifications in order. bumble does long reads and
writes (prepared writes) and the MTU exchange itself.

bumble's own quirks are handled here, each with a comment:

1. bumble's virtual controller sends a set's advertising data as its scan response too, so a
   scanner there sees no name: clients on it find a device by its address (the ready line's
   ``address``) as well as by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from ...bumble_stack import CLOSE_TIMEOUT_S, open_device, static_address
from ...errors import TransportError
from ..base import Door
from .gatt import Advertised, BlePersonality, Centrals, Responder, _uuid_size
from .options import DEFAULT_NOTIFY_SIZE

LOG = logging.getLogger(__name__)

__all__ = ["BumbleHost", "advertising_data"]


def advertising_data(adv: Advertised) -> bytes:
    """``adv`` as AD structures: flags (LE General Discoverable, no BR/EDR), the service UUIDs,
    the service data and the manufacturer data (company id little-endian, as on air)."""
    from bumble.core import UUID, AdvertisingData

    def uuid_bytes(uuid: str) -> bytes:
        """Little-endian, as on air; a 16-bit UUID (``0000xxxx-`` on the base) as its 2 bytes."""
        if _uuid_size(uuid) == 2:
            return bytes.fromhex(uuid[-4:] if len(uuid) <= 8 else uuid[4:8])[::-1]
        return UUID(uuid).to_bytes()

    items: list[tuple[int, bytes]] = [(AdvertisingData.FLAGS, bytes([0x06]))]
    short = [u for u in adv.service_uuids if _uuid_size(u) == 2]
    long = [u for u in adv.service_uuids if _uuid_size(u) == 16]
    if short:
        items.append((AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                      b"".join(uuid_bytes(u) for u in short)))  # fmt: skip
    if long:
        items.append((AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                      b"".join(uuid_bytes(u) for u in long)))  # fmt: skip
    for uuid, data in adv.service_data.items():
        kind = (
            AdvertisingData.SERVICE_DATA_16_BIT_UUID
            if _uuid_size(uuid) == 2
            else AdvertisingData.SERVICE_DATA_128_BIT_UUID
        )
        items.append((kind, uuid_bytes(uuid) + data))
    for company, data in adv.manufacturer_data.items():
        items.append(
            (AdvertisingData.MANUFACTURER_SPECIFIC_DATA, struct.pack("<H", company) + data)
        )
    return bytes(AdvertisingData(items))


class BumbleHost(Door):
    """Serves the given personalities over BLE on the controller ``transport`` reaches."""

    name = "ble"

    def __init__(
        self,
        local_name: str,
        personalities: Sequence[BlePersonality],
        *,
        transport: str,
        notify_size: int = DEFAULT_NOTIFY_SIZE,
        address: str | None = None,
    ) -> None:
        if not personalities:
            raise ValueError("the BLE host needs at least one personality")
        self.local_name = local_name
        self.personalities = list(personalities)
        self.transport = transport
        self.adapter = transport  # what status and logs name
        self.notify_size = notify_size
        self.address = address or static_address(f"{local_name}:{transport}")
        self.on_bluezoo = False
        self.anonymous_writes = 0  # bumble always names the writing central
        self._stack: AsyncExitStack | None = None
        self._device: Any = None
        self._values: dict[str, bytes] = {}
        self._chars: dict[str, Any] = {}
        self._owner: dict[str, BlePersonality] = {}
        self._responders: dict[str, Responder] = {}
        self._indicated: set[str] = set()
        self._answers: dict[tuple[str, str], bytes] = {}  # (central, uuid): its answer to read
        self._sets: list[Any] = []
        self._advertised: list[Advertised] = []
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._centrals = Centrals(self.personalities)
        self._adv_dirty = asyncio.Event()

    @property
    def personality_names(self) -> list[str]:
        return [p.name for p in self.personalities]

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        from bumble.gatt import Characteristic, CharacteristicValue, Descriptor, Service

        stack = AsyncExitStack()
        try:
            device = await stack.enter_async_context(
                open_device(self.transport, self.local_name, address=self.address)
            )
        except Exception as exc:
            await stack.aclose()
            raise TransportError(f"bumble on {self.transport}: {exc}") from exc
        self._stack, self._device = stack, device
        services = []
        for personality in self.personalities:
            for service in personality.gatt():
                chars = []
                for char in service.characteristics:
                    uuid = char.uuid.lower()
                    self._values[uuid] = bytes(char.value)
                    if "indicate" in char.properties and "notify" not in char.properties:
                        self._indicated.add(uuid)
                    self._owner[uuid] = personality
                    if char.respond is not None:
                        self._responders[uuid] = char.respond
                    value = CharacteristicValue(
                        read=lambda conn, u=uuid: self._read(u, conn),
                        write=lambda conn, data, u=uuid: self._write(u, conn, data),
                    )
                    made = Characteristic(
                        uuid,
                        _properties(char.properties),
                        _permissions(char.properties),
                        value,
                        descriptors=[
                            Descriptor(d_uuid, Descriptor.READABLE, bytes(d_value))
                            for d_uuid, d_value in char.descriptors
                        ],
                    )
                    self._chars[uuid] = made
                    chars.append(made)
                services.append(Service(service.uuid, chars))
        device.add_services(services)
        device.on("connection", self._on_connection)
        try:
            await self._advertise()
        except Exception as exc:
            await self.stop()
            raise TransportError(f"advertising on bumble {self.transport} failed: {exc}") from exc
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pump_outbox(), name="bumble-notify"),
            loop.create_task(self._refresh_advertising(), name="bumble-adv"),
        ]
        for personality in self.personalities:
            personality.attach(self)
        LOG.info(
            "advertising %s as %s on bumble %s (personalities %s)",
            self.local_name,
            self.address,
            self.transport,
            ", ".join(self.personality_names),
        )

    async def stop(self) -> None:
        for personality in self.personalities:
            await personality.stop()
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        stack, self._stack = self._stack, None
        if stack is None:
            return
        with contextlib.suppress(Exception):  # its controller may be gone (bumble waits 10 s)
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._stop_advertising()
        await stack.aclose()
        self._device = None

    # --- advertising ---------------------------------------------------------------------------

    async def _advertise(self) -> None:
        """One advertising set per personality, legacy PDUs, connectable and scannable, the
        name in the scan response; restarted after a disconnection."""
        from bumble.core import AdvertisingData
        from bumble.device import AdvertisingEventProperties, AdvertisingParameters

        device = self._device
        scan = bytes(AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME,
                                       self.local_name.encode())]))  # fmt: skip
        self._advertised = [p.advertised() for p in self.personalities]
        for adv in self._advertised:
            params = AdvertisingParameters(
                advertising_event_properties=AdvertisingEventProperties(
                    is_connectable=True, is_scannable=True, is_legacy=True
                ),
                primary_advertising_interval_min=100,
                primary_advertising_interval_max=100,
            )
            self._sets.append(
                await device.create_advertising_set(
                    advertising_parameters=params,
                    advertising_data=advertising_data(adv),
                    scan_response_data=scan,
                    auto_restart=True,
                )
            )

    async def _stop_advertising(self) -> None:
        sets, self._sets = self._sets, []
        for advertising_set in sets:
            with contextlib.suppress(Exception):
                await advertising_set.stop()
            with contextlib.suppress(Exception):
                await advertising_set.remove()

    def _forget(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _advertise_on(self) -> None:
        for advertising_set in self._sets:
            with contextlib.suppress(Exception):  # one still on, or a controller that cannot
                await advertising_set.start()

    def advertisement_changed(self) -> None:
        self._adv_dirty.set()

    async def _refresh_advertising(self) -> None:
        """New advertising data when a personality asks, once no phone is connected (as the
        BlueZ host does: a connected phone reads the state characteristic)."""
        while True:
            await self._adv_dirty.wait()
            await self._centrals.no_phone.wait()
            self._adv_dirty.clear()
            if self._device is None:
                return
            fresh = [p.advertised() for p in self.personalities]
            if fresh == self._advertised:
                continue
            try:
                for advertising_set, adv in zip(self._sets, fresh, strict=True):
                    await advertising_set.set_advertising_data(advertising_data(adv))
                self._advertised = fresh
            except Exception:
                LOG.exception("refreshing the advertisement failed")

    # --- GATT ----------------------------------------------------------------------------------

    def _read(self, uuid: str, connection: Any) -> bytes:
        if uuid in self._responders:
            return self._answers.get((_central(connection), uuid), b"")
        return self._values[uuid]

    async def _write(self, uuid: str, connection: Any, value: bytes) -> None:
        central = _central(connection)
        respond = self._responders.get(uuid)
        if respond is not None:
            self._answers[(central, uuid)] = await respond(bytes(value), central)
            return
        self._owner[uuid].on_write(uuid, bytes(value), central)

    def notify(self, char_uuid: str, value: bytes) -> None:
        self._outbox.put_nowait((char_uuid.lower(), value))

    async def _pump_outbox(self) -> None:
        """One writer for all notifications, so fragments leave in order; only to centrals
        that subscribed."""
        while True:
            uuid, value = await self._outbox.get()
            self._values[uuid] = value
            device, char = self._device, self._chars.get(uuid)
            if device is None or char is None:
                continue
            try:
                if uuid in self._indicated:  # an indicate-only characteristic: confirmed sends
                    await device.indicate_subscribers(char, value)
                else:
                    await device.notify_subscribers(char, value)
            except Exception as exc:  # a central gone between the queue and the send
                LOG.debug("notify %s: %s", uuid, exc)

    def _on_connection(self, connection: Any) -> None:
        central = _central(connection)
        self._centrals.changed(self._centrals.connected | {central})
        # A connection stops the set it came through (legacy advertising); BlueZ advertises
        # on while a phone is connected, so a second phone still finds the device: so here.
        task = asyncio.get_running_loop().create_task(self._advertise_on(), name="bumble-readv")
        self._tasks.append(task)
        task.add_done_callback(self._forget)

        def gone(*_: Any) -> None:
            self._answers = {k: v for k, v in self._answers.items() if k[0] != central}
            self._centrals.changed(self._centrals.connected - {central})

        connection.on("disconnection", gone)


def _central(connection: Any) -> str:
    """The writing central as bumble names it: its address (BlueZ gives an object path)."""
    return str(connection.peer_address) if connection is not None else "?"


def _properties(properties: Sequence[str]) -> Any:
    from bumble.gatt import Characteristic

    flags = {
        "read": Characteristic.Properties.READ,
        "write": Characteristic.Properties.WRITE,
        "write-without-response": Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
        "notify": Characteristic.Properties.NOTIFY,
        "indicate": Characteristic.Properties.INDICATE,
    }
    out = Characteristic.Properties(0)
    for prop in properties:
        out |= flags[prop]
    return out


def _permissions(properties: Sequence[str]) -> Any:
    from bumble.gatt import Characteristic

    perms = Characteristic.Permissions(0)
    if "read" in properties:
        perms |= Characteristic.Permissions.READABLE
    if {"write", "write-without-response"} & set(properties):
        perms |= Characteristic.Permissions.WRITEABLE
    return perms
