"""``device-sim service install|uninstall`` into a temporary root (issue 26, item 7): the unit
runs this environment's binary and names a page that exists, systemd-analyze accepts it, the
config is the commented example and is never overwritten, the state directory is 0700, the
links are made and removed, ``--purge`` removes the rest, and the doctor checks it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from device_sim.apps.doctor.base import Context, Failed
from device_sim.apps.doctor.checks_host import check_service, check_state_dir
from device_sim.apps.service import Layout, install, packaged, this_binary, uninstall
from device_sim.config import DaemonOptions
from device_sim.errors import ConfigError
from device_sim.network.base import BackendKind
from device_sim.network.options import NetworkOptions
from device_sim.testing.cli import python

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _unit_lines(layout: Layout) -> dict[str, str]:
    lines = layout.unit.read_text().splitlines()
    return dict(ln.split("=", 1) for ln in lines if "=" in ln and not ln.startswith("#"))


def test_install_writes_the_unit_config_state_and_links(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path)
    out = install(layout)
    unit = _unit_lines(layout)
    assert unit["ExecStart"] == f"{this_binary()} run --config /etc/device-sim/device-sim.toml"
    page = Path(unit["Documentation"].removeprefix("file://"))
    assert page.is_file() and page.read_text().startswith("# device-sim on a Raspberry Pi")
    assert _mode(layout.unit) == 0o644
    assert layout.config.read_text() == (ROOT / "packaging" / "device-sim.toml").read_text()
    state = tmp_path / "var/lib/device-sim"
    assert state.is_dir() and _mode(state) == 0o700
    assert os.readlink(layout.link) == str(this_binary())
    assert os.readlink(layout.wants) == "/etc/systemd/system/device-sim.service"
    assert any("init --state-dir /var/lib/device-sim" in step for step in out.next)
    # Everything else in the shipped unit is as shipped (hardening, ordering, restart).
    shipped = packaged("packaging/device-sim.service").read_text().splitlines()
    written = layout.unit.read_text().splitlines()
    changed = [a for a, b in zip(shipped, written, strict=True) if a != b]
    assert [c.split("=")[0] for c in changed] == ["Documentation", "ExecStart"]


def test_systemd_analyze_accepts_the_installed_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (apt-get install systemd)")
        pytest.skip("systemd-analyze is missing")
    layout = Layout(root=tmp_path)
    install(layout)
    verified = subprocess.run(
        [analyze, "verify", str(layout.unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line for line in verified.stderr.splitlines()
        if "device-sim.service" in line and "not found" not in line  # the Pi's units (BlueZ)
    ]  # fmt: skip
    assert verified.returncode == 0 and not problems, verified.stderr


def test_reinstalling_keeps_your_config_and_changes_nothing(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path)
    install(layout)
    layout.config.write_text('state_dir = "/var/lib/device-sim"\n[ble]\nadapter = "hci1"\n')
    again = install(layout)
    assert 'adapter = "hci1"' in layout.config.read_text()
    assert any(line.endswith(": unchanged") for line in again.done)
    assert any("kept (yours)" in line for line in again.done)


def test_a_config_naming_another_state_directory_gets_it(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path)
    layout.config.parent.mkdir(parents=True)
    layout.config.write_text('state_dir = "/srv/device"\n')
    install(layout)
    assert _mode(tmp_path / "srv/device") == 0o700


def test_nothing_of_yours_is_overwritten_without_force(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path)
    layout.link.parent.mkdir(parents=True)
    layout.link.write_text("#!/bin/sh\necho another tool\n")
    with pytest.raises(ConfigError, match=r"exists and is not a link.*--force"):
        install(layout)
    install(layout, force=True)
    assert layout.link.is_symlink()


def test_a_virtualenv_the_unit_cannot_see_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ProtectHome"):
        install(Layout(root=tmp_path, binary=Path("/root/.venv/bin/device-sim")))
    with pytest.raises(ConfigError, match="no device-sim at"):
        install(Layout(root=tmp_path, binary=tmp_path / "missing/bin/device-sim"))
    assert not (tmp_path / "etc").exists()  # refused before writing anything


def test_uninstall_keeps_the_identity_unless_purged(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path)
    install(layout)
    (tmp_path / "var/lib/device-sim/device.sqlite3").write_bytes(b"identity")
    out = uninstall(layout)
    for gone in (layout.unit, layout.wants, layout.link):
        assert not gone.exists() and not gone.is_symlink()
    assert layout.config.exists() and (tmp_path / "var/lib/device-sim/device.sqlite3").exists()
    assert len(out.kept) == 2
    purged = uninstall(layout, purge=True)
    assert not layout.config.parent.exists() and not (tmp_path / "var/lib/device-sim").exists()
    assert sum(line.startswith("purged") for line in purged.done) == 2


def test_the_command_line_installs_and_uninstalls(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = python("-m", "device_sim", "service", "install", "--root", str(root), "--json",
                  cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["installed"] is True
    assert (root / "etc/systemd/system/device-sim.service").is_file()
    gone = python("-m", "device_sim", "service", "uninstall", "--root", str(root), "--purge",
                  cwd=tmp_path)  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    assert "purged" in gone.stdout and not (root / "etc/device-sim").exists()
    bad = python("-m", "device_sim", "service", "install", "--root", str(root), "--force",
                 "--purge", cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def _pi(state_dir: Path) -> DaemonOptions:
    return DaemonOptions(
        state_dir=state_dir, network=NetworkOptions(backend=BackendKind.NETWORK_MANAGER)
    )


async def test_the_doctor_checks_the_service(tmp_path: Path) -> None:
    ctx = Context(_pi(Path("/var/lib/device-sim")), None, None, root=tmp_path)
    with pytest.raises(Failed) as missing:
        await check_service(ctx)
    assert missing.value.fix == f"sudo {this_binary()} service install"
    layout = Layout(root=tmp_path)
    install(layout)
    assert "enabled" in await check_service(ctx)
    layout.wants.unlink()
    with pytest.raises(Failed, match="not enabled") as disabled:
        await check_service(ctx)
    assert disabled.value.fix == "sudo systemctl enable device-sim"
    simulated = Context(DaemonOptions(state_dir=tmp_path), None, None, root=tmp_path)
    assert "not needed" in await check_service(simulated)


async def test_the_doctors_fixes_name_device_sim_as_sudo_reaches_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    ctx = Context(_pi(state), None, None, root=tmp_path)
    on_path = shutil.which("device-sim") is not None
    with pytest.raises(Failed) as before:
        await check_state_dir(ctx)
    assert before.value.fix == (
        f"sudo {'device-sim' if on_path else this_binary()} init --state-dir {state}"
    )
    install(Layout(root=tmp_path))  # the link in /usr/local/bin
    with pytest.raises(Failed) as after:
        await check_state_dir(ctx)
    assert after.value.fix == f"sudo device-sim init --state-dir {state}"
