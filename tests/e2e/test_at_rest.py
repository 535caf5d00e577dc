"""State at rest: whatever the umask, the daemon's state directory is 0700 and every file in
it 0600; a factory reset leaves the Wi-Fi passphrase in no file of it (SQLite's free pages and
WAL included)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from device_sim.control import control_request
from device_sim.doors.native.flow import provision
from device_sim.network.scenario import load_scenario
from device_sim.security.secret import Secret

from .conftest import Device

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]
LAB = load_scenario("engineering-wifi").default_credentials


def _modes(state_dir: Path) -> dict[str, int]:
    modes = {".": stat.S_IMODE(state_dir.stat().st_mode)}
    for path in state_dir.rglob("*"):
        modes[str(path.relative_to(state_dir))] = stat.S_IMODE(path.lstat().st_mode)
    return modes


async def test_private_state_and_a_reset_that_really_clears(
    device: Device, profile, setup_code
) -> None:
    previous = os.umask(0o022)  # a permissive umask, as a shell often has
    try:
        os.chmod(device.state_dir, 0o755)  # and a directory someone loosened,
        (device.state_dir / "chain.pem").write_text("a certificate, written 0644\n")
        await device.start("engineering-wifi")
    finally:
        os.umask(previous)
    result = await provision(
        profile,
        device.target(1),
        setup_code=setup_code,
        ssid=LAB.ssid,
        passphrase=Secret(LAB.passphrase or ""),
        outcome_timeout=30,
    )
    assert result["state"] == "online", result
    modes = _modes(device.state_dir)
    assert modes.pop(".") == 0o700
    assert "onboarding.jsonl" in modes and "device.sqlite3" in modes
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o600} == {}
    secret = (LAB.passphrase or "").encode()
    stored = b"".join(p.read_bytes() for p in device.state_dir.glob("device.sqlite3*"))
    assert secret in stored  # the join needs it (and this test could fail)

    answer = await control_request(device.state_dir, "factory-reset", {})
    assert answer["state"] == "unprovisioned", answer
    leftovers = [
        p.name for p in device.state_dir.rglob("*") if p.is_file() and secret in p.read_bytes()
    ]
    assert leftovers == []
