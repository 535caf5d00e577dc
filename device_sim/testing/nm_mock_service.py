"""The NetworkManager mock's side: what runs INSIDE the dbusmock process (dbus-python).

:class:`~.mock.NMMock` installs methods with dbusmock's ``AddMethod`` whose code strings
(:data:`CALL`) import this module and call its ``_in_mock_*`` functions with the D-Bus object
(``self``) and the call's arguments. They add what python-dbusmock's NetworkManager template
lacks and run each activation's ``StateChanged`` sequence. Only the mock process imports
dbus-python and dbusmock (lazily, in :func:`_dbus` and :func:`_dbusmock`); the test side only
reads :data:`CALL` from here.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..network.nm.defs import (
    ACTIVE_IFACE,
    AP_IFACE,
    CONNECTION_IFACE,
    DEVICE_IFACE,
    IP4_CONFIG_IFACE,
    MANAGER_IFACE,
    MANAGER_PATH,
    SETTINGS_IFACE,
    SETTINGS_PATH,
    WIRELESS_IFACE,
    DeviceState,
    DeviceStateReason,
)

__all__ = ["CALL"]

CALL = "import device_sim.testing.nm_mock_service as m; ret = m._in_mock_{}(self, *args)"
"""An ``AddMethod`` code string calling ``_in_mock_<name>`` (fill in ``<name>`` with format)."""

_KEEP: list[Any] = []  # ctypes callbacks handed to GLib


def _dbus() -> Any:
    """dbus-python (only in the mock process: the test side never imports it)."""
    import dbus  # type: ignore[import-untyped]

    return dbus


def _dbusmock() -> Any:
    import dbusmock

    return dbusmock


def _obj(path: str) -> Any:
    return _dbusmock().get_object(str(path))


def _ds(manager: Any) -> dict[str, Any]:
    if not hasattr(manager, "device_sim"):
        manager.device_sim = {"outcome": {"result": "activated"}, "scan": "ok"}
    return manager.device_sim


def _free(prefix: str) -> str:
    n = 0
    while f"{prefix}/{n}" in _dbusmock().get_objects():
        n += 1
    return f"{prefix}/{n}"


def _in_mock_configure(manager: Any, text: str) -> None:
    _ds(manager).update(json.loads(str(text)))


def _in_mock_addwifidevice(manager: Any, iface: str, caps: int, state: int) -> str:
    dbus = _dbus()
    path = manager.AddWiFiDevice(str(iface), str(iface), int(state))
    dev = _obj(path)
    dev.Set(WIRELESS_IFACE, "WirelessCapabilities", dbus.UInt32(caps))
    dev.AddProperty(WIRELESS_IFACE, "LastScan", dbus.Int64(int(time.monotonic() * 1000)))
    dev.AddProperty(WIRELESS_IFACE, "ActiveAccessPoint", dbus.ObjectPath("/"))
    dev.AddProperty(DEVICE_IFACE, "Ip4Config", dbus.ObjectPath("/"))
    dev.AddMethod(WIRELESS_IFACE, "RequestScan", "a{sv}", "", CALL.format("request_scan"))
    return str(path)


def _in_mock_request_scan(dev: Any, _options: Any) -> None:
    dbus = _dbus()
    mode = _ds(_obj(MANAGER_PATH))["scan"]
    if mode == "refuse":
        raise dbus.exceptions.DBusException(
            "Scanning not allowed immediately following previous scan",
            name="org.freedesktop.NetworkManager.Device.NotAllowed",
        )
    if mode == "ok":
        last = int(dev.Get(WIRELESS_IFACE, "LastScan"))
        dev.Set(WIRELESS_IFACE, "LastScan", dbus.Int64(max(last + 1, int(time.monotonic() * 1000))))


def _in_mock_addaccesspoint(
    manager: Any,
    device: str,
    name: str,
    ssid: Any,
    bssid: str,
    freq: int,
    strength: int,
    flags: int,
    wpa: int,
    rsn: int,
) -> str:
    dbus = _dbus()
    dev, path = _obj(device), f"/org/freedesktop/NetworkManager/AccessPoint/{name}"
    manager.AddObject(
        path,
        AP_IFACE,
        {
            "Ssid": dbus.ByteArray(bytes(bytearray(ssid))),
            "HwAddress": dbus.String(bssid),
            "Flags": dbus.UInt32(flags),
            "WpaFlags": dbus.UInt32(wpa),
            "RsnFlags": dbus.UInt32(rsn),
            "Frequency": dbus.UInt32(freq),
            "Strength": dbus.Byte(strength),
            "MaxBitrate": dbus.UInt32(54000),
            "Mode": dbus.UInt32(2),
            "LastSeen": dbus.Int32(1),
        },
        [],
    )
    manager.object_manager_emit_added(path)
    dev.access_points.append(path)
    dev.Set(WIRELESS_IFACE, "AccessPoints", dbus.Array(dev.access_points, signature="o"))
    dev.EmitSignal(WIRELESS_IFACE, "AccessPointAdded", "o", [path])
    return path


def _in_mock_add_and_activate2(
    manager: Any, settings: Any, device: str, specific: str, options: Any
) -> tuple[Any, ...]:
    dbus = _dbus()
    unsaved = str(options.get("persist", "disk")) != "disk"
    conn = _new_connection(manager, settings, unsaved)
    dev = _obj(device)
    old = str(dev.Get(DEVICE_IFACE, "ActiveConnection"))
    if old != "/":  # the previous connection goes down first
        _set_state(dev, DeviceState.DEACTIVATING, DeviceStateReason.NEW_ACTIVATION)
        manager.RemoveActiveConnection(device, old)
    active = _free("/org/freedesktop/NetworkManager/ActiveConnection")
    manager.AddObject(
        active,
        ACTIVE_IFACE,
        {
            "Connection": dbus.ObjectPath(conn),
            "SpecificObject": dbus.ObjectPath(specific),
            "Id": settings["connection"]["id"],
            "Uuid": settings["connection"]["uuid"],
            "Type": "802-11-wireless",
            "Devices": dbus.Array([dbus.ObjectPath(device)], signature="o"),
            "State": dbus.UInt32(1),
            "Default": False,
            "Default6": False,
            "Vpn": False,
            "Master": dbus.ObjectPath("/"),
            "Ip4Config": dbus.ObjectPath("/"),
        },
        [],
    )
    manager.object_manager_emit_added(active)
    actives = manager.Get(MANAGER_IFACE, "ActiveConnections")
    actives.append(dbus.ObjectPath(active))
    manager.Set(MANAGER_IFACE, "ActiveConnections", actives)
    dev.Set(DEVICE_IFACE, "ActiveConnection", dbus.ObjectPath(active))
    outcome = _ds(manager)["outcome"]
    # An access point that does not take this key management (a hidden WPA2 network asked
    # for SAE): the activation fails as NetworkManager reports it (set by refuse_key_mgmt).
    security = settings.get("802-11-wireless-security", {})
    refused = _ds(manager).get("refuse_key_mgmt", {}).get(str(security.get("key-mgmt", "none")))
    if refused is not None:
        outcome = {**outcome, "result": "failed", **refused}
    if outcome["result"] != "manual":
        if outcome.get("after_reply"):
            _defer(lambda: _run(manager, device, active, outcome))
        else:
            _run(manager, device, active, outcome)
    return dbus.ObjectPath(conn), dbus.ObjectPath(active), dbus.Dictionary({}, signature="sv")


def _in_mock_scriptjoin(manager: Any, device: str, text: str) -> None:
    active = str(_obj(device).Get(DEVICE_IFACE, "ActiveConnection"))
    _run(manager, str(device), active, json.loads(str(text)))


def _in_mock_removeaccesspoint(manager: Any, device: str, ap: str) -> None:
    """An access point goes off the air (a router switched off): gone from the next scan."""
    dbus = _dbus()
    dev = _obj(device)
    dev.access_points = [p for p in dev.access_points if str(p) != str(ap)]
    dev.Set(WIRELESS_IFACE, "AccessPoints", dbus.Array(dev.access_points, signature="o"))
    dev.EmitSignal(WIRELESS_IFACE, "AccessPointRemoved", "o", [dbus.ObjectPath(ap)])
    manager.object_manager_emit_removed(str(ap))
    manager.RemoveObject(str(ap))


def _in_mock_dropconnection(manager: Any, device: str, reason: int) -> None:
    """The established connection ends on its own (the AP went away, a deauthentication, an
    expired lease): the active connection deactivates, the device fails with ``reason`` and is
    left disconnected, as NetworkManager does."""
    dbus = _dbus()
    dev = _obj(device)
    active = str(dev.Get(DEVICE_IFACE, "ActiveConnection"))
    if active != "/":
        ac = _obj(active)
        ac.Set(ACTIVE_IFACE, "State", dbus.UInt32(4))
        ac.EmitSignal(ACTIVE_IFACE, "StateChanged", "uu", [dbus.UInt32(4), dbus.UInt32(0)])
    _set_state(dev, DeviceState.FAILED, int(reason))
    if active != "/":
        manager.RemoveActiveConnection(device, active)


def _in_mock_update(conn: Any, settings: Any) -> None:
    conn.settings = settings
    conn.EmitSignal(CONNECTION_IFACE, "Updated", "", [])


def _new_connection(manager: Any, settings: Any, unsaved: bool) -> str:
    dbus = _dbus()
    path = _free(SETTINGS_PATH)
    methods = [
        ("Delete", "", "", CALL.format("delete")),
        ("Save", "", "", CALL.format("save")),
        ("Update", "a{sa{sv}}", "", CALL.format("update")),
        ("GetSettings", "", "a{sa{sv}}", CALL.format("get_settings")),
        ("GetSecrets", "s", "a{sa{sv}}", CALL.format("get_secrets")),
    ]
    manager.AddObject(
        path,
        CONNECTION_IFACE,
        {
            "Unsaved": dbus.Boolean(unsaved),
            "Flags": dbus.UInt32(1 if unsaved else 0),
            "Filename": "",
        },
        methods,
    )
    conn = _obj(path)
    conn.settings, conn.connection_path = settings, path
    manager.object_manager_emit_added(path)
    store = _obj(SETTINGS_PATH)
    paths = store.Get(SETTINGS_IFACE, "Connections")
    paths.append(dbus.ObjectPath(path))
    store.Set(SETTINGS_IFACE, "Connections", paths)
    store.EmitSignal(SETTINGS_IFACE, "NewConnection", "o", [path])
    return path


def _in_mock_save(conn: Any) -> None:
    dbus = _dbus()
    conn.Set(CONNECTION_IFACE, "Unsaved", dbus.Boolean(False))
    conn.Set(CONNECTION_IFACE, "Flags", dbus.UInt32(0))


# What NetworkManager keeps as secrets (GetSettings leaves them out; GetSecrets gives them):
# the PSK, and 802.1X's password and key password.
_SECRETS = frozenset({"psk", "password", "private-key-password"})


def _in_mock_get_settings(conn: Any) -> Any:
    return {
        group: {k: v for k, v in values.items() if k not in _SECRETS}
        for group, values in conn.settings.items()
    }


def _in_mock_get_secrets(conn: Any, group: str) -> Any:
    values = conn.settings.get(str(group), {})
    return {str(group): {k: v for k, v in values.items() if k in _SECRETS}}


def _in_mock_delete(conn: Any) -> None:
    dbus = _dbus()
    manager, path = _obj(MANAGER_PATH), conn.connection_path
    for active in list(manager.Get(MANAGER_IFACE, "ActiveConnections")):
        if str(_obj(active).Get(ACTIVE_IFACE, "Connection")) == path:
            for device in list(_obj(active).Get(ACTIVE_IFACE, "Devices")):
                manager.RemoveActiveConnection(device, active)
    store = _obj(SETTINGS_PATH)
    store.Set(
        SETTINGS_IFACE,
        "Connections",
        dbus.Array(
            [p for p in store.Get(SETTINGS_IFACE, "Connections") if str(p) != path], signature="o"
        ),
    )
    store.EmitSignal(SETTINGS_IFACE, "ConnectionRemoved", "o", [path])
    conn.EmitSignal(CONNECTION_IFACE, "Removed", "", [])
    manager.object_manager_emit_removed(path)
    manager.RemoveObject(path)


def _set_state(dev: Any, new: int, reason: int) -> None:
    dbus = _dbus()
    old = int(dev.Get(DEVICE_IFACE, "State"))
    dev.Set(DEVICE_IFACE, "State", dbus.UInt32(new))
    dev.Set(
        DEVICE_IFACE,
        "StateReason",
        dbus.Struct((dbus.UInt32(new), dbus.UInt32(reason)), signature="uu"),
    )
    dev.EmitSignal(
        DEVICE_IFACE,
        "StateChanged",
        "uuu",
        [dbus.UInt32(new), dbus.UInt32(old), dbus.UInt32(reason)],
    )


def _run(manager: Any, device: str, active: str, outcome: dict[str, Any]) -> None:
    """The activation's state sequence, ending activated or failed."""
    dbus = _dbus()
    dev, ac = _obj(device), _obj(active)
    conn = _obj(ac.Get(ACTIVE_IFACE, "Connection"))
    wireless = conn.settings.get("802-11-wireless", {})
    hotspot = str(wireless.get("mode", "")) == "ap"
    failed, fail_in = outcome["result"] == "failed", int(outcome.get("fail_in", 0))
    steps = [DeviceState.PREPARE, DeviceState.CONFIG]
    if not hotspot and (outcome.get("need_auth") or (failed and fail_in == DeviceState.NEED_AUTH)):
        steps.append(DeviceState.NEED_AUTH)
    steps += [DeviceState.IP_CONFIG, DeviceState.IP_CHECK, DeviceState.SECONDARIES]
    for state in steps:
        if failed and state > fail_in:
            break
        _set_state(dev, state, DeviceStateReason.NONE)
    if failed:
        _set_state(dev, DeviceState.FAILED, int(outcome["reason"]))
        _set_state(dev, DeviceState.DISCONNECTED, DeviceStateReason.NONE)
        manager.RemoveActiveConnection(device, active)
        return
    ip = str(outcome.get("ip", "192.168.1.50"))
    if hotspot:
        ip = str(conn.settings["ipv4"]["address-data"][0]["address"])
    ip4 = _free("/org/freedesktop/NetworkManager/IP4Config")
    manager.AddObject(
        ip4,
        IP4_CONFIG_IFACE,
        {
            "AddressData": dbus.Array(
                [
                    {
                        "address": dbus.String(ip, variant_level=1),
                        "prefix": dbus.UInt32(outcome.get("prefix", 24), variant_level=1),
                    }
                ],
                signature="a{sv}",
            ),
            "Gateway": dbus.String(outcome.get("gateway", "")),
            "NameserverData": dbus.Array(
                [{"address": dbus.String(d, variant_level=1)} for d in outcome.get("dns", [])],
                signature="a{sv}",
            ),
        },
        [],
    )
    dev.Set(DEVICE_IFACE, "Ip4Config", dbus.ObjectPath(ip4))
    ssid = bytes(bytearray(wireless.get("ssid", b"")))
    seen = [p for p in dev.access_points if bytes(bytearray(_obj(p).Get(AP_IFACE, "Ssid"))) == ssid]
    seen.sort(key=lambda p: int(_obj(p).Get(AP_IFACE, "Strength")), reverse=True)
    dev.Set(
        WIRELESS_IFACE,
        "ActiveAccessPoint",
        dbus.ObjectPath(seen[0] if seen and not hotspot else "/"),
    )
    dev.Set(WIRELESS_IFACE, "Mode", dbus.UInt32(3 if hotspot else 2))
    _set_state(dev, DeviceState.ACTIVATED, DeviceStateReason.NONE)
    ac.Set(ACTIVE_IFACE, "State", dbus.UInt32(2))
    ac.EmitSignal(ACTIVE_IFACE, "StateChanged", "uu", [dbus.UInt32(2), dbus.UInt32(0)])


def _defer(fn: Any) -> None:
    """Run ``fn`` from the mock's GLib main loop once idle (after the current reply is sent)."""
    import ctypes
    import traceback

    glib = ctypes.CDLL("libglib-2.0.so.0")
    proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)

    def once(_data: Any) -> int:
        try:
            fn()
        except Exception:
            traceback.print_exc()
        return 0  # G_SOURCE_REMOVE

    callback = proto(once)
    _KEEP.append(callback)
    glib.g_idle_add.argtypes = [proto, ctypes.c_void_p]
    glib.g_idle_add.restype = ctypes.c_uint
    glib.g_idle_add(callback, None)
