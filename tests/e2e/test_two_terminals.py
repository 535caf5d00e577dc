"""The README's two-terminal flow, command by command, each a process of its own.

``virtual-ble up`` (detached adapters), ``init --setup-code``, ``run`` on hci0, then ``client
scan``, ``client networks`` and ``client provision`` as three separate processes on the same
phone adapter hci1 (each must find the device again: BlueZoo quirk 6), then ``virtual-ble down``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from device_sim.apps.daemon_process import DaemonProcess
from device_sim.network.scenario import load_scenario

pytestmark = [
    pytest.mark.ble,
    pytest.mark.timeout(240),
    pytest.mark.requires_tools("dbus-daemon", modules=("bluezoo",)),
]

SETUP_CODE = "1234-5678"  # what the README passes to `init --setup-code`
STEP_TIMEOUT = 60.0  # one command (discovery is 20 s at most)


async def cli(
    env: dict[str, str], *argv: str, timeout: float = STEP_TIMEOUT
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"device-sim {' '.join(argv)} did not finish in {timeout} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def bus_env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """``eval "$(device-sim virtual-ble up)"`` in a run directory of this test's own."""
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
    run_dir = str(tmp_path / "vble")
    rc, out, err = await cli(env, "virtual-ble", "up", "--run-dir", run_dir)
    assert rc == 0, err
    for word in shlex.split(out):  # the shell line: export DBUS_SYSTEM_BUS_ADDRESS=...
        if word.startswith("DBUS_SYSTEM_BUS_ADDRESS="):
            env["DBUS_SYSTEM_BUS_ADDRESS"] = word.split("=", 1)[1].rstrip(";")
    assert "DBUS_SYSTEM_BUS_ADDRESS" in env, out
    try:
        yield env
    finally:
        rc, _, err = await cli(env, "virtual-ble", "down", "--run-dir", run_dir)
        assert rc == 0, err


async def test_readme_two_terminal_flow(bus_env: dict[str, str], tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    rc, out, err = await cli(
        bus_env, "init", "--state-dir", str(state_dir), "--setup-code", SETUP_CODE, "--json"
    )
    assert rc == 0, err
    assert json.loads(out)["setup_code"] == SETUP_CODE

    daemon = DaemonProcess(
        [
            "-v",
            "run",
            "--state-dir",
            str(state_dir),
            "--adapter",
            "hci0",
            "--scenario",
            "typical-home",
            "--zero-delay",
        ],
        bus_env,
        tmp_path / "daemon.log",
    )
    ready = await daemon.start()
    try:
        name = ready["local_name"]
        # 1: scan (the first process on hci1 to see the device)
        rc, out, err = await cli(
            bus_env, "client", "scan", "--adapter", "hci1", "--discover-timeout", "5", "--json"
        )
        assert rc == 0, err
        assert [d["name"] for d in json.loads(out)] == [name]
        # --first (and --name) stop at the first match, not at --discover-timeout; each
        # device is printed as it appears.
        began = time.monotonic()
        rc, out, err = await cli(
            bus_env, "client", "scan", "--adapter", "hci1", "--first", "--discover-timeout", "30"
        )
        assert rc == 0 and out.startswith(name), err + out
        assert time.monotonic() - began < 20  # it used to wait the whole 30 s

        # 2: a second process on hci1 finds it again, and lists the device's networks
        rc, out, err = await cli(
            bus_env, "client", "networks", "--adapter", "hci1", "--setup-code", SETUP_CODE, "--json"
        )
        assert rc == 0, err + out
        home = load_scenario("typical-home").default_credentials
        assert home.ssid.decode() in [n["ssid"] for n in json.loads(out)]

        # 3: and a third provisions it
        rc, out, err = await cli(
            bus_env,
            "client",
            "provision",
            "--adapter",
            "hci1",
            "--setup-code",
            SETUP_CODE,
            "--ssid",
            home.ssid.decode(),
            "--passphrase",
            home.passphrase or "",
            "--json",
        )
        result = json.loads(out)
        assert (rc, result["state"], result["code_name"]) == (0, "online", "OK"), err

        # and a fourth still sees it, now online
        rc, out, err = await cli(
            bus_env, "client", "scan", "--adapter", "hci1", "--discover-timeout", "5", "--json"
        )
        assert rc == 0, err
        assert [(d["name"], d["state"]) for d in json.loads(out)] == [(name, "online")]
    finally:
        await daemon.stop()
