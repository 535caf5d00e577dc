"""The doctor's checks over the system D-Bus: the bus, BlueZ, NetworkManager, AP mode, permissions.

Each check is bounded by the runner's timeout and calls with ``NO_AUTOSTART``: a stopped service
is reported, not started by asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from typing import Any

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from ...codes import Code
from ...dbus_call import DBusError, call
from ...doors.ble.gatt import Advertised
from ...errors import DEFAULT_SYSTEM_BUS, SYSTEM_BUS_ENV, bus_address
from ...network.nm import defs
from ...profile import Profile, load_profile
from .base import Context, Failed, run_tool

__all__ = [
    "BLUEZ",
    "BUS_ENV",
    "DEFAULT_BUS",
    "NM_PERMISSIONS",
    "check_ap_capability",
    "check_bluez",
    "check_dbus",
    "check_dbus_permissions",
    "check_networkmanager",
]

BUS_ENV = SYSTEM_BUS_ENV
DEFAULT_BUS = DEFAULT_SYSTEM_BUS

BLUEZ = "org.bluez"
OBJECT_MANAGER_IFACE = "org.freedesktop.DBus.ObjectManager"
ADAPTER_IFACE = "org.bluez.Adapter1"
LE_ADVERTISING_IFACE = "org.bluez.LEAdvertisingManager1"
NM_PERMISSIONS = (
    "org.freedesktop.NetworkManager.network-control",
    "org.freedesktop.NetworkManager.settings.modify.system",
)
_NOT_RUNNING = (defs.ERR_SERVICE_UNKNOWN, defs.ERR_NAME_HAS_NO_OWNER)
_AS_ROOT = "run the doctor as root (sudo), as the service runs"


_Failure = (DBusError, EOFError)  # an error reply, or none (the bus went away)


def _name(exc: Exception) -> str:
    """The D-Bus error name of a failed call ("no reply" when none came)."""
    return exc.type if isinstance(exc, DBusError) else "no reply"


def _said(exc: Exception) -> str:
    """The error name and its text, as the check reports them."""
    text = exc.text if isinstance(exc, DBusError) else ""
    return f"{_name(exc)}: {text}" if text else _name(exc)


async def _get_all(bus: MessageBus, dest: str, path: str, iface: str) -> dict[str, Any]:
    (props,) = await call(bus, dest, path, defs.PROPS_IFACE, "GetAll", "s", [iface])
    return {name: variant.value for name, variant in props.items()}


async def _get(bus: MessageBus, dest: str, path: str, iface: str, name: str) -> Any:
    (variant,) = await call(bus, dest, path, defs.PROPS_IFACE, "Get", "ss", [iface, name])
    return variant.value


NM_FLOOR = (1, 16)  # AddAndActivateConnection2 (the backend's in-memory station profiles)
BROKEN_BLUEZ = ("5.63", "5.64")  # LEAdvertisingManager1 over D-Bus broken (bless notes it)


def _older(version: str, floor: tuple[int, ...]) -> bool:
    """``1.14.6`` is older than (1, 16); an unreadable version is not (nothing to say)."""
    parts = re.findall(r"\d+", version)[: len(floor)]
    if len(parts) < len(floor):
        return False
    return tuple(int(p) for p in parts) < floor


async def bluez_version() -> str | None:
    """BlueZ's version from ``bluetoothctl --version`` (``bluetoothctl: 5.66``), or None."""
    program = shutil.which("bluetoothctl")
    if program is None:
        return None
    _, out = await run_tool([program, "--version"])
    found = re.search(r"(\d+\.\d+)", out)
    return found.group(1) if found else None


def _bus(ctx: Context) -> MessageBus:
    if ctx.bus is None:
        raise Failed(
            "not checked: the system bus is unreachable (see the dbus check)",
            "fix the dbus check first",
            Code.SYSTEM_BUS_UNAVAILABLE,
        )
    return ctx.bus


async def check_dbus(ctx: Context) -> str:
    address = ctx.bus_address or bus_address()
    bus: MessageBus | None = None
    try:
        bus = MessageBus(bus_address=ctx.bus_address, bus_type=BusType.SYSTEM)
        await bus.connect()
    except BaseException as exc:  # also a timeout: no half-open bus is left to the next checks
        if bus is not None:
            with contextlib.suppress(Exception):
                bus.disconnect()
        if not isinstance(exc, Exception):
            raise
        raise Failed(
            f"cannot connect to the system bus at {address}: {exc}",
            "sudo systemctl start dbus (or fix DBUS_SYSTEM_BUS_ADDRESS)",
        ) from None
    ctx.bus = bus
    return f"connected to {address.split(',guid=')[0]} as {bus.unique_name}"


