"""BlueZ (BlueZoo) over D-Bus, for the virtual BLE harness: watch, read and add adapters.

:func:`watch_bluez` wakes start-up on any ObjectManager/Properties signal or ``org.bluez`` owner
change, :func:`adapter_states` reads every adapter's address and power, :func:`add_adapter` asks
BlueZoo for one more adapter at run time. :mod:`device_sim.apps.virtual.harness` re-exports
the last two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from ...dbus_call import DBusError, call
from ...errors import VirtualBleError

__all__ = ["adapter_states", "add_adapter", "add_adapters", "add_free_adapters", "watch_bluez"]

MAX_ADAPTER = 255  # BlueZoo's highest adapter index


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
        try:
            await call(
                bus,
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "AddMatch",
                "s",
                [rule],
            )
        except (DBusError, EOFError) as exc:
            raise VirtualBleError(f"the private bus refused AddMatch {rule}: {exc}") from None


async def adapter_states(bus: MessageBus) -> dict[str, tuple[str, bool]]:
    """``{"hci0": (address, powered), ...}`` from BlueZ's ObjectManager; empty if BlueZ is
    absent."""
    try:
        (objects,) = await call(
            bus, "org.bluez", "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"
        )
    except (DBusError, EOFError):
        return {}
    states: dict[str, tuple[str, bool]] = {}
    for path, interfaces in objects.items():
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
            try:
                await call(
                    bus, "org.bluez", "/org/bluezoo", "org.bluezoo.Manager1", "AddAdapter",
                    "ys", [index, address],
                )  # fmt: skip
            except (DBusError, EOFError) as exc:
                raise VirtualBleError(f"AddAdapter hci{index} failed: {exc}") from None
            try:
                (powered,) = await call(
                    bus, "org.bluez", f"/org/bluez/hci{index}", "org.freedesktop.DBus.Properties",
                    "Get", "ss", ["org.bluez.Adapter1", "Powered"],
                )  # fmt: skip
            except (DBusError, EOFError):
                powered = None
            if powered is None or powered.value is not True:
                raise VirtualBleError(f"hci{index} was added but is not powered")
            names.append(f"hci{index}")
    finally:
        bus.disconnect()
    return names


async def add_free_adapters(
    bus_address: str, count: int, address_of: Callable[[int], str]
) -> list[str]:
    """``count`` more adapters at the lowest indices from 1 that the bus does not use yet (a
    bus shared with ``virtual-ble up``, the public API or another fleet), each with the address
    ``address_of(index)``; their names in order. Raises VirtualBleError (no index left,
    BlueZoo refuses)."""
    bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    try:
        taken = {int(name[3:]) for name in await adapter_states(bus) if name[3:].isdigit()}
    finally:
        bus.disconnect()
    free = [i for i in range(1, MAX_ADAPTER + 1) if i not in taken][:count]
    if len(free) < count:
        raise VirtualBleError(
            f"{count} more adapters do not fit on this bus ({len(taken)} of {MAX_ADAPTER} used)"
        )
    return await add_adapters(bus_address, [(i, address_of(i)) for i in free])
