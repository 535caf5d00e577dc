"""The BLE host on bless and BlueZ: one GATT server presenting the personalities given to it.

Each personality (the native SRP service, Improv Wi-Fi, ...) lives in its own folder under
:mod:`device_sim.doors` and describes itself through the stack-neutral interface of
:mod:`.gatt`: its GATT services and characteristics, what it advertises, and what to do with a
write or a change of the connected centrals. This host implements :class:`.gatt.GattHost` and
owns the rest, for all of them at once: the bless server, the
GATT application, the advertisements (re-registered when a personality says its data changed),
one notification queue so values leave in order, and the connection watcher.

bless calls read/write handlers synchronously on its D-Bus thread of control; reads are served
from cached values and writes go to the personality that owns the characteristic, with the
writer's BlueZ object path (WriteValue's ``device`` option, :func:`.bluez.route_writes_with_origin`)
so a personality can bind a session to the connection that opened it.

The interop quirks of BlueZoo, the virtual adapter CI runs on, are handled here where the
server and advertisements are made (numbered as in the README), each with a comment saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from bless import (
    BlessServer,
    GATTAttributePermissions,
    GATTCharacteristicProperties,
    GATTDescriptorProperties,
)

from ...errors import TransportError, ble_setup_error
from ...ratelimit import LimitedLog
from ..base import Door
from .bluez import (
    ConnectionWatcher,
    ProvisioningAdvertisement,
    is_bluezoo,
    route_writes_with_origin,
    serve_request_response,
)
from .gatt import Advertised, BlePersonality, Centrals, Responder
from .options import DEFAULT_NOTIFY_SIZE

LOG = logging.getLogger(__name__)

_PROPS = {
    "read": GATTCharacteristicProperties.read,
    "write": GATTCharacteristicProperties.write,
    "write-without-response": GATTCharacteristicProperties.write_without_response,
    "notify": GATTCharacteristicProperties.notify,
    "indicate": GATTCharacteristicProperties.indicate,
}


class BleHost(Door):
    """Serves the given personalities over BLE on one adapter (``hci0`` ...)."""

    name = "ble"

    def __init__(
        self,
        local_name: str,
        personalities: Sequence[BlePersonality],
        *,
        adapter: str = "hci0",
        notify_size: int = DEFAULT_NOTIFY_SIZE,
    ) -> None:
        if not personalities:
            raise ValueError("the BLE host needs at least one personality")
        self.local_name = local_name
        self.personalities = list(personalities)
        self.adapter = adapter
        self.notify_size = notify_size
        self._server: BlessServer | None = None
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._advs: list[ProvisioningAdvertisement] = []
        self._advertised: list[Advertised] = []  # what the registered advertisements say
        self._char_service: dict[str, str] = {}
        self._char_owner: dict[str, BlePersonality] = {}
        self._responders: dict[str, Responder] = {}
        self._adv_dirty = asyncio.Event()
        self._adv_task: asyncio.Task[None] | None = None
        self._watcher = ConnectionWatcher(adapter, self._on_connections)
        self._centrals = Centrals(self.personalities)
        self._adv_index = 0
        self.on_bluezoo = False
        self.anonymous_writes = 0  # writes whose central the stack did not name (see below)
        self._anonymous_log = LimitedLog(LOG, "ble: unnamed central", burst=3, window_s=60)

    @property
    def personality_names(self) -> list[str]:
        return [p.name for p in self.personalities]

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            server = BlessServer(name=self.local_name, loop=loop, adapter=self.adapter)
            await server.setup_task
            # bless finds its adapter by substring ("hci1" in "/org/bluez/hci10"), so on a
            # host with eleven adapters or more (a fleet) two devices could share one adapter
            # and another be left silent. Pin the adapter's exact object path.
            path = f"/org/bluez/{self.adapter}"
            if server.adapter.path != path:
                node = await server.bus.introspect("org.bluez", path)
                server.adapter = server.bus.get_proxy_object("org.bluez", path, node)
        except Exception as exc:
            raise ble_setup_error(exc, self.adapter, doing="advertising") from exc
        self._server = server
        server.read_request_func = self._on_read
        server.write_request_func = self._on_write
        for personality in self.personalities:
            for service in personality.gatt():
                await server.add_new_service(service.uuid)
                for char in service.characteristics:
                    await server.add_new_characteristic(
                        service.uuid,
                        char.uuid,
                        _flags(char.properties),
                        bytearray(char.value),
                        _permissions(char.properties),
                    )
                    for desc_uuid, desc_value in char.descriptors:
                        await server.add_new_descriptor(
                            service.uuid,
                            char.uuid,
                            desc_uuid,
                            GATTDescriptorProperties.read,
                            bytearray(desc_value),
                            GATTAttributePermissions.readable,
                        )
                    self._char_service[char.uuid] = service.uuid
                    self._char_owner[char.uuid] = personality
                    if char.respond is not None:
                        self._responders[char.uuid] = char.respond
        for gatt_service in server.app.services:
            for gatt_char in gatt_service.characteristics:
                uuid = str(gatt_char._uuid).lower()
                owner = self._char_owner.get(uuid)
                if uuid in self._responders:
                    serve_request_response(gatt_char, self._responders[uuid])
                elif owner is not None and {"write", "write-without-response"} & set(
                    gatt_char._flags
                ):
                    route_writes_with_origin(gatt_char, self._writer_for(owner, uuid))
                # Interop quirk 2: bless starts notify characteristics with Notifying=True
                # although nobody subscribed; BlueZoo then takes the AcquireNotify path on
                # StartNotify, which bless does not implement, and the subscription fails.
                # Start them as not notifying.
                gatt_char._notifying = False
        # bless.start() would register the app and an advertisement without our flags and
        # data; register the app ourselves and advertise with ProvisioningAdvertisement.
        try:
            self.on_bluezoo = await is_bluezoo(server.bus)
            server.bus.export(server.app.path, server.app)
            await server.app.register(server.adapter)
            await self._register_advertisements()
            await self._watcher.start(server.bus)
        except Exception as exc:
            await self.stop()
            raise TransportError(f"advertising on {self.adapter} failed: {exc}") from exc
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

    async def stop(self) -> None:
        self._watcher.stop()
        for personality in self.personalities:
            await personality.stop()
        for task in (self._pump, self._adv_task):
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
        with contextlib.suppress(Exception):  # closed before the loop ends (a fleet's devices)
            await server.bus.wait_for_disconnect()
        # dbus-next (bless's D-Bus library) shuts its socket down but leaves closing it to the
        # garbage collector: a fleet stopping a hundred devices would leak their descriptors.
        for name in ("_stream", "_sock"):
            opened = getattr(server.bus, name, None)
            if opened is not None:
                opened.close()

    # --- what personalities call ------------------------------------------------------------------

    def notify(self, char_uuid: str, value: bytes) -> None:
        """Set a characteristic's value and notify subscribers, in order with all others."""
        self._outbox.put_nowait((char_uuid, value))

    def advertisement_changed(self) -> None:
        """A personality's advertised data changed: re-register the advertisements."""
        self._adv_dirty.set()

    # --- advertisement -------------------------------------------------------------------------

    def _advertising_sets(self) -> list[Advertised]:
        sets = []
        for personality in self.personalities:
            adv = personality.advertised()
            if self.on_bluezoo and adv.manufacturer_data and adv.service_uuids:
                # Interop quirk 3: BlueZoo 1.0.2 declares Device1.ManufacturerData as a{sv}
                # (BlueZ: a{qv}); one advertiser with manufacturer data then breaks
                # GetManagedObjects for every scanner. On BlueZoo the bytes go in service data
                # under the personality's first service UUID (its phone side reads them there).
                data = dict(adv.service_data)
                for payload in adv.manufacturer_data.values():
                    data[adv.service_uuids[0]] = payload
                adv = Advertised(adv.service_uuids, data, {})
            sets.append(adv)
        if self.on_bluezoo and len(sets) > 1:
            # Interop quirk 5: BlueZoo reports only an adapter's first registered advertisement
            # to scanners, so on BlueZoo the personalities share one (it has no 31-byte limit).
            # On BlueZ each personality gets its own advertising instance: two 128-bit service
            # UUIDs with their data do not fit one legacy advertisement.
            merged = Advertised([], {}, {})
            for adv in sets:
                merged.service_uuids.extend(adv.service_uuids)
                merged.service_data.update(adv.service_data)
                merged.manufacturer_data.update(adv.manufacturer_data)
            sets = [merged]
        return sets

    async def _register_advertisements(self) -> None:
        assert self._server is not None
        app = self._server.app
        iface = self._server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
        self._advertised = self._advertising_sets()
        for adv in self._advertised:
            self._adv_index += 1
            obj = ProvisioningAdvertisement(
                self._adv_index,
                app,
                self.local_name,
                adv.service_uuids,
                adv.service_data,
                adv.manufacturer_data,
            )
            self._server.bus.export(obj.path, obj)
            await iface.call_register_advertisement(obj.path, {})
            self._advs.append(obj)

    async def _unregister_advertisements(self, server: BlessServer) -> None:
        advs, self._advs = self._advs, []
        iface = server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
        for adv in advs:
            await iface.call_unregister_advertisement(adv.path)
            server.bus.unexport(adv.path)

    async def _refresh_advertising(self) -> None:
        """Re-register the advertisements when asked (BlueZ reads them once), but not while a
        phone is connected: that phone reads the state characteristic, and the advertisement
        is brought up to date once the last phone has gone."""
        while True:
            await self._adv_dirty.wait()
            await self._centrals.no_phone.wait()
            self._adv_dirty.clear()
            if self._server is None:
                return
            if self._advertising_sets() == self._advertised:
                continue  # the same bytes (a retry that ended as the last one): no gap on air
            try:
                await self._unregister_advertisements(self._server)
                await self._register_advertisements()
            except Exception:
                LOG.exception("refreshing the advertisement failed")

    # --- GATT callbacks ------------------------------------------------------------------------

    def _on_read(self, characteristic: Any, **_: Any) -> bytearray:
        return bytearray(characteristic.value)

    def _on_write(self, characteristic: Any, value: Any, **_: Any) -> None:
        """bless's own write callback: only for a characteristic whose writes could not be
        routed with their origin (none today); handed on without a central."""
        uuid = str(characteristic.uuid).lower()
        owner = self._char_owner.get(uuid)
        if owner is not None:
            self._anonymous_write(uuid)
            owner.on_write(uuid, bytes(value), None)

    def _anonymous_write(self, uuid: str) -> None:
        """A write whose central the stack did not name: the personalities can then not tell
        the session holder from a stranger (a central leaving ends every unnamed session, the
        old hijack). Counted, and logged at a bounded rate: a test fails on it."""
        self.anonymous_writes += 1
        self._anonymous_log.log(
            logging.WARNING,
            "a write to %s arrived without the writing central (bless's fallback path): "
            "sessions cannot be told apart",
            uuid,
        )

    def _writer_for(self, owner: BlePersonality, uuid: str) -> Any:
        def on_write(value: bytes, central: str | None) -> None:
            if central is None:
                self._anonymous_write(uuid)
            owner.on_write(uuid, value, central)

        return on_write

    # --- notifications -------------------------------------------------------------------------

    def _set_and_notify(self, uuid: str, value: bytes) -> None:
        server = self._server
        if server is None:
            return
        characteristic = server.get_characteristic(uuid)
        if characteristic is None:
            return
        characteristic.value = bytearray(value)  # what a read returns from now on
        # A notification only to a characteristic somebody subscribed to: bless would signal
        # every change on the bus (24 of a native onboarding's 41 went nowhere).
        subscribed = {str(u).lower() for u in server.app.subscribed_characteristics}
        if uuid in subscribed:
            server.update_value(self._char_service[uuid], uuid)

    async def _pump_outbox(self) -> None:
        """One writer for all notifications, so fragments leave in order."""
        while True:
            uuid, frame = await self._outbox.get()
            self._set_and_notify(uuid, frame)

    def _on_connections(self, connected: frozenset[str]) -> None:
        self._centrals.changed(connected)


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
