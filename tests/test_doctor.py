"""`device-sim doctor`: the checks against a private system bus with BlueZoo (BlueZ) and NMMock
(NetworkManager), a fake `iw` on PATH and temporary state directories.

No sleeps as synchronisation; every wait has a bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from device_sim.apps import doctor
from device_sim.apps.doctor import (
    CheckResult,
    checks_host,
    diagnose,
    exit_code,
    format_results,
    run_checks,
    runner,
)
from device_sim.apps.service import command_on_path
from device_sim.apps.virtual import VirtualBle
from device_sim.codes import Code
from device_sim.config import DaemonOptions
from device_sim.core.identity import create_identity
from device_sim.core.options import CloudOptions
from device_sim.core.store import DeviceStore
from device_sim.doors.ble.options import BleOptions
from device_sim.doors.supervisor import DoorOptions, Policy
from device_sim.errors import ConfigError
from device_sim.network.base import BackendKind
from device_sim.network.nm import defs
from device_sim.network.options import NetworkOptions

WAIT = 5.0
NAMES = [
    "dbus",
    "bluez",
    "bumble",
    "networkmanager",
    "ap_capability",
    "regulatory_country",
    "dbus_permissions",
    "state_dir",
    "config",
    "service",
]
NO_BUS = "unix:path=/nonexistent/device-sim-doctor/bus.sock"
AP_CAPS = 0x7FF & ~defs.WifiCapabilities.AP  # everything but AP mode

needs_bus = pytest.mark.requires_tools("dbus-daemon", modules=("bluezoo",))
needs_dbusmock = pytest.mark.requires_tools(modules=("dbusmock", "dbus"))


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    assert [r.name for r in results] == NAMES
    return {r.name: r for r in results}


def nm_config(state_dir: Path, **changes: Any) -> DaemonOptions:
    return dataclasses.replace(
        DaemonOptions(
            state_dir=state_dir, network=NetworkOptions(backend=BackendKind.NETWORK_MANAGER)
        ),
        **changes,
    )


PI_DEFAULTS = runner._pi_defaults


@pytest.fixture(autouse=True)
def no_system_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a config the doctor checks /var/lib/device-sim: point it into tmp_path here."""
    monkeypatch.setattr(
        runner,
        "_pi_defaults",
        lambda: dataclasses.replace(PI_DEFAULTS(), state_dir=tmp_path / "pi"),
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A state directory with a device identity, as `device-sim init` leaves it."""
    path = tmp_path / "state"
    with DeviceStore(path) as store:
        create_identity(store)
    return path


@pytest.fixture
async def vb() -> AsyncIterator[VirtualBle]:
    async with VirtualBle(adapters=1) as harness:
        yield harness


@pytest.fixture
async def nm(vb: VirtualBle, tmp_path: Path) -> AsyncIterator[Any]:
    """The project's NetworkManager mock (python-dbusmock's template, extended) on ``vb``'s bus."""
    from device_sim.testing import nm_mock as mock

    async with mock.NMMock(vb.bus_address, timeout=WAIT, log_path=tmp_path / "nm.log") as nm_mock:
        yield nm_mock


async def grant(nm: Any, answer: str) -> None:
    """Make GetPermissions answer ``answer`` for both permissions the daemon needs."""
    table = {p: answer for p in doctor.NM_PERMISSIONS}
    await nm.add_method(
        defs.MANAGER_PATH, defs.MANAGER_IFACE, "GetPermissions", "", "a{ss}", f"ret = {table!r}"
    )


# --- BlueZ (BlueZoo) and a bus without NetworkManager -------------------------------------------


