#!/usr/bin/env python3
"""Flood: hostile connections against a running daemon while phones onboard it.

    .venv/bin/python scripts/bench_flood.py                  # 1,100 to each listener, 60 s
    .venv/bin/python scripts/bench_flood.py --connections 300 --hold 20 --json

One daemon (a real subprocess: bless on a BlueZoo adapter, the SoftAP listeners and the watch
listener on loopback, the simulated network) runs under the descriptor limit systemd gives a
service without ``LimitNOFILE=`` (``--fd-limit``, 1,024 soft and hard, the worst case). For
``--hold`` seconds, ``--connections`` connections to the SoftAP listener and as many to the
watch listener come from ``--addresses`` loopback addresses, each sending part of its headers
(``GET /events HTTP/1.1``, ``Host``, an unfinished header) and reopened as soon as the device
closes it. Meanwhile: ``ctl status`` every second (its latency), a phone onboards over the
SoftAP, the device is factory-reset, and a phone onboards over BLE. The daemon's descriptors
are sampled from /proc and its log's growth is measured over the hold.

The run passes when both onboardings end online, every ``ctl status`` answers within 1 s, the
daemon's descriptors stay below its limit and the log grows by less than 100 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from device_sim.apps.daemon_process import DaemonProcess, daemon_argv
from device_sim.apps.virtual.harness import VirtualBle, add_adapter, use_bus
from device_sim.client.target import ProvisionRequest, Target
from device_sim.control import control_request
from device_sim.core.identity import create_identity
from device_sim.core.store import DeviceStore
from device_sim.doors import registry
from device_sim.lifecycle import raise_fd_limit
from device_sim.network.scenario import load_scenario
from device_sim.profile import load_profile
from device_sim.security.secret import Secret
from device_sim.testing.flood import Flood

SCENARIO = "engineering-wifi"
CODE = Secret("8642-9753")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def onboard(profile: Any, target: Target, creds: Any) -> dict[str, Any]:
    entry = registry.get(registry.default(), "--personality")
    request = ProvisionRequest(
        creds.ssid,
        Secret(creds.passphrase or ""),
        hidden=creds.hidden,
        setup_code=CODE,
        outcome_timeout=60,
    )
    started = time.monotonic()
    result = await entry.phone(profile, target, request, None)
    return {
        "state": result["state"],
        "code_name": result["code_name"],
        "seconds": round(time.monotonic() - started, 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()  # this process holds the hostile ends
    profile = load_profile()
    creds = load_scenario(SCENARIO).default_credentials
    with tempfile.TemporaryDirectory(prefix="device-sim-flood-") as tmp:
        state, log = Path(tmp) / "device", Path(tmp) / "daemon.log"
        with DeviceStore(state) as store:
            create_identity(store, CODE)
        async with VirtualBle(adapters=1) as vb:
            argv = daemon_argv(
                state,
                adapter=vb.adapters[0],
                scenario=SCENARIO,
                zero_delay=True,
                doors="both",
                extra=["--watch", "--watch-listen", "127.0.0.1:0"],
            )
            daemon = DaemonProcess(["-v", *argv], vb.env(), log, fd_limit=args.fd_limit)
            ready = await daemon.start()
            pid = daemon.pid
            assert pid is not None
            baseline_fds = fds(pid)
            ap_url = ready["doors"]["softap"]["ap_url"]
            latencies: list[float] = []
            peak = [baseline_fds]
            stop = asyncio.Event()

            async def watch_control() -> None:
                while not stop.is_set():
                    began = time.monotonic()
                    await control_request(state, "status", {}, timeout=10)
                    latencies.append(time.monotonic() - began)
                    peak[0] = max(peak[0], fds(pid))
                    try:
                        await asyncio.wait_for(stop.wait(), 1.0)  # one a second, until the end
                    except TimeoutError:
                        pass

            try:
                with use_bus(vb):
                    async with (
                        Flood(
                            ap_url,
                            connections=args.connections,
                            addresses=args.addresses,
                            max_reopen=10**6,
                        ) as ap_flood,
                        Flood(
                            ready["watch"],
                            connections=args.connections,
                            addresses=args.addresses,
                            max_reopen=10**6,
                        ) as watch_flood,
                    ):
                        await ap_flood.all_tried.wait()
                        await watch_flood.all_tried.wait()
                        log_before = log.stat().st_size
                        began = time.monotonic()
                        control = asyncio.create_task(watch_control())
                        softap = await onboard(profile, Target(softap_url=ap_url), creds)
                        await control_request(state, "factory-reset", {}, timeout=30)
                        phone = await add_adapter(vb.bus_address, 30, "00:11:22:33:77:30")
                        ble = await onboard(
                            profile, Target(adapter=phone, name=ready["local_name"]), creds
                        )
                        remaining = args.hold - (time.monotonic() - began)
                        if remaining > 0:
                            try:
                                await asyncio.wait_for(stop.wait(), remaining)
                            except TimeoutError:
                                pass
                        stop.set()
                        await control
                        held = time.monotonic() - began
                        log_growth = log.stat().st_size - log_before
                        flood = {
                            name: {
                                "opened": f.opened,
                                "closed_by_device": f.closed_by_device,
                                "refused_or_reset": f.failed,
                                "peak_open": f.peak_open,
                            }
                            for name, f in (("softap", ap_flood), ("watch", watch_flood))
                        }
            except Exception:
                sys.stderr.write(log.read_text(errors="replace")[-3000:])
                raise
            finally:
                await daemon.stop()
    ok = (
        softap["state"] == ble["state"] == "online"
        and max(latencies) < 1.0
        and peak[0] < args.fd_limit
        and log_growth < 100_000
    )
    return {
        "ok": ok,
        "connections_per_listener": args.connections,
        "addresses": args.addresses,
        "held_s": round(held, 1),
        "fd_limit": args.fd_limit,
        "daemon_fds": {"baseline": baseline_fds, "peak": peak[0]},
        "onboarding": {"softap": softap, "ble": ble},
        "ctl_status_s": {
            "count": len(latencies),
            "p50": round(statistics.median(latencies), 3),
            "max": round(max(latencies), 3),
        },
        "log_growth_bytes": log_growth,
        "flood": flood,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--connections",
        type=int,
        default=1100,
        help="hostile connections to each listener (default 1100)",
    )
    parser.add_argument(
        "--addresses", type=int, default=50, help="loopback addresses they come from (default 50)"
    )
    parser.add_argument(
        "--hold", type=float, default=60.0, help="seconds the flood lasts (default 60)"
    )
    parser.add_argument(
        "--fd-limit",
        type=int,
        default=1024,
        help="the daemon's descriptor limit (default 1024: systemd's default)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{'PASS' if report['ok'] else 'FAIL'}: {args.connections} connections to each "
            f"listener from {args.addresses} addresses for {report['held_s']} s"
        )
        for key in ("daemon_fds", "onboarding", "ctl_status_s", "log_growth_bytes", "flood"):
            print(f"  {key}: {json.dumps(report[key])}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
