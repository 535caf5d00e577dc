"""One factory unit as a ``device-sim run`` child process, with its cloud, for the scripts that
drive it many times over (``kill_loop.py``, ``soak.py``).

The unit has real certificates and activates zero-touch with the cloud emulator (in the calling
process); its SoftAP door listens on loopback and the simulated network runs at zero delay, so
the phone-side reference client onboards it over HTTP and the control socket resets it: no
radio, no BlueZoo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_sim.doors.native.flow import Target, provision  # noqa: E402
from device_sim.cloud.admin import CloudAdmin  # noqa: E402
from device_sim.cloud.emulator import CloudEmulator  # noqa: E402
from device_sim.cloud.tls import client_context  # noqa: E402
from device_sim.control import control_request  # noqa: E402
from device_sim.testing.daemon_process import DaemonProcess  # noqa: E402
from device_sim.errors import DeviceSimError  # noqa: E402
from device_sim.factory.registration import ensure_registration_key  # noqa: E402
from device_sim.factory.unit import UnitResult, provision_unit  # noqa: E402
from device_sim.network.scenario import load_scenario  # noqa: E402
from device_sim.pki import create_factory_ca  # noqa: E402
from device_sim.profile import load_profile  # noqa: E402
from device_sim.security.secret import Secret  # noqa: E402
from device_sim.core.store import DeviceStore  # noqa: E402

ACCOUNT, PASSWORD = "alice", "alice-password"
# States that must end on their own after a restart; session_open and credentials_received wait
# for a phone (which the kill took away) and end by their own timeouts.
BUSY = {"joining", "verifying"}
SETTLE_S = 30.0   # a restarted daemon finishes what it reconciles within this (zero delay)
POLL_S = 0.05     # the control socket has no push channel: status is polled, bounded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UnitBench:
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
        stack.push_async_callback(self.stop)  # runs before the cloud closes

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()

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
                        passphrase=Secret(self.lab.passphrase) if self.lab.passphrase else None,
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
        # The phone finishes a little after the device is online: 0.9 of an onboarding keeps
        # most kills inside the device's work; a reset is over when its answer arrives.
        share = 0.9 if name == "onboard" else 1.2
        window = share * statistics.median(self.durations[name] or [0.5])
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