async def check_bumble(ctx: Context) -> str:
    """``ble.stack = bumble``: the extra is installed, a transport is set, a network one
    answers, and a kernel HCI socket's adapter is not held by bluetoothd."""
    ble = ctx.config.ble
    if ble.stack != "bumble":
        return "not needed: ble.stack is bluez"
    if ctx.config.doors.policy == "softap-only":
        return "not needed: doors.policy is softap-only"
    try:
        import bumble  # noqa: F401
    except ImportError:
        raise Failed(
            "ble.stack is bumble, but bumble is not installed",
            "pip install 'device-sim[bumble]'",
        ) from None
    spec = ble.bumble_transport
    if not spec:
        raise Failed(
            "ble.stack is bumble, but no ble.bumble_transport is set",
            "set [ble] bumble_transport (e.g. usb:0, hci-socket:0, android-netsim)",
        )
    kind, _, rest = spec.partition(":")
    if kind == "tcp-client":
        host, _, port = rest.rpartition(":")
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except (OSError, ValueError) as exc:
            raise Failed(
                f"{spec}: no controller answers ({exc})",
                "start the controller server it names (e.g. bumble-controllers)",
            ) from None
        writer.close()
    if kind == "hci-socket":
        index = rest.split(",")[0] or "0"
        held = await _bluez_holds(ctx, f"hci{index}")
        if held:
            raise Failed(
                f"{spec}: bluetoothd holds hci{index} (it is on org.bluez): bumble's HCI user "
                "channel needs the adapter to itself",
                f"sudo systemctl stop bluetooth (or sudo btmgmt --index {index} power off)",
                Code.ADAPTER_HELD_BY_BLUEZ,
            )
    return f"bumble {_bumble_version()} on {spec}"


def _bumble_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bumble")
    except PackageNotFoundError:
        return "?"


async def _bluez_holds(ctx: Context, adapter: str) -> bool:
    """Whether bluetoothd lists ``adapter`` (no bus, or no BlueZ on it: it does not)."""
    if ctx.bus is None:
        return False
    try:
        (objects,) = await call(ctx.bus, BLUEZ, "/", OBJECT_MANAGER_IFACE, "GetManagedObjects")
    except _Failure:
        return False
    return f"/org/bluez/{adapter}" in objects


