#!/usr/bin/env python3
"""Benchmark: K onboardings with the zero-delay scenario, over BLE or over the SoftAP.

BLE (default): one device daemon (a real subprocess, bless on its own adapter) on BlueZoo virtual
adapters is onboarded K times in a row (re-onboarding from online each time); every onboarding
comes from a fresh phone adapter, since BlueZoo links a phone to a peripheral's GATT objects only
once. SoftAP (``--transport softap``): K fresh devices, each a daemon with only its SoftAP door
on loopback, each onboarded once over HTTP (an online device keeps its radio, so the AP does not
come back for a re-onboarding). Prints p50/p90 of the time from connect to online (for the
SoftAP this includes the access point going down for the join and the outcome being read on the
home-network listener), round trips per onboarding, and the daemons' peak RSS (VmHWM).

Another personality over BLE (``--personality improv``, any name of the door registry): one
daemon presenting only it, onboarded K times through its phone side from the registry, each from
a fresh phone adapter as in the BLE run (a BlueZoo phone that already knows the device sees no
new advertisement for it), with the control commands its bench needs sent first (Improv: the
button press that authorizes it).

    .venv/bin/python scripts/bench_onboarding.py --count 20 [--transport softap] \
        [--personality improv] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from device_sim.apps.daemon_process import DaemonProcess, daemon_argv
from device_sim.apps.virtual.harness import VirtualBle, add_adapter, use_bus
from device_sim.bumble_stack import serve_controllers
from device_sim.client.ble import close_radios
from device_sim.client.target import ProvisionRequest, Target
from device_sim.control import control_request
from device_sim.core.identity import create_identity
from device_sim.core.store import DeviceStore
from device_sim.doors import registry
from device_sim.doors.native.flow import Provisioner
from device_sim.network.radius import eap_settings
from device_sim.network.scenario import load_scenario
from device_sim.profile import load_profile
from device_sim.security.secret import Secret


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def sign_in(creds: Any) -> Any:
    """An enterprise scenario's sign-in, with the world's certificates (None: a passphrase)."""
    return eap_settings(creds.eap) if creds.eap is not None else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def onboard_once(
    profile: Any, target: Target, code: Secret, creds: Any, i: int
) -> dict[str, Any]:
    """One onboarding; its result with ``connect_to_online`` in ms (whatever its outcome)."""
    async with Provisioner(profile, target, code, bundle=True) as prov:  # 2 round trips (rev 2)
        out = await prov.attempt(
            creds.ssid,
            Secret(creds.passphrase) if creds.passphrase else None,
            hidden=creds.hidden,
            eap=sign_in(creds),
            outcome_timeout=60,
        )
        result = prov.result(out)
    t = result["timings_ms"]
    return {**result, "connect_to_online": t["total"] - t["discover"]}


async def bench_ble(
    count: int, scenario_name: str, personality: str, zero_delay: bool, stack: str = "bluez"
) -> dict[str, Any]:
    """K onboardings of one daemon presenting ``personality``, through that personality's
    phone side from the door registry (and the control commands its bench needs first).
    ``stack`` bluez: BlueZoo's adapters on a private bus, a new phone adapter each time;
    bumble: the daemon on a virtual controller served over TCP, the phone on the same link."""
    entry = registry.get(personality, "--personality")
    profile = load_profile()
    creds = load_scenario(scenario_name).default_credentials
    code = Secret("8642-9753")
    connect_to_online: list[float] = []
    round_trips: list[int] = []
    outcomes: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="device-sim-bench-") as tmp:
        state = Path(tmp) / "device"
        with DeviceStore(state) as store:
            identity, _ = create_identity(store, code)
            local_name = profile.advertising.local_name_pattern.format(short_id=identity.short_id)
            labels = registry.make_labels(store, profile, local_name)  # e.g. ESP's PoP
        async with contextlib.AsyncExitStack() as radios:
            if stack == "bumble":
                (moniker,) = await radios.enter_async_context(serve_controllers("bench", 1))
                radios.push_async_callback(close_radios)
                env, adapter = dict(os.environ), "hci0"
                flags = ["--ble-stack", "bumble", "--bumble-transport", moniker]
            else:
                vb = await radios.enter_async_context(VirtualBle(adapters=1))
                env, adapter, flags = vb.env(), vb.adapters[0], []
            argv = daemon_argv(
                state,
                adapter=adapter,
                scenario=scenario_name,
                zero_delay=zero_delay,
                extra=["--personality", personality, *flags],
            )
            daemon = DaemonProcess(["-v", *argv], env, Path(tmp) / "daemon.log")
            ready = await daemon.start()
            assert daemon.proc is not None
            pid = daemon.proc.pid
            try:
                with contextlib.ExitStack() as bus:
                    if stack != "bumble":
                        bus.enter_context(use_bus(vb))
                    for i in range(count):
                        if stack == "bumble":
                            target = Target(name=ready["address"], ble_stack="bumble",
                                            bumble_transport="local:bench")  # fmt: skip
                        else:
                            phone = await add_adapter(
                                vb.bus_address, 20 + i, f"00:11:22:33:66:{20 + i:02X}"
                            )
                            target = Target(adapter=phone, name=ready["local_name"])
                        for command in entry.bench_commands:
                            await control_request(state, command)
                        request = ProvisionRequest(
                            creds.ssid,
                            Secret(creds.passphrase) if creds.passphrase else None,
                            hidden=creds.hidden,
                            eap=sign_in(creds),
                            setup_code=code,
                            outcome_timeout=60,
                            extra=labels,
                        )
                        result = await entry.phone(profile, target, request, None)
                        outcomes[str(result["code_name"])] += 1
                        if result["state"] == "online":
                            t = result["timings_ms"]
                            connect_to_online.append(t["total"] - t["discover"])
                        round_trips.append(result["gatt_round_trips"])
                rss = peak_rss_kib(pid)
            except Exception:
                sys.stderr.write((Path(tmp) / "daemon.log").read_text()[-3000:])
                raise
            finally:
                await daemon.stop()
    label = "ble" if personality == "native" else f"ble-{personality}"
    label += "-bumble" if stack == "bumble" else ""
    return _report(
        count, scenario_name, label, connect_to_online, round_trips, rss, outcomes, zero_delay
    )


async def bench_softap(count: int, scenario_name: str, zero_delay: bool) -> dict[str, Any]:
    profile = load_profile()
    creds = load_scenario(scenario_name).default_credentials
    code = Secret("8642-9753")
    connect_to_online: list[float] = []
    round_trips: list[int] = []
    outcomes: Counter[str] = Counter()
    rss = 0
    with tempfile.TemporaryDirectory(prefix="device-sim-bench-") as tmp:
        for i in range(count):
            state = Path(tmp) / f"device{i}"
            with DeviceStore(state) as store:
                create_identity(store, code)
            daemon = DaemonProcess(
                [
                    "-v",
                    *daemon_argv(
                        state,
                        adapter="hci0",
                        doors="softap-only",
                        scenario=scenario_name,
                        zero_delay=zero_delay,
                    ),
                ],
                dict(os.environ),
                Path(tmp) / f"daemon{i}.log",
            )
            ready = await daemon.start()
            assert daemon.proc is not None
            try:
                target = Target(softap_url=ready["doors"]["softap"]["ap_url"])
                result = await onboard_once(profile, target, code, creds, i)
                outcomes[str(result["code_name"])] += 1
                if result["state"] == "online":
                    connect_to_online.append(result["connect_to_online"])
                round_trips.append(result["gatt_round_trips"])
                rss = max(rss, peak_rss_kib(daemon.proc.pid))
            except Exception:
                sys.stderr.write((Path(tmp) / f"daemon{i}.log").read_text()[-3000:])
                raise
            finally:
                await daemon.stop()
    return _report(
        count, scenario_name, "softap", connect_to_online, round_trips, rss, outcomes, zero_delay
    )


def _report(
    count: int,
    scenario: str,
    transport: str,
    connect_to_online: list[float],
    round_trips: list[int],
    rss_kib: int,
    outcomes: Counter[str],
    zero_delay: bool,
) -> dict[str, Any]:
    times = connect_to_online
    return {
        "count": count,
        "scenario": scenario,
        "transport": transport,
        "delays": "none (--zero-delay)" if zero_delay else "the scenario's",
        "outcomes": dict(outcomes.most_common()),
        # of the onboardings that ended online; None when none did (e.g. captive-portal)
        "connect_to_online_ms": {
            "p50": percentile(times, 0.5) if times else None,
            "p90": percentile(times, 0.9) if times else None,
            "mean": round(statistics.fmean(times), 1) if times else None,
            "max": max(times) if times else None,
        },
        "round_trips_per_onboarding": {"min": min(round_trips), "max": max(round_trips)},
        "daemon_peak_rss_mib": round(rss_kib / 1024, 1),
    }


def _outcomes(report: dict[str, Any]) -> str:
    return ", ".join(f"{name} x{n}" for name, n in report["outcomes"].items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--scenario", default="zero-delay")
    parser.add_argument("--transport", default="ble", choices=["ble", "softap"])
    parser.add_argument(
        "--personality",
        default="native",
        choices=[*registry.names(), "all"],
        help="over BLE: the personality onboarded (default native); all: each in turn, one table",
    )
    parser.add_argument(
        "--zero-delay",
        action="store_true",
        help="no simulated delays (default: the scenario's own; the default "
        "scenario, zero-delay, has none)",
    )
    parser.add_argument(
        "--ble-stack",
        default="bluez",
        choices=["bluez", "bumble", "both"],
        help="over BLE: BlueZoo (bluez), bumble's virtual controllers, or both in one run, "
        "one table",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 200:
        parser.error("--count must be 1..200")
    if args.transport == "softap":
        report = asyncio.run(bench_softap(args.count, args.scenario, args.zero_delay))
    elif args.personality == "all" or args.ble_stack == "both":
        names = registry.names() if args.personality == "all" else [args.personality]
        stacks = ["bluez", "bumble"] if args.ble_stack == "both" else [args.ble_stack]
        reports = [
            asyncio.run(bench_ble(args.count, args.scenario, name, args.zero_delay, stack))
            for name in names
            for stack in stacks
        ]
        if args.json:
            print(json.dumps(reports, indent=2))
            return 0
        print(
            f"{args.count} onboardings each over BLE ({args.scenario}, delays: "
            f"{reports[0]['delays']}), connect -> online:"
        )
        print(
            f"  {'personality':<12} {'p50 ms':>7} {'p90 ms':>7} {'mean ms':>8} "
            f"{'round trips':>12} {'peak RSS MiB':>13}  outcomes"
        )
        for r in reports:
            c, t = r["connect_to_online_ms"], r["round_trips_per_onboarding"]
            print(
                f"  {r['transport']:<12} {c['p50']!s:>7} {c['p90']!s:>7} {c['mean']!s:>8} "
                f"{t['min']:>5}-{t['max']:<6} {r['daemon_peak_rss_mib']:>13}  "
                f"{_outcomes(r)}"
            )
        return 0
    else:
        report = asyncio.run(
            bench_ble(args.count, args.scenario, args.personality, args.zero_delay, args.ble_stack)
        )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        c = report["connect_to_online_ms"]
        print(
            f"{report['count']} onboardings over {report['transport']} ({report['scenario']}, "
            f"delays: {report['delays']}):"
        )
        print(f"  outcomes: {_outcomes(report)}")
        print(
            f"  connect -> online (online runs): p50 {c['p50']} ms, p90 {c['p90']} ms, "
            f"mean {c['mean']} ms, max {c['max']} ms"
        )
        r = report["round_trips_per_onboarding"]
        print(f"  round trips per onboarding: {r['min']}-{r['max']}")
        print(f"  device daemon peak RSS: {report['daemon_peak_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
