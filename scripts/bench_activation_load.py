#!/usr/bin/env python3
"""Benchmark: N factory-made devices activate with the cloud emulator, driven by Locust.

Makes N units with the factory line (``device-sim factory batch``), starts the cloud emulator
trusting the factory's chain, imports the units and records them as sold to one account, then
runs ``locust -f device_sim/apps/loadtest/locustfile.py --processes W`` (each user one device, one
zero-touch activation over mutual TLS) and prints Locust's statistics for the activation
request and how many units the account ends up with.

    .venv/bin/python scripts/bench_activation_load.py --units 200 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from device_sim.apps.cloud import CloudAdmin
from device_sim.apps.loadtest.units import REQUEST_NAME, unit_dirs

ACCOUNT, PASSWORD = "acme", "account-password-1"


def device_sim(*argv: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "device_sim", *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=3600,
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--spawn-rate", type=int, default=100)
    args = parser.parse_args()
    if not 1 <= args.units <= 5000 or not 1 <= args.workers <= 16:
        parser.error("--units 1 to 5000, --workers 1 to 16")
    with tempfile.TemporaryDirectory(prefix="device-sim-load-") as tmp:
        root = Path(tmp)
        t0 = time.monotonic()
        device_sim("factory", "ca", "--factory-dir", str(root / "factory"))
        device_sim(
            "factory",
            "batch",
            "--factory-dir",
            str(root / "factory"),
            "--out",
            str(root / "units"),
            "--station",
            "load",
            "--count",
            str(args.units),
            "--workers",
            "2",
            "--no-progress",
        )
        states = unit_dirs(root / "units")
        print(f"factory: {len(states)} units in {time.monotonic() - t0:.1f} s", flush=True)
        cloud = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "device_sim",
            "cloud",
            "serve",
            "--state-dir",
            str(root / "cloud"),
            "--listen",
            "127.0.0.1:0",
            "--factory-chain",
            str(states[0] / "chain.pem"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert cloud.stdout is not None
            ready = json.loads(await asyncio.wait_for(cloud.stdout.readline(), 60))
            async with CloudAdmin(
                ready["url"], Path(ready["ca_file"]), ready["admin_token"]
            ) as admin:
                await admin.import_units(root / "units" / "cloud-import.json")
                await admin.add_account(ACCOUNT, PASSWORD)
                for state in states:
                    serial = json.loads((state / "unit.json").read_text())["serial"]
                    await admin.set_supply_chain(serial, ACCOUNT)
                env = {
                    **os.environ,
                    "DEVICE_SIM_UNITS": str(root / "units"),
                    "DEVICE_SIM_CLOUD_CA": ready["ca_file"],
                    "DEVICE_SIM_LOAD_WORKERS": str(args.workers),
                }
                locustfile = (
                    Path(__file__).parents[1] / "device_sim" / "apps" / "loadtest" / "locustfile.py"
                )
                t1 = time.monotonic()
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
                    str(args.workers),
                    "-u",
                    str(args.units),
                    "-r",
                    str(args.spawn_rate),
                    "--run-time",
                    "10m",
                    "--stop-timeout",
                    "10",
                    "--csv",
                    str(root / "load"),
                    "--only-summary",
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )
                _, err = await locust.communicate()
                wall = time.monotonic() - t1
                if locust.returncode != 0:
                    print(err.decode(errors="replace")[-2000:], file=sys.stderr)
                    return 1
                with open(root / "load_stats.csv", newline="") as f:
                    row = {r["Name"]: r for r in csv.DictReader(f)}[REQUEST_NAME]
                bound = await admin.list_devices(ACCOUNT, PASSWORD)
        finally:
            cloud.terminate()
            await cloud.wait()
    print(
        f"locust ({args.workers} worker processes): {row['Request Count']} activations, "
        f"{row['Failure Count']} failures in {wall:.1f} s; "
        f"median {row['Median Response Time']} ms, "
        f"p90 {row['90%']} ms, p99 {row['99%']} ms, max {float(row['Max Response Time']):.0f} ms, "
        f"{float(row['Requests/s']):.1f} requests/s; the account holds {len(bound)} devices"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
