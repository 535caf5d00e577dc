"""``device-sim doctor``: is this machine ready to run the daemon (a Raspberry Pi, typically)?

:func:`run_checks` runs a fixed list of checks in order, each bounded in time and never raising:
a failure is a :class:`CheckResult` with ``ok=False``, a detail and the command that fixes it.
The D-Bus checks use the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` or ``bus_address``).

Checks a configuration does not need pass as "not needed": NetworkManager, AP mode, the Wi-Fi
country and NetworkManager permissions with ``network.backend = "simulated"``; BlueZ with
``doors.policy = "softap-only"``; AP mode with ``"ble-only"``. Without a configuration the doctor
checks a Raspberry Pi install's defaults (the networkmanager backend, ``hci0``,
``/var/lib/device-sim``). A Wi-Fi country that cannot be read at all (neither ``iw`` nor the
cfg80211 module parameter) fails: the doctor does not pass what it could not verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

from .config import DEFAULT_CONFIG_PATH, DaemonConfig, NetworkConfig, load_config
from .errors import ConfigError, StoreError
from .network.nm import defs

__all__ = ["CHECK_TIMEOUT", "CheckResult", "diagnose", "exit_code", "format_results",
           "run_checks"]

CHECK_TIMEOUT = 5.0
BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"
DEFAULT_BUS = "unix:path=/run/dbus/system_bus_socket"
REGDOM_PARAM = Path("/sys/module/cfg80211/parameters/ieee80211_regdom")

BLUEZ = "org.bluez"
OBJECT_MANAGER_IFACE = "org.freedesktop.DBus.ObjectManager"
ADAPTER_IFACE = "org.bluez.Adapter1"
LE_ADVERTISING_IFACE = "org.bluez.LEAdvertisingManager1"
NM_PERMISSIONS = ("org.freedesktop.NetworkManager.network-control",
                  "org.freedesktop.NetworkManager.settings.modify.system")
_NOT_RUNNING = (defs.ERR_SERVICE_UNKNOWN, defs.ERR_NAME_HAS_NO_OWNER)
_AS_ROOT = "run the doctor as root (sudo), as the service runs"
_REGDOM_FIX = ("set the Wi-Fi country: sudo raspi-config nonint do_wifi_country XX "
               "(XX: your ISO 3166 code, e.g. GB)")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # what to run or change; empty when ok

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail,
                "fix": self.fix or None}


class _Failed(Exception):
    """A check's verdict: what is wrong and how to fix it."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


class _DBusError(Exception):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}" if text else name)
        self.name = name


@dataclass
class _Context:
    config: DaemonConfig
    config_error: ConfigError | None
    bus_address: str | None
    defaults: bool = False              # no config given: a Raspberry Pi install's defaults
    bus: MessageBus | None = None
    nm_up: bool = False
    wifi_path: str | None = None        # the Wi-Fi device the networkmanager check chose
    wifi_iface: str | None = None

    @property
    def nm_needed(self) -> bool:
        return self.config.network.backend == "networkmanager"


# --- D-Bus helpers -------------------------------------------------------------------------------


async def _call(bus: MessageBus, dest: str, path: str, iface: str, member: str,
                signature: str = "", body: Sequence[Any] = ()) -> list[Any]:
    # NO_AUTOSTART: the doctor reports a stopped service, it does not start one by asking.
    reply = await bus.call(Message(destination=dest, path=path, interface=iface, member=member,
                                   signature=signature, body=list(body),
                                   flags=MessageFlag.NO_AUTOSTART))
    if reply is None:
        raise _DBusError("no reply", "")
    if reply.message_type is MessageType.ERROR:
        text = str(reply.body[0]) if reply.body else ""
        raise _DBusError(reply.error_name or "error", text)
    return list(reply.body)


async def _get_all(bus: MessageBus, dest: str, path: str, iface: str) -> dict[str, Any]:
    (props,) = await _call(bus, dest, path, defs.PROPS_IFACE, "GetAll", "s", [iface])
    return {name: variant.value for name, variant in props.items()}


async def _get(bus: MessageBus, dest: str, path: str, iface: str, name: str) -> Any:
    (variant,) = await _call(bus, dest, path, defs.PROPS_IFACE, "Get", "ss", [iface, name])
    return variant.value


