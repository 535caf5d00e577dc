"""The BLE door: GATT provisioning services through bless, built from ``gatt_profile.yaml``.

The door presents the ``native`` personality (below) and any further personalities given to it
(the Improv Wi-Fi service, :mod:`device_sim.doors.improv`): one bless server, one GATT
application, advertisements that carry every personality's service UUID and service data.

Native characteristics (UUIDs and limits from the profile):

* ``request``  (write): client -> device fragments (see :mod:`device_sim.wire`);
* ``response`` (notify): device -> client fragments of responses and encrypted events;
* ``state`` (read, notify) and ``diagnostics`` (read, notify): public, secret-free status,
  pushed on every event so a phone never has to poll;
* ``info`` (read): protocol version, device id and limits.

bless calls read/write handlers synchronously on its D-Bus thread of control; reads are served
from cached values and writes are handed to asyncio tasks that this door keeps references to.

A session belongs to the connection that opened it: writes to ``request`` carry the central's
BlueZ object path (WriteValue's ``device`` option), and the session layer's peer is the pair
(central, channel). Another central is another peer: it gets BUSY and cannot end, answer or
break into the holder's handshake, session or partial messages. A frame on a channel id that
another central is using (the session holder's, or one with a partial message) is dropped
unanswered: a notification reaches every subscriber, so an answer to the intruder would land in
the holder's inbox on that channel. When the holder's central disconnects, its session ends at
once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol, cast

from bless import BlessServer, GATTAttributePermissions, GATTCharacteristicProperties

from ...codes import Code
from ...core.events import STATE_PHASES, DiagnosticEvent
from ...core.store import Identity
from ...errors import OnboardingError, ProtocolError, TransportError, ble_setup_error
from ...profile import Profile
from ...ratelimit import LimitedLog
from ...session.service import ProvisioningService
from ...wire import AdvertisedInfo, PublicState, Reassembler, fragment, peek_channel
from ..base import Door
from .bluez import (
    ConnectionWatcher,
    ProvisioningAdvertisement,
    is_bluezoo,
    route_writes_with_origin,
)

LOG = logging.getLogger(__name__)

_PROPS = {
    "read": GATTCharacteristicProperties.read,
    "write": GATTCharacteristicProperties.write,
    "write-without-response": GATTCharacteristicProperties.write_without_response,
    "notify": GATTCharacteristicProperties.notify,
    "indicate": GATTCharacteristicProperties.indicate,
}
DEFAULT_NOTIFY_SIZE = 244  # fits an ATT MTU of 247, the common LE Data Length Extension size


class Personality(Protocol):
    """A further GATT service the BLE door presents (e.g. Improv Wi-Fi)."""

    name: str

    def gatt(self) -> list[tuple[str, list[tuple[str, tuple[str, ...], bytes]]]]:
        """[(service uuid, [(char uuid, properties, initial value)])]."""

    def advertised(self) -> tuple[list[str], dict[str, bytes]]:
        """The service UUIDs and service data this personality advertises."""

    def attach(self, door: BleDoor) -> None:
        """Called once the GATT application is registered: the door is ready to notify."""

    def on_write(self, char_uuid: str, value: bytes) -> None:
        """A central wrote one of this personality's characteristics."""

    def on_disconnected(self) -> None:
        """The last central disconnected."""

    async def stop(self) -> None:
        """Release timers and tasks."""