@needs_bus
async def test_on_virtual_bus_bluez_passes_and_missing_networkmanager_fails(
    vb: VirtualBle, state_dir: Path
) -> None:
    results = await run_checks(nm_config(state_dir), bus_address=vb.bus_address)
    r = by_name(results)
    assert r["dbus"].ok and vb.bus_address.split(",")[0] in r["dbus"].detail
    assert r["bluez"].ok, r["bluez"]
    assert "hci0" in r["bluez"].detail and "LE advertising" in r["bluez"].detail
    # BlueZoo's SupportedCapabilities (31 and 31): the advertisement fills it exactly
    assert "advertisement 31/31 bytes, name in the scan response 9/31" in r["bluez"].detail
    assert not r["networkmanager"].ok
    assert "not running" in r["networkmanager"].detail
    assert "systemctl start NetworkManager" in r["networkmanager"].fix
    assert not r["ap_capability"].ok and "networkmanager" in r["ap_capability"].fix
    assert r["state_dir"].ok and str(state_dir) in r["state_dir"].detail
    assert r["config"].ok and "gatt_profile.yaml loads" in r["config"].detail
    assert exit_code(results) == 1


@needs_bus
async def test_missing_adapter_fails_naming_the_ones_present(
    vb: VirtualBle, state_dir: Path
) -> None:
    cfg = nm_config(state_dir, ble=BleOptions(adapter="hci9"))
    r = by_name(await run_checks(cfg, bus_address=vb.bus_address))
    assert not r["bluez"].ok
    assert "hci9 not found" in r["bluez"].detail and "hci0" in r["bluez"].detail
    assert "[ble] adapter" in r["bluez"].fix and "hci0" in r["bluez"].fix


@needs_bus
async def test_unpowered_adapter_fails_with_power_on(vb: VirtualBle, state_dir: Path) -> None:
    bus = await MessageBus(bus_address=vb.bus_address, bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path="/org/bluez/hci0",
                interface="org.freedesktop.DBus.Properties",
                member="Set",
                signature="ssv",
                body=["org.bluez.Adapter1", "Powered", Variant("b", False)],
            )
        )
        assert reply is not None and reply.message_type == MessageType.METHOD_RETURN, reply
    finally:
        bus.disconnect()
    r = by_name(await run_checks(nm_config(state_dir), bus_address=vb.bus_address))
    assert not r["bluez"].ok and "not powered" in r["bluez"].detail
    assert "bluetoothctl power on" in r["bluez"].fix or "rfkill unblock" in r["bluez"].fix


@needs_bus
async def test_checks_a_configuration_does_not_need_pass(vb: VirtualBle, state_dir: Path) -> None:
    cfg = DaemonOptions(state_dir=state_dir, doors=DoorOptions(policy=Policy.SOFTAP_ONLY))
    results = await run_checks(cfg, bus_address=vb.bus_address)  # simulated backend
    r = by_name(results)
    assert r["bluez"].ok and "not needed" in r["bluez"].detail
    for name in ("networkmanager", "ap_capability", "regulatory_country", "dbus_permissions"):
        assert r[name].ok and "simulated" in r[name].detail, r[name]
    assert "scenario typical-home loads" in r["config"].detail
    assert exit_code(results) == 0


async def test_config_check_reads_the_personalities(state_dir: Path, tmp_path: Path) -> None:
    from device_sim.profile import DEFAULT_PROFILE_PATH

    text = DEFAULT_PROFILE_PATH.read_text()
    assert "  default: [native]\n" in text
    bad = tmp_path / "gatt_profile.yaml"
    bad.write_text(text.replace("  default: [native]\n", "  default: [nativ]\n"))
    r = by_name(await run_checks(nm_config(state_dir, profile=bad), bus_address=NO_BUS))
    assert not r["config"].ok
    assert "gatt_profile.yaml: personalities.default" in r["config"].detail
    cfg = nm_config(state_dir, ble=BleOptions(personalities=("native", "improv")))
    r = by_name(await run_checks(cfg, bus_address=NO_BUS))
    assert r["config"].ok and "(personalities native, improv)" in r["config"].detail


async def test_unreachable_bus_fails_every_bus_check_and_runs_the_rest(state_dir: Path) -> None:
    r = by_name(await run_checks(nm_config(state_dir), bus_address=NO_BUS))
    assert not r["dbus"].ok and NO_BUS in r["dbus"].detail and "dbus" in r["dbus"].fix
    for name in ("bluez", "networkmanager", "ap_capability"):
        assert not r[name].ok and r[name].fix == "fix the dbus check first", r[name]
    assert r["state_dir"].ok and r["config"].ok


