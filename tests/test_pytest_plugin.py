"""The pytest plugin as an app team uses it (issue 26, item 3): registered by the installed
package's ``pytest11`` entry point, light to load, its fixtures in plain synchronous tests of a
project with no conftest, each device in its own process and gone after the test, a failing
test's report with the device's timeline, and the ``device_sim_requires`` marker.

Each case runs pytest in a child process on a project written into a temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from device_sim.testing.cli import clean_env

pytestmark = pytest.mark.ble


def _pytest(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=project, env=env or clean_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _project(tmp_path: Path, source: str) -> Path:
    project = tmp_path / "app"
    project.mkdir()
    (project / "test_app.py").write_text(textwrap.dedent(source))
    return project


def test_the_entry_point_names_a_plugin_that_loads_light() -> None:
    (entry,) = [e for e in metadata.entry_points(group="pytest11") if e.name == "device_sim"]
    assert entry.value == "device_sim.testing.pytest_plugin"
    heavy = ("device_sim.api", "device_sim.doors", "bleak", "dbus_fast", "aiohttp", "cryptography")
    probe = subprocess.run(
        [sys.executable, "-c", f"import sys, {entry.value}; "
         f"print([m for m in {heavy!r} if m in sys.modules])"],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


def test_pytest_fixtures_lists_both_fixtures(tmp_path: Path) -> None:
    project = _project(tmp_path, "def test_nothing():\n    pass\n")
    listed = _pytest(project, "--fixtures")
    assert listed.returncode == 0, listed.stdout[-2000:]
    assert "virtual_ble [session scope]" in listed.stdout
    assert "emulated_device" in listed.stdout
    assert "A factory of running emulated devices" in listed.stdout


SYNC_TESTS = """
    import asyncio, json, os
    from pathlib import Path
    from bleak import BleakScanner

    OUT = Path(os.environ["APP_OUT"])

    def note(**facts):
        old = json.loads(OUT.read_text()) if OUT.exists() else {}
        OUT.write_text(json.dumps({**old, **facts}))

    def test_softap_device_onboards(emulated_device):
        device = emulated_device(transport="softap")
        assert len(device.setup_code) == 9 and device.name.startswith("DS-")
        assert (device.state_dir / "device.sqlite3").exists()
        result = device.provision()
        assert result["state"] == "online", result
        assert device.wait_for("online")["code_name"] == "OK"
        note(softap_pid=device.pid, softap_state=str(device.state_dir))

    def test_ble_device_found_by_our_scanner_and_a_runtime_fault(emulated_device, virtual_ble):
        device = emulated_device(scenario="typical-home", transport="ble")
        found = asyncio.run(BleakScanner.find_device_by_name(
            device.name, timeout=15, bluez={"adapter": virtual_ble.phones[0]}))
        assert found is not None and found.address == device.address
        device.add_fault("no-lease", "dhcp")
        result = device.provision()
        assert (result["state"], result["code_name"]) == ("failed", "NO_DHCP_LEASE"), result
        assert device.factory_reset() == "unprovisioned"
        note(ble_pid=device.pid, bus=virtual_ble.bus_address)

    def test_wrong_passphrase_fails_here(emulated_device):
        device = emulated_device(transport="softap")
        result = device.provision(passphrase="not-the-passphrase")
        assert result["state"] == "online"
"""


def test_sync_tests_onboard_and_leave_nothing_behind(tmp_path: Path) -> None:
    project = _project(tmp_path, SYNC_TESTS)
    out = tmp_path / "facts.json"
    env = {**clean_env(), "APP_OUT": str(out), "CI": "false"}
    ran = _pytest(project, "-p", "no:asyncio", env=env)
    text = ran.stdout
    assert "1 failed, 2 passed" in text, text[-4000:]
    # The failing test's report holds its device's timeline, down to the code.
    section = text[text.index("device-sim DS-") :]
    assert ": timeline" in section.splitlines()[0]
    assert "WRONG_CREDENTIALS" in section and "daemon log" in section
    facts = json.loads(out.read_text())
    for pid in (facts["softap_pid"], facts["ble_pid"]):
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"daemon {pid} outlived its test"
    assert not Path(facts["softap_state"]).exists()  # the temporary state directory is removed
    bus_socket = facts["bus"].removeprefix("unix:path=").split(",")[0]
    assert not Path(bus_socket).exists()  # the session's bus is gone with the session


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


MARKED = """
    import pytest

    @pytest.mark.device_sim_requires("dbus")
    def test_needs_dbus():
        pass

    @pytest.mark.device_sim_requires("radio")
    def test_unknown_tool():
        pass
"""


@pytest.mark.parametrize("ci", ["false", "true"])
def test_the_marker_skips_or_fails_when_a_tool_is_missing(tmp_path: Path, ci: str) -> None:
    project = _project(tmp_path, MARKED)
    no_tools = tmp_path / "bin"
    no_tools.mkdir()
    env = {**clean_env(), "PATH": str(no_tools), "CI": ci}
    ran = _pytest(project, env=env, timeout=60)
    if ci == "true":
        assert "2 errors" in ran.stdout, ran.stdout[-2000:]  # failed in setup: an error
        assert "ERROR test_app.py::test_needs_dbus - Failed: dbus-daemon is not on PATH" in (
            ran.stdout
        )
    else:
        assert "1 skipped, 1 error" in ran.stdout, ran.stdout[-2000:]
        assert "SKIPPED [1] test_app.py:4: dbus-daemon is not on PATH" in ran.stdout
    assert "unknown tool 'radio'" in ran.stdout
    assert os.environ.get("PATH")  # the test's own environment is untouched