def _bus(ctx: _Context) -> MessageBus:
    if ctx.bus is None:
        raise _Failed("not checked: the system bus is unreachable (see the dbus check)",
                      "fix the dbus check first")
    return ctx.bus


# --- the checks ----------------------------------------------------------------------------------


async def _check_dbus(ctx: _Context) -> str:
    address = ctx.bus_address or os.environ.get(BUS_ENV) or DEFAULT_BUS
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
        raise _Failed(f"cannot connect to the system bus at {address}: {exc}",
                      "sudo systemctl start dbus (or fix DBUS_SYSTEM_BUS_ADDRESS)") from None
    ctx.bus = bus
    return f"connected to {address.split(',guid=')[0]} as {bus.unique_name}"


async def _check_bluez(ctx: _Context) -> str:
    if ctx.config.doors.policy == "softap-only":
        return "not needed: doors.policy is softap-only"
    bus, adapter = _bus(ctx), ctx.config.ble.adapter
    try:
        (objects,) = await _call(bus, BLUEZ, "/", OBJECT_MANAGER_IFACE, "GetManagedObjects")
    except _DBusError as exc:
        if exc.name in _NOT_RUNNING:
            raise _Failed("org.bluez is not on the system bus: BlueZ is not running",
                          "sudo systemctl start bluetooth (not installed? sudo apt install bluez)"
                          ) from None
        raise _Failed(f"BlueZ GetManagedObjects failed: {exc}",
                      _AS_ROOT if exc.name == defs.ERR_ACCESS_DENIED else
                      "sudo systemctl restart bluetooth") from None
    adapters = {path.rsplit("/", 1)[-1]: ifaces for path, ifaces in objects.items()
                if ADAPTER_IFACE in ifaces}
    if adapter not in adapters:
        found = ", ".join(sorted(adapters)) or "none"
        fix = (f"set [ble] adapter to one of: {found} (bluetoothctl list)" if adapters else
               "sudo rfkill unblock bluetooth && sudo systemctl restart bluetooth "
               "(Raspberry Pi: sudo systemctl restart hciuart)")
        raise _Failed(f"adapter {adapter} not found (adapters: {found})", fix)
    ifaces = adapters[adapter]
    props = {k: v.value for k, v in ifaces[ADAPTER_IFACE].items()}
    if props.get("Powered") is not True:
        state = props.get("PowerState", "off")
        fix = ("sudo rfkill unblock bluetooth" if state == "off-blocked" else
               "bluetoothctl power on (if it answers org.bluez.Error.Blocked: "
               "sudo rfkill unblock bluetooth)")
        raise _Failed(f"adapter {adapter} is not powered (power state {state})", fix)
    if LE_ADVERTISING_IFACE not in ifaces:
        raise _Failed(f"adapter {adapter} has no {LE_ADVERTISING_IFACE}: no LE advertising",
                      "use a Bluetooth LE adapter with BlueZ >= 5.48 "
                      "(check: bluetoothctl --version; sudo btmgmt info lists le and advertising)")
    slots = ifaces[LE_ADVERTISING_IFACE].get("SupportedInstances")
    free = f" ({slots.value} free advertising slots)" if slots is not None else ""
    return f"BlueZ up; {adapter} ({props.get('Address', '?')}) powered, LE advertising{free}"


