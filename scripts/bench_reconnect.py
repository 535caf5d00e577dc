#!/usr/bin/env python3
"""The connected life, measured: how fast a device is back after its router, what retrying
costs while the router is gone, and a NetworkManager drop seen and rejoined.

    .venv/bin/python scripts/bench_reconnect.py                  # 40 runs, default timers
    .venv/bin/python scripts/bench_reconnect.py --runs 100 --scale 0.05 --json

Each run is one device stack in this process (the daemon's wiring: store, engine, connected
life; the simulated world at zero delay, so only the timers and the device's own work count),
onboarded, then its router switched off for a random 5-60 s of world time (a ``link`` fault on
its network) and back. Timers run at ``--scale`` (0.1: ten times faster; the figures are given
in world seconds, as the device's own clock would count them).

* back online after the router returns: p50, p90, max (the backoff's cap, ``--reconnect-max``,
  bounds the wait; the join and checks come on top);
* while the router is gone: retry rounds per minute, store commits and events per round (what a
  gone router costs the device's flash and its watchers);
* NetworkManager (python-dbusmock on a private bus): a dropped connection seen over D-Bus and
  rejoined through the backend, p50/p90 of drop to online (real time);
* this process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_sim.apps.story import StoryLog  # noqa: E402
from device_sim.codes import State  # noqa: E402
from device_sim.core.engine import Timeouts  # noqa: E402
from device_sim.core.events import DiagnosticEvent  # noqa: E402
from device_sim.core.life import LifeTimers  # noqa: E402
from device_sim.core.options import ReconnectOptions  # noqa: E402
from device_sim.network.faults import parse_fault  # noqa: E402
from device_sim.network.simulated import SimulatedBackend  # noqa: E402
from device_sim.security.secret import Secret  # noqa: E402
from device_sim.testing.stack import build_stack  # noqa: E402

LAB = b"DeviceSim-Lab", "lab-bench-passphrase"


def q(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1) + 0.5))], 2)


class Counting:
    """Events of one device, as a story log (waits without polling), and the store's commits."""

    def __init__(self) -> None:
        self.log = StoryLog()
        self.seq = 0

    def __call__(self, event: DiagnosticEvent) -> None:
        self.seq += 1
        self.log.add({"kind": "event", **event.to_json(), "seq": self.seq})


async def one_run(
    work: Path, timers: LifeTimers, scale: float, rng: random.Random
) -> dict[str, Any]:
    seen = Counting()
    async with contextlib.AsyncExitStack() as stack:
        device = await build_stack(
            stack,
            work,
            scenario="engineering-wifi",
            zero_delay=True,
            life=timers,
            timeouts=Timeouts(session_open=30, credentials_received=30, joining=45, verifying=30),
            seen=[],
        )  # the stack's own list is unused: our counter subscribes below
        device.events.subscribe(seen)
        engine, backend = device.engine, device.backend
        assert isinstance(backend, SimulatedBackend)
        engine.session_opened()
        engine.set_credentials(LAB[0], Secret(LAB[1]), False)
        engine.connect()
        assert (await engine.wait_settled(30)).state is State.ONLINE
        engine.session_closed()
        outage_s = rng.uniform(5, 60)
        commits_before = device.store.record().seq
        backend.add_fault(parse_fault({"name": "off", "step": "link", "ssid": LAB[0].decode()}))
        lost = await seen.log.wait_for(lambda e: e["phase"] == "link_lost")
        await asyncio.sleep(outage_s * scale)  # the router is off this long (world time)
        back_at = time.monotonic()
        backend.remove_fault("off")
        restored_seq = seen.seq
        await seen.log.wait_for(lambda e: e["phase"] == "online", after=restored_seq)
        back_s = (time.monotonic() - back_at) / scale
        rounds = [
            e
            for e in seen.log.events
            if e["seq"] > lost["seq"]
            and e["phase"] == "joining"
            and "looking for" in str(e.get("detail"))
        ]
        events = [e for e in seen.log.events if lost["seq"] < e["seq"] <= restored_seq]
        commits = device.store.record().seq - commits_before
        return {
            "outage_s": round(outage_s, 1),
            "back_s": round(back_s, 2),
            "rounds": len(rounds),
            "events_offline": len(events),
            "commits": commits,
        }


