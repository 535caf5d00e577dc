"""A new personality touches its own folder and one registry line, and everything knows it.

The dummy personality (tests/doors/dummy/) is copied into a copy of the package as
``device_sim/doors/dummy/``, one line names it in ``doors/registry.py``, and nothing else
changes. Then, from that copy: the daemon's flags and config take its options, ``demo`` (the
daemon, the virtual BLE adapters and ``client``) onboards a device through it, the bench runs a
cell of it, the per-error docs say how it reports a code, and ``doctor`` checks a config that
presents it."""

from __future__ import annotations

import difflib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from device_sim.testing.cli import python

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_LINE = '    "dummy": "device_sim.doors.dummy",\n'


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package with the dummy's folder and its registry line, and nothing else."""
    root = tmp_path_factory.mktemp("with-dummy")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "device_sim", root / "device_sim", ignore=ignore)
    shutil.copytree(ROOT / "scenarios", root / "scenarios", ignore=ignore)
    shutil.copy(ROOT / "gatt_profile.yaml", root)
    shutil.copytree(Path(__file__).parent / "dummy", root / "device_sim/doors/dummy", ignore=ignore)
    registry = root / "device_sim/doors/registry.py"
    before = registry.read_text()
    anchor = '    "esp": "device_sim.doors.esp",\n'
    registry.write_text(before.replace(anchor, anchor + REGISTRY_LINE))
    changed = list(
        difflib.unified_diff(before.splitlines(True), registry.read_text().splitlines(True), n=0)
    )
    assert [line for line in changed if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        "+" + REGISTRY_LINE
    ]
    return root


def _run(tree: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return python("-m", "device_sim", *args, cwd=tree, pythonpath=tree, timeout=timeout)


def test_the_daemon_takes_its_options_and_the_docs_say_how_it_reports(tree: Path) -> None:
    run_help = _run(tree, "run", "--help")
    assert "--dummy-greeting" in run_help.stdout and "DEVICE_SIM_DUMMY_GREETING" in run_help.stdout
    assert "dummy" in _run(tree, "client", "provision", "--help").stdout
    docs = tree / "docs-out"
    made = _run(tree, "docs", "--out", str(docs))
    assert made.returncode == 0, made.stderr
    text = "".join(p.read_text() for p in docs.rglob("*.md"))
    assert "its status characteristic reads `failed WRONG_CREDENTIALS`" in text


def test_doctor_checks_a_config_that_presents_it(tree: Path) -> None:
    config = tree / "device-sim.toml"
    config.write_text(
        f'state_dir = "{tree / "state"}"\n[ble]\npersonalities = ["dummy"]\n'
        '[dummy]\ngreeting = "hi"\n'
    )
    checked = _run(tree, "doctor", "--config", str(config), "--json")
    results = {r["name"]: r for r in json.loads(checked.stdout)}
    assert results["config"]["ok"], results["config"]
    assert "personalities dummy" in results["config"]["detail"]
    config.write_text("[dummy]\ngreeting = 3\n")  # its section is checked as the others are
    refused = _run(tree, "doctor", "--config", str(config), "--json")
    bad = {r["name"]: r for r in json.loads(refused.stdout)}["config"]
    assert not bad["ok"] and "dummy.greeting" in bad["detail"]


@pytest.mark.requires_tools(modules=("bluezoo",))
def test_demo_and_the_bench_onboard_through_it(tree: Path) -> None:
    demo = _run(tree, "demo", "--personality", "dummy", "--seed", "1", "--json", timeout=120)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    result = json.loads(demo.stdout)
    assert (result["state"], result["transport"]) == ("online", "ble-dummy"), result
    out = tree / "bench-out"
    bench = _run(
        tree, "bench", "--personalities", "dummy", "--scenarios", "engineering-wifi",
        "--out", str(out), "--json", timeout=180,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-2000:]
    report = json.loads(bench.stdout)
    assert (report["runs"], report["passed"]) == (1, 1), report
    cell = report["groups"]["engineering-wifi / ble / dummy"]
    assert cell["outcomes"] == {"OK": 1}, cell
