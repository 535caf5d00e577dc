"""Ctrl-C during ``device-sim demo``: the whole process group (demo, daemon, BlueZoo, bus) gets
SIGINT, as from a terminal; the demo ends promptly with 130 and leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ble, pytest.mark.timeout(120),
              pytest.mark.requires_tools("dbus-daemon", modules=("bluezoo",))]

STOP_BOUND_S = 5.0  # the target is 2 s (measured in the closing notes); this bounds the wait


def _default_sigint() -> None:  # as a shell's foreground job has it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_ctrl_c_mid_onboarding_stops_the_demo_promptly() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "device_sim", "demo", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True, preexec_fn=_default_sigint)
    assert proc.stdout is not None
    seen = []
    try:
        async with asyncio.timeout(60):  # until the phone has sent the credentials
            while not any("phone  credentials" in line for line in seen):
                line = (await proc.stdout.readline()).decode()
                assert line, "demo ended early:\n" + "".join(seen)
                seen.append(line)
        os.killpg(proc.pid, signal.SIGINT)
        async with asyncio.timeout(STOP_BOUND_S):
            rest = (await proc.stdout.read()).decode()
            assert await proc.wait() == 130
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert "device-sim: interrupted" in rest and "Traceback" not in rest
    # nothing of the group is left (BlueZoo, dbus-daemon, the daemon)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


async def test_sigterm_to_the_demo_alone_stops_everything_it_started(tmp_path: Path) -> None:
    """`timeout` and a cancelled CI job send SIGTERM to the demo only (not its group): it
    stops its daemon, BlueZoo and bus, and removes its temporary directories, as Ctrl-C does.
    It used to leak a dbus-daemon, BlueZoo and two temp directories every time."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "device_sim", "demo", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=env)
    assert proc.stdout is not None
    seen = []
    try:
        async with asyncio.timeout(60):  # until the phone has sent the credentials
            while not any("phone  credentials" in line for line in seen):
                line = (await proc.stdout.readline()).decode()
                assert line, "demo ended early:\n" + "".join(seen)
                seen.append(line)
        proc.send_signal(signal.SIGTERM)  # the demo's own pid, not its group
        async with asyncio.timeout(STOP_BOUND_S * 2):
            rest = (await proc.stdout.read()).decode()
            assert await proc.wait() == 143, rest
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert "device-sim: terminated" in rest and "Traceback" not in rest
    with pytest.raises(ProcessLookupError):  # nothing of its group is left
        os.killpg(proc.pid, 0)
    assert list(tmp_path.iterdir()) == []  # its temporary directories are gone
