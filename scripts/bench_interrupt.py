#!/usr/bin/env python3
"""How long ``device-sim demo`` takes to stop after Ctrl-C (target: under 2 s).

Runs the demo N times as a terminal's foreground job would (its own process group, SIGINT at
its default), sends SIGINT to the whole group once the phone has sent the credentials (the
device is joining), and prints min/median/max seconds from SIGINT to exit, and the exit codes.

    .venv/bin/python scripts/bench_interrupt.py --count 5
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

MARK = "phone  credentials"


def once(timeout: float) -> tuple[float, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_sim", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if MARK in line:
                break
        else:
            raise SystemExit(f"the demo ended before {MARK!r} (exit {proc.wait()})")
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        proc.stdout.read()
        code = proc.wait(timeout=timeout)
        return time.monotonic() - t0, code
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=30.0, help="give up on one run after S s")
    args = parser.parse_args()
    runs = [once(args.timeout) for _ in range(max(1, args.count))]
    seconds = sorted(s for s, _ in runs)
    print(
        f"demo stop after SIGINT over {len(runs)} runs: min {seconds[0]:.2f} s, "
        f"median {statistics.median(seconds):.2f} s, max {seconds[-1]:.2f} s; "
        f"exit codes {sorted({c for _, c in runs})}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
