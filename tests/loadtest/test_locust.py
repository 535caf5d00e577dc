"""A Locust run with two worker processes drives the cloud activation of a fleet of factory-made
units against the cloud emulator; Locust's own statistics say how it went, and the cloud's
account shows every unit bound exactly once (the workers split the units, none twice)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim.apps.cloud import CloudAdmin
from device_sim.apps.loadtest.units import REQUEST_NAME, unit_dirs

UNITS = 12
ACCOUNT, PASSWORD = "acme", "account-password-1"


def device_sim(*argv: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "device_sim", *argv], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-1500:]
    return done.stdout


@pytest.mark.requires_tools(modules=("locust",))  # run as a program: it patches with gevent
async def test_two_locust_workers_activate_a_fleet(tmp_path: Path) -> None:
    factory, units = tmp_path / "factory", tmp_path / "units"
    device_sim("factory", "ca", "--factory-dir", str(factory))
    device_sim(
        "factory",
        "batch",
        "--factory-dir",
        str(factory),
        "--out",
        str(units),
        "--station",
        "load",
        "--count",
        str(UNITS),
        "--no-progress",
        timeout=300,
    )
    states = unit_dirs(units)
    assert len(states) == UNITS
    cloud = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "cloud",
        "serve",
        "--state-dir",
        str(tmp_path / "cloud"),
        "--listen",
        "127.0.0.1:0",
        "--factory-chain",
        str(states[0] / "chain.pem"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert cloud.stdout is not None
        ready = json.loads(await asyncio.wait_for(cloud.stdout.readline(), 60))
        async with CloudAdmin(ready["url"], Path(ready["ca_file"]), ready["admin_token"]) as admin:
            assert await admin.import_units(units / "cloud-import.json") == UNITS
            await admin.add_account(ACCOUNT, PASSWORD)
            for state in states:
                serial = json.loads((state / "unit.json").read_text())["serial"]
                await admin.set_supply_chain(serial, ACCOUNT)

            env = {
                **os.environ,
                "DEVICE_SIM_UNITS": str(units),
                "DEVICE_SIM_CLOUD_CA": ready["ca_file"],
                "DEVICE_SIM_LOAD_WORKERS": "2",
            }
            locustfile = (
                Path(__file__).parents[2] / "device_sim" / "apps" / "loadtest" / "locustfile.py"
            )
            locust = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(locustfile),
                "--host",
                ready["url"],
                "--headless",
                "--processes",
                "2",
                "-u",
                str(UNITS),
                "-r",
                str(UNITS),
                "--run-time",
                "60s",
                "--stop-timeout",
                "5",
                "--csv",
                str(tmp_path / "load"),
                "--only-summary",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
            _out, err = await asyncio.wait_for(locust.communicate(), 120)
            assert locust.returncode == 0, err.decode(errors="replace")[-2000:]

            with open(tmp_path / "load_stats.csv", newline="") as f:
                rows = {row["Name"]: row for row in csv.DictReader(f)}
            stats = rows[REQUEST_NAME]
            assert int(stats["Request Count"]) == UNITS, stats
            assert int(stats["Failure Count"]) == 0, (stats, err.decode()[-1500:])
            assert float(stats["Average Response Time"]) > 0
            bound = await admin.list_devices(ACCOUNT, PASSWORD)
            assert len(bound) == UNITS and {d["mode"] for d in bound} == {"zero-touch"}
            assert all(d["generation"] == 1 for d in bound)  # each unit activated once
    finally:
        cloud.terminate()
        await cloud.wait()
