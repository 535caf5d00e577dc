"""`device-sim bench` end to end: real daemons and phones, JUnit, JSON and the HTML report
(looked at in headless Chromium); a population's figures computed from its runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from playwright.async_api import async_playwright, expect

from device_sim.testing.contracts import holds

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.requires_tools(tools=("dbus-daemon",))]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device_sim", "bench", *args],
        capture_output=True,
        text=True,
        timeout=400,
    )


@pytest.fixture(scope="module")
def matrix(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Two QA scenarios over BLE and the SoftAP, and one whose `expect` is wrong."""
    tmp = tmp_path_factory.mktemp("matrix")
    text = (ROOT / "scenarios" / "no-dhcp.yaml").read_text()
    wrong = tmp / "no-dhcp-mislabelled.yaml"
    wrong.write_text(
        text.replace("name: no-dhcp", "name: no-dhcp-mislabelled").replace(
            "expect: NO_DHCP_LEASE", "expect: OK"
        )
    )
    out = tmp / "report"
    done = bench(
        "--scenarios",
        f"mesh-failing-node,five-ghz-only,{wrong}",
        "--transports",
        "ble,softap",
        "--time-scale",
        "0.05",
        "--concurrency",
        "4",
        "--out",
        str(out),
    )
    return out, done


def test_the_matrix_runs_every_cell_and_fails_the_mislabelled_one(
    matrix: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, done = matrix
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]  # one cell failed
    assert "4/6 runs ended as their scenario expects" in done.stdout
    run_lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(run_lines) == 6 and all(" s (wall " in line for line in run_lines), run_lines
    result = json.loads((out / "results.json").read_text())
    holds("bench-results", result)  # the shipped contract (device_sim/data/contracts/)
    runs = {(r["scenario"], r["transport"]): r for r in result["runs"]}
    assert len(runs) == 6
    assert runs[("mesh-failing-node", "ble")]["code_name"] == "OK"
    assert runs[("five-ghz-only", "softap")]["code_name"] == "NETWORK_5GHZ_ONLY"
    mislabelled = runs[(str(out.parent / "no-dhcp-mislabelled.yaml"), "ble")]
    assert mislabelled["code_name"] == "NO_DHCP_LEASE" and mislabelled["passed"] is False
    mesh = runs[("mesh-failing-node", "softap")]
    assert mesh["phases_ms"]["dhcp"] > 0 and mesh["timeline"][-1]["phase"] == "online"
    assert [e["phase"] for e in mesh["timeline"]].count("associating") == 2  # the next node

    suite = ET.parse(out / "junit.xml").getroot()
    cases = suite.findall("testcase")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "2", "0")
    failed = [c for c in cases if c.find("failure") is not None]
    assert {str(c.get("classname")).split(" / ")[0] for c in failed} == {
        str(out.parent / "no-dhcp-mislabelled.yaml")
    }
    failure, system_out = failed[0].find("failure"), cases[0].find("system-out")
    assert failure is not None and system_out is not None
    assert "expected OK" in str(failure.get("message"))
    output = system_out.text or ""
    assert "code " in output and "joining" in output  # code and timeline


