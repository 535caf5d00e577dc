"""BlueZ (BlueZoo) over D-Bus, for the virtual BLE harness: watch, read and add adapters.

:func:`watch_bluez` wakes start-up on any ObjectManager/Properties signal or ``org.bluez`` owner
change, :func:`adapter_states` reads every adapter's address and power, :func:`add_adapter` asks
BlueZoo for one more adapter at run time. :mod:`device_sim.apps.virtual.harness` re-exports
the last two.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dbus_fast import BusType, Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

from ...errors import VirtualBleError

__all__ = ["adapter_states", "add_adapter", "add_adapters", "watch_bluez"]


async def watch_bluez(bus: MessageBus, changed: asyncio.Event) -> None:
    """Set ``changed`` on any ObjectManager/Properties signal or org.bluez owner change.

    Raises:
        VirtualBleError: the bus refused a match rule.
    """
    members = {"InterfacesAdded", "InterfacesRemoved", "PropertiesChanged", "NameOwnerChanged"}

    def on_message(msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.member in members:
            changed.set()

    bus.add_message_handler(on_message)
    for rule in (
        "type='signal',interface='org.freedesktop.DBus.ObjectManager'",
        "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
        "type='signal',member='NameOwnerChanged',arg0='org.bluez'",
    ):
        reply = await _call(
            bus,
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            "s",
            [rule],
        )
        if reply.message_type != MessageType.METHOD_RETURN:
            raise VirtualBleError(f"the private bus refused AddMatch {rule}: {reply.body}")


async def _call(
    bus: MessageBus,
    dest: str,
    path: str,
    iface: str,
    member: str,
    signature: str = "",
    body: list[Any] | None = None,
) -> Message:
    return await bus.call(
        Message(
            destination=dest,
            path=path,
            interface=iface,
            member=member,
            signature=signature,
            body=body or [],
            flags=MessageFlag.NO_AUTOSTART,
        )
    )


async def adapter_states(bus: MessageBus) -> dict[str, tuple[str, bool]]:
    """``{"hci0": (address, powered), ...}`` from BlueZ's ObjectManager; empty if BlueZ is
    absent."""
    reply = await _call(
        bus, "org.bluez", "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"
    )
    if reply.message_type != MessageType.METHOD_RETURN:
        return {}
    states: dict[str, tuple[str, bool]] = {}
    for path, interfaces in reply.body[0].items():
        adapter = interfaces.get("org.bluez.Adapter1")
        if adapter is not None and path.startswith("/org/bluez/hci"):
            address = adapter["Address"].value if "Address" in adapter else ""
            powered = bool(adapter["Powered"].value) if "Powered" in adapter else False
            states[path.rsplit("/", 1)[1]] = (address, powered)
    return states


async def add_adapter(bus_address: str, index: int, address: str) -> str:
    """Add one more powered BlueZoo adapter at run time (``org.bluezoo.Manager1.AddAdapter``).

    BlueZoo links a phone adapter to a peripheral's GATT objects only once per run, so tests and
    benchmarks give each device, or each onboarding, a fresh adapter. Returns its name
    (``hci<index>``). Raises VirtualBleError if BlueZoo refuses or the adapter is not powered.
    """
    (name,) = await add_adapters(bus_address, [(index, address)])
    return name


async def add_adapters(bus_address: str, adapters: list[tuple[int, str]]) -> list[str]:
    """:func:`add_adapter` for many ``(index, address)`` pairs over one bus connection (a
    fleet adds hundreds). Returns their names in order. Raises VirtualBleError."""
    bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    try:
        names = []
        for index, address in adapters:
            if not 0 <= index <= 255:
                raise VirtualBleError(f"hci{index}: BlueZoo adapter indices are 0 to 255")
            reply = await bus.call(
                Message(
                    destination="org.bluez",
                    path="/org/bluezoo",
                    interface="org.bluezoo.Manager1",
                    member="AddAdapter",
                    signature="ys",
                    body=[index, address],
                )
            )
            if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
                raise VirtualBleError(
                    f"AddAdapter hci{index} failed: {reply.body if reply else None}"
                )
            powered = await bus.call(
                Message(
                    destination="org.bluez",
                    path=f"/org/bluez/hci{index}",
                    interface="org.freedesktop.DBus.Properties",
                    member="Get",
                    signature="ss",
                    body=["org.bluez.Adapter1", "Powered"],
                )
            )
            if (
                powered is None
                or powered.message_type is not MessageType.METHOD_RETURN
                or powered.body[0].value is not True
            ):
                raise VirtualBleError(f"hci{index} was added but is not powered")
            names.append(f"hci{index}")
    finally:
        bus.disconnect()
    return names
