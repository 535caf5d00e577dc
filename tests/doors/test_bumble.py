"""The second BLE stack, bumble: the device's GATT host and the phone's central on bumble's
virtual controllers, with no D-Bus. Each personality onboards through the demo; the device and
the phone in their own processes meet through controllers served over TCP, and through the
Android emulator's netsim gRPC transport (bumble serving as the netsim endpoint); the device
on bumble loads neither bless nor a D-Bus library."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from device_sim.apps.daemon_process import DaemonProcess, daemon_argv
from device_sim.core.identity import create_identity
from device_sim.core.store import DeviceStore
from device_sim.doors.ble.gatt import Advertised
from device_sim.network.scenario import load_scenario
from device_sim.profile import load_profile
from device_sim.security.secret import Secret
from device_sim.testing.cli import clean_env

pytestmark = [pytest.mark.requires_tools(modules=("bumble",))]

CODE = "2468-1357"
LAB = load_scenario("engineering-wifi").default_credentials
HEAVY = ("bless", "dbus_next", "dbus_fast", "bluezoo")


def no_bus_env() -> dict[str, str]:
    """No system bus to reach, and no dbus-daemon on PATH: nothing D-Bus can start."""
    env = clean_env()
    env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    env["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=/nonexistent/no-bus"
    env["PATH"] = str(Path(sys.executable).parent)
    return env


def test_the_advertisement_is_what_bluez_would_send() -> None:
    from bumble.core import AdvertisingData

    from device_sim.client.ble import _bleak_like
    from device_sim.doors.ble.bumble_host import advertising_data

    profile = load_profile()
    native = Advertised([profile.service.uuid], {}, {0xFFFF: bytes(range(6))})
    raw = advertising_data(native)
    assert len(raw) == native.length() == 31  # flags 3 + UUID 18 + manufacturer data 10
    improv_data = "00004677-0000-1000-8000-00805f9b34fb"
    both = Advertised(["00467768-6228-2272-4663-277478268000"], {improv_data: b"\x01" * 6}, {})
    assert len(advertising_data(both)) == both.length() == 31

    class Seen:  # what bumble's scanner hands over
        address = "D1:88:FF:8F:BF:9D/P"
        rssi = -52
        data = AdvertisingData.from_bytes(advertising_data(both))

    found, adv = _bleak_like(Seen())
    assert found.address == "D1:88:FF:8F:BF:9D"
    assert adv.service_uuids == ["00467768-6228-2272-4663-277478268000"]
    assert adv.service_data == {improv_data: b"\x01" * 6} and adv.rssi == -52
    seen_native = type("S", (Seen,), {"data": AdvertisingData.from_bytes(raw)})()
    assert _bleak_like(seen_native)[1].manufacturer_data == {0xFFFF: bytes(range(6))}


@pytest.mark.parametrize("personality", ["native", "improv", "esp"])
def test_the_demo_onboards_each_personality_with_no_dbus(personality: str) -> None:
    """`demo --ble-stack bumble`: online, with no system bus and no dbus-daemon reachable, and
    the demo's own process (the phone) imports none of bless, dbus-next, dbus-fast, BlueZoo."""
    script = (
        "import sys\n"
        "from device_sim.apps.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        f"print('MODULES', sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "demo", "--ble-stack", "bumble", "--personality",
         personality, "--zero-delay", "--json"],
        capture_output=True, text=True, timeout=120, env=no_bus_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (result["state"], result["code_name"]) == ("online", "OK")
    assert "MODULES []" in done.stderr


@pytest_asyncio.fixture
async def device_on(tmp_path: Path) -> AsyncIterator[Any]:
    """Starts a device daemon on a bumble transport: ``await device_on(moniker)``."""
    started: list[DaemonProcess] = []
    state = tmp_path / "device"
    with DeviceStore(state) as store:
        create_identity(store, Secret(CODE))

    async def start(moniker: str) -> tuple[DaemonProcess, dict[str, Any]]:
        bumble = ["--ble-stack", "bumble", "--bumble-transport", moniker]
        argv = daemon_argv(
            state, adapter="hci0", scenario="engineering-wifi", zero_delay=True, extra=bumble
        )
        daemon = DaemonProcess(["-v", *argv], no_bus_env(), tmp_path / "daemon.log")
        started.append(daemon)
        return daemon, await daemon.start()

    yield start
    for daemon in started:
        await daemon.stop()


def mapped(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in HEAVY if f"/{name}/" in maps}


async def client_provision(moniker: str, address: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "device_sim", "client", "provision", "--ble-stack", "bumble",
        "--bumble-transport", moniker, "--name", address, "--setup-code", CODE,
        "--ssid", LAB.ssid.decode(), "--passphrase", LAB.passphrase or "", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=no_bus_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return dict(json.loads(out))


@pytest.mark.asyncio
async def test_device_and_client_in_their_own_processes_meet_over_tcp(device_on: Any) -> None:
    from device_sim.bumble_stack import serve_controllers

    async with serve_controllers("tcp-meeting", 2) as (for_device, for_phone):
        daemon, ready = await device_on(for_device)
        assert ready["address"] and ready["local_name"].startswith("DS-")
        assert daemon.proc is not None and mapped(daemon.proc.pid) == set()
        result = await client_provision(for_phone, ready["address"])
        stopped = await daemon.stop(timeout=5)  # while its controller is there
    assert stopped == 0  # SIGTERM: a clean exit, its advertising sets removed
    assert (result["state"], result["code_name"]) == ("online", "OK")
    assert result["device"]["address"] == ready["address"]


# The emulator's side, in its own process as the emulator is: bumble serving the netsim gRPC
# endpoint (a controller, for the device) and a TCP-served controller for the phone, on one link.
# gRPC's threads live as long as their process: kept out of the test process, they cannot print
# into a later test's fork.
NETSIM = """
import asyncio, json, sys
from bumble.transport import open_transport
from device_sim.bumble_stack import controllers_link, serve_controllers, virtual_controller

async def main(port):
    netsim = await open_transport(f"android-netsim:_:{port},mode=controller")
    virtual_controller("netsim", controllers_link("netsim-meeting"),
                       host_source=netsim.source, host_sink=netsim.sink)
    async with serve_controllers("netsim-meeting", 1) as (for_phone,):
        print(json.dumps({"phone": for_phone}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await netsim.close()

asyncio.run(main(int(sys.argv[1])))
"""


@pytest.mark.asyncio
async def test_the_android_emulators_netsim_grpc_transport(device_on: Any) -> None:
    """bumble serves the netsim gRPC endpoint (as the emulator's netsim does) for the device,
    which attaches in host mode with `android-netsim:localhost:PORT`; the phone is a client
    process on another controller of the same link."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    emulator = await asyncio.create_subprocess_exec(
        sys.executable, "-c", NETSIM, str(port), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env=no_bus_env(),
    )  # fmt: skip
    assert emulator.stdin is not None and emulator.stdout is not None
    try:
        line = await asyncio.wait_for(emulator.stdout.readline(), 60)
        assert line, "the netsim endpoint process exited"
        for_phone = json.loads(line)["phone"]
        daemon, ready = await device_on(f"android-netsim:localhost:{port}")
        result = await client_provision(for_phone, ready["address"])
        await daemon.stop()
    finally:
        emulator.stdin.close()
        try:
            await asyncio.wait_for(emulator.wait(), 20)
        except TimeoutError:
            emulator.kill()
            await emulator.wait()
    assert (result["state"], result["code_name"]) == ("online", "OK")


def test_the_bumble_flags_are_checked(tmp_path: Path) -> None:
    env = {**clean_env(), "PATH": os.environ.get("PATH", "")}
    for argv, says in (
        (["run", "--state-dir", str(tmp_path), "--ble-stack", "nimble"], "--ble-stack"),
        (["client", "scan", "--ble-stack", "bumble"], "--bumble-transport: required"),
    ):
        done = subprocess.run([sys.executable, "-m", "device_sim", *argv], capture_output=True,
                              text=True, timeout=60, env=env)  # fmt: skip
        assert done.returncode == 2 and says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.asyncio
async def test_a_stranger_on_bumble_cannot_disturb_the_holders_session(device_on: Any) -> None:
    """bumble names the writing central (its address), so the hijack protections hold: a
    second phone writing on the holder's own channel gets no answer and ends nothing."""
    from device_sim.bumble_stack import open_device, serve_controllers
    from device_sim.client import ble
    from device_sim.codes import MessageType
    from device_sim.doors.native.client import BleLink, ClientSession, discover
    from device_sim.doors.native.wire import split_type
    from device_sim.security.session import ClientHandshake

    profile = load_profile()
    async with (
        serve_controllers("hijack", 1) as (for_device,),
        open_device("local:hijack", "stranger") as stranger_central,
    ):
        daemon, ready = await device_on(for_device)
        # Two phones on the link: the holder's central, and the stranger's (registered as its
        # own transport name, so the Radio cache keeps them apart).
        ble._centrals["local:hijack/stranger"] = stranger_central
        links = []
        try:
            for transport in ("local:hijack", "local:hijack/stranger"):
                radio = ble.Radio(stack="bumble", bumble_transport=transport)
                (found,) = await discover(profile, adapter="-", timeout=10,
                                          name=ready["address"], radio=radio)  # fmt: skip
                link = BleLink(profile, found.device, adapter="-", radio=radio)
                await link.__aenter__()
                links.append(link)
            holder, stranger = links
            stranger.channel = holder.channel  # it read the holder's channel id off the air
            session = ClientSession(holder)
            await session.open(Secret(CODE))
            hello = ClientHandshake(Secret(CODE)).start()
            await stranger.send(bytes([MessageType.PAKE_START]) + hello)
            kind, status = await session.call(MessageType.STATUS_REQUEST, {})
            assert (kind, status["state"]) == (MessageType.STATUS, "session_open")
            while not holder.inbox.empty():  # no ERROR reached the holder
                item = holder.inbox.get_nowait()
                assert isinstance(item, bytes) and split_type(item)[0] is not MessageType.ERROR
        finally:
            for link in links:
                await link.__aexit__()
            ble._centrals.pop("local:hijack/stranger", None)
            await ble.close_radios()
            await daemon.stop(timeout=5)
    assert "a central wrote on channel" in daemon.log_path.read_text()  # seen, and dropped
