"""`device-sim watch` without radios: its timeline model and live view, and several devices in
one directory followed at once (daemons played by control servers with a `watch` stream)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from device_sim.apps.commands import watch
from device_sim.control import ControlServer
from device_sim.profile import load_profile

PROFILE = load_profile()


def event(
    seq: int, state: str, phase: str, since: int | None, code: int = 0, name: str = "OK"
) -> dict[str, Any]:
    return {
        "kind": "event",
        "seq": seq,
        "at": f"2026-11-30T10:00:0{seq}.000Z",
        "state": state,
        "phase": phase,
        "code": code,
        "code_name": name,
        "since_connect_ms": since,
    }


STORY = [
    {
        "kind": "state",
        "state": "session_open",
        "code": 0,
        "code_name": "OK",
        "attempt": 0,
        "phase": "session",
        "doors": ["ble"],
    },
    event(1, "joining", "joining", 0),
    event(2, "joining", "associating", 120),
    event(3, "joining", "dhcp", 400),
    event(4, "failed", "failed", 20400, 104, "NO_DHCP_LEASE"),
]


def test_the_timeline_knows_phase_durations_and_explains_a_failure() -> None:
    view = watch.Timeline("", PROFILE)
    for item in STORY:
        view.add(item)
    assert view.durations() == [120, 280, 20000, None]
    assert view.failure == 104
    assert view.card()[1:3] == ["failed at: dhcp", f"next step: {PROFILE.code(104).next_step}"]
    console = Console(record=True, width=140, color_system=None)
    console.print(view.renderable())
    text = console.export_text()
    for expected in ("dhcp", "20000 ms", "NO_DHCP_LEASE", "failed", "next step:", "support asks:"):
        assert expected in text
    view.add(event(5, "joining", "joining", 0))  # a new attempt clears the card
    assert view.failure is None and view.card() == []


def test_faults_show_in_the_view() -> None:
    """A QA fault's arrival, and the phase it hit, are on the lines and in the table."""
    view = watch.Timeline("", PROFILE)
    note = {
        **event(1, "unprovisioned", "fault", None),
        "detail": "added dhcp-down: dhcp ends timeout p=1",
    }
    hit = {**event(3, "joining", "dhcp", 400), "data": {"bssid": "x", "faults": ["dhcp-down"]}}
    for item in (note, event(2, "joining", "joining", 0), hit):
        view.add(item)
    assert view.line(note).endswith("fault           added dhcp-down: dhcp ends timeout p=1")
    assert view.line(hit).endswith("(fault: dhcp-down)")
    assert "(fault: dhcp-down)" not in view.line(event(4, "joining", "dns", 500))
    console = Console(record=True, width=160, color_system=None)
    console.print(view.renderable())
    assert "(fault: dhcp-down)" in console.export_text()


async def test_a_directory_of_devices_is_watched_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes = {"kitchen": ("online", "online", 0), "porch": ("failed", "failed", 104)}
    servers = []
    for name, (state, phase, code) in outcomes.items():

        def stream(args: dict[str, Any], s=state, p=phase, c=code) -> AsyncIterator[dict[str, Any]]:
            async def gen() -> AsyncIterator[dict[str, Any]]:
                yield STORY[0]
                await asyncio.sleep(0)
                yield event(9, s, p, 50, c, PROFILE.code(c).name)
                await asyncio.Event().wait()  # a daemon keeps the stream open

            return gen()

        server = ControlServer(tmp_path / name)
        server.register_stream("watch", stream)
        servers.append(server)
    (tmp_path / "not-a-device").mkdir()
    assert [n for n, _ in watch.devices(tmp_path)] == [""]  # none yet: the directory itself
    for server in servers:
        await server.start()
    try:
        assert [n for n, _ in watch.devices(tmp_path)] == ["kitchen", "porch"]
        args = argparse.Namespace(
            state_dir=tmp_path, json=True, plain=False, last=5, until_outcome=True, timeout=10.0
        )
        assert await watch.run(args) == 1  # one of them failed
    finally:
        for server in servers:
            await server.stop()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(i["device"], i.get("code_name")) for i in lines if i["kind"] == "event"} == {
        ("kitchen", "OK"),
        ("porch", "NO_DHCP_LEASE"),
    }


def test_a_stopped_daemon_shows_its_recorded_events_and_says_so(tmp_path: Path) -> None:
    """No daemon for the directory: `watch` says so plainly (not INTERNAL_ERROR), shows what
    its onboarding.jsonl recorded, and waits; a directory that does not exist is an error."""
    import subprocess
    import sys

    device = tmp_path / "dev"
    device.mkdir()
    log = [{k: v for k, v in e.items() if k != "kind"} for e in STORY[1:]]
    (device / "onboarding.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in log) + '{"seq": 5, "cut by a cra'
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "watch",
            "--state-dir",
            str(device),
            "--plain",
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"no daemon is running for {device}" in done.stderr
    assert "INTERNAL_ERROR" not in done.stderr and "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[-2 if "NO_DHCP" in line else -1] for line in lines[:4]] == [
        "joining",
        "associating",
        "dhcp",
        "failed",
    ]
    assert "NO_DHCP_LEASE" in lines[3]
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "watch",
            "--state-dir",
            str(tmp_path / "typo"),
            "--plain",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no such directory" in missing.stderr


def test_the_card_gives_the_failed_phase_and_detail_and_the_title_who_and_how_long() -> None:
    """The card used to leave out the failure's detail (which AP refused the passphrase, where
    a portal redirects), and the title said `phase scanning` (the AP's rescan) after a
    failure. Now: the phase that failed, the detail, the device's name and id, and the time a
    running phase has taken against its timeout."""
    view = watch.Timeline("", PROFILE)
    view.add(
        {
            **STORY[0],
            "name": "DS-AB12",
            "device_id": "0123456789abcdef",
            "timeouts_ms": {"dhcp": 20000, "joining": 45000},
        }
    )
    for item in STORY[1:3]:
        view.add(item)
    view.add(event(3, "joining", "dhcp", 400))
    at = int(dt.datetime.fromisoformat("2026-11-30T10:00:03+00:00").timestamp() * 1000)
    assert view.title(at + 7500) == "DS-AB12 (0123456789abcdef): joining · dhcp 7.5 s of 20 s"
    portal = {
        **event(4, "failed", "failed", 9000, 106, "CAPTIVE_PORTAL"),
        "detail": "the probe was redirected to http://portal.example/login",
    }
    view.add(portal)
    view.add(event(5, "failed", "scanning", None))  # the AP's rescan after the failure
    card = view.card()
    assert "failed at: dhcp" in card
    assert "detail: the probe was redirected to http://portal.example/login" in card
    assert view.title(at) == "DS-AB12 (0123456789abcdef): failed · failed at dhcp"
    console = Console(record=True, width=160, color_system=None)
    console.print(view.renderable())
    text = console.export_text()
    assert "portal.example/login" in text and "failed at dhcp" in text
