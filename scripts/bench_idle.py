#!/usr/bin/env python3
"""Benchmark: the resident memory of one idle device daemon, per door set.

For each fallback policy (``--doors``, default ble-only, softap-only and ble-then-softap) a real
``device-sim run`` (zero-delay simulated world, no activation) starts on a BlueZoo adapter; once
its ready line is out and it has idled ``--idle`` seconds, its VmRSS and VmHWM are read from
/proc, with the libraries it has mapped that an idle device should not need (aiohttp,
dbus-fast, cryptography). Prints min / median / max over ``--runs``.

    .venv/bin/python scripts/bench_idle.py [--runs 3] [--idle 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from device_sim.apps.virtual.harness import VirtualBle, add_adapter
from device_sim.core.identity import create_identity
from device_sim.core.store import DeviceStore

WATCHED = ("aiohttp", "dbus_fast", "cryptography")


async def one(
    doors: str, idle_s: float, env: dict[str, str], adapter: str
) -> tuple[int, int, list[str]]:
    with tempfile.TemporaryDirectory(prefix="device-sim-idle-") as tmp:
        with DeviceStore(Path(tmp)) as store:
            create_identity(store)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "device_sim",
            "run",
            "--state-dir",
            tmp,
            "--adapter",
            adapter,
            "--doors",
            doors,
            "--zero-delay",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(60):
                if not await proc.stdout.readline():
                    raise RuntimeError(f"the daemon ({doors}) exited before it was ready")
            await asyncio.sleep(idle_s)  # idling is what is measured, not a synchronisation
            status = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                if ":" in line
            )
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            loaded = sorted({name for name in WATCHED if f"/{name}/" in maps})
            return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0]), loaded
        finally:
            proc.terminate()
            await proc.wait()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doors", default="ble-only,softap-only,ble-then-softap")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=2.0)
    args = parser.parse_args()
    if not 1 <= args.runs <= 20 or not 0 <= args.idle <= 60:
        parser.error("--runs 1 to 20, --idle 0 to 60")
    async with VirtualBle(adapters=1) as vb:
        adapter = await add_adapter(vb.bus_address, 9, "00:11:22:77:00:09")
        for doors in args.doors.split(","):
            runs = [await one(doors, args.idle, vb.env(), adapter) for _ in range(args.runs)]
            rss = [r[0] / 1024 for r in runs]
            hwm = [r[1] / 1024 for r in runs]
            print(
                f"{doors:<16} RSS {min(rss):.1f} / {statistics.median(rss):.1f} / "
                f"{max(rss):.1f} MB (min / median / max of {args.runs}), peak "
                f"{max(hwm):.1f} MB, loaded: {', '.join(runs[0][2]) or 'none of ' + str(WATCHED)}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
