"""The BLE door: a GATT provisioning service through bless, built from ``gatt_profile.yaml``.

Characteristics (UUIDs and limits from the profile):

* ``request``  (write): client -> device fragments (see :mod:`device_sim.wire`);
* ``response`` (notify): device -> client fragments of responses and encrypted events;
* ``state`` (read, notify) and ``diagnostics`` (read, notify): public, secret-free status,
  pushed on every event so a phone never has to poll;
* ``info`` (read): protocol version, device id and limits.

bless calls read/write handlers synchronously on its D-Bus thread of control; reads are served
from cached values and writes are handed to asyncio tasks that this door keeps references to.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from bless import BlessServer, GATTAttributePermissions, GATTCharacteristicProperties

from ..codes import Code
from ..errors import OnboardingError, ProtocolError, TransportError
from ..events import DiagnosticEvent
from ..profile import CharacteristicDef, Profile
from ..provisioning import ProvisioningService
from ..store import Identity
from ..wire import AdvertisedInfo, PublicState, Reassembler, fragment, peek_channel
from .base import Door
from .bluez import ConnectionWatcher, ProvisioningAdvertisement, is_bluezoo

LOG = logging.getLogger(__name__)

_PROPS = {
    "read": GATTCharacteristicProperties.read,
    "write": GATTCharacteristicProperties.write,
    "write-without-response": GATTCharacteristicProperties.write_without_response,
    "notify": GATTCharacteristicProperties.notify,
    "indicate": GATTCharacteristicProperties.indicate,
}
DEFAULT_NOTIFY_SIZE = 244  # fits an ATT MTU of 247, the common LE Data Length Extension size


class BleDoor(Door):
    """Serves the provisioning profile over BLE on one adapter (``hci0`` ...)."""

    name = "ble"

    def __init__(self, profile: Profile, service: ProvisioningService, identity: Identity, *,
                 adapter: str = "hci0", notify_size: int = DEFAULT_NOTIFY_SIZE) -> None:
        self.profile = profile
        self.service = service
        self.identity = identity
        self.adapter = adapter
        self.notify_size = min(notify_size, profile.service.char("response").max_length)
        self.local_name = profile.advertising.local_name_pattern.format(short_id=identity.short_id)
        framing = profile.framing
        self.reassembler = Reassembler(framing.max_message_length,
                                       framing.reassembly_timeout_ms / 1000)
        self._server: BlessServer | None = None
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._adv: ProvisioningAdvertisement | None = None
        self._adv_dirty = asyncio.Event()
        self._adv_task: asyncio.Task[None] | None = None
        self._watcher = ConnectionWatcher(adapter, self._on_connections)
        self._unsubscribe = lambda: None
        self._channels_seen: set[int] = set()
        self._adv_index = 0
        self._on_bluezoo = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            server = BlessServer(name=self.local_name, loop=loop, adapter=self.adapter)
            await server.setup_task
        except Exception as exc:
            raise TransportError(f"no usable BLE adapter {self.adapter!r}: {exc}") from exc
        self._server = server
        server.read_request_func = self._on_read
        server.write_request_func = self._on_write
        svc = self.profile.service
        await server.add_new_service(svc.uuid)
        for char in svc.characteristics.values():
            await server.add_new_characteristic(svc.uuid, char.uuid, _flags(char),
                                                 bytearray(self._initial_value(char.key)),
                                                 _permissions(char))
        # Interop quirk 2: bless starts notify characteristics with Notifying=True although
        # nobody subscribed; BlueZoo then takes the AcquireNotify path on StartNotify, which
        # bless does not implement, and the subscription fails. Start them as not notifying.
        for gatt_service in server.app.services:
            for gatt_char in gatt_service.characteristics:
                gatt_char._notifying = False
        # bless.start() would register the app and an advertisement without our flags and
        # data; register the app ourselves and advertise with ProvisioningAdvertisement.
        try:
            self._on_bluezoo = await is_bluezoo(server.bus)
            server.bus.export(server.app.path, server.app)
            await server.app.register(server.adapter)
            await self._register_advertisement()
            await self._watcher.start()
        except Exception as exc:
            await self.stop()
            raise TransportError(f"advertising on {self.adapter} failed: {exc}") from exc
        self._unsubscribe = self.service.engine.events.subscribe(self._on_event)
        self._pump = loop.create_task(self._pump_outbox(), name="ble-notify")
        self._adv_task = loop.create_task(self._refresh_advertising(), name="ble-adv")
        LOG.info("advertising %s on %s (service %s)", self.local_name, self.adapter, svc.uuid)

    async def stop(self) -> None:
        self._unsubscribe()
        self._watcher.stop()
        for task in [self._pump, self._adv_task, *self._tasks]:
            if task is not None:
                task.cancel()
        server, self._server = self._server, None
        if server is None:
            return
        try:
            await self._unregister_advertisement(server)
            await server.app.unregister(server.adapter)
            server.bus.unexport(server.app.path, server.app)
        except Exception as exc:  # the bus may already be gone at shutdown
            LOG.debug("BLE teardown: %s", exc)
        server.bus.disconnect()

    # --- advertisement -------------------------------------------------------------------------

    def _manufacturer_data(self) -> bytes:
        record = self.service.engine.record
        return AdvertisedInfo(self.profile.protocol_version, record.state, record.code,
                              self.identity.id_low_bytes).to_bytes()

    async def _register_advertisement(self) -> None:
        assert self._server is not None
        app = self._server.app
        self._adv_index += 1
        index = self._adv_index
        adv = ProvisioningAdvertisement(index, app, self.local_name, self.profile.service.uuid,
                                        self.profile.advertising.manufacturer_id,
                                        self._manufacturer_data(),
                                        as_service_data=self._on_bluezoo)
        self._server.bus.export(adv.path, adv)
        iface = self._server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
        await iface.call_register_advertisement(adv.path, {})
        self._adv = adv

    async def _unregister_advertisement(self, server: BlessServer) -> None:
        adv, self._adv = self._adv, None
        if adv is None:
            return
        iface = server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
        await iface.call_unregister_advertisement(adv.path)
        server.bus.unexport(adv.path)

    async def _refresh_advertising(self) -> None:
        """Re-register the advertisement when the state changes (BlueZ reads it once)."""
        while True:
            await self._adv_dirty.wait()
            self._adv_dirty.clear()
            if self._server is None:
                return
            try:
                await self._unregister_advertisement(self._server)
                await self._register_advertisement()
            except Exception:
                LOG.exception("refreshing the advertisement failed")

    # --- GATT callbacks ------------------------------------------------------------------------

    def _initial_value(self, key: str) -> bytes:
        record = self.service.engine.record
        if key == "state":
            return PublicState(record.state, record.code, record.attempt).to_bytes()
        if key == "info":
            return json.dumps({"v": self.profile.protocol_version, "id": self.identity.device_id,
                               "max_msg": self.profile.framing.max_message_length,
                               "caps": ["scan", "wpa2", "wpa3", "hidden"]},
                              separators=(",", ":")).encode()
        if key == "diagnostics":
            last = self.service.engine.events.last
            return json.dumps(last.compact() if last else {}, separators=(",", ":")).encode()
        return b""

    def _on_read(self, characteristic: Any, **_: Any) -> bytearray:
        return bytearray(characteristic.value)

    def _on_write(self, characteristic: Any, value: Any, **_: Any) -> None:
        if str(characteristic.uuid).lower() != self.profile.service.char("request").uuid:
            return
        frame = bytes(value)
        try:
            channel = peek_channel(frame)
            complete = self.reassembler.feed(frame)
        except ProtocolError as exc:
            channel = frame[1] << 8 | frame[2] if len(frame) >= 3 else 0
            self._send(channel, self.service.error_for(channel, exc))
            return
        self._channels_seen.add(channel)
        if complete is not None:
            task = asyncio.get_running_loop().create_task(self._handle(*complete))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, channel: int, message: bytes) -> None:
        try:
            replies = await self.service.handle(channel, message,
                                                lambda m: self._send(channel, m))
        except Exception as exc:  # the service answers bad input itself; this is a bug path
            LOG.exception("handling a message from channel %d failed", channel)
            replies = [self.service.error_for(channel, OnboardingError(
                Code.INTERNAL_ERROR, type(exc).__name__))]
        for reply in replies:
            self._send(channel, reply)

    # --- notifications -------------------------------------------------------------------------

    def _send(self, channel: int, message: bytes) -> None:
        uuid = self.profile.service.char("response").uuid
        for frame in fragment(message, channel, self.notify_size):
            self._outbox.put_nowait((uuid, frame))

    def _set_and_notify(self, uuid: str, value: bytes) -> None:
        server = self._server
        if server is None:
            return
        characteristic = server.get_characteristic(uuid)
        if characteristic is None:
            return
        characteristic.value = bytearray(value)
        server.update_value(self.profile.service.uuid, uuid)

    async def _pump_outbox(self) -> None:
        """One writer for all notifications, so fragments leave in order."""
        while True:
            uuid, frame = await self._outbox.get()
            self._set_and_notify(uuid, frame)

    def _on_event(self, event: DiagnosticEvent) -> None:
        record_state = PublicState(event.state, event.code,
                                   self.service.engine.record.attempt).to_bytes()
        svc = self.profile.service
        self._outbox.put_nowait((svc.char("state").uuid, record_state))
        self._outbox.put_nowait((svc.char("diagnostics").uuid,
                                 json.dumps(event.compact(), separators=(",", ":")).encode()))
        if event.phase in ("boot", "session", "session_closed", "credentials", "joining",
                           "verifying", "online", "failed", "timeout", "factory_reset",
                           "recovered"):
            self._adv_dirty.set()

    def _on_connections(self, connected: frozenset[str]) -> None:
        # BlueZ does not tell bless which central wrote; when the last central is gone, the
        # session holder is gone too. With several centrals, the idle timeout frees it.
        if not connected and self.service.session_peer is not None:
            self.service.peer_gone(self.service.session_peer)
        if not connected:
            for channel in list(self._channels_seen):
                self.reassembler.drop(channel)
            self._channels_seen.clear()


def _flags(char: CharacteristicDef) -> GATTCharacteristicProperties:
    flags = GATTCharacteristicProperties(0)
    for prop in char.properties:
        flags |= _PROPS[prop]
    return flags


def _permissions(char: CharacteristicDef) -> GATTAttributePermissions:
    perms = GATTAttributePermissions(0)
    if "read" in char.properties:
        perms |= GATTAttributePermissions.readable
    if {"write", "write-without-response"} & set(char.properties):
        perms |= GATTAttributePermissions.writeable
    return perms