async def test_the_report_in_a_browser(
    matrix: tuple[Path, subprocess.CompletedProcess[str]], require: Callable[[str | None], None]
) -> None:
    out, _ = matrix
    require(None if CHROMIUM.exists() else f"{CHROMIUM} is missing (apt-get install chromium)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto((out / "report.html").as_uri())
            await expect(page.locator("h1")).to_have_text("device-sim bench: matrix")
            await expect(page.locator("td.ok")).to_have_count(4)
            await expect(page.locator("td.bad")).to_have_count(2)
            # the plot is an embedded PNG that really decodes
            width = await page.locator("img").first.evaluate("i => i.naturalWidth")
            assert width > 300
            docs = page.locator("tr", has=page.locator("code", has_text="NO_DHCP_LEASE"))
            await expect(docs.first).to_contain_text("Restart the router")  # its next step
            await expect(page.locator("th", has_text="dhcp")).to_have_count(1)  # phase column
            assert await page.evaluate("document.querySelectorAll('[src^=http]').length") == 0
        finally:
            await browser.close()


def test_a_population_reports_its_figures(tmp_path: Path) -> None:
    homes = tmp_path / "homes.yaml"
    homes.write_text(
        "name: small\nseed: 5\nhomes:\n"
        "  - {weight: 2, scenario: typical-home}\n  - {weight: 1, scenario: five-ghz-only}\n"
        "phones:\n  - {weight: 2, name: careful, think_s: [1, 4]}\n"
        "  - {weight: 1, name: no-bluetooth, bluetooth: false, think_s: [1, 4]}\n"
    )
    out = tmp_path / "pop"
    done = bench(
        "--population",
        "6",
        "--homes",
        str(homes),
        "--time-scale",
        "0.05",
        "--softap-window",
        "40",
        "--concurrency",
        "6",
        "--out",
        str(out),
        "--json",
        "--min-online",
        "0.9",
    )
    summary = json.loads(done.stdout)
    # The gate: five-ghz-only homes never get online, so the share is under 0.9: exit 1.
    assert all(g["share_online_within_2_min"] < 0.9 for g in summary["groups"].values())
    assert done.returncode == 1 and "below --min-online 0.9" in done.stderr, done.stderr[-2000:]
    (group,) = summary["groups"].values()
    runs = json.loads((out / "results.json").read_text())["runs"]
    online = [r for r in runs if r["online"] and r["seconds"] <= 120]
    assert group["online_within_2_min"] == len(online)
    assert group["share_online_within_2_min"] == round(len(online) / 6, 4)
    assert set(group["codes_costing_homes"]) <= {"NETWORK_5GHZ_ONLY", "ONLINE_AFTER_2_MIN"}
    assert sum(group["codes_costing_homes"].values()) == 6 - len(online)
    for r in runs:
        assert r["code_name"] == (
            "NETWORK_5GHZ_ONLY" if r["scenario"] == "five-ghz-only" else "OK"
        ), r
        # One unit everywhere: the user's time (wall time over the 0.05 scale), the wall time
        # apart (the DHCP phase of a 0.5-4 s DHCP used to read "40 ms").
        assert r["seconds"] == pytest.approx(r["wall_seconds"] / 0.05, rel=1e-3, abs=1e-3)
        for phase, ms in r["phases_ms"].items():
            assert ms == pytest.approx(r["wall_phases_ms"][phase] / 0.05, abs=1), phase
        if r["phone"] == "no-bluetooth":
            assert r["phone_transport"] == "softap"
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("failures") == str(6 - len(online))
    assert "of 6 homes online within 2 minutes" in (out / "report.html").read_text()


def test_a_population_whose_routers_reboot_or_are_replaced(tmp_path: Path) -> None:
    """Homes with a story: the device back by itself after a router restart, the same person
    re-onboarding it after a router swap; the re-onboardings count as onboardings."""
    homes = tmp_path / "homes.yaml"
    homes.write_text(
        "name: later\nseed: 3\nhomes:\n"
        "  - {weight: 1, scenario: router-reboot}\n  - {weight: 1, scenario: router-replaced}\n"
        "phones:\n  - {weight: 1, name: careful, think_s: [1, 4]}\n"
    )
    out = tmp_path / "pop"
    done = bench(
        "--population",
        "4",
        "--homes",
        str(homes),
        "--time-scale",
        "0.05",
        "--transports",
        "ble,softap",
        "--concurrency",
        "8",
        "--out",
        str(out),
        "--json",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    replaced = [r for r in runs if r["scenario"] == "router-replaced"]
    assert replaced and len(replaced) < len(runs)
    for r in runs:
        story = r["story"]
        assert r["passed"] and story["mismatches"] == [], story
        assert story["final"]["state"] == "online"
        if r["scenario"] == "router-replaced":
            assert story["reonboarding"]["state"] == "online" and story["reonboard_s"] > 0
            assert story["phone_sessions"] == 1
        else:
            assert story["reonboarding"] is None and story["phone_sessions"] == 0
    for group in json.loads(done.stdout)["groups"].values():
        assert group["onboardings"] == group["runs"] + group["reonboardings"]["n"]
    assert "re-onboardings included" in (out / "report.html").read_text()


def _processes_under(marker: str) -> list[int]:
    """Live processes whose command line names ``marker`` (the bench's temporary tree)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state = next(
                (
                    line
                    for line in (entry / "status").read_text().splitlines()
                    if line.startswith("State:")
                ),
                "",
            )
        except OSError:  # gone meanwhile
            continue
        if marker.encode() in cmdline and "zombie" not in state:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_stops_every_run_and_reports_the_finished(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    """A cancelled CI job SIGTERMs the bench, a user presses Ctrl-C: its devices, phones and
    BlueZoo buses stop with it (they run under its temporary tree, here in tmp_path through
    TMPDIR), and the runs that finished are reported (results.json, junit.xml)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_sim",
            "bench",
            "--scenarios",
            "slow-dhcp",
            "--transports",
            "ble,softap",
            "--concurrency",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60  # a device and a phone for each run, running
        while len(_processes_under(str(tmp_path))) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.1)  # a bounded poll: no event announces another process starting
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err[-1500:]
    assert ("terminated" if sig == signal.SIGTERM else "interrupted") in err
    assert "Traceback" not in err
    partial = json.loads((tmp_path / "out" / "results.json").read_text())
    holds("bench-results", partial)
    assert partial["interrupted"]["by"] == ("SIGTERM" if sig == signal.SIGTERM else "Ctrl-C")
    assert partial["interrupted"]["runs_asked"] == 2
    assert len(partial["runs"]) == partial["interrupted"]["runs_done"]
    assert ET.parse(tmp_path / "out" / "junit.xml").getroot().get("tests") == str(
        len(partial["runs"])
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary tree left
    left = _processes_under(str(tmp_path))
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes()[:300] for pid in left]


def test_cells_that_cannot_run_are_listed_as_skipped(tmp_path: Path) -> None:
    """Improv has no SoftAP door: its SoftAP cell is skipped, said so with the reason, in the
    results and as a skipped JUnit test case; it used to vanish (a matrix of 12 ran 9)."""
    out = tmp_path / "out"
    done = bench(
        "--scenarios",
        "typical-home",
        "--transports",
        "softap",
        "--personalities",
        "native,improv",
        "--time-scale",
        "0.05",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "skipped: typical-home-softap-improv (1 run(s)): improv has no softap door" in (
        done.stderr
    )
    result = json.loads((out / "results.json").read_text())
    assert [r["personality"] for r in result["runs"]] == ["native"]
    assert result["skipped"] == [
        {
            "cell": "typical-home-softap-improv",
            "scenario": "typical-home",
            "transport": "softap",
            "personality": "improv",
            "runs": 1,
            "reason": "improv has no softap door",
        }
    ]
    suite = ET.parse(out / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("skipped")) == ("2", "1")
    (case,) = [c for c in suite.findall("testcase") if c.find("skipped") is not None]
    assert case.find("skipped").get("message") == "improv has no softap door"  # type: ignore


@pytest.mark.requires_tools(modules=("bumble",))
def test_the_ble_stack_is_chosen_per_run(tmp_path: Path) -> None:
    """--transports ble,ble-bumble: the same cell on BlueZoo and on bumble's virtual
    controllers, each ending as its scenario expects."""
    done = bench("--scenarios", "engineering-wifi", "--transports", "ble,ble-bumble",
                 "--time-scale", "0.05", "--out", str(tmp_path / "report"), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    groups = json.loads(done.stdout)["groups"]
    for transport in ("ble", "ble-bumble"):
        group = groups[f"engineering-wifi / {transport} / native"]
        assert (group["runs"], group["passed"], group["outcomes"]) == (1, 1, {"OK": 1})
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    runs = results["runs"] if isinstance(results, dict) else results
    assert sorted(r["transport"] for r in runs) == ["ble", "ble-bumble"]