async def check_bluez(ctx: Context) -> str:
    if ctx.config.doors.policy == "softap-only":
        return "not needed: doors.policy is softap-only"
    if ctx.config.ble.stack == "bumble":
        return "not needed: ble.stack is bumble (see the bumble check)"
    bus, adapter = _bus(ctx), ctx.config.ble.adapter
    try:
        (objects,) = await call(bus, BLUEZ, "/", OBJECT_MANAGER_IFACE, "GetManagedObjects")
    except _Failure as exc:
        if _name(exc) in _NOT_RUNNING:
            raise Failed(
                "org.bluez is not on the system bus: BlueZ is not running",
                "sudo systemctl start bluetooth (not installed? sudo apt install bluez)",
            ) from None
        raise Failed(
            f"BlueZ GetManagedObjects failed: {_said(exc)}",
            _AS_ROOT
            if _name(exc) == defs.ERR_ACCESS_DENIED
            else "sudo systemctl restart bluetooth",
        ) from None
    adapters = {
        path.rsplit("/", 1)[-1]: ifaces
        for path, ifaces in objects.items()
        if ADAPTER_IFACE in ifaces
    }
    if adapter not in adapters:
        found = ", ".join(sorted(adapters)) or "none"
        fix = (
            f"set [ble] adapter to one of: {found} (bluetoothctl list)"
            if adapters
            else "sudo rfkill unblock bluetooth && sudo systemctl restart bluetooth "
            "(Raspberry Pi: sudo systemctl restart hciuart)"
        )
        raise Failed(f"adapter {adapter} not found (adapters: {found})", fix)
    ifaces = adapters[adapter]
    props = {k: v.value for k, v in ifaces[ADAPTER_IFACE].items()}
    if props.get("Powered") is not True:
        state = props.get("PowerState", "off")
        fix = (
            "sudo rfkill unblock bluetooth"
            if state == "off-blocked"
            else "bluetoothctl power on (if it answers org.bluez.Error.Blocked: "
            "sudo rfkill unblock bluetooth)"
        )
        raise Failed(
            f"adapter {adapter} is not powered (power state {state})", fix, Code.BLUETOOTH_BLOCKED
        )
    if LE_ADVERTISING_IFACE not in ifaces:
        raise Failed(
            f"adapter {adapter} has no {LE_ADVERTISING_IFACE}: no LE advertising",
            "use a Bluetooth LE adapter with BlueZ >= 5.48 "
            "(check: bluetoothctl --version; sudo btmgmt info lists le and advertising)",
        )
    manager = {k: v.value for k, v in ifaces[LE_ADVERTISING_IFACE].items()}
    slots, active = manager.get("SupportedInstances"), manager.get("ActiveInstances")
    if slots == 0:
        # BlueZ's SupportedInstances counts the free slots. None free before the daemon
        # starts: advertisements a crashed process registered still hold them (BlueZ drops a
        # client's advertisements when it leaves the bus; a hung one keeps them).
        raise Failed(
            f"adapter {adapter} has no free advertising instance ({active} in use): "
            "advertisements left registered hold every slot",
            "sudo systemctl restart bluetooth (it drops every registered advertisement)",
            Code.ADVERTISING_SLOTS_FULL,
        )
    free = f" ({slots} free advertising slots, {active} in use)" if slots is not None else ""
    free += "; " + advertising_fit(manager.get("SupportedCapabilities"), adapter)
    version = await bluez_version()
    if version in BROKEN_BLUEZ:
        raise Failed(
            f"BlueZ {version}: its LEAdvertisingManager1 handling is broken (5.63 and 5.64)",
            "sudo apt update && sudo apt install bluez (bookworm: 5.66), then "
            "sudo systemctl restart bluetooth",
            Code.BLUEZ_VERSION_BROKEN,
        )
    free += f"; BlueZ {version}" if version else "; BlueZ version unknown (no bluetoothctl)"
    return f"BlueZ up; {adapter} ({props.get('Address', '?')}) powered, LE advertising{free}"


_FIELD_SIZES = {"u8": 1, "u16": 2, "bytes3": 3}
LEGACY_LENGTH = 31  # a legacy advertisement's data, and its scan response


def native_advertisement(profile: Profile) -> tuple[Advertised, str]:
    """The device's own advertisement as the profile lays it out, and its longest name."""
    adv = profile.advertising
    size = sum(_FIELD_SIZES[kind] for _, kind in adv.manufacturer_fields)
    name = adv.local_name_pattern.format(short_id="FFFF")
    return Advertised([adv.service_uuid], {}, {adv.manufacturer_id: bytes(size)}), name


def advertising_fit(caps: Any, adapter: str, profile: Profile | None = None) -> str:
    """Whether the advertisement and the name fit what ``adapter`` takes (``caps``: its
    ``SupportedCapabilities``; absent before BlueZ 5.56: a legacy 31 bytes each). Returns the
    finding's detail, or raises Failed(ADVERTISEMENT_TOO_LONG)."""
    values = {k: getattr(v, "value", v) for k, v in (caps or {}).items()}
    most_adv = int(values.get("MaxAdvLen", LEGACY_LENGTH))
    # BlueZ names the scan response's bound MaxScnRspLen; BlueZoo 1.0.2 MaxScanRespLen.
    most_scan = int(values.get("MaxScnRspLen", values.get("MaxScanRespLen", LEGACY_LENGTH)))
    adv, name = native_advertisement(profile or load_profile())
    needed, named = adv.length(), 2 + len(name.encode())
    if needed > most_adv:
        raise Failed(
            f"the advertisement needs {needed} bytes; {adapter} takes {most_adv} (MaxAdvLen)",
            "use a Bluetooth 4.0+ LE adapter (31 bytes), or fewer fields in gatt_profile.yaml "
            "advertising.manufacturer_data",
            Code.ADVERTISEMENT_TOO_LONG,
        )
    if named > most_scan:
        raise Failed(
            f"the name {name!r} needs {named} bytes of scan response; {adapter} takes "
            f"{most_scan} (MaxScnRspLen)",
            "a shorter advertising.local_name_pattern in gatt_profile.yaml",
            Code.ADVERTISEMENT_TOO_LONG,
        )
    return f"advertisement {needed}/{most_adv} bytes, name in the scan response {named}/{most_scan}"


