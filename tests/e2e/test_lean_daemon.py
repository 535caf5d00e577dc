"""An idle BLE-only device loads only what it serves: no HTTP library (aiohttp), no second D-Bus
library (dbus-fast: BLE runs on bless's dbus-next), no cryptography until a session opens. The
memory figure itself is measured by scripts/bench_idle.py, not here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from device_sim.doors.native.flow import provision
from device_sim.security.secret import Secret

HEAVY = ("aiohttp", "dbus_fast", "cryptography")


def mapped(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in HEAVY if f"/{name}/" in maps}


@pytest.mark.ble
@pytest.mark.asyncio(loop_scope="session")
async def test_an_idle_ble_only_daemon_maps_no_http_or_second_dbus_library(
    device, setup_code
) -> None:
    await device.start("engineering-wifi", doors="ble-only")
    assert device.daemon is not None and device.daemon.proc is not None
    pid = device.daemon.proc.pid
    assert mapped(pid) == set()
    # The first onboarding brings what it needs (the session's AES-GCM, the world's checks).
    result = await provision(
        device.profile,
        device.target(phone=1),
        setup_code=setup_code,
        ssid=b"DeviceSim-Lab",
        passphrase=Secret("lab-bench-passphrase"),
    )
    assert result["state"] == "online", result
    assert mapped(pid) == {"aiohttp", "cryptography"}


def test_the_daemon_command_line_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from device_sim.apps.cli import build_parser\n"
        "build_parser(daemon_only=True).parse_args(['run', '--state-dir', '/tmp/x'])\n"
        "import device_sim.daemon\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
