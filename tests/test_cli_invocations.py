"""Bad invocations of ``device-sim``, each a real process: a clean message and exit status, never
a traceback. Usage errors are one line naming the flag (exit 2); setup problems name the fix
(exit 2); a peer that does not answer is the client's own code (exit 1); a closed output pipe
ends quietly (141)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_sim.apps.commands.client import format_result
from device_sim.apps.daemon_process import DaemonProcess
from device_sim.apps.demo import _activation_line, _timeline
from device_sim.codes import Code
from device_sim.doors.native.flow import describe
from device_sim.profile import load_profile

NO_BUS = "unix:path=/nonexistent/device-sim-test/bus.sock"


def run(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": NO_BUS, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "device_sim", *argv],
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def refused_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


USAGE = [  # argv, the flag the one line must name
    (["demo", "--ssid-hex", "zz"], "--ssid-hex"),
    (["demo", "--setup-code", "0000"], "--setup-code"),
    (["demo", "--scenario", "typical-home", "--transport", "carrier-pigeon"], "--transport"),
    (
        ["client", "provision", "--softap", "notaurl", "--setup-code", "1234-5678", "--ssid", "x"],
        "--softap",
    ),
    (["client", "networks", "--setup-code", "12"], "--setup-code"),
    (["client", "provision", "--discover-timeout", "-1", "--ssid", "x"], "--discover-timeout"),
    (["client", "scan", "--fragment-size", "0"], "--fragment-size"),
    (["run", "--state-dir", "/tmp/x", "--softap-listen", "::1:80"], "--softap-listen"),
    (["run", "--state-dir", "/tmp/x", "--cloud-port", "99999"], "--cloud-port"),
    (["run", "--state-dir", "/tmp/x", "--timeout-scale", "0"], "--timeout-scale"),
    (["init", "--state-dir", "/tmp/x", "--setup-code", "12345678901"], "--setup-code"),
    (["init", "--state-dir", "/tmp/x-no-history", "--scenario", "typical-home"], "--scenario"),
    (["run", "--state-dir", "/tmp/x", "--reconnect-max", "0"], "--reconnect-max"),
    (["run", "--state-dir", "/tmp/x", "--saved-networks", "99"], "--saved-networks"),
    (["client", "forget-network", "--setup-code", "1234-5678"], "--ssid"),
    (["factory", "batch", "--count", "abc"], "--count"),
    (["nonsense"], "nonsense"),
    (["bench", "--transports", "carrier-pigeon"], "--transports"),
    (["bench", "--population", "0"], "--population"),
    (["bench", "--personalities", "zigbee"], "--personalities"),
    (["bench", "--concurrency", "99"], "--concurrency"),
    (["bench", "--scenarios", "cloud-down"], "--scenarios"),
    (["bench", "--phone", "{nope"], "--phone"),
    (["bench", "--time-scale", "0"], "--time-scale"),
    (["scenario", "check"], "NAME|FILE"),
    (["demo", "-v"], "device-sim -v demo"),  # -v after the command: where it goes
    (["bench", "--population", "5", "--min-online", "2"], "--min-online"),
]


@pytest.mark.parametrize("argv, flag", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_error_is_one_line_naming_the_flag(argv: list[str], flag: str) -> None:
    proc = run(*argv)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], proc.stderr
    assert proc.stdout == ""  # nothing acted on (demo printed no device)


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("device-sim ")


def test_init_gives_a_device_its_scenarios_history(tmp_path: Path) -> None:
    """`init --scenario late-router`: a device that was online on its saved network before a
    power cut, as the scenario's story starts (for the two-terminal flow)."""
    proc = run("init", "--state-dir", str(tmp_path), "--scenario", "late-router", "--json")
    assert proc.returncode == 0, proc.stderr
    from device_sim.core.store import DeviceStore

    with DeviceStore(tmp_path) as store:
        assert [n.ssid for n in store.saved_networks()] == [b"Miller Family"]
        assert store.record().state.wire_name == "online"


def test_init_twice_names_the_fix(tmp_path: Path) -> None:
    assert run("init", "--state-dir", str(tmp_path), "--setup-code", "1234-5678").returncode == 0
    proc = run("init", "--state-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "already holds a device identity" in proc.stderr and "fix:" in proc.stderr
    assert "INTERNAL_ERROR" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["client", "scan", "--adapter", "hci1", "--discover-timeout", "1"],
        [
            "client",
            "provision",
            "--adapter",
            "hci1",
            "--setup-code",
            "1234-5678",
            "--ssid",
            "x",
            "--discover-timeout",
            "1",
        ],
        [
            "client",
            "provision",
            "--personality",
            "improv",
            "--adapter",
            "hci1",
            "--ssid",
            "x",
            "--discover-timeout",
            "1",
        ],
    ],
    ids=["scan", "provision", "provision-improv"],
)
def test_no_system_bus_is_a_setup_problem(argv: list[str]) -> None:
    proc = run(*argv)
    assert proc.returncode == 2, proc.stderr
    assert "no BlueZ on the system D-Bus" in proc.stderr and "virtual-ble up" in proc.stderr
    assert "INTERNAL_ERROR" not in proc.stderr and "Traceback" not in proc.stderr