async def _check_networkmanager(ctx: _Context) -> str:
    if not ctx.nm_needed:
        return "not needed: network.backend is simulated"
    bus = _bus(ctx)
    try:
        version = await _get(bus, defs.BUS_NAME, defs.MANAGER_PATH, defs.MANAGER_IFACE, "Version")
    except _DBusError as exc:
        if exc.name in _NOT_RUNNING:
            raise _Failed(f"{defs.BUS_NAME} is not on the system bus: NetworkManager is not "
                          "running", "sudo systemctl start NetworkManager "
                          "(and: sudo systemctl enable NetworkManager)") from None
        raise _Failed(f"NetworkManager does not answer: {exc}",
                      _AS_ROOT if exc.name == defs.ERR_ACCESS_DENIED else
                      "sudo systemctl restart NetworkManager") from None
    ctx.nm_up = True
    (paths,) = await _call(bus, defs.BUS_NAME, defs.MANAGER_PATH, defs.MANAGER_IFACE,
                           "GetDevices")
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
        fix = (f"set [network] interface to one of: {names}" if wifi else
               "sudo rfkill unblock wifi; check the Wi-Fi chip with: nmcli device status")
        raise _Failed(f"NetworkManager {version}: {what} (Wi-Fi devices: {names})", fix)
    ctx.wifi_path, props = chosen[0]
    iface = ctx.wifi_iface = str(props.get("Interface", "?"))
    state = int(props.get("State", 0))
    try:
        state_name = defs.DeviceState(state).name.lower()
    except ValueError:
        state_name = f"state {state}"
    if state == defs.DeviceState.UNMANAGED:
        raise _Failed(f"NetworkManager {version}: {iface} is unmanaged",
                      f"sudo nmcli device set {iface} managed yes (and remove it from "
                      "unmanaged-devices in /etc/NetworkManager/)")
    if state == defs.DeviceState.UNAVAILABLE:
        manager = await _get_all(bus, defs.BUS_NAME, defs.MANAGER_PATH, defs.MANAGER_IFACE)
        if manager.get("WirelessHardwareEnabled") is False:
            fix = "sudo rfkill unblock wifi"
        elif manager.get("WirelessEnabled") is False:
            fix = "sudo nmcli radio wifi on"
        else:
            fix = ("sudo rfkill unblock wifi && sudo nmcli radio wifi on "
                   "(Raspberry Pi: set the Wi-Fi country first, see regulatory_country)")
        raise _Failed(f"NetworkManager {version}: {iface} is unavailable", fix)
    return f"NetworkManager {version}; Wi-Fi device {iface} managed ({state_name})"


async def _check_ap_capability(ctx: _Context) -> str:
    if not ctx.nm_needed:
        return "not needed: network.backend is simulated"
    bus = _bus(ctx)
    if ctx.wifi_path is None:
        raise _Failed("not checked: no Wi-Fi device (see the networkmanager check)",
                      "fix the networkmanager check first")
    caps = defs.WifiCapabilities(int(await _get(
        bus, defs.BUS_NAME, ctx.wifi_path, defs.WIRELESS_IFACE, "WirelessCapabilities")))
    has_ap = defs.WifiCapabilities.AP in caps
    if ctx.config.doors.policy == "ble-only":
        return (f"not needed: doors.policy is ble-only ({ctx.wifi_iface} AP mode: "
                f"{'yes' if has_ap else 'no'})")
    if not has_ap:
        raise _Failed(f"{ctx.wifi_iface}'s driver does not offer AP mode: the SoftAP door "
                      "cannot start", "set [doors] policy = \"ble-only\", or use a Wi-Fi "
                      "adapter with AP mode (iw list: Supported interface modes: AP)")
    bands = [b for b, f in (("2.4 GHz", defs.WifiCapabilities.FREQ_2GHZ),
                            ("5 GHz", defs.WifiCapabilities.FREQ_5GHZ)) if f in caps]
    return f"{ctx.wifi_iface} supports AP mode" + (f" ({', '.join(bands)})" if bands else "")


async def _check_regulatory_country(ctx: _Context) -> str:
    if not ctx.nm_needed:
        return "not needed: network.backend is simulated"
    tried: list[str] = []
    iw = shutil.which("iw")
    if iw is not None:
        code, out = await _run([iw, "reg", "get"])
        if code == 0:
            countries = re.findall(r"^country ([A-Z0-9]{2}):", out, re.MULTILINE)
            chosen = [c for c in countries if c != "00"]
            if chosen:
                return f"country {chosen[0]} (iw reg get)"
            raise _Failed(f"no Wi-Fi country set (iw reg get: country "
                          f"{', '.join(countries) or 'none'})", _REGDOM_FIX)
        last = out.strip().splitlines()[-1:]
        tried.append(f"iw reg get failed: {last[0] if last else f'exit status {code}'}")
    else:
        tried.append("no iw")
    try:
        value = REGDOM_PARAM.read_text(encoding="ascii").strip()
    except OSError:
        tried.append(f"no {REGDOM_PARAM}")
    else:
        if value and value != "00":
            return f"country {value} ({REGDOM_PARAM})"
        raise _Failed(f"no Wi-Fi country set ({REGDOM_PARAM}: {value or 'empty'})", _REGDOM_FIX)
    raise _Failed(f"unknown: cannot read the Wi-Fi country ({'; '.join(tried)})",
                  f"sudo apt install iw; then, if unset, {_REGDOM_FIX}")