class BleDoor(Door):
    """Serves the provisioning profile over BLE on one adapter (``hci0`` ...)."""

    name = "ble"

    def __init__(
        self,
        profile: Profile,
        service: ProvisioningService,
        identity: Identity,
        *,
        adapter: str = "hci0",
        notify_size: int = DEFAULT_NOTIFY_SIZE,
        native: bool = True,
        personalities: Sequence[Personality] = (),
    ) -> None:
        if not native and not personalities:
            raise ValueError("the BLE door needs at least one personality")
        self.native = native
        self.personalities = list(personalities)
        self.profile = profile
        self.service = service
        self.identity = identity
        self.adapter = adapter
        self.notify_size = min(notify_size, profile.service.char("response").max_length)
        self.local_name = profile.advertising.local_name_pattern.format(short_id=identity.short_id)
        framing = profile.framing
        self.reassembler = Reassembler(
            framing.max_message_length, framing.reassembly_timeout_ms / 1000
        )
        self._server: BlessServer | None = None
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._advs: list[ProvisioningAdvertisement] = []
        self._char_service: dict[str, str] = {}
        self._char_owner: dict[str, Personality] = {}
        self._adv_dirty = asyncio.Event()
        self._adv_task: asyncio.Task[None] | None = None
        self._watcher = ConnectionWatcher(adapter, self._on_connections)
        self._unsubscribe = lambda: None
        self._connected: frozenset[str] = frozenset()
        self._intrusions = LimitedLog(LOG, "ble: frame dropped", burst=5, window_s=60)
        self._adv_index = 0
        self._on_bluezoo = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            server = BlessServer(name=self.local_name, loop=loop, adapter=self.adapter)
            await server.setup_task
        except Exception as exc:
            raise ble_setup_error(exc, self.adapter, doing="advertising") from exc
        self._server = server
        server.read_request_func = self._on_read
        server.write_request_func = self._on_write
        svc = self.profile.service
        if self.native:
            await server.add_new_service(svc.uuid)
            for char in svc.characteristics.values():
                await server.add_new_characteristic(
                    svc.uuid,
                    char.uuid,
                    _flags(char.properties),
                    bytearray(self._initial_value(char.key)),
                    _permissions(char.properties),
                )
                self._char_service[char.uuid] = svc.uuid
        for personality in self.personalities:
            for service_uuid, chars in personality.gatt():
                await server.add_new_service(service_uuid)
                for char_uuid, props, value in chars:
                    await server.add_new_characteristic(
                        service_uuid,
                        char_uuid,
                        _flags(props),
                        bytearray(value),
                        _permissions(props),
                    )
                    self._char_service[char_uuid] = service_uuid
                    self._char_owner[char_uuid] = personality
        if self.native:
            request_uuid = svc.char("request").uuid
            for gatt_service in server.app.services:
                for gatt_char in gatt_service.characteristics:
                    if str(gatt_char._uuid).lower() == request_uuid:
                        route_writes_with_origin(gatt_char, self._on_request_write)
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
            await self._register_advertisements()
            await self._watcher.start()
        except Exception as exc:
            await self.stop()
            raise TransportError(f"advertising on {self.adapter} failed: {exc}") from exc
        if self.native:
            self._unsubscribe = self.service.engine.events.subscribe(self._on_event)
        self._pump = loop.create_task(self._pump_outbox(), name="ble-notify")
        self._adv_task = loop.create_task(self._refresh_advertising(), name="ble-adv")
        for personality in self.personalities:
            personality.attach(self)
        LOG.info(
            "advertising %s on %s (personalities %s)",
            self.local_name,
            self.adapter,
            ", ".join(self.personality_names),
        )

    @property
    def personality_names(self) -> list[str]:
        return (["native"] if self.native else []) + [p.name for p in self.personalities]

    async def stop(self) -> None:
        self._unsubscribe()
        self._watcher.stop()
        for personality in self.personalities:
            await personality.stop()
        for task in [self._pump, self._adv_task, *self._tasks]:
            if task is not None:
                task.cancel()
        server, self._server = self._server, None
        if server is None:
            return
        try:
            await self._unregister_advertisements(server)
            await server.app.unregister(server.adapter)
            server.bus.unexport(server.app.path, server.app)
        except Exception as exc:  # the bus may already be gone at shutdown
            LOG.debug("BLE teardown: %s", exc)
        server.bus.disconnect()

    # --- advertisement -------------------------------------------------------------------------

    def _manufacturer_data(self) -> bytes:
        record = self.service.engine.record
        return AdvertisedInfo(
            self.profile.protocol_version, record.state, record.code, self.identity.id_low_bytes
        ).to_bytes()

    def advertisement_changed(self) -> None:
        """A personality's advertised data changed: re-register the advertisements."""
        self._adv_dirty.set()

    def _advertising_sets(self) -> list[tuple[list[str], dict[str, bytes], dict[int, bytes]]]:
        sets: list[tuple[list[str], dict[str, bytes], dict[int, bytes]]] = []
        if self.native:
            uuid, payload = self.profile.service.uuid, self._manufacturer_data()
            if self._on_bluezoo:
                # Interop quirk 3: BlueZoo 1.0.2 declares Device1.ManufacturerData as a{sv}
                # (BlueZ: a{qv}); one advertiser with manufacturer data then breaks
                # GetManagedObjects for every scanner. On BlueZoo the bytes go in service data.
                sets.append(([uuid], {uuid: payload}, {}))
            else:
                sets.append(([uuid], {}, {self.profile.advertising.manufacturer_id: payload}))
        for personality in self.personalities:
            uuids, data = personality.advertised()
            sets.append((uuids, data, {}))
        if self._on_bluezoo and len(sets) > 1:
            # Interop quirk 5: BlueZoo reports only an adapter's first registered advertisement
            # to scanners, so on BlueZoo the personalities share one (it has no 31-byte limit).
            # On BlueZ each personality gets its own advertising instance: two 128-bit service
            # UUIDs with their data do not fit one legacy advertisement.
            merged: tuple[list[str], dict[str, bytes], dict[int, bytes]] = ([], {}, {})
            for uuids, data, manufacturer in sets:
                merged[0].extend(uuids)
                merged[1].update(data)
                merged[2].update(manufacturer)
            sets = [merged]
        return sets

    async def _register_advertisements(self) -> None:
        assert self._server is not None
        app = self._server.app
        iface = self._server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
        for uuids, data, manufacturer in self._advertising_sets():
            self._adv_index += 1
            adv = ProvisioningAdvertisement(
                self._adv_index, app, self.local_name, uuids, data, manufacturer
            )
            self._server.bus.export(adv.path, adv)
            await iface.call_register_advertisement(adv.path, {})
            self._advs.append(adv)

    async def _unregister_advertisements(self, server: BlessServer) -> None:
        advs, self._advs = self._advs, []
        iface = server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
        for adv in advs:
            await iface.call_unregister_advertisement(adv.path)
            server.bus.unexport(adv.path)

    async def _refresh_advertising(self) -> None:
        """Re-register the advertisements when the state changes (BlueZ reads them once)."""
        while True:
            await self._adv_dirty.wait()
            self._adv_dirty.clear()
            if self._server is None:
                return
            try:
                await self._unregister_advertisements(self._server)
                await self._register_advertisements()
            except Exception:
                LOG.exception("refreshing the advertisement failed")

    # --- GATT callbacks ------------------------------------------------------------------------

    def _initial_value(self, key: str) -> bytes:
        record = self.service.engine.record
        if key == "state":
            return PublicState(record.state, record.code, record.attempt).to_bytes()
        if key == "info":
            return json.dumps(
                {
                    "v": self.profile.protocol_version,
                    "id": self.identity.device_id,
                    "max_msg": self.profile.framing.max_message_length,
                    "caps": ["scan", "wpa2", "wpa3", "hidden"],
                },
                separators=(",", ":"),
            ).encode()
        if key == "diagnostics":
            last = self.service.engine.events.last
            return json.dumps(last.compact() if last else {}, separators=(",", ":")).encode()
        return b""

    def _on_read(self, characteristic: Any, **_: Any) -> bytearray:
        return bytearray(characteristic.value)

    def _on_write(self, characteristic: Any, value: Any, **_: Any) -> None:
        """bless's write callback: the personalities' characteristics (the native ``request``
        characteristic is routed to :meth:`_on_request_write` with the writer's path)."""
        uuid = str(characteristic.uuid).lower()
        owner = self._char_owner.get(uuid)
        if owner is not None:
            owner.on_write(uuid, bytes(value))

    def _on_request_write(self, frame: bytes, central: str | None) -> None:
        """A fragment written to ``request`` by ``central`` (None: the stack did not say)."""
        if len(frame) >= 3 and self._taken_by_another(frame[1] << 8 | frame[2], central):
            self._intrusions.log(
                logging.WARNING,
                "a central wrote on channel %d, which another central is using",
                frame[1] << 8 | frame[2],
            )
            return
        try:
            channel = peek_channel(frame)
            complete = self.reassembler.feed(frame, source=central)
        except ProtocolError as exc:
            channel = frame[1] << 8 | frame[2] if len(frame) >= 3 else 0
            self._send(channel, self.service.error_for((central, channel), exc))
            return
        if complete is not None:
            task = asyncio.get_running_loop().create_task(self._handle(central, *complete))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _taken_by_another(self, channel: int, central: str | None) -> bool:
        holder = self.service.session_peer
        if isinstance(holder, tuple) and holder[1:] == (channel,) and holder[0] != central:
            return True
        return bool(self.reassembler.sources(channel) - {central})

    async def _handle(self, central: str | None, channel: int, message: bytes) -> None:
        peer = (central, channel)
        try:
            replies = await self.service.handle(peer, message, lambda m: self._send(channel, m))
        except Exception as exc:  # the service answers bad input itself; this is a bug path
            LOG.exception("handling a message from channel %d failed", channel)
            replies = [
                self.service.error_for(
                    peer, OnboardingError(Code.INTERNAL_ERROR, type(exc).__name__)
                )
            ]
        for reply in replies:
            self._send(channel, reply)

    # --- notifications -------------------------------------------------------------------------

    def _send(self, channel: int, message: bytes) -> None:
        uuid = self.profile.service.char("response").uuid
        for frame in fragment(message, channel, self.notify_size):
            self._outbox.put_nowait((uuid, frame))

    def notify(self, char_uuid: str, value: bytes) -> None:
        """Set a characteristic's value and notify subscribers, in order with all others."""
        self._outbox.put_nowait((char_uuid, value))

    def _set_and_notify(self, uuid: str, value: bytes) -> None:
        server = self._server
        if server is None:
            return
        characteristic = server.get_characteristic(uuid)
        if characteristic is None:
            return
        characteristic.value = bytearray(value)
        server.update_value(self._char_service[uuid], uuid)

    async def _pump_outbox(self) -> None:
        """One writer for all notifications, so fragments leave in order."""
        while True:
            uuid, frame = await self._outbox.get()
            self._set_and_notify(uuid, frame)

    def _on_event(self, event: DiagnosticEvent) -> None:
        record_state = PublicState(
            event.state, event.code, self.service.engine.record.attempt
        ).to_bytes()
        svc = self.profile.service
        self._outbox.put_nowait((svc.char("state").uuid, record_state))
        self._outbox.put_nowait(
            (
                svc.char("diagnostics").uuid,
                json.dumps(event.compact(), separators=(",", ":")).encode(),
            )
        )
        if event.phase in STATE_PHASES:
            self._adv_dirty.set()

    def _on_connections(self, connected: frozenset[str]) -> None:
        gone, self._connected = self._connected - connected, connected
        holder = self.service.session_peer
        # The holder's own central left: its session ends now. A native session whose central
        # the stack did not name, or a personality's session (Improv's), ends when the last
        # central is gone; with several centrals, the idle timeout frees it. Other doors'
        # sessions (SoftAP) are not this door's to end.
        native = (
            isinstance(holder, tuple)
            and len(holder) == 2
            and isinstance(holder[1], int)
            and (holder[0] is None or str(holder[0]).startswith("/"))
        )
        central = cast(tuple[str | None, int], holder)[0] if native else None
        personal = {getattr(p, "session_peer", None) for p in self.personalities}
        if (native and (central in gone or (central is None and not connected))) or (
            holder in personal and not connected
        ):
            self.service.peer_gone(holder)
        for central in gone:
            self.reassembler.drop_source(central)
        if not connected:
            self.reassembler.drop_source(None)
            for personality in self.personalities:
                personality.on_disconnected()


def _flags(properties: Sequence[str]) -> GATTCharacteristicProperties:
    flags = GATTCharacteristicProperties(0)
    for prop in properties:
        flags |= _PROPS[prop]
    return flags


def _permissions(properties: Sequence[str]) -> GATTAttributePermissions:
    perms = GATTAttributePermissions(0)
    if "read" in properties:
        perms |= GATTAttributePermissions.readable
    if {"write", "write-without-response"} & set(properties):
        perms |= GATTAttributePermissions.writeable
    return perms
