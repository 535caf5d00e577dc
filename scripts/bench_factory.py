#!/usr/bin/env python3
"""Benchmark: factory throughput, N units made in a fresh factory (labels and self-test included).

Creates a factory CA in a temporary directory, runs ``batch`` for ``--count`` units (each: serial,
identity with SRP verifier, P-256 key + certificate, PNG and SVG labels, the six-check self-test
with the QR decoded back, record and cloud import), and prints units per minute, p50/p90 per
unit, the median of each self-test check, and this process's peak RSS (ru_maxrss).

    .venv/bin/python scripts/bench_factory.py --count 20 [--workers 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from device_sim import pki
from device_sim.apps.factory.checks import CHECKS
from device_sim.apps.factory.line import batch


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def bench(count: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-factory-") as tmp:
        factory = Path(tmp) / "factory"
        pki.create_factory_ca(factory, "Bench")
        result = batch(
            factory, Path(tmp) / "out", count, station="bench", workers=workers, progress=False
        )
        per_unit = [u.duration_s * 1000 for u in result.units]
        checks = {
            name: statistics.median(
                c.duration_ms for u in result.units for c in u.report.checks if c.name == name
            )
            for name in CHECKS
        }
        return {
            "count": count,
            "workers": workers,
            "passed": result.passed,
            "failed": result.failed,
            "elapsed_s": round(result.elapsed_s, 3),
            "units_per_minute": round(result.units_per_minute, 1),
            "per_unit_ms": {
                "p50": round(percentile(per_unit, 0.5), 1),
                "p90": round(percentile(per_unit, 0.9), 1),
                "max": round(max(per_unit), 1),
            },
            "selftest_check_median_ms": {k: round(v, 2) for k, v in checks.items()},
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="units to make (default 20)")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (default 1: in this process)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    figures = bench(args.count, args.workers)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        pu = figures["per_unit_ms"]
        print(
            f"units:      {figures['count']} ({figures['passed']} passed, "
            f"{figures['failed']} failed), {figures['workers']} worker(s)"
        )
        print(
            f"throughput: {figures['units_per_minute']} units/min ({figures['elapsed_s']} s total)"
        )
        print(f"per unit:   p50 {pu['p50']} ms  p90 {pu['p90']} ms  max {pu['max']} ms")
        print(
            "self-test (median ms): "
            + "  ".join(f"{k} {v}" for k, v in figures["selftest_check_median_ms"].items())
        )
        print(f"peak RSS:   {figures['peak_rss_kib'] / 1024:.1f} MiB")
    return 0 if figures["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
