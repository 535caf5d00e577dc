"""Faults at runtime: `device-sim ctl fault add|remove|list` changes the next onboarding of a
running daemon (never the one under way), and each change is an event in its stream."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from device_sim.doors.native.flow import provision
from device_sim.network.scenario import load_scenario
from device_sim.security.secret import Secret

from .conftest import Device

pytestmark = [pytest.mark.asyncio(loop_scope="session")]


def ctl(device: Device, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device_sim", "ctl", "--state-dir", str(device.state_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_fault_added_at_runtime_changes_the_next_onboarding(
    device: Device, setup_code: Secret
) -> None:
    ready = await device.start("engineering-wifi", doors="softap-only")
    creds = load_scenario("engineering-wifi").default_credentials
    key = Secret(creds.passphrase or "")

    added = ctl(device, "fault", "add", "dhcp-down", "step=dhcp", "delay_ms=30", "result=timeout")
    assert added.returncode == 0, added.stderr
    assert "added dhcp-down: dhcp ends timeout" in added.stdout
    listed = ctl(device, "--json", "fault", "list")
    (fault,) = json.loads(listed.stdout)["faults"]
    assert fault == {
        "name": "dhcp-down",
        "step": "dhcp",
        "probability": 1.0,
        "delay_ms": 30,
        "jitter_ms": 0,
        "result": "timeout",
        "ssid": None,
    }  # on every network

    first = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=key,
    )
    assert first["code_name"] == "NO_DHCP_LEASE"  # engineering-wifi alone never does this

    removed = ctl(device, "fault", "remove", "dhcp-down")
    assert removed.returncode == 0 and "no faults" in removed.stdout
    # The README's slow DHCP: a delay alone slows the step and the onboarding still succeeds.
    slow = ctl(device, "fault", "add", "slow-dhcp", "step=dhcp", "delay_ms=300", "jitter_ms=100")
    assert slow.returncode == 0 and "ends ok" in slow.stdout, slow.stdout
    second = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=key,
    )
    assert second["state"] == "online", second["code_name"]
    assert ctl(device, "fault", "remove", "slow-dhcp").returncode == 0

    # The stream tells the story: the fault's arrival and departure, and the attempt it hit.
    events = [
        json.loads(line)
        for line in (device.state_dir / "onboarding.jsonl").read_text().splitlines()
    ]
    notes = [e for e in events if e["phase"] == "fault"]
    assert [n["data"]["action"] for n in notes] == ["add", "remove", "add", "remove"]
    hit = [e for e in events if e["phase"] == "dhcp" and "faults" in (e.get("data") or {})]
    assert [h["data"]["faults"] for h in hit] == [["dhcp-down"], ["slow-dhcp"]]


async def test_bad_faults_get_a_code_not_a_traceback(device: Device) -> None:
    await device.start("engineering-wifi", doors="softap-only")
    for args, words in [
        (("fault", "add", "x", "step=warp"), "step: one of association"),
        (("fault", "add", "x", "step=dhcp", "probability=2"), "probability: from 0 to 1"),
        (("fault", "add", "x", "step=tls", "result=timeout"), "result of tls"),
        (("fault", "add", "bad name!", "step=dns"), "name:"),
        (("fault", "remove", "never-added"), "no fault named 'never-added'"),
        (("fault", "explode"), "add, remove or list"),
    ]:
        done = ctl(device, *args)
        usage = words != "no fault named 'never-added'"  # the arguments, not the world
        assert done.returncode == (2 if usage else 1), (args, done.stdout, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr
        assert not usage or "MALFORMED_REQUEST" not in done.stderr
    assert json.loads(ctl(device, "--json", "fault", "list").stdout) == {"faults": []}
