#!/usr/bin/env python3
"""Soak: onboard and factory-reset one unit many times; the daemon's RSS, open fds, threads and
state directory must stay flat.

    .venv/bin/python scripts/soak.py                 # 1,000 onboard / factory-reset cycles
    .venv/bin/python scripts/soak.py --cycles 200 --json

The unit (see ``unit_bench.py``: real certificates, zero-touch activation with the cloud
emulator, SoftAP door on loopback, simulated network at zero delay) is onboarded by the
phone-side reference client over HTTP and reset over the control socket, ``--cycles`` times, by
one daemon process. Every ``--every`` cycles the script samples the daemon from /proc (VmRSS,
open fds, threads), the database's size (store, WAL and shared memory) and the whole state
directory's (with the event log and its rotation).
Slopes are least-squares fits over the samples after the first 10% (warm-up), given per 1,000
cycles. The run passes when, per 1,000 cycles, RSS grows less than 4 MiB, fds by at most 2 and
threads by at most 1 (sampling noise), the database by less than 64 KiB and the state
directory by less than 1 MiB (the event log is bounded by rotation).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from unit_bench import UnitBench

# Growth allowed per 1,000 cycles. fds and threads move by one or two with the connections that
# happen to be open at a sample; a leak of one per cycle would be +1,000.
LIMITS = {"rss_kib": 4096, "fds": 2.0, "threads": 1.0, "database_kib": 64, "state_dir_kib": 1024}


def sample(pid: int, state_dir: Path) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_kib": float(fields["VmRSS"].split()[0]),
        "fds": float(len(list(Path(f"/proc/{pid}/fd").iterdir()))),
        "threads": float(fields["Threads"].strip()),
        "database_kib": sum(p.stat().st_size for p in state_dir.glob("device.sqlite3*")) / 1024,
        "state_dir_kib": sum(p.stat().st_size for p in state_dir.rglob("*") if p.is_file()) / 1024,
    }


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope (0 for a single sample or a constant series)."""
    if len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


async def run(cycles: int, every: int, work: Path) -> dict[str, Any]:
    bench = UnitBench(work, seed=1)
    samples: list[tuple[int, dict[str, float]]] = []
    failures = 0
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        await bench.setup(stack)
        await bench.start()
        assert bench.daemon is not None and bench.daemon.proc is not None
        pid = bench.daemon.proc.pid
        for cycle in range(1, cycles + 1):
            await bench.onboard()
            status = await bench.settle()
            if status["state"] != "online" or status["activation"]["status"] != "active":
                failures += 1
            await bench.reset()
            status = await bench.settle()
            if status["state"] != "unprovisioned":
                failures += 1
            if cycle % every == 0 or cycle == 1:
                samples.append((cycle, sample(pid, bench.state_dir)))
    elapsed = time.monotonic() - started
    steady = [s for s in samples if s[0] > cycles // 10] or samples
    slopes = {
        key: round(slope([c for c, _ in steady], [v[key] for _, v in steady]) * 1000, 2)
        for key in LIMITS
    }
    flat = all(slopes[k] <= LIMITS[k] for k in LIMITS)
    return {
        "cycles": cycles,
        "failed_cycles": failures,
        "seconds": round(elapsed, 1),
        "cycle_ms": round(1000 * elapsed / cycles, 1),
        "slope_per_1000_cycles": slopes,
        "limits_per_1000_cycles": LIMITS,
        "flat": flat,
        "first": samples[0][1],
        "last": samples[-1][1],
        "samples": [{"cycle": c, **v} for c, v in samples],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--every", type=int, default=25, help="sample every N cycles")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        report = asyncio.run(run(args.cycles, args.every, Path(tmp)))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{report['cycles']} cycles in {report['seconds']} s "
            f"({report['cycle_ms']} ms each), {report['failed_cycles']} failed"
        )
        for key, value in report["slope_per_1000_cycles"].items():
            print(
                f"  {key:>14}: {report['first'][key]:>9.0f} -> {report['last'][key]:>9.0f}, "
                f"slope {value:+.2f} per 1,000 cycles (limit {LIMITS[key]})"
            )
        print("flat" if report["flat"] else "NOT FLAT")
    return 0 if report["flat"] and not report["failed_cycles"] else 1


if __name__ == "__main__":
    sys.exit(main())
