"""Ctrl-C during ``device-sim demo``: the whole process group (demo, daemon, BlueZoo, bus) gets
SIGINT, as from a terminal; the demo ends promptly with 130 and leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.ble,
    pytest.mark.timeout(120),
    pytest.mark.requires_tools("dbus-daemon", modules=("bluezoo",)),
]

STOP_BOUND_S = 5.0  # the target is 2 s (measured in the closing notes); this bounds the wait


def _default_sigint() -> None:  # as a shell's foreground job has it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def interrupt_mid_onboarding(
    interrupt: Callable[[int], None], status: int, bound_s: float, **spawn: Any
) -> str:
    """Start `device-sim demo` in a session of its own, call ``interrupt(pid)`` once the phone
    has sent the credentials, and expect exit ``status`` within ``bound_s``; returns what the
    demo printed after that. Nothing of its process group may be left."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "demo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        **spawn,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):  # until the phone has sent the credentials
            while not any("phone  credentials" in line for line in seen):
                line = (await proc.stdout.readline()).decode()
                assert line, "demo ended early:\n" + "".join(seen)
                seen.append(line)
        interrupt(proc.pid)
        async with asyncio.timeout(bound_s):
            rest = (await proc.stdout.read()).decode()
            assert await proc.wait() == status, rest
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert "Traceback" not in rest
    # nothing of the group is left (BlueZoo, dbus-daemon, the daemon)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
    return rest


async def test_ctrl_c_mid_onboarding_stops_the_demo_promptly() -> None:
    rest = await interrupt_mid_onboarding(
        lambda pid: os.killpg(pid, signal.SIGINT), 130, STOP_BOUND_S, preexec_fn=_default_sigint
    )
    assert "device-sim: interrupted" in rest


async def test_sigterm_to_the_demo_alone_stops_everything_it_started(tmp_path: Path) -> None:
    """`timeout` and a cancelled CI job send SIGTERM to the demo only (not its group): it
    stops its daemon, BlueZoo and bus, and removes its temporary directories, as Ctrl-C does.
    It used to leak a dbus-daemon, BlueZoo and two temp directories every time."""
    rest = await interrupt_mid_onboarding(
        lambda pid: os.kill(pid, signal.SIGTERM),
        143,
        STOP_BOUND_S * 2,  # its pid, not group
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert "device-sim: terminated" in rest
    assert list(tmp_path.iterdir()) == []  # its temporary directories are gone
