#!/usr/bin/env python3
"""Benchmark: a fleet of N emulated devices in one process, onboarded together.

For each N (``--counts``) and each run (``--runs``): ``device-sim fleet --count N`` starts (a
real process, zero-delay worlds), then ``device-sim client provision --fleet ROOT`` onboards
every device (another real process: the phone side) and exits. Measured from the moment the
fleet command starts:

* start: until the fleet's ready line;
* all online: until the phone process has the last device's outcome (its exit), and how many
  of N ended online;
* the fleet process after onboarding: RSS (VmRSS) and open descriptors, per device, both as
  total / N and as the marginal cost over a fleet of one device started the same way;
* CPU seconds while onboarding: the fleet process's (every thread) and the phone process's;
* the machine's speed before each run (:func:`cpu_reference_ms`), to compare runs.

Prints min / median / max over the runs, and the per-run figures with ``--json``.

    .venv/bin/python scripts/bench_fleet.py --transport softap --counts 10,100,1000 --runs 3
    .venv/bin/python scripts/bench_fleet.py --transport ble --counts 10,50,100 --runs 3
    .venv/bin/python scripts/bench_fleet.py --transport ble --ble-stack bumble \
        --scenario typical-home --counts 100,300,1000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 600.0
ONBOARD_TIMEOUT_S = 900.0


async def one_run(
    transport: str, count: int, workdir: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One fleet of ``count`` devices: start it, onboard it, measure it, stop it. ``extra``:
    more ``fleet`` flags (``--ble-stack bumble``, ``--scenario``, ``--phones``)."""
    root = workdir / f"{transport}-{count}-{time.monotonic_ns()}"
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
    reference = cpu_reference_ms()
    t0 = time.monotonic()
    fleet = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "fleet",
        "--root",
        str(root),
        "--count",
        str(count),
        "--transport",
        transport,
        "--zero-delay",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert fleet.stdout is not None and fleet.stderr is not None
    err_task = asyncio.ensure_future(fleet.stderr.read())
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            line = await fleet.stdout.readline()
        if not line:
            raise RuntimeError(f"the fleet exited: {(await err_task)[-800:].decode()}")
        ready = json.loads(line)
        t_ready = time.monotonic() - t0
        fleet_cpu0 = _cpu_s(fleet.pid)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        phones = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "device_sim",
            "client",
            "provision",
            "--fleet",
            str(root),
            "--json",
            "--concurrency",
            "64",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        async with asyncio.timeout(ONBOARD_TIMEOUT_S):
            out, perr = await phones.communicate()
        t_online = time.monotonic() - t0
        try:
            done = json.loads(out)
        except ValueError:
            raise RuntimeError(
                f"the phone side printed no result: {perr[-800:].decode()}"
            ) from None
        rss_kb, fds = _proc(fleet.pid)
        fleet_cpu = _cpu_s(fleet.pid) - fleet_cpu0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the phone process, waited
        phone_cpu = (children.ru_utime + children.ru_stime) - (
            children0.ru_utime + children0.ru_stime
        )
        summary = done["summary"]
        return {
            "transport": transport,
            "cpu_reference_ms": reference,
            "count": count,
            "start_s": round(t_ready, 3),
            "fleet_start_s": ready.get("start_s"),
            "all_online_s": round(t_online, 3),
            "online": summary["online"],
            "not_online": summary["not_online"],
            "per_device_p50_s": summary["per_device_s"]["p50"],
            "per_device_p90_s": summary["per_device_s"]["p90"],
            "rss_mb": round(rss_kb / 1024, 1),
            "fds": fds,
            # CPU seconds while onboarding: the fleet's (all its threads) and the phones'
            "fleet_cpu_s": round(fleet_cpu, 2),
            "phone_cpu_s": round(phone_cpu, 2),
        }
    finally:
        if fleet.returncode is None:
            fleet.terminate()
            try:
                async with asyncio.timeout(60):
                    await fleet.wait()
            except TimeoutError:
                fleet.kill()
                await fleet.wait()
        err_task.cancel()


def _cpu_s(pid: int) -> float:
    """The process's CPU time so far (user + system, every thread), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc(pid: int) -> tuple[int, int]:
    """The process's resident memory (kB) and open descriptors."""
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def cpu_reference_ms() -> float:
    """This machine's speed just before a run: the best of 3 timings of a fixed pure-Python
    loop (a shared virtual machine's CPU can halve from one minute to the next; runs are only
    comparable at a like reference)."""
    best = min(timeit.repeat("sum(i * i for i in range(10**6))", number=1, repeat=3))
    return round(best * 1000, 1)


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):g} / {statistics.median(values):g} / {max(values):g}"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("softap", "ble"), default="softap")
    parser.add_argument("--counts", default="10,100", help="comma-separated fleet sizes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--ble-stack", choices=("bluez", "bumble"), default="bluez", help="with --transport ble"
    )
    parser.add_argument("--scenario", default="engineering-wifi", help="every device's world")
    parser.add_argument("--phones", type=int, default=16, help="BLE: phone adapters or controllers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    flags = ("--ble-stack", args.ble_stack, "--scenario", args.scenario, "--phones",
             str(args.phones))  # fmt: skip
    counts = [int(c) for c in args.counts.split(",") if c]
    if not counts or min(counts) < 1 or not 1 <= args.runs <= 20:
        parser.error("--counts: sizes >= 1; --runs: 1 to 20")
    with tempfile.TemporaryDirectory(prefix="device-sim-fleet-bench-") as tmp:
        workdir = Path(tmp)
        base = await one_run(args.transport, 1, workdir, flags)  # the marginal cost's reference
        rows: list[dict[str, Any]] = []
        for count in counts:
            runs = [await one_run(args.transport, count, workdir, flags) for _ in range(args.runs)]
            for run in runs:
                extra = max(1, count - 1)
                run["rss_per_device_mb"] = round(run["rss_mb"] / count, 3)
                run["rss_marginal_mb"] = round((run["rss_mb"] - base["rss_mb"]) / extra, 3)
                run["fds_per_device"] = round((run["fds"] - base["fds"]) / extra, 2)
            rows.append({"count": count, "runs": runs})
            if not args.json:
                print(
                    f"{args.transport}/{args.ble_stack} N={count:<5} "
                    f"(min / median / max of {args.runs}) "
                    f"start {spread([r['start_s'] for r in runs])} s, "
                    f"all online {spread([r['all_online_s'] for r in runs])} s, "
                    f"online {[r['online'] for r in runs]} of {count}, "
                    f"RSS {spread([r['rss_mb'] for r in runs])} MB "
                    f"({spread([r['rss_marginal_mb'] for r in runs])} MB per extra device), "
                    f"fds per extra device {spread([r['fds_per_device'] for r in runs])}, "
                    f"CPU while onboarding: fleet {spread([r['fleet_cpu_s'] for r in runs])} s, "
                    f"phones {spread([r['phone_cpu_s'] for r in runs])} s; "
                    f"CPU reference {spread([r['cpu_reference_ms'] for r in runs])} ms",
                    flush=True,
                )
    if args.json:
        print(
            json.dumps({"transport": args.transport, "one_device": base, "sizes": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
