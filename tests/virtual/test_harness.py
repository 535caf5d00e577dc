"""The virtual BLE harness: private system bus + BlueZoo, attached and detached.

No sleeps as synchronisation: every wait is on a bus signal, a pipe or a process, with a bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from device_sim.apps.virtual import ProcInfo, VirtualBle, is_running, terminate, use_bus
from device_sim.apps.virtual.harness import BUS_ENV, adapter_states, find_bluezoo
from device_sim.errors import ConfigError, VirtualBleError

pytestmark = [
    pytest.mark.ble,
    pytest.mark.requires_tools("dbus-daemon"),
]

WAIT = 5.0  # bound for any single event the tests await (BlueZoo scans every 1 s here)
ADAPTER1 = "org.bluez.Adapter1"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _call(
    bus: MessageBus,
    path: str,
    iface: str,
    member: str,
    signature: str = "",
    body: list[Any] | None = None,
) -> Message:
    reply = await bus.call(
        Message(
            destination="org.bluez",
            path=path,
            interface=iface,
            member=member,
            signature=signature,
            body=body or [],
        )
    )
    assert reply.message_type == MessageType.METHOD_RETURN, (member, reply.body)
    return reply


async def _set(bus: MessageBus, path: str, name: str, value: Variant) -> None:
    await _call(bus, path, "org.freedesktop.DBus.Properties", "Set", "ssv", [ADAPTER1, name, value])


async def _start_monitor(vb: VirtualBle) -> asyncio.subprocess.Process:
    """dbus-monitor on the private bus, returned once it is capturing (it has lost its name)."""
    monitor = await asyncio.create_subprocess_exec(
        "dbus-monitor",
        "--address",
        vb.bus_address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert monitor.stdout is not None
    async with asyncio.timeout(WAIT):
        for _ in range(100):
            if b"member=NameLost" in await monitor.stdout.readline():
                return monitor
    raise AssertionError("dbus-monitor never became a monitor")


async def test_two_adapters_powered_and_see_each_other() -> None:
    async with VirtualBle(adapters=2, scan_interval=1) as vb:
        assert vb.adapters == ["hci0", "hci1"]
        assert vb.addresses == ["00:11:22:33:44:00", "00:11:22:33:44:01"]
        assert vb.env()[BUS_ENV] == vb.bus_address
        assert vb.bluezoo_log.parent == vb.workdir and vb.bluezoo_log.exists()
        monitor = await _start_monitor(vb)
        bus = await MessageBus(bus_address=vb.bus_address, bus_type=BusType.SYSTEM).connect()
        try:
            assert await adapter_states(bus) == {
                "hci0": ("00:11:22:33:44:00", True),
                "hci1": ("00:11:22:33:44:01", True),
            }
            # Each adapter should find the other as a Device1 once it is discoverable.
            expect = {
                f"/org/bluez/{me}/dev_{peer.replace(':', '_')}": peer
                for me, peer in (("hci0", vb.addresses[1]), ("hci1", vb.addresses[0]))
            }
            found = {path: asyncio.Event() for path in expect}

            def on_message(msg: Message) -> None:
                if msg.message_type == MessageType.SIGNAL and msg.member == "InterfacesAdded":
                    path, interfaces = msg.body
                    device = interfaces.get("org.bluez.Device1")
                    if path in found and device and device["Address"].value == expect[path]:
                        found[path].set()

            bus.add_message_handler(on_message)
            await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=["type='signal',interface='org.freedesktop.DBus.ObjectManager'"],
                )
            )
            for name in vb.adapters:
                await _set(bus, f"/org/bluez/{name}", "DiscoverableTimeout", Variant("u", 0))
                await _set(bus, f"/org/bluez/{name}", "Discoverable", Variant("b", True))
            for name in vb.adapters:
                await _call(bus, f"/org/bluez/{name}", ADAPTER1, "StartDiscovery")
            async with asyncio.timeout(WAIT):
                await asyncio.gather(*(event.wait() for event in found.values()))
            for name in vb.adapters:
                await _call(bus, f"/org/bluez/{name}", ADAPTER1, "StopDiscovery")
        finally:
            bus.disconnect()
            await bus.wait_for_disconnect()
            monitor.terminate()
            captured, _ = await asyncio.wait_for(monitor.communicate(), WAIT)
        assert b"member=StartDiscovery" in captured  # the bus lets dbus-monitor eavesdrop
        pids = [p.pid for p in vb.processes]
        workdir = vb.workdir
    assert [p.name for p in vb.processes] == ["dbus-daemon", "bluezoo"]
    assert all(_gone(pid) for pid in pids)
    assert not workdir.exists()


async def test_keep_leaves_workdir_and_use_bus_restores_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(BUS_ENV, "unix:path=/before")
    async with VirtualBle(adapters=1, keep=True, addresses=["aa:bb:cc:dd:ee:01"]) as vb:
        assert vb.addresses == ["AA:BB:CC:DD:EE:01"]
        with use_bus(vb) as address:
            assert os.environ[BUS_ENV] == address == vb.bus_address
        assert os.environ[BUS_ENV] == "unix:path=/before"
    try:
        assert (vb.workdir / "bluezoo.log").exists()
        assert all(_gone(p.pid) for p in vb.processes)
    finally:
        shutil.rmtree(vb.workdir)
    monkeypatch.delenv(BUS_ENV)
    with use_bus("unix:path=/x"):
        assert os.environ[BUS_ENV] == "unix:path=/x"
    assert BUS_ENV not in os.environ


async def test_missing_bluezoo_raises_before_starting_anything() -> None:
    vb = VirtualBle(bluezoo_command=["/nonexistent/bluezoo"])
    with pytest.raises(VirtualBleError, match="bluezoo not installed"):
        await vb.start()
    assert vb.processes == []
    with pytest.raises(VirtualBleError, match="dbus-daemon not found: apt-get install dbus"):
        await VirtualBle(dbus_daemon="no-such-dbus-daemon").start()


async def test_bluezoo_crash_half_way_stops_dbus_daemon() -> None:
    crash = [
        sys.executable,
        "-c",
        "import sys; print('zoo exploded', file=sys.stderr); sys.exit(3)",
    ]
    vb = VirtualBle(bluezoo_command=crash, timeout=WAIT)
    with pytest.raises(VirtualBleError, match="bluezoo exited during start-up") as info:
        await vb.start()
    assert "zoo exploded" in str(info.value)  # the log tail is in the message
    assert [p.name for p in vb.processes] == ["dbus-daemon", "bluezoo"]
    assert all(_gone(p.pid) for p in vb.processes)
    assert not vb.workdir.exists()


async def test_timeout_and_cancellation_clean_up() -> None:
    # A "bluezoo" that never registers on the bus: start-up can only end by its deadline.
    mute = [sys.executable, "-c", "import signal; signal.pause()"]
    vb = VirtualBle(adapters=2, bluezoo_command=mute, timeout=1.0)
    with pytest.raises(VirtualBleError, match="not powered within 1 s: hci0, hci1") as info:
        await vb.start()
    assert "bluezoo.log" in str(info.value)  # its log tail (or that it is empty) is quoted
    assert len(vb.processes) == 2 and all(_gone(p.pid) for p in vb.processes)

    vb = VirtualBle(bluezoo_command=mute, timeout=30.0)
    task = asyncio.ensure_future(vb.start())
    async with asyncio.timeout(WAIT):  # cancel once both children exist (bounded poll)
        for _ in range(1000):
            if len(vb.processes) == 2:
                break
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(vb.processes) == 2 and all(_gone(p.pid) for p in vb.processes)
    assert not vb.workdir.exists()


def test_bad_arguments_are_config_errors() -> None:
    for kwargs in (
        {"adapters": 0},
        {"scan_interval": 0},
        {"addresses": ["00:11"]},
        {"adapters": 3, "addresses": ["00:11:22:33:44:55"]},
    ):
        with pytest.raises(ConfigError):
            VirtualBle(**kwargs)
    assert find_bluezoo()  # installed in the test environment


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device_sim.apps.virtual.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_detached_up_status_down(tmp_path: Path) -> None:
    run_dir = str(tmp_path / "run")
    assert _cli("down", "--run-dir", run_dir).returncode == 0  # down when down: fine
    assert _cli("status", "--run-dir", run_dir).returncode == 3
    up = _cli("up", "--run-dir", run_dir, "--adapters", "2")
    state_file = Path(run_dir) / "state.json"
    procs: list[ProcInfo] = []
    try:
        assert up.returncode == 0, up.stderr
        assert f"export {BUS_ENV}=unix:path={run_dir}/bus.sock" in up.stdout
        assert "hci0=00:11:22:33:44:00 hci1=00:11:22:33:44:01" in up.stdout
        procs = [ProcInfo(**p) for p in json.loads(state_file.read_text())["processes"]]
        assert [p.name for p in procs] == ["bluezoo", "dbus-daemon"]
        assert all(is_running(p) for p in procs)

        again = _cli("up", "--run-dir", run_dir)  # idempotent: reuses the running pair
        assert again.returncode == 0 and "already up" in again.stdout
        assert [p["pid"] for p in json.loads(state_file.read_text())["processes"]] == [
            p.pid for p in procs
        ]
        assert _cli("up", "--run-dir", run_dir, "--adapters", "3").returncode == 1

        status = _cli("status", "--run-dir", run_dir, "--json")
        assert status.returncode == 0, status.stdout
        report = json.loads(status.stdout)
        assert report["up"] is True
        assert [(a["name"], a["powered"]) for a in report["adapters"]] == [
            ("hci0", True),
            ("hci1", True),
        ]

        down = _cli("down", "--run-dir", run_dir)
        assert down.returncode == 0 and "stopped" in down.stdout
        # Not our children, so they may linger as zombies until init reaps them: is_running
        # treats a zombie (or a reused pid) as gone.
        assert not any(is_running(p) for p in procs)
        assert not state_file.exists()
        assert _cli("down", "--run-dir", run_dir).returncode == 0
        assert _cli("status", "--run-dir", run_dir).returncode == 3
    finally:
        asyncio.run(terminate(procs))  # only does anything if an assertion failed mid-way


async def test_the_bus_is_sized_for_a_fleet() -> None:
    """One connection may hold more match rules and pending calls than a system bus allows
    (512 and 128): BlueZoo's one connection serves every device of a fleet."""
    async with VirtualBle(adapters=1) as vb:
        bus = await MessageBus(bus_address=vb.bus_address, bus_type=BusType.SYSTEM).connect()
        try:
            replies = []
            for batch in range(6):  # in batches: dbus-fast does not queue past a full socket
                replies += await asyncio.gather(
                    *(
                        bus.call(
                            Message(
                                destination="org.freedesktop.DBus",
                                path="/org/freedesktop/DBus",
                                interface="org.freedesktop.DBus",
                                member="AddMatch",
                                signature="s",
                                body=[f"type='signal',path='/org/bluez/hci0/dev_{batch}_{i}'"],
                            )
                        )
                        for i in range(100)
                    )
                )
            assert len(replies) == 600
            assert all(r.message_type == MessageType.METHOD_RETURN for r in replies), [
                r.body for r in replies if r.message_type != MessageType.METHOD_RETURN
            ][:1]
            # 200 calls in flight at once: BlueZoo answers each (Introspect is cheap).
            pending = await asyncio.gather(
                *(
                    bus.call(
                        Message(
                            destination="org.bluez",
                            path="/org/bluez/hci0",
                            interface="org.freedesktop.DBus.Introspectable",
                            member="Introspect",
                        )
                    )
                    for _ in range(200)
                )
            )
            assert all(r.message_type == MessageType.METHOD_RETURN for r in pending)
        finally:
            bus.disconnect()
            await bus.wait_for_disconnect()