async def check_networkmanager(ctx: Context) -> str:
    if not ctx.nm_needed:
        return "not needed: network.backend is simulated"
    bus = _bus(ctx)
    try:
        version = await _get(bus, defs.BUS_NAME, defs.MANAGER_PATH, defs.MANAGER_IFACE, "Version")
    except _Failure as exc:
        if _name(exc) in _NOT_RUNNING:
            raise Failed(
                f"{defs.BUS_NAME} is not on the system bus: NetworkManager is not running",
                "sudo systemctl start NetworkManager (and: sudo systemctl enable NetworkManager)",
            ) from None
        raise Failed(
            f"NetworkManager does not answer: {_said(exc)}",
            _AS_ROOT
            if _name(exc) == defs.ERR_ACCESS_DENIED
            else "sudo systemctl restart NetworkManager",
        ) from None
    ctx.nm_up = True
    if _older(str(version), NM_FLOOR):
        raise Failed(
            f"NetworkManager {version}: device-sim needs {'.'.join(map(str, NM_FLOOR))} or later "
            "(AddAndActivateConnection2, in-memory profiles)",
            "sudo apt update && sudo apt install network-manager",
            Code.NETWORKMANAGER_TOO_OLD,
        )
    (paths,) = await call(bus, defs.BUS_NAME, defs.MANAGER_PATH, defs.MANAGER_IFACE, "GetDevices")
    wifi: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        props = await _get_all(bus, defs.BUS_NAME, path, defs.DEVICE_IFACE)
        if props.get("DeviceType") == defs.DeviceType.WIFI:
            wifi.append((path, props))
    bad = (defs.DeviceState.UNMANAGED, defs.DeviceState.UNAVAILABLE)
    wanted = ctx.config.network.interface
    names = ", ".join(p.get("Interface", "?") for _, p in wifi) or "none"
    if wanted is not None:
        chosen = [d for d in wifi if d[1].get("Interface") == wanted]
    else:  # the first usable one, else the first one (to say what is wrong with it)
        chosen = sorted(wifi, key=lambda d: d[1].get("State") in bad)
    if not chosen:
        what = f"no Wi-Fi device {wanted}" if wanted else "no Wi-Fi device"
        fix = (
            f"set [network] interface to one of: {names}"
            if wifi
            else "sudo rfkill unblock wifi; check the Wi-Fi chip with: nmcli device status"
        )
        raise Failed(f"NetworkManager {version}: {what} (Wi-Fi devices: {names})", fix)
    ctx.wifi_path, props = chosen[0]
    iface = ctx.wifi_iface = str(props.get("Interface", "?"))
    state = int(props.get("State", 0))
    try:
        state_name = defs.DeviceState(state).name.lower()
    except ValueError:
        state_name = f"state {state}"
    if state == defs.DeviceState.UNMANAGED:
        raise Failed(
            f"NetworkManager {version}: {iface} is unmanaged",
            f"sudo nmcli device set {iface} managed yes (and remove it from "
            "unmanaged-devices in /etc/NetworkManager/)",
        )
    if state == defs.DeviceState.UNAVAILABLE:
        manager = await _get_all(bus, defs.BUS_NAME, defs.MANAGER_PATH, defs.MANAGER_IFACE)
        if manager.get("WirelessHardwareEnabled") is False:
            fix = "sudo rfkill unblock wifi"
        elif manager.get("WirelessEnabled") is False:
            fix = "sudo nmcli radio wifi on"
        else:
            fix = (
                "sudo rfkill unblock wifi && sudo nmcli radio wifi on "
                "(Raspberry Pi: set the Wi-Fi country first, see regulatory_country)"
            )
        raise Failed(f"NetworkManager {version}: {iface} is unavailable", fix, Code.WIFI_BLOCKED)
    return f"NetworkManager {version}; Wi-Fi device {iface} managed ({state_name})"