# --- NetworkManager (python-dbusmock) ----------------------------------------------------------


@needs_bus
@needs_dbusmock
async def test_networkmanager_with_an_ap_capable_wifi_device(
    nm: Any, vb: VirtualBle, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await nm.add_wifi_device(
        "wlan0",
        caps=int(
            defs.WifiCapabilities.AP | defs.WifiCapabilities.RSN | defs.WifiCapabilities.FREQ_2GHZ
        ),
    )
    await grant(nm, "yes")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: the answer must be "yes"
    cfg = nm_config(
        state_dir, network=NetworkOptions(backend=BackendKind.NETWORK_MANAGER, interface="wlan0")
    )
    r = by_name(await run_checks(cfg, bus_address=vb.bus_address))
    assert r["networkmanager"].ok, r["networkmanager"]
    assert "NetworkManager 1.42.4" in r["networkmanager"].detail
    assert "wlan0 managed (disconnected)" in r["networkmanager"].detail
    assert r["ap_capability"].ok and "AP mode (2.4 GHz)" in r["ap_capability"].detail
    assert r["dbus_permissions"].ok, r["dbus_permissions"]
    assert "network-control: yes" in r["dbus_permissions"].detail


@needs_bus
@needs_dbusmock
async def test_wifi_device_without_ap_mode(nm: Any, vb: VirtualBle, state_dir: Path) -> None:
    await nm.add_wifi_device("wlan0", caps=int(AP_CAPS))
    r = by_name(await run_checks(nm_config(state_dir), bus_address=vb.bus_address))
    assert r["networkmanager"].ok, r["networkmanager"]
    assert not r["ap_capability"].ok and "does not offer AP mode" in r["ap_capability"].detail
    assert "ble-only" in r["ap_capability"].fix
    cfg = nm_config(state_dir, doors=DoorOptions(policy=Policy.BLE_ONLY))
    r = by_name(await run_checks(cfg, bus_address=vb.bus_address))
    assert r["ap_capability"].ok and "AP mode: no" in r["ap_capability"].detail


@needs_bus
@needs_dbusmock
async def test_unmanaged_or_missing_wifi_device(nm: Any, vb: VirtualBle, state_dir: Path) -> None:
    r = by_name(await run_checks(nm_config(state_dir), bus_address=vb.bus_address))
    assert not r["networkmanager"].ok and "no Wi-Fi device" in r["networkmanager"].detail
    await nm.add_wifi_device("wlan0", state=defs.DeviceState.UNMANAGED)
    r = by_name(await run_checks(nm_config(state_dir), bus_address=vb.bus_address))
    assert not r["networkmanager"].ok and "wlan0 is unmanaged" in r["networkmanager"].detail
    assert "nmcli device set wlan0 managed yes" in r["networkmanager"].fix
    assert r["ap_capability"].ok  # the device is known, its driver still reports AP mode
    cfg = nm_config(
        state_dir, network=NetworkOptions(backend=BackendKind.NETWORK_MANAGER, interface="wlan1")
    )
    r = by_name(await run_checks(cfg, bus_address=vb.bus_address))
    assert not r["networkmanager"].ok and "no Wi-Fi device wlan1" in r["networkmanager"].detail
    assert "wlan0" in r["networkmanager"].fix


@needs_bus
@needs_dbusmock
async def test_permissions_not_granted(
    nm: Any, vb: VirtualBle, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await nm.add_wifi_device("wlan0")
    await grant(nm, "auth")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    r = by_name(await run_checks(nm_config(state_dir), bus_address=vb.bus_address))
    assert not r["dbus_permissions"].ok
    assert "network-control: auth" in r["dbus_permissions"].detail
    assert "uid 1000" in r["dbus_permissions"].detail
    assert "root" in r["dbus_permissions"].fix and "polkit" in r["dbus_permissions"].fix
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    r = by_name(await run_checks(nm_config(state_dir), bus_address=vb.bus_address))
    assert r["dbus_permissions"].ok and "root" in r["dbus_permissions"].detail


# --- regulatory country ------------------------------------------------------------------------


def fake_iw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    iw = bindir / "iw"
    iw.write_text(f"#!/bin/sh\n{script}\n")
    iw.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))


