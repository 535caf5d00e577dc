#!/usr/bin/env python3
"""SIGKILL the device daemon at random moments of onboarding, activation, reconnecting,
re-onboarding, release and factory reset; after every restart check that the device's store
agrees with itself, with the cloud, and (on that backend) with NetworkManager.

    .venv/bin/python scripts/kill_loop.py                  # 1,000 kills, the simulated world
    .venv/bin/python scripts/kill_loop.py --backend networkmanager --kills 300
    .venv/bin/python scripts/kill_loop.py --kills 50 --json

One factory unit (real certificates, zero-touch activation) runs as ``device-sim run`` with the
SoftAP door on loopback, a fast connected life (retries every 0.05-0.3 s, doors back after
0.2 s) and a world of two networks, Lab-A and Lab-B: the simulated one at zero delay, or
python-dbusmock's NetworkManager on a private bus (``--backend networkmanager``). The cloud
emulator runs in this process. Each round does one of:

* onboard (a unit that is not online): the phone-side reference client over HTTP;
* reset (online): a factory reset over the control socket;
* reconnect (online): its router goes off for 0-0.3 s and comes back; the unit rejoins by
  itself (the simulated world: a ``link`` fault on that network; NetworkManager: its access
  point removed and the connection dropped over D-Bus);
* reonboard (online): its router goes off for good, the doors reopen, and the phone moves the
  unit to the other network over the access point; the old router comes back afterwards;

and the daemon is SIGKILLed after a random delay drawn from 0 to 0.9 (1.2 for a reset) times
that action's measured duration, so kills land in every part of it: the join, the checks, the
activation request, the commit, a retry round, the doors reopening, a re-onboarding's join, the
release, the local reset. The world is made whole again, the daemon restarted and allowed to
settle (bounded: a unit with saved networks retries them until it is online), and the
invariants are checked:

* the store is consistent with itself: online has credentials, an active binding has its token,
  nothing is left pending (an activation or a factory reset) once the device settled (no join
  or check running; a state that waits for the phone the kill took away ends by its timeout);
* the saved networks: at most the limit, most recent first, each a network of the world with
  its own passphrase; an online unit is on the first; an unprovisioned one keeps none;
* with the cloud: an active binding's token is accepted by the cloud (no device active in the
  store whose credential the cloud revoked), and a device with no binding (after a reset, or
  never activated) has none in the cloud;
* with NetworkManager (that backend): one saved profile per saved network, in priority order,
  autoconnect off, no unsaved profile left behind, the hotspot's only while the AP is up, and
  no device-sim profile the store's ledger does not know.

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

from unit_bench import UnitBench

from device_sim.errors import DeviceSimError


async def run(
    kills: int, seed: int, work: Path, budget_s: float, backend: str = "simulated"
) -> dict[str, Any]:
    loop = UnitBench(work, seed, backend)
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
            if status["state"] != "online" and loop.rng.random() < 0.5:
                # Half the time a unit that is not online is onboarded unharmed first, so the
                # kills also land in what an online unit goes through.
                with contextlib.suppress(DeviceSimError, TimeoutError):
                    await loop.action("onboard")
                    status = await loop.settle()
            name = loop.choose(status)
            delay, phase = await loop.kill_during(name)
            done += 1
            actions[name] += 1
            landed[f"{name}: {phase}"] += 1
            await loop.after_kill()
            await loop.start()
            try:
                await loop.settle()
                found = await loop.check()
            except (TimeoutError, DeviceSimError) as exc:
                unsettled += 1
                found = [f"did not settle after the restart: {exc}"]
            if found:
                problems.append(
                    {
                        "round": done,
                        "action": name,
                        "delay_s": round(delay, 3),
                        "last_phase": phase,
                        "problems": found,
                    }
                )
    return {
        "kills": done,
        "inconsistencies": len(problems),
        "unsettled": unsettled,
        "actions": dict(actions),
        "landed": dict(sorted(landed.items())),
        "calibrated_s": {k: round(statistics.median(v), 3) for k, v in loop.durations.items() if v},
        "problems": problems[:20],
        "seconds": round(time.monotonic() - started, 1),
        "seed": seed,
        "backend": backend,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=3600.0,
        help="stop after this many seconds even if fewer kills were made",
    )
    parser.add_argument(
        "--backend",
        choices=["simulated", "networkmanager"],
        default="simulated",
        help="the world the unit lives in",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kill-loop-") as tmp:
        report = asyncio.run(run(args.kills, args.seed, Path(tmp), args.budget_s, args.backend))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{report['kills']} kills in {report['seconds']} s on {report['backend']} "
            f"({report['actions']}); inconsistencies: {report['inconsistencies']}"
        )
        for where, n in report["landed"].items():
            print(f"  {n:>5}  killed at {where}")
        for problem in report["problems"]:
            print(f"  round {problem['round']}: {problem}")
    return 0 if report["inconsistencies"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
