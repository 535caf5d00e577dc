#!/usr/bin/env python3
"""SIGKILL the device daemon at random moments of onboarding, activation, release and factory
reset; after every restart check that the device's store agrees with itself and with the cloud.

    .venv/bin/python scripts/kill_loop.py                  # 1,000 kills
    .venv/bin/python scripts/kill_loop.py --kills 50 --json

One factory unit (real certificates, zero-touch activation) runs as ``device-sim run`` with the
SoftAP door on loopback and the simulated network at zero delay; the cloud emulator runs in this
process. Each round the phone-side reference client onboards the unit over HTTP (when it is not
online) or the control socket factory-resets it (when it is), and the daemon is SIGKILLed after
a random delay drawn from 0 to 0.9 (onboarding) or 1.2 (reset) times that action's measured
duration, so kills land in every part of it: the join, the checks, the activation request, the
commit, the release, the local reset. The daemon is restarted, allowed to settle (bounded), and the invariants are checked:

* the store is consistent with itself: online has credentials, an active binding has its token,
  nothing is left pending (an activation or a factory reset) once the device settled (no join
  or check running; a state that waits for the phone the kill took away ends by its timeout);
* with the cloud: an active binding's token is accepted by the cloud (no device active in the
  store whose credential the cloud revoked), and a device with no binding (after a reset, or
  never activated) has none in the cloud.

The report gives kills, where they landed (the daemon's last event phase before the kill),
inconsistencies (each with the round and what differed) and timings. Exit status 0 only with
no inconsistency.
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
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from unit_bench import UnitBench  # noqa: E402

from device_sim.errors import DeviceSimError  # noqa: E402


async def run(kills: int, seed: int, work: Path, budget_s: float) -> dict[str, Any]:
    loop = UnitBench(work, seed)
    landed: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    problems: list[dict[str, Any]] = []
    unsettled = 0
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        await loop.setup(stack)
        await loop.start()
        await loop.calibrate()
        done = 0
        while done < kills and time.monotonic() - started < budget_s:
            try:
                status = await loop.settle()
            except (TimeoutError, DeviceSimError) as exc:
                unsettled += 1
                problems.append({"round": done, "problems": [f"did not settle: {exc}"]})
                status = {"state": "failed"}
            name = "reset" if status["state"] == "online" else "onboard"
            delay, phase = await loop.kill_during(name)
            done += 1
            actions[name] += 1
            landed[f"{name}: {phase}"] += 1
            await loop.start()
            try:
                await loop.settle()
                found = await loop.check()
            except (TimeoutError, DeviceSimError) as exc:
                unsettled += 1
                found = [f"did not settle after the restart: {exc}"]
            if found:
                problems.append({"round": done, "action": name, "delay_s": round(delay, 3),
                                 "last_phase": phase, "problems": found})
    return {"kills": done, "inconsistencies": len(problems), "unsettled": unsettled,
            "actions": dict(actions), "landed": dict(sorted(landed.items())),
            "calibrated_s": {k: round(statistics.median(v), 3) for k, v in
                             loop.durations.items() if v},
            "problems": problems[:20], "seconds": round(time.monotonic() - started, 1),
            "seed": seed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--budget-s", type=float, default=3600.0,
                        help="stop after this many seconds even if fewer kills were made")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kill-loop-") as tmp:
        report = asyncio.run(run(args.kills, args.seed, Path(tmp), args.budget_s))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['kills']} kills in {report['seconds']} s "
              f"({report['actions']}); inconsistencies: {report['inconsistencies']}")
        for where, n in report["landed"].items():
            print(f"  {n:>5}  killed at {where}")
        for problem in report["problems"]:
            print(f"  round {problem['round']}: {problem}")
    return 0 if report["inconsistencies"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