async def check_ap_capability(ctx: Context) -> str:
    if not ctx.nm_needed:
        return "not needed: network.backend is simulated"
    bus = _bus(ctx)
    if ctx.wifi_path is None:
        raise Failed(
            "not checked: no Wi-Fi device (see the networkmanager check)",
            "fix the networkmanager check first",
            Code.WIFI_UNAVAILABLE,
        )
    caps = defs.WifiCapabilities(
        int(
            await _get(
                bus, defs.BUS_NAME, ctx.wifi_path, defs.WIRELESS_IFACE, "WirelessCapabilities"
            )
        )
    )
    has_ap = defs.WifiCapabilities.AP in caps
    if ctx.config.doors.policy == "ble-only":
        return (
            f"not needed: doors.policy is ble-only ({ctx.wifi_iface} AP mode: "
            f"{'yes' if has_ap else 'no'})"
        )
    if not has_ap:
        raise Failed(
            f"{ctx.wifi_iface}'s driver does not offer AP mode: the SoftAP door cannot start",
            'set [doors] policy = "ble-only", or use a Wi-Fi '
            "adapter with AP mode (iw list: Supported interface modes: AP)",
        )
    bands = [
        b
        for b, f in (
            ("2.4 GHz", defs.WifiCapabilities.FREQ_2GHZ),
            ("5 GHz", defs.WifiCapabilities.FREQ_5GHZ),
        )
        if f in caps
    ]
    said = f"{ctx.wifi_iface} supports AP mode" + (f" ({', '.join(bands)})" if bands else "")
    if not ctx.config.softap.concurrent:
        return said
    return f"{said}; {await _concurrency(ctx)}"


async def _concurrency(ctx: Context) -> str:
    """``[softap] concurrent``: the driver's interface combinations (``iw list``) must hold a
    station and an AP at once; ``#channels <= 1`` means the AP follows the station's channel."""
    program = shutil.which("iw")
    if program is None:
        return "AP beside the station not checked (no iw: sudo apt install iw)"
    _, out = await run_tool([program, "list"])
    combos = ap_sta_combinations(out)
    if not combos:
        raise Failed(
            f"[softap] concurrent is set, but {ctx.wifi_iface}'s driver has no interface "
            "combination with a station and an AP at once (iw list)",
            "set [softap] concurrent = false (the AP closes while the device joins)",
            Code.AP_STA_UNSUPPORTED,
        )
    channels = max(combos)
    if channels <= 1:
        return "AP beside the station: yes, on the station's channel only (#channels <= 1)"
    return f"AP beside the station: yes (#channels <= {channels})"


def ap_sta_combinations(iw_list: str) -> list[int]:
    """The ``#channels`` limit of each of ``iw list``'s valid interface combinations that holds
    a station (managed) and an AP at once: in separate groups, or in one group of two."""
    found = []
    for combo in re.findall(r"\* (#\{.*?#channels <= \d+)", iw_list, re.DOTALL):
        groups = [
            (set(m.group(1).replace(" ", "").split(",")), int(m.group(2)))
            for m in re.finditer(r"#\{([^}]*)\} <= (\d+)", combo)
        ]
        total = re.search(r"total <= (\d+)", combo)
        if total is not None and int(total.group(1)) < 2:
            continue
        managed = [n for members, n in groups if "managed" in members]
        ap = [n for members, n in groups if "AP" in members]
        same = [n for members, n in groups if {"managed", "AP"} <= members]
        apart = any("managed" in a and "AP" not in a for a, _ in groups) and any(
            "AP" in b and "managed" not in b for b, _ in groups
        )
        if (managed and ap and apart) or any(n >= 2 for n in same):
            found.append(int(re.search(r"#channels <= (\d+)", combo).group(1)))  # type: ignore[union-attr]
    return found


async def check_dbus_permissions(ctx: Context) -> str:
    if not ctx.nm_needed:
        return "not needed: network.backend is simulated"
    uid = os.geteuid()
    who = "root" if uid == 0 else f"uid {uid}"
    if not ctx.nm_up:
        if uid == 0:
            return "running as root (NetworkManager not reachable to ask)"
        raise Failed(
            f"not checked: NetworkManager is not reachable; running as {who}",
            "fix the networkmanager check first",
            Code.WIFI_UNAVAILABLE,
        )
    (answer,) = await call(
        _bus(ctx), defs.BUS_NAME, defs.MANAGER_PATH, defs.MANAGER_IFACE, "GetPermissions"
    )
    said = ", ".join(
        f"{p.removeprefix(defs.BUS_NAME + '.')}: {answer.get(p, 'unknown')}" for p in NM_PERMISSIONS
    )
    if all(answer.get(p) == "yes" for p in NM_PERMISSIONS):
        return f"{said} (as {who})"
    if uid == 0:
        return f"running as root, which NetworkManager always authorizes (it said {said})"
    raise Failed(
        f"NetworkManager says {said} for {who}",
        "run device-sim as root (the systemd unit does), or add a polkit rule "
        "granting its user " + " and ".join(NM_PERMISSIONS),
    )
