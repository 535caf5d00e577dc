"""The package works wherever it is installed (issue 26, item 1): a wheel built from a copy of
the source tree, installed away from any checkout with the source deleted, finds its profile
and scenarios inside itself and runs ``codes``, ``init``, ``scenario check`` and ``demo`` from a
directory that holds no checkout. (``../shared/tools/wheel-check.sh`` does the same into a fresh
virtualenv with its dependencies from the package index.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from device_sim.testing.cli import python

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel's files installed in a directory of their own (``pip install --target``), the
    tree it was built from deleted. This interpreter's environment gives the dependencies."""
    work = tmp_path_factory.mktemp("wheel")
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    src = work / "src"
    for name in filter(None, files):
        target = src / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        source = ROOT / name.decode()
        if source.is_symlink():  # device_sim/data/ links the profile and scenarios in
            target.symlink_to(os.readlink(source))
        elif source.exists():
            shutil.copy2(source, target)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(work / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    shutil.rmtree(src)  # nothing may read the source tree any more
    (wheel,) = (work / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "device_sim/data/gatt_profile.yaml" in names
    assert "device_sim/data/scenarios/typical-home.yaml" in names
    assert "device_sim/data/scenarios/homes/default.yaml" in names
    assert "device_sim/data/packaging/device-sim.service" in names
    assert "device_sim/data/raspberry-pi.md" in names
    site = work / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    return site


def _run(
    site: Path, cwd: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    # site before site-packages: the installed copy, not the checkout
    return python(*args, cwd=cwd, pythonpath=site, timeout=timeout)


def test_the_installed_package_reads_its_own_data(installed: Path, tmp_path: Path) -> None:
    where = _run(
        installed,
        tmp_path,
        "-c",
        "import device_sim; from device_sim.profile import load_profile; "
        "from device_sim.network.scenario import scenarios_dir; "
        "print(device_sim.__file__); print(load_profile().source); print(scenarios_dir())",
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert line.startswith(str(installed)), where.stdout  # none from the checkout
    codes = _run(installed, tmp_path, "-m", "device_sim", "codes", "--json")
    assert codes.returncode == 0, codes.stderr
    assert any(entry["name"] == "NO_DHCP_LEASE" for entry in json.loads(codes.stdout))
    made = _run(installed, tmp_path, "-m", "device_sim", "init", "--state-dir", "dev", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["device_id"]
    checked = _run(installed, tmp_path, "-m", "device_sim", "scenario", "check", "late-router")
    assert checked.returncode == 0 and "late-router: ok" in checked.stdout, checked.stderr
    # The service's unit names the Raspberry Pi page of the installed copy, which exists.
    unit = _run(
        installed, tmp_path, "-c",
        "from device_sim.apps.service import render_unit, this_binary; "
        "print(render_unit(this_binary()))",
    )  # fmt: skip
    assert unit.returncode == 0, unit.stderr
    (doc,) = [ln for ln in unit.stdout.splitlines() if ln.startswith("Documentation=")]
    page = Path(doc.removeprefix("Documentation=file://"))
    assert page.is_relative_to(installed) and page.is_file(), doc


def test_the_installed_package_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    demo = _run(
        installed, tmp_path, "-m", "device_sim", "demo", "--transport", "softap", "--json",
        timeout=180,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-1500:] + demo.stderr[-1500:]
    assert json.loads(demo.stdout)["state"] == "online"