def test_daemon_without_bus_is_a_setup_problem(tmp_path: Path) -> None:
    assert run("init", "--state-dir", str(tmp_path), "--setup-code", "1234-5678").returncode == 0
    proc = run("run", "--state-dir", str(tmp_path), "--doors", "ble-only")
    assert proc.returncode == 2, proc.stderr
    assert "no usable BLE adapter 'hci0'" in proc.stderr and "fix:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_second_daemon_on_one_state_dir_is_a_setup_problem(tmp_path: Path) -> None:
    assert run("init", "--state-dir", str(tmp_path), "--setup-code", "1234-5678").returncode == 0
    argv = [
        "run",
        "--state-dir",
        str(tmp_path),
        "--doors",
        "softap-only",
        "--softap-listen",
        "127.0.0.1:0",
        "--softap-lan",
        "127.0.0.1:0",
        "--zero-delay",
    ]

    async def scenario() -> subprocess.CompletedProcess[str]:
        daemon = DaemonProcess(argv, dict(os.environ), tmp_path / "daemon.log")
        await daemon.start()
        try:
            return await asyncio.to_thread(run, *argv)
        finally:
            await daemon.stop()

    proc = asyncio.run(scenario())
    assert proc.returncode == 2, proc.stderr
    assert "another daemon is already running" in proc.stderr and "fix:" in proc.stderr


def test_no_device_at_the_softap_url_is_the_clients_problem(refused_port: int) -> None:
    proc = run(
        "client",
        "provision",
        "--softap",
        f"http://127.0.0.1:{refused_port}",
        "--setup-code",
        "1234-5678",
        "--ssid",
        "x",
        "--json",
    )
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["code_name"], result["state"]) == ("DEVICE_UNREACHABLE", None)
    assert "connection refused" in result["detail"]


def test_ctl_without_daemon(tmp_path: Path) -> None:
    proc = run("ctl", "--state-dir", str(tmp_path), "status")
    assert proc.returncode == 2 and "no daemon is running" in proc.stderr


def test_closed_pipe_ends_quietly() -> None:
    """``device-sim codes --json | head -1``: the reader leaves before the writer is done."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "device_sim", "codes", "--json"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
            preexec_fn=lambda: signal.signal(signal.SIGPIPE, signal.SIG_IGN),
        )
    finally:
        os.close(write)
    assert proc.returncode == 141
    assert proc.stderr == ""


def test_results_never_print_none() -> None:
    profile = load_profile()
    wrong_code = {
        "state": None,
        **describe(profile, Code.WRONG_SETUP_CODE),
        "detail": "",
        "events": [],
        "timings_ms": {},
        "gatt_round_trips": 2,
    }
    for text in (format_result(wrong_code), _timeline(wrong_code)):
        assert "None" not in text and "WRONG_SETUP_CODE" in text
    assert "None" not in _activation_line(
        {"status": "none", "mode": None, "account": None, "generation": None}
    )
    assert (
        _activation_line({"status": "active", "mode": "claim", "account": "alice", "generation": 1})
        == "ACTIVATION: active  mode claim, account alice, generation 1"
    )


def test_demo_seed_replays_the_worlds_draws() -> None:
    """`demo --seed N` seeds the world as `run --seed` does: flaky-dhcp (DHCP fails 60% of
    attempts) gives the same outcome for the same seed, and another for another seed."""

    def outcome(seed: int) -> str:
        proc = run(
            "demo",
            "--scenario",
            "flaky-dhcp",
            "--transport",
            "softap",
            "--zero-delay",
            "--seed",
            str(seed),
            "--json",
            timeout=120,
        )
        assert "Traceback" not in proc.stderr and proc.stdout, proc.stderr[-2000:]
        return str(json.loads(proc.stdout)["code_name"])

    assert outcome(3) == outcome(3) == "NO_DHCP_LEASE"
    assert outcome(2) == "OK"


def test_a_taken_port_names_the_port_and_the_flag(tmp_path: Path) -> None:
    """`run` on a SoftAP port another process holds: the address, the port and the flag that
    sets it, not a bare `Address already in use`."""
    assert (
        run("init", "--state-dir", str(tmp_path / "dev"), "--setup-code", "1234-5678").returncode
        == 0
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = run(
            "run",
            "--state-dir",
            str(tmp_path / "dev"),
            "--doors",
            "softap-only",
            "--softap-listen",
            f"127.0.0.1:{port}",
            "--softap-lan",
            "127.0.0.1:0",
            "--zero-delay",
        )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"127.0.0.1:{port} (--softap-listen)" in proc.stderr, proc.stderr