def test_the_default_run_dir_is_the_users_own(tmp_path: Path) -> None:
    from device_sim.apps.virtual import cli

    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from device_sim.apps.virtual.cli import default_run_dir; print(default_run_dir())",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert found.stdout.strip() == str(tmp_path / "device-sim-virtual-ble")
    without = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from device_sim.apps.virtual.cli import default_run_dir; print(default_run_dir())",
        ],
        env=without,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert found.stdout.strip() == f"/tmp/device-sim-virtual-ble-{os.getuid()}"
    assert cli.owner() == str(Path(cli.__file__).resolve().parents[3])


def test_down_never_stops_a_harness_another_installation_started(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    up = _cli("up", "--run-dir", str(run_dir), "--adapters", "1")
    state_file = run_dir / "state.json"
    procs: list[ProcInfo] = []
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads(state_file.read_text())
        procs = [ProcInfo(**p) for p in state["processes"]]
        state["owner"] = "/home/someone-else/device-sim"  # another checkout's harness
        state_file.write_text(json.dumps(state))
        refused = _cli("down", "--run-dir", str(run_dir))
        assert refused.returncode == 1 and "not stopping it" in refused.stderr
        assert all(is_running(p) for p in procs) and state_file.exists()
        status = json.loads(_cli("status", "--run-dir", str(run_dir), "--json").stdout)
        assert status["owner"] == "/home/someone-else/device-sim"
        forced = _cli("down", "--run-dir", str(run_dir), "--force")
        assert forced.returncode == 0 and not any(is_running(p) for p in procs)
    finally:
        asyncio.run(terminate(procs))
