"""BlueZ-side helpers for the BLE door: the advertisement object, the writer of a write, and a
connection watcher.

Both work the same against BlueZ on a Raspberry Pi and against BlueZoo virtual adapters.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bless.backends.bluezdbus.dbus.advertisement import BlueZLEAdvertisement, Type
from dbus_next.constants import MessageType, PropertyAccess
from dbus_next.message import Message
from dbus_next.service import ServiceInterface, dbus_property
from dbus_next.signature import Variant

LOG = logging.getLogger(__name__)

BLUEZ = "org.bluez"
DEVICE_IFACE = "org.bluez.Device1"
PROPS_IFACE = "org.freedesktop.DBus.Properties"


class ProvisioningAdvertisement(BlueZLEAdvertisement):
    """bless's LEAdvertisement1 plus the Discoverable flag, service data and a name.

    Discoverable: BlueZoo reports an LE advertiser to scanners only when its adapter is
    Discoverable *or the advertisement sets Discoverable* (interop quirk 1). Setting it on the
    advertisement is also right on real BlueZ (the "LE General Discoverable" flag a provisioning
    device should send) and leaves the adapter's BR/EDR discoverability alone.
    """

    def __init__(
        self,
        index: int,
        app: Any,
        local_name: str,
        service_uuids: list[str],
        service_data: dict[str, bytes],
        manufacturer_data: dict[int, bytes] | None = None,
    ) -> None:
        super().__init__(Type.PERIPHERAL, index, app)
        self._local_name = local_name
        self._service_uuids = list(service_uuids)
        if service_data:
            self._service_data = {k: Variant("ay", v) for k, v in service_data.items()}
        if manufacturer_data:
            self._manufacturer_data = {k: Variant("ay", v) for k, v in manufacturer_data.items()}

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> b:  # type: ignore[name-defined]  # noqa: F821
        return True


def route_writes_with_origin(
    characteristic: ServiceInterface, on_write: Callable[[bytes, str | None], None]
) -> None:
    """Call ``on_write(value, central_path)`` for every WriteValue on ``characteristic``.

    BlueZ (and BlueZoo) name the central that wrote in WriteValue's ``device`` option (its
    object path, e.g. ``/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF``), but bless drops the options
    before its write callback. The provisioning session must be bound to the connection that
    opened it, so this replaces the D-Bus method of this one characteristic object (a copy of
    bless's method description with another function; the shared class stays as it is).
    ``central_path`` is None if the stack gives no ``device`` option.
    """
    methods = ServiceInterface._get_methods(characteristic)  # the instance's own list
    for i, method in enumerate(methods):
        if method.name != "WriteValue":
            continue
        replacement = copy.copy(method)

        def write_value(interface: Any, value: bytes, options: dict[str, Any]) -> None:
            device = options.get("device")
            path = device.value if isinstance(device, Variant) else None
            on_write(bytes(value), path if isinstance(path, str) else None)

        replacement.fn = write_value
        methods[i] = replacement
        return
    raise TypeError(f"{characteristic!r} has no WriteValue method")


def serve_request_response(
    characteristic: ServiceInterface,
    respond: Callable[[bytes, str | None], Awaitable[bytes]],
) -> None:
    """A characteristic a client writes a request to and then reads the answer from (ESP-IDF's
    protocomm endpoints). WriteValue waits for ``respond(value, central)`` (the ATT write
    response leaves when it is done); ReadValue returns that central's answer from the
    ``offset`` the stack asks for, so long reads of answers larger than the MTU work. A write
    with an ``offset`` (a prepared long write) extends that central's request instead of
    starting one: the answer is made when the request is read back, if not before.
    """
    answers: dict[str | None, bytes] = {}
    partial: dict[str | None, bytearray] = {}

    def central_of(options: dict[str, Any]) -> str | None:
        device = options.get("device")
        path = device.value if isinstance(device, Variant) else None
        return path if isinstance(path, str) else None

    def offset_of(options: dict[str, Any]) -> int:
        offset = options.get("offset")
        value = offset.value if isinstance(offset, Variant) else 0
        return value if isinstance(value, int) and value >= 0 else 0

    async def write_value(interface: Any, value: bytes, options: dict[str, Any]) -> None:
        central, offset = central_of(options), offset_of(options)
        if offset:
            partial.setdefault(central, bytearray()).extend(value)
            return
        partial.pop(central, None)
        answers[central] = await respond(bytes(value), central)

    async def read_value(interface: Any, options: dict[str, Any]) -> bytes:
        central, offset = central_of(options), offset_of(options)
        if offset == 0 and central in partial:  # a long write ended: answer it now
            answers[central] = await respond(bytes(partial.pop(central)), central)
        return answers.get(central, b"")[offset:]

    methods = ServiceInterface._get_methods(characteristic)
    for i, method in enumerate(methods):
        if method.name in ("WriteValue", "ReadValue"):
            replacement = copy.copy(method)
            replacement.fn = write_value if method.name == "WriteValue" else read_value
            methods[i] = replacement


async def is_bluezoo(bus: Any) -> bool:
    """True when org.bluez on this bus is BlueZoo (it exports its controller at /org/bluezoo)."""
    try:
        node = await bus.introspect(BLUEZ, "/org/bluezoo")
    except Exception:
        return False
    return bool(node.interfaces)


class ConnectionWatcher:
    """Follows org.bluez.Device1 ``Connected`` under one adapter, on the daemon's one D-Bus
    connection (bless's, dbus-next): no second connection, no second D-Bus library.

    Calls ``on_change(connected_paths)`` whenever the set of connected devices changes.
    """

    def __init__(self, adapter: str, on_change: Callable[[frozenset[str]], None]) -> None:
        self.prefix = f"/org/bluez/{adapter}/"
        self.on_change = on_change
        self.connected: set[str] = set()
        self._bus: Any = None

    async def start(self, bus: Any) -> None:
        """Watch on ``bus`` (a connected dbus-next MessageBus the caller owns)."""
        self._bus = bus
        bus.add_message_handler(self._on_message)
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[
                    f"type='signal',sender='{BLUEZ}',interface='{PROPS_IFACE}',"
                    f"member='PropertiesChanged',arg0='{DEVICE_IFACE}'"
                ],
            )
        )
        reply = await bus.call(
            Message(
                destination=BLUEZ,
                path="/",
                interface="org.freedesktop.DBus.ObjectManager",
                member="GetManagedObjects",
            )
        )
        if reply is not None and reply.message_type is MessageType.METHOD_RETURN:
            for path, ifaces in reply.body[0].items():
                dev = ifaces.get(DEVICE_IFACE)
                if (
                    path.startswith(self.prefix)
                    and dev
                    and dev.get("Connected")
                    and dev["Connected"].value
                ):
                    self.connected.add(path)

    def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.remove_message_handler(self._on_message)

    def _on_message(self, msg: Message) -> None:
        if (
            msg.message_type is not MessageType.SIGNAL
            or msg.member != "PropertiesChanged"
            or not (msg.path or "").startswith(self.prefix)
        ):
            return
        iface, changed = msg.body[0], msg.body[1]
        if iface != DEVICE_IFACE or "Connected" not in changed:
            return
        before = frozenset(self.connected)
        if changed["Connected"].value:
            self.connected.add(msg.path or "")
        else:
            self.connected.discard(msg.path)
        if before != self.connected:
            LOG.info("BLE centrals connected: %d", len(self.connected))
            self.on_change(frozenset(self.connected))