@pytest.mark.parametrize(
    ("script", "ok", "words"),
    [
        (
            'printf "global\\ncountry GB: DFS-ETSI\\n\\t(2400 - 2483 @ 40), (N/A, 20)\\n"',
            True,
            "country GB (iw reg get)",
        ),
        (
            'printf "global\\ncountry 00: DFS-UNSET\\n\\n'
            'phy#0 (self-managed)\\ncountry US: DFS-FCC\\n"',
            True,
            "country US",
        ),
        ('printf "global\\ncountry 00: DFS-UNSET\\n"', False, "no Wi-Fi country set"),
    ],
)
async def test_regulatory_country_from_iw(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    state_dir: Path,
    script: str,
    ok: bool,
    words: str,
) -> None:
    fake_iw(tmp_path, monkeypatch, script)
    r = by_name(await run_checks(nm_config(state_dir), bus_address=NO_BUS))["regulatory_country"]
    assert r.ok is ok and words in r.detail, r
    assert ok or "raspi-config nonint do_wifi_country" in r.fix


async def test_regulatory_country_from_sysfs_or_unknown(
    tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_iw(tmp_path, monkeypatch, 'echo "command failed: No such file or directory (-2)"; exit 1')
    param = tmp_path / "ieee80211_regdom"
    monkeypatch.setattr(checks_host, "REGDOM_PARAM", param)
    param.write_text("DE\n")
    r = by_name(await run_checks(nm_config(state_dir), bus_address=NO_BUS))["regulatory_country"]
    assert r.ok and "country DE" in r.detail
    param.write_text("00\n")
    r = by_name(await run_checks(nm_config(state_dir), bus_address=NO_BUS))["regulatory_country"]
    assert not r.ok and "raspi-config nonint do_wifi_country" in r.fix
    param.unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no iw at all
    r = by_name(await run_checks(nm_config(state_dir), bus_address=NO_BUS))["regulatory_country"]
    assert not r.ok and r.detail.startswith("unknown:") and "no iw" in r.detail
    assert "apt install iw" in r.fix


async def test_a_hanging_check_is_bounded(
    tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    fake_iw(tmp_path, monkeypatch, f"exec {sleep} 60")  # a hung command, not a synchronisation
    async with asyncio.timeout(WAIT):
        r = by_name(await run_checks(nm_config(state_dir), bus_address=NO_BUS, timeout=0.5))
    assert not r["regulatory_country"].ok
    assert r["regulatory_country"].detail == "no answer within 0.5 s"
    assert r["state_dir"].ok  # the checks after it still ran


# --- state directory and config ----------------------------------------------------------------


async def test_state_dir(tmp_path: Path, state_dir: Path) -> None:
    r = by_name(await run_checks(nm_config(state_dir), bus_address=NO_BUS))["state_dir"]
    assert r.ok and "writable" in r.detail and "identity present" in r.detail
    assert not list(state_dir.glob(".doctor-*"))  # the probe file is gone

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "state"
    r = by_name(await run_checks(nm_config(bad), bus_address=NO_BUS))["state_dir"]
    assert not r.ok and "not a writable directory" in r.detail
    assert r.fix == f"sudo install -d -m 700 {bad}"

    # Missing, then empty: `device-sim init` is the fix; the doctor creates nothing that stays.
    fresh = tmp_path / "fresh"
    r = by_name(await run_checks(nm_config(fresh), bus_address=NO_BUS))["state_dir"]
    assert not r.ok and "does not exist yet" in r.detail and "no device identity" in r.detail
    assert r.fix == f"sudo {command_on_path()} init --state-dir {fresh}"
    assert not fresh.exists()
    made = tmp_path / "made"
    made.mkdir()
    r = by_name(await run_checks(nm_config(made), bus_address=NO_BUS))["state_dir"]
    assert not r.ok and "no device identity" in r.detail
    assert r.fix == f"sudo {command_on_path()} init --state-dir {made}"
    assert list(made.iterdir()) == []

    state_dir.chmod(0o755)
    r = by_name(await run_checks(nm_config(state_dir), bus_address=NO_BUS))["state_dir"]
    assert r.ok and "0700 recommended" in r.detail


async def test_config_check(tmp_path: Path, state_dir: Path) -> None:
    path = tmp_path / "device-sim.toml"
    path.write_text(f'state_dir = "{state_dir}"\n[network]\nbackend = "networkmanager"\n')
    r = by_name(await diagnose(path, bus_address=NO_BUS))
    assert r["config"].ok and f"{path} is valid" in r["config"].detail
    assert r["state_dir"].ok  # the checks use the file's settings

    path.write_text('[network]\nbakend = "networkmanager"\n')
    r = by_name(await diagnose(path, bus_address=NO_BUS))
    assert not r["config"].ok and r["config"].detail.startswith("device-sim.toml: network.bakend")
    assert "packaging/device-sim.toml" in r["config"].fix

    cfg = nm_config(state_dir, profile=tmp_path / "missing.yaml")
    r = by_name(await run_checks(cfg, bus_address=NO_BUS))
    assert not r["config"].ok and "missing.yaml" in r["config"].detail

    (tmp_path / "ca.pem").write_text("not a certificate\n")
    cfg = nm_config(state_dir, cloud=CloudOptions(host="cloud.example.com", ca=tmp_path / "ca.pem"))
    r = by_name(await run_checks(cfg, bus_address=NO_BUS))
    assert not r["config"].ok and "cloud.ca" in r["config"].detail

    error = ConfigError("device-sim.toml: ble.adapter", "expected hciN, not 'x'")
    r = by_name(await run_checks(None, bus_address=NO_BUS, config_error=error))
    assert not r["config"].ok and r["config"].detail == str(error)
    assert str(tmp_path / "pi") in r["state_dir"].detail  # the others checked the defaults


async def test_no_config_checks_the_pi_defaults(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = PI_DEFAULTS()
    assert defaults.network.backend == "networkmanager" and defaults.ble.adapter == "hci0"
    assert defaults.state_dir == Path("/var/lib/device-sim")
    monkeypatch.setattr(runner, "_pi_defaults", lambda: nm_config(state_dir))
    r = by_name(await run_checks(None, bus_address=NO_BUS))
    assert r["config"].ok and "no config file" in r["config"].detail
    assert "simulated" not in r["networkmanager"].detail  # checked, not skipped


# --- output ------------------------------------------------------------------------------------


def test_format_json_and_exit_code() -> None:
    results = [
        CheckResult("dbus", True, "connected"),
        CheckResult(
            "bluez",
            False,
            "adapter hci9 not found",
            "set [ble] adapter",
            Code.BLUETOOTH_UNAVAILABLE,
        ),
    ]
    lines = format_results(results).splitlines()
    assert lines == [
        "PASS  dbus               connected",
        "FAIL  bluez              adapter hci9 not found [502 BLUETOOTH_UNAVAILABLE]  "
        "-> fix: set [ble] adapter",
    ]
    assert json.loads(json.dumps([r.to_json() for r in results])) == [
        {
            "name": "dbus",
            "ok": True,
            "detail": "connected",
            "fix": None,
            "code": None,
            "code_name": None,
        },
        {
            "name": "bluez",
            "ok": False,
            "detail": "adapter hci9 not found",
            "fix": "set [ble] adapter",
            "code": 502,
            "code_name": "BLUETOOTH_UNAVAILABLE",
        },
    ]
    assert exit_code(results) == 1 and exit_code(results[:1]) == 0 and exit_code([]) == 0


# --- a faked Raspberry Pi: every finding with its code ------------------------------------------


async def fill_advertising_slots(bus_address: str) -> MessageBus:
    """Register advertisements on hci0 until BlueZ(oo) has no free instance, as a crashed daemon
    that leaked them would leave it; returns the connection that holds them (disconnect: gone)."""
    from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property

    class Advertisement(ServiceInterface):
        def __init__(self) -> None:
            super().__init__("org.bluez.LEAdvertisement1")

        @dbus_property(access=PropertyAccess.READ)
        def Type(self) -> s:  # type: ignore[name-defined]  # noqa: F821
            return "peripheral"

    from device_sim.dbus_call import call

    holder = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    adapter, manager = "/org/bluez/hci0", "org.bluez.LEAdvertisingManager1"
    for n in range(64):  # bounded: BlueZ offers a handful, BlueZoo 15
        (free,) = await call(
            holder, "org.bluez", adapter, "org.freedesktop.DBus.Properties", "Get", "ss",
            [manager, "SupportedInstances"],
        )  # fmt: skip
        if free.value == 0:
            return holder
        path = f"/leaked/adv{n}"
        holder.export(path, Advertisement())
        await call(holder, "org.bluez", adapter, manager, "RegisterAdvertisement", "oa{sv}",
                   [path, {}])  # fmt: skip
    raise AssertionError("the advertising slots never ran out")


@needs_bus
@needs_dbusmock
async def test_doctor_json_gives_each_preflight_finding_its_code_on_a_faked_pi(
    nm: Any, vb: VirtualBle, state_dir: Path, tmp_path: Path
) -> None:
    """Blocked by rfkill, no Wi-Fi country, no free advertisement instance: `doctor --json` as
    a Pi user runs it, each finding with its code, message and fix."""
    await nm.add_wifi_device("wlan0", state=defs.DeviceState.UNAVAILABLE)
    await nm.update_manager({"WirelessHardwareEnabled": Variant("b", False)})
    holder = await fill_advertising_slots(vb.bus_address)
    try:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "iw").write_text('#!/bin/sh\nprintf "global\\ncountry 00: DFS-UNSET\\n"\n')
        (bindir / "iw").chmod(0o755)
        config = tmp_path / "device-sim.toml"
        config.write_text(f'state_dir = "{state_dir}"\n[network]\nbackend = "networkmanager"\n')
        env = {
            **os.environ,
            "DBUS_SYSTEM_BUS_ADDRESS": vb.bus_address,
            "PATH": f"{bindir}:{os.environ['PATH']}",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "device_sim", "doctor", "--config", str(config), "--json",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        holder.disconnect()
    assert proc.returncode == 1, err.decode()
    found = {r["name"]: r for r in json.loads(out)}
    assert found["bluez"]["code_name"] == "ADVERTISING_SLOTS_FULL"
    assert "restart bluetooth" in found["bluez"]["fix"]
    assert found["networkmanager"]["code_name"] == "WIFI_BLOCKED"
    assert found["networkmanager"]["fix"] == "sudo rfkill unblock wifi"
    assert found["regulatory_country"]["code_name"] == "WIFI_COUNTRY_NOT_SET"
    assert found["regulatory_country"]["code"] == 508
    for result in found.values():  # a finding always has its code; a pass never has one
        assert (result["code"] is None) is result["ok"], result


def fake_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / name
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


@needs_bus
@pytest.mark.parametrize(("version", "ok"), [("5.64", False), ("5.63", False), ("5.66", True)])
async def test_the_bluez_versions_whose_advertising_is_broken(
    vb: VirtualBle,
    state_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    version: str,
    ok: bool,
) -> None:
    fake_tool(tmp_path, monkeypatch, "bluetoothctl", f'echo "bluetoothctl: {version}"')
    r = by_name(await run_checks(nm_config(state_dir), bus_address=vb.bus_address))["bluez"]
    assert r.ok is ok and version in r.detail, r
    assert ok or (r.code is Code.BLUEZ_VERSION_BROKEN and "apt install bluez" in r.fix)


@pytest.mark.parametrize(
    ("model", "cmdline", "ok"),
    [
        (
            "Raspberry Pi 4 Model B Rev 1.5\0",
            "console=tty1 cfg80211.ieee80211_regdom=GB rootwait",
            True,
        ),
        ("Raspberry Pi 4 Model B Rev 1.5\0", "console=tty1 rootwait", False),
        ("QEMU Virtual Machine\0", "console=tty1 rootwait", True),  # not a Pi: kept another way
    ],
)
async def test_a_pi_must_keep_its_wifi_country_on_the_kernel_command_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    state_dir: Path,
    model: str,
    cmdline: str,
    ok: bool,
) -> None:
    fake_iw(tmp_path, monkeypatch, 'printf "global\\ncountry GB: DFS-ETSI\\n"')
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "model").write_text(model)
    (proc / "cmdline").write_text(cmdline + "\n")
    monkeypatch.setattr(checks_host, "MODEL", proc / "model")
    monkeypatch.setattr(checks_host, "CMDLINE", proc / "cmdline")
    r = by_name(await run_checks(nm_config(state_dir), bus_address=NO_BUS))["regulatory_country"]
    assert r.ok is ok and "country GB" in r.detail, r
    assert ok or (r.code is Code.WIFI_COUNTRY_NOT_PERSISTED and "raspi-config" in r.fix)


# `iw list` indents with tabs; spaces here (the parser reads either).
PI_IW_LIST = """Wiphy phy0
    valid interface combinations:
         * #{ managed } <= 1, #{ P2P-device } <= 1, #{ P2P-client, P2P-GO } <= 1,
           total <= 3, #channels <= 2
         * #{ managed } <= 1, #{ AP } <= 1,
           total <= 2, #channels <= 1
"""
INTEL_IW_LIST = """    valid interface combinations:
         * #{ managed } <= 1, #{ AP, P2P-client, P2P-GO } <= 1, #{ P2P-device } <= 1,
           total <= 3, #channels <= 2
"""
NO_AP_STA_IW_LIST = """    valid interface combinations:
         * #{ managed } <= 1, #{ P2P-device } <= 1, #{ P2P-client, P2P-GO } <= 1,
           total <= 3, #channels <= 1
         * #{ AP } <= 1,
           total <= 1, #channels <= 1
"""


@pytest.mark.parametrize(
    ("listing", "channels"),
    [(PI_IW_LIST, [1]), (INTEL_IW_LIST, [2]), (NO_AP_STA_IW_LIST, []), ("", [])],
)
def test_which_interface_combinations_hold_a_station_and_an_ap(
    listing: str, channels: list[int]
) -> None:
    from device_sim.apps.doctor.checks_bus import ap_sta_combinations

    assert ap_sta_combinations(listing) == channels


@needs_bus
@needs_dbusmock
@pytest.mark.parametrize(
    ("listing", "ok", "words"),
    [
        (PI_IW_LIST, True, "on the station's channel only"),
        (INTEL_IW_LIST, True, "#channels <= 2"),
        (NO_AP_STA_IW_LIST, False, "no interface combination"),
    ],
)
async def test_a_concurrent_ap_needs_a_driver_combination_for_it(
    nm: Any,
    vb: VirtualBle,
    state_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    listing: str,
    ok: bool,
    words: str,
) -> None:
    from device_sim.doors.softap.options import SoftApOptions

    (tmp_path / "iw-list.txt").write_text(listing)
    fake_tool(tmp_path, monkeypatch, "iw", f'[ "$1" = list ] && cat {tmp_path / "iw-list.txt"}')
    await nm.add_wifi_device("wlan0", caps=int(defs.WifiCapabilities.AP))
    cfg = nm_config(state_dir, softap=SoftApOptions(concurrent=True))
    r = by_name(await run_checks(cfg, bus_address=vb.bus_address))["ap_capability"]
    assert r.ok is ok and words in r.detail, r
    assert ok or (r.code is Code.AP_STA_UNSUPPORTED and "concurrent = false" in r.fix)


@needs_bus
@needs_dbusmock
@pytest.mark.parametrize(("version", "ok"), [("1.14.6", False), ("1.16.0", True), ("1.42.4", True)])
async def test_networkmanager_older_than_1_16_is_too_old(
    nm: Any, vb: VirtualBle, state_dir: Path, version: str, ok: bool
) -> None:
    await nm.add_wifi_device("wlan0")
    await nm.update_manager({"Version": Variant("s", version)})
    r = by_name(await run_checks(nm_config(state_dir), bus_address=vb.bus_address))
    assert r["networkmanager"].ok is ok and version in r["networkmanager"].detail
    assert ok or r["networkmanager"].code is Code.NETWORKMANAGER_TOO_OLD


def test_an_advertisement_longer_than_the_adapter_takes() -> None:
    """SupportedCapabilities as BlueZ gives them (a{sv}), or absent (before BlueZ 5.56: a
    legacy 31 bytes): the advertisement's data and its name in the scan response each fit."""
    from device_sim.apps.doctor.base import Failed
    from device_sim.apps.doctor.checks_bus import advertising_fit, native_advertisement
    from device_sim.profile import load_profile

    profile = load_profile()
    adv, name = native_advertisement(profile)
    assert adv.length() == 31 and name == "DS-FFFF"  # flags 3, UUID 18, manufacturer data 10
    assert "31/31" in advertising_fit(None, "hci0", profile)
    wide = {"MaxAdvLen": Variant("y", 251), "MaxScnRspLen": Variant("y", 251)}
    assert "31/251" in advertising_fit(wide, "hci0", profile)
    for caps, says in (
        ({"MaxAdvLen": Variant("y", 27)}, "needs 31 bytes; hci0 takes 27 (MaxAdvLen)"),
        ({"MaxScnRspLen": Variant("y", 8)}, "'DS-FFFF' needs 9 bytes of scan response"),
    ):
        with pytest.raises(Failed) as caught:
            advertising_fit(caps, "hci0", profile)
        assert caught.value.code is Code.ADVERTISEMENT_TOO_LONG and says in caught.value.detail
    long_name = dataclasses.replace(
        profile,
        advertising=dataclasses.replace(
            profile.advertising, local_name_pattern="Acme Water Heater Pro {short_id} Setup"
        ),
    )
    with pytest.raises(Failed, match="scan response"):
        advertising_fit(None, "hci0", long_name)


@needs_bus
async def test_the_bumble_stack_its_transport_and_an_adapter_bluetoothd_holds(
    vb: VirtualBle, state_dir: Path
) -> None:
    """With ble.stack bumble the bluez check steps aside; the bumble check wants a transport
    whose controller answers, and a kernel HCI socket's adapter that bluetoothd (here BlueZoo,
    which lists hci0) does not hold."""
    import socket

    def bumble(transport: str | None) -> DaemonOptions:
        return DaemonOptions(
            state_dir=state_dir, ble=BleOptions(stack="bumble", bumble_transport=transport)
        )

    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    port = refused.getsockname()[1]
    refused.close()  # nothing listens there now
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    try:
        for transport, ok, code, says in (
            (None, False, Code.BLE_STACK_UNAVAILABLE, "no ble.bumble_transport"),
            (f"tcp-client:127.0.0.1:{port}", False, Code.BLE_STACK_UNAVAILABLE, "no controller"),
            (f"tcp-client:127.0.0.1:{listening.getsockname()[1]}", True, None, "bumble 0.0."),
            ("hci-socket:0", False, Code.ADAPTER_HELD_BY_BLUEZ, "bluetoothd holds hci0"),
            ("hci-socket:7", True, None, "on hci-socket:7"),
        ):
            r = by_name(await run_checks(bumble(transport), bus_address=vb.bus_address))
            assert r["bumble"].ok is ok and says in r["bumble"].detail, r["bumble"]
            assert r["bumble"].code is code
            assert r["bluez"].ok and "ble.stack is bumble" in r["bluez"].detail
    finally:
        listening.close()
    r = by_name(await run_checks(nm_config(state_dir), bus_address=vb.bus_address))
    assert r["bumble"].ok and r["bumble"].detail == "not needed: ble.stack is bluez"
