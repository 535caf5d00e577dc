#!/usr/bin/env python3
"""SIGKILL the device daemon at random moments of onboarding, activation, release and factory
reset; after every restart check that the device's store agrees with itself and with the cloud.

    .venv/bin/python scripts/kill_loop.py                  # 1,000 kills
    .venv/bin/python scripts/kill_loop.py --kills 50 --json

One factory unit (real certificates, zero-touch activation) runs as ``device-sim run`` with the
SoftAP door on loopback and the simulated network at zero delay; the cloud emulator runs in this
process. Each round the phone-side reference client onboards the unit over HTTP (when it is not
online) or the control socket factory-resets it (when it is), and the daemon is SIGKILLed after
a random delay drawn from 0 to 1.2 times that action's measured duration, so kills land in every
part of it: the join, the checks, the activation request, the commit, the release, the local
reset. The daemon is restarted, allowed to settle (bounded), and the invariants are checked:

* the store is consistent with itself: online has credentials, an active binding has its token,
  nothing is left pending (an activation or a factory reset) once the device settled;
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
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_sim.client.flow import Target, provision  # noqa: E402
from device_sim.cloud.admin import CloudAdmin  # noqa: E402
from device_sim.cloud.emulator import CloudEmulator  # noqa: E402
from device_sim.cloud.tls import client_context  # noqa: E402
from device_sim.control import control_request  # noqa: E402
from device_sim.demo import DaemonProcess  # noqa: E402
from device_sim.errors import DeviceSimError  # noqa: E402
from device_sim.factory.registration import ensure_registration_key  # noqa: E402
from device_sim.factory.unit import UnitResult, provision_unit  # noqa: E402
from device_sim.network.scenario import load_scenario  # noqa: E402
from device_sim.pki import create_factory_ca  # noqa: E402
from device_sim.profile import load_profile  # noqa: E402
from device_sim.store import DeviceStore  # noqa: E402

ACCOUNT, PASSWORD = "alice", "alice-password"
BUSY = {"session_open", "credentials_received", "joining", "verifying"}
SETTLE_S = 30.0   # a restarted daemon finishes what it reconciles within this (zero delay)
POLL_S = 0.05     # the control socket has no push channel: status is polled, bounded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Loop:
    def __init__(self, work: Path, seed: int) -> None:
        self.work = work
        self.rng = random.Random(seed)
        self.profile = load_profile()
        self.lab = load_scenario("engineering-wifi").default_credentials
        self.unit: UnitResult
        self.cloud: CloudEmulator
        self.admin: CloudAdmin
        self.daemon: DaemonProcess | None = None
        self.ap_port, self.lan_port = free_port(), free_port()
        self.durations: dict[str, list[float]] = {"onboard": [], "reset": []}

    @property
    def state_dir(self) -> Path:
        return self.unit.state_dir

    async def setup(self, stack: contextlib.AsyncExitStack) -> None:
        factory = self.work / "factory"
        create_factory_ca(factory, "Kill Loop Factory")
        registration = ensure_registration_key(factory)
        self.unit = provision_unit(factory, self.work / "units", station="kill-loop",
                                   registration=registration)
        assert self.unit.passed, self.unit
        self.cloud = await stack.enter_async_context(
            CloudEmulator(self.work / "cloud", factory_chain=factory / "chain.pem"))
        self.admin = await stack.enter_async_context(
            CloudAdmin(self.cloud.url, self.cloud.ca_file, self.cloud.admin_token))
        await self.admin.import_units(self.work / "units" / "cloud-import.json")
        await self.admin.add_account(ACCOUNT, PASSWORD)
        await self.admin.set_supply_chain(self.unit.serial, ACCOUNT)

    async def start(self) -> None:
        argv = ["-v", "run", "--state-dir", str(self.state_dir), "--scenario", "engineering-wifi",
                "--zero-delay", "--doors", "softap-only",
                "--softap-listen", f"127.0.0.1:{self.ap_port}",
                "--softap-lan", f"127.0.0.1:{self.lan_port}",
                "--activation", "zero-touch", "--cloud-url", self.cloud.url,
                "--cloud-ca", str(self.cloud.ca_file)]
        self.daemon = DaemonProcess(argv, dict(os.environ), self.work / "daemon.log")
        await self.daemon.start()

    async def status(self) -> dict[str, Any]:
        return await control_request(self.state_dir, "status", {}, timeout=5)

    async def settle(self) -> dict[str, Any]:
        """Bounded wait until nothing runs and no activation is pending."""
        status: dict[str, Any] = {}
        async with asyncio.timeout(SETTLE_S):
            while True:
                status = await self.status()
                if status["state"] not in BUSY and status["activation"]["status"] != "pending":
                    return status
                await asyncio.sleep(POLL_S)

    async def onboard(self) -> None:
        await provision(self.profile, Target(softap_url=f"http://127.0.0.1:{self.ap_port}"),
                        setup_code=self.unit.setup_code, ssid=self.lab.ssid,
                        passphrase=self.lab.passphrase and _secret(self.lab.passphrase),
                        activation={}, outcome_timeout=15)

    async def reset(self) -> None:
        await control_request(self.state_dir, "factory-reset", {}, timeout=15)

    async def action(self, name: str) -> float:
        started = time.monotonic()
        await (self.onboard() if name == "onboard" else self.reset())
        return time.monotonic() - started

    async def calibrate(self, rounds: int = 3) -> None:
        """Measure each action uninterrupted: the kill delays are drawn from its duration."""
        for _ in range(rounds):
            for name in ("onboard", "reset"):
                status = await self.settle()
                if (name == "onboard") == (status["state"] == "online"):
                    continue
                self.durations[name].append(await self.action(name))

    async def kill_during(self, name: str) -> tuple[float, str]:
        assert self.daemon is not None and self.daemon.proc is not None
        window = 1.2 * statistics.median(self.durations[name] or [0.5])
        delay = self.rng.uniform(0, window)
        task = asyncio.create_task(self.action(name))
        # The script, not a test: the random delay IS the moment of the power cut.
        await asyncio.sleep(delay)
        os.kill(self.daemon.proc.pid, signal.SIGKILL)
        await self.daemon.proc.wait()
        self.daemon.proc = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, DeviceSimError, OSError,
                                 aiohttp.ClientError, TimeoutError):
            await task
        return delay, self.last_phase()

    def last_phase(self) -> str:
        """Where the kill landed: the last event's phase, and what the store had in flight."""
        path = self.state_dir / "onboarding.jsonl"
        try:
            lines = path.read_bytes().splitlines()
            phase = str(json.loads(lines[-1])["phase"]) if lines else "none"
        except (OSError, ValueError, KeyError, IndexError):
            phase = "unknown"
        with DeviceStore(self.state_dir) as store:
            if store.pending_reset() is not None:
                phase += " + reset intent recorded"
            if store.cloud().status == "pending":
                phase += " + activation asked"
        return phase

    async def check(self) -> list[str]:
        """The invariants of the module docstring; each problem as one line."""
        problems: list[str] = []
        with DeviceStore(self.state_dir) as store:
            record, cloud, pending = store.record(), store.cloud(), store.pending_reset()
            credentials = store.credentials()
        if pending is not None:
            problems.append(f"a factory reset is still pending ({pending})")
        if record.state.wire_name == "online" and credentials is None:
            problems.append("online without credentials")
        if cloud.status == "active" and (cloud.token is None or cloud.account is None):
            problems.append("active binding without a token or account")
        if cloud.status == "none" and cloud.token is not None:
            problems.append("no binding but a token kept")
        if cloud.status == "pending":
            problems.append("activation still pending after settling")
        bound = [d for d in await self.admin.list_devices(ACCOUNT, PASSWORD)
                 if d["device_id"] == self.unit.device_id]
        if cloud.status == "active" and cloud.token is not None:
            code = await self.device_self(cloud.token.reveal())
            if code != 200:
                problems.append(f"active in the store (generation {cloud.generation}) but the "
                                f"cloud answers {code} to its token")
        if cloud.status == "none" and bound:
            problems.append(f"no binding in the store (after_reset={cloud.after_reset}) but "
                            f"the cloud has {bound}")
        return problems

    async def device_self(self, token: str) -> int:
        connector = aiohttp.TCPConnector(ssl=client_context(self.cloud.ca_file), force_close=True)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=10)) as http, \
                http.get(self.cloud.url + "/v1/devices/self",
                         headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status


def _secret(text: str) -> Any:
    from device_sim.security.secret import Secret
    return Secret(text)


async def run(kills: int, seed: int, work: Path, budget_s: float) -> dict[str, Any]:
    loop = Loop(work, seed)
    landed: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    problems: list[dict[str, Any]] = []
    unsettled = 0
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        await loop.setup(stack)
        await loop.start()
        stack.push_async_callback(lambda: loop.daemon.stop() if loop.daemon else _none())
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


async def _none() -> None:
    return None


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