async def _run(argv: list[str]) -> tuple[int, str]:
    """Run ``argv``; (exit status, stdout + stderr). The caller's timeout bounds it."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "LC_ALL": "C"})
    try:
        out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    return int(proc.returncode or 0), out.decode("utf-8", "replace")


async def _check_dbus_permissions(ctx: _Context) -> str:
    if not ctx.nm_needed:
        return "not needed: network.backend is simulated"
    uid = os.geteuid()
    who = "root" if uid == 0 else f"uid {uid}"
    if not ctx.nm_up:
        if uid == 0:
            return "running as root (NetworkManager not reachable to ask)"
        raise _Failed(f"not checked: NetworkManager is not reachable; running as {who}",
                      "fix the networkmanager check first")
    (answer,) = await _call(_bus(ctx), defs.BUS_NAME, defs.MANAGER_PATH, defs.MANAGER_IFACE,
                            "GetPermissions")
    said = ", ".join(f"{p.removeprefix(defs.BUS_NAME + '.')}: {answer.get(p, 'unknown')}"
                     for p in NM_PERMISSIONS)
    if all(answer.get(p) == "yes" for p in NM_PERMISSIONS):
        return f"{said} (as {who})"
    if uid == 0:
        return f"running as root, which NetworkManager always authorizes (it said {said})"
    raise _Failed(f"NetworkManager says {said} for {who}",
                  "run device-sim as root (the systemd unit does), or add a polkit rule "
                  "granting its user " + " and ".join(NM_PERMISSIONS))


async def _check_state_dir(ctx: _Context) -> str:
    """Writable and holding an identity. Creates nothing that stays: a missing directory is
    left to `device-sim init`, a temporary file proves it writable and is removed."""
    path = ctx.config.state_dir
    fix, init = f"sudo install -d -m 700 {path}", f"sudo device-sim init --state-dir {path}"

    def probe() -> str:
        from .store import DeviceStore

        if not path.exists():
            parent = next(p for p in path.parents if p.exists())
            if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise _Failed(f"{path} does not exist and cannot be created "
                              f"({parent} is not a writable directory)", fix)
            raise _Failed(f"{path} does not exist yet (it can be created): no device identity",
                          init)
        if not path.is_dir():
            raise _Failed(f"{path} is not a writable directory: not a directory", fix)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".doctor-")
        os.close(fd)
        os.unlink(tmp)
        if not (path / DeviceStore.FILENAME).exists():
            raise _Failed(f"{path} is writable but holds no device identity (no store)", init)
        with DeviceStore(path) as store:
            if store.identity() is None:
                raise _Failed(f"{path} is writable but holds no device identity", init)
        mode = path.stat().st_mode & 0o777
        tail = f", mode {mode:04o} (0700 recommended: sudo chmod 700 {path})" if mode & 0o077 \
            else ""
        return f"{path}: writable, store opens, identity present{tail}"

    try:
        return await asyncio.to_thread(probe)
    except OSError as exc:
        raise _Failed(f"{path} is not a writable directory: {exc.strerror or exc}", fix) from None
    except StoreError as exc:
        raise _Failed(f"the device store in {path} does not open: {exc.detail}", fix) from None


async def _check_config(ctx: _Context) -> str:
    from .network.scenario import load_scenario
    from .profile import load_profile

    fix = "correct the config file (every key is shown in packaging/device-sim.toml)"
    if ctx.config_error is not None:
        raise _Failed(str(ctx.config_error), fix)
    cfg = ctx.config
    parts = ["no config file: checked a Raspberry Pi install's defaults" if ctx.defaults else
             f"{cfg.source or 'the configuration'} is valid"]
    try:
        profile = load_profile(cfg.profile)
        parts.append(f"profile {profile.source.name} loads")
        if cfg.network.backend == "simulated":
            parts.append(f"scenario {load_scenario(cfg.network.scenario).name} loads")
    except ConfigError as exc:
        raise _Failed(str(exc), fix) from None
    if cfg.cloud.ca is not None:
        try:
            ssl.create_default_context(cafile=str(cfg.cloud.ca))
        except (OSError, ssl.SSLError) as exc:
            raise _Failed(f"cloud.ca {cfg.cloud.ca}: not a readable PEM CA bundle ({exc})",
                          fix) from None
        parts.append("cloud CA loads")
    return "; ".join(parts)


_Check = Callable[[_Context], Awaitable[str]]
CHECKS: tuple[tuple[str, _Check, str], ...] = (
    ("dbus", _check_dbus, "sudo systemctl start dbus"),
    ("bluez", _check_bluez, "sudo systemctl restart bluetooth"),
    ("networkmanager", _check_networkmanager, "sudo systemctl restart NetworkManager"),
    ("ap_capability", _check_ap_capability, "sudo systemctl restart NetworkManager"),
    ("regulatory_country", _check_regulatory_country, _REGDOM_FIX),
    ("dbus_permissions", _check_dbus_permissions, "run device-sim as root"),
    ("state_dir", _check_state_dir, "sudo install -d -m 700 /var/lib/device-sim"),
    ("config", _check_config, "correct the config file"),
)
"""(name, check, the fix when it fails unexpectedly), in the order they run."""


async def _guarded(name: str, check: _Check, fallback_fix: str, ctx: _Context,
                   timeout: float) -> CheckResult:
    try:
        async with asyncio.timeout(timeout):
            return CheckResult(name, True, await check(ctx))
    except _Failed as exc:
        return CheckResult(name, False, exc.detail, exc.fix)
    except TimeoutError:
        return CheckResult(name, False, f"no answer within {timeout:g} s", fallback_fix)
    except Exception as exc:  # noqa: BLE001 - a check never raises: the failure is its result
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}", fallback_fix)


def _pi_defaults() -> DaemonConfig:
    return DaemonConfig(network=NetworkConfig(backend="networkmanager"))


async def run_checks(config: DaemonConfig | None, *, bus_address: str | None = None,
                     config_error: ConfigError | None = None,
                     timeout: float = CHECK_TIMEOUT) -> list[CheckResult]:
    """Run every check in :data:`CHECKS` order; never raises (but is cancellable).

    ``config`` None: a Raspberry Pi install's defaults. ``config_error``: why the config file
    did not load (the ``config`` check reports it; the others use the defaults).
    """
    ctx = _Context(config or _pi_defaults(), config_error, bus_address,
                   defaults=config is None and config_error is None)
    try:
        return [await _guarded(name, check, fix, ctx, timeout) for name, check, fix in CHECKS]
    finally:
        if ctx.bus is not None:
            with contextlib.suppress(Exception):
                ctx.bus.disconnect()
                async with asyncio.timeout(timeout):
                    await ctx.bus.wait_for_disconnect()


async def diagnose(config_path: Path | None, *, bus_address: str | None = None,
                   timeout: float = CHECK_TIMEOUT) -> list[CheckResult]:
    """Load ``config_path`` (None: /etc/device-sim/device-sim.toml if it exists) and check."""
    if config_path is None and DEFAULT_CONFIG_PATH.is_file():
        config_path = DEFAULT_CONFIG_PATH
    config: DaemonConfig | None = None
    error: ConfigError | None = None
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            error = exc
    return await run_checks(config, bus_address=bus_address, config_error=error,
                            timeout=timeout)


def format_results(results: Iterable[CheckResult]) -> str:
    """One line per check: PASS/FAIL, name, detail and, on failure, the fix."""
    lines = []
    for r in results:
        line = f"{'PASS' if r.ok else 'FAIL'}  {r.name:<18} {r.detail}"
        lines.append(line if r.ok or not r.fix else f"{line}  -> fix: {r.fix}")
    return "\n".join(lines)


def exit_code(results: Iterable[CheckResult]) -> int:
    """0 when every check passed, 1 otherwise."""
    return 0 if all(r.ok for r in results) else 1