async def nm_runs(runs: int, work: Path) -> dict[str, Any]:
    """A dropped NetworkManager connection, seen and rejoined (real time)."""
    from device_sim.apps.virtual.harness import VirtualBle
    from device_sim.network.base import Security
    from device_sim.network.nm.backend import NetworkManagerBackend
    from device_sim.network.nm.defs import DeviceStateReason
    from device_sim.network.simulated import CertificateAuthority, server_ssl_context
    from device_sim.testing.nm_mock import NMMock

    ca = CertificateAuthority("bench cloud CA")
    (work / "ca.pem").write_bytes(ca.cert_pem)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(
        serve, "127.0.0.1", 0, ssl=server_ssl_context(*ca.issue("localhost"))
    )
    port = int(server.sockets[0].getsockname()[1])
    times: list[float] = []
    try:
        async with VirtualBle(adapters=1) as bus, NMMock(bus.bus_address) as nm:
            device = await nm.add_wifi_device("wlan0")
            await nm.add_access_point(
                device, "lab", LAB[0], strength=80, security=Security.WPA2_PSK
            )
            seen: list[DiagnosticEvent] = []
            changed = asyncio.Event()

            async def until(phase: str, after: int) -> None:
                while not any(e.phase == phase for e in seen[after:]):
                    changed.clear()
                    await changed.wait()

            def backend(store: Any) -> NetworkManagerBackend:
                return NetworkManagerBackend(
                    store,
                    bus_address=bus.bus_address,
                    cloud_host="localhost",
                    cloud_port=port,
                    cloud_ca=work / "ca.pem",
                    dnsmasq_shared_dir=work / "nm-shared",
                )

            async with contextlib.AsyncExitStack() as stack:
                dev = await build_stack(
                    stack,
                    work / "nm-device",
                    backend=backend,
                    life=LifeTimers(initial_s=0.05, max_s=0.5, reopen_after_s=30),
                    seen=seen,
                )
                dev.events.subscribe(lambda e: changed.set())
                engine = dev.engine
                engine.session_opened()
                engine.set_credentials(LAB[0], Secret(LAB[1]), False)
                engine.connect()
                assert (await engine.wait_settled(30)).state is State.ONLINE
                engine.session_closed()
                for _ in range(runs):
                    start = len(seen)
                    t0 = time.monotonic()
                    await nm.drop_connection(device, DeviceStateReason.SSID_NOT_FOUND)
                    async with asyncio.timeout(30):
                        await until("online", start)
                    times.append(time.monotonic() - t0)
    finally:
        server.close()
        await server.wait_closed()
    return {
        "runs": len(times),
        "drop_to_online_s": {
            "p50": q(times, 0.5),
            "p90": q(times, 0.9),
            "max": round(max(times), 3),
        },
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("device_sim").setLevel(logging.ERROR)  # the losses are the point here
    options = ReconnectOptions(max_s=args.reconnect_max)
    timers = LifeTimers.from_options(options, args.scale)
    rng = random.Random(args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-reconnect-") as tmp:
        for i in range(args.runs):
            results.append(await one_run(Path(tmp) / f"d{i}", timers, args.scale, rng))
        nm = await nm_runs(args.nm_runs, Path(tmp)) if args.nm_runs else None
    back = [r["back_s"] for r in results]
    minutes = sum(r["outage_s"] for r in results) / 60
    rounds = sum(r["rounds"] for r in results)
    return {
        "runs": len(results),
        "scale": args.scale,
        "reconnect_max_s": args.reconnect_max,
        "back_online_after_router_s": {
            "p50": q(back, 0.5),
            "p90": q(back, 0.9),
            "max": round(max(back), 2),
            "mean": round(statistics.fmean(back), 2),
        },
        "rounds_per_offline_minute": round(rounds / minutes, 2) if minutes else None,
        "store_commits_per_round": round(sum(r["commits"] for r in results) / rounds, 2)
        if rounds
        else None,
        "events_per_round": round(sum(r["events_offline"] for r in results) / rounds, 2)
        if rounds
        else None,
        "networkmanager": nm,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument(
        "--scale",
        type=float,
        default=0.1,
        help="timers and outages this many times as long (0.1: ten times faster)",
    )
    parser.add_argument(
        "--reconnect-max",
        type=float,
        default=30.0,
        help="the backoff's cap in world seconds (the daemon's default 30)",
    )
    parser.add_argument(
        "--nm-runs", type=int, default=20, help="NetworkManager drops to measure (0: none)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        b = report["back_online_after_router_s"]
        print(
            f"{report['runs']} router outages of 5-60 s (world time, timers x{args.scale:g}, "
            f"backoff cap {args.reconnect_max:g} s)"
        )
        print(
            f"  back online after the router returns: p50 {b['p50']} s, p90 {b['p90']} s, "
            f"max {b['max']} s"
        )
        print(
            f"  while it is gone: {report['rounds_per_offline_minute']} retry rounds a "
            f"minute, {report['store_commits_per_round']} store commits and "
            f"{report['events_per_round']} events a round"
        )
        if report["networkmanager"]:
            nm = report["networkmanager"]["drop_to_online_s"]
            print(
                f"  NetworkManager drop to online (dbusmock, real time): p50 {nm['p50']} s, "
                f"p90 {nm['p90']} s, max {nm['max']} s"
            )
        print(f"  peak RSS {report['peak_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
