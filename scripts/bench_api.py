#!/usr/bin/env python3
"""Benchmark: what a test pays for an emulated device through the public API (and so through
the pytest plugin's ``emulated_device``, which runs the same calls on its own loop).

For each transport (``--transports``), ``--devices`` devices one after the other, each
measured from ``EmulatedDevice`` entry:

* start: identity made, ``device-sim run`` started, its ready line read;
* onboard: ``provision()`` with the scenario's credentials, to ``online`` (zero-delay world);
* stop: ``close()`` (SIGTERM, the process gone, its directory removed).

BLE runs on one ``VirtualBle`` (its start is reported once). Prints min / median / max per
figure, or JSON with ``--json``.

    .venv/bin/python scripts/bench_api.py --devices 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from typing import Any

from device_sim.api import EmulatedDevice, VirtualBle


async def one(bus: VirtualBle | None, transport: str) -> dict[str, float]:
    t0 = time.perf_counter()
    device = EmulatedDevice(bus, transport=transport, scenario="typical-home")  # type: ignore[arg-type]
    await device.start()
    t1 = time.perf_counter()
    result = await device.provision()
    t2 = time.perf_counter()
    await device.close()
    t3 = time.perf_counter()
    if result["state"] != "online":
        raise SystemExit(f"{transport}: ended {result['state']} {result['code_name']}")
    return {"start_s": t1 - t0, "onboard_s": t2 - t1, "stop_s": t3 - t2}


def summary(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "min": round(min(r[key] for r in runs), 3),
            "median": round(statistics.median(r[key] for r in runs), 3),
            "max": round(max(r[key] for r in runs), 3),
        }
        for key in runs[0]
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"devices": args.devices}
    async with contextlib.AsyncExitStack() as stack:
        bus = None
        if "ble" in args.transports:
            t0 = time.perf_counter()
            bus = await stack.enter_async_context(VirtualBle())
            out["virtual_ble_start_s"] = round(time.perf_counter() - t0, 3)
        for transport in args.transports:
            runs = [await one(bus, transport) for _ in range(args.devices)]
            out[transport] = summary(runs)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--transports", type=lambda s: s.split(","), default=["softap", "ble"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.devices <= 200:
        parser.error("--devices: 1 to 200")
    figures = asyncio.run(main(args))
    if args.json:
        print(json.dumps(figures))
        sys.exit(0)
    print(f"virtual BLE start: {figures.get('virtual_ble_start_s', '-')} s")
    for transport in args.transports:
        for key, value in figures[transport].items():
            print(
                f"{transport:<7} {key:<10} min {value['min']:.3f}  median {value['median']:.3f}"
                f"  max {value['max']:.3f} s"
            )
