"""One factory unit as a ``device-sim run`` child process, with its cloud, for the scripts that
drive it many times over (``kill_loop.py``, ``soak.py``).

The unit has real certificates and activates zero-touch with the cloud emulator (in the calling
process); its SoftAP door listens on loopback, so the phone-side reference client onboards it
over HTTP and the control socket resets it: no radio, no BlueZoo. Its world has two networks,
Lab-A and Lab-B (both the saved-network list and re-onboarding have somewhere to go), played by
the simulated backend at zero delay (:class:`SimWorld`: a router is switched off with a fault on
its network) or by python-dbusmock's NetworkManager on a private system bus
(:class:`NmWorld`: its access point removed, its connection dropped over D-Bus).
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

from device_sim.apps.cloud.admin import CloudAdmin  # noqa: E402
from device_sim.apps.cloud.emulator import CloudEmulator  # noqa: E402
from device_sim.apps.cloud.tls import client_context  # noqa: E402
from device_sim.apps.daemon_process import DaemonProcess  # noqa: E402
from device_sim.apps.factory.registration import ensure_registration_key  # noqa: E402
from device_sim.apps.factory.unit import UnitResult, provision_unit  # noqa: E402
from device_sim.control import control_request, control_stream  # noqa: E402
from device_sim.core.store import DeviceStore  # noqa: E402
from device_sim.doors.native.flow import Target, provision  # noqa: E402
from device_sim.errors import DeviceSimError  # noqa: E402
from device_sim.network.nm.profiles import STORE_KEY  # noqa: E402
from device_sim.pki import create_factory_ca  # noqa: E402
from device_sim.profile import load_profile  # noqa: E402
from device_sim.security.secret import Secret  # noqa: E402

ACCOUNT, PASSWORD = "alice", "alice-password"
NETWORKS = {b"Lab-A": "lab-a-passphrase", b"Lab-B": "lab-b-passphrase"}
SAVED_MAX = 5  # the daemon's default [reconnect] saved_networks
WORLD = """\
name: kill-loop-world
description: Two lab networks (the unit moves between them), small delays.
default_credentials: {ssid: Lab-A, passphrase: lab-a-passphrase, expect: OK}
access_points:
  - {ssid: Lab-A, bssid: "02:d5:e1:00:0a:01", security: wpa2-psk, passphrase: lab-a-passphrase}
  - {ssid: Lab-B, bssid: "02:d5:e1:00:0b:01", security: wpa2-psk, passphrase: lab-b-passphrase}
"""
# Fast connected life: retries every 0.05-0.3 s, doors back after 0.2 s without a connection.
LIFE = ["--reconnect-initial", "0.05", "--reconnect-max", "0.3", "--reopen-after", "0.2"]
# States that must end on their own after a restart; session_open and credentials_received wait
# for a phone (which the kill took away) and end by their own timeouts.
BUSY = {"joining", "verifying"}
SETTLE_S = 30.0  # a restarted daemon finishes what it reconciles within this (zero delay)
POLL_S = 0.05  # the control socket has no push channel: status is polled, bounded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimWorld:
    """The simulated world: a router switched off is a ``link`` fault on its network (in the
    daemon's memory: a killed daemon comes back to a whole world)."""

    name = "simulated"

    def __init__(self, work: Path) -> None:
        self.path = work / "kill-loop-world.yaml"
        self.path.write_text(WORLD)
        self.env: dict[str, str] = dict(os.environ)

    async def setup(self, stack: contextlib.AsyncExitStack, bench: UnitBench) -> None:
        pass

    def daemon_args(self) -> list[str]:
        return ["--scenario", str(self.path), "--zero-delay"]

    async def switch_off(self, bench: UnitBench, ssid: bytes) -> None:
        await control_request(
            bench.state_dir,
            "fault",
            {"action": "add", "name": f"off-{ssid.hex()}", "step": "link", "ssid_hex": ssid.hex()},
            timeout=5,
        )

    async def switch_on(self, bench: UnitBench, ssid: bytes) -> None:
        with contextlib.suppress(DeviceSimError):  # gone with a killed daemon
            await control_request(
                bench.state_dir,
                "fault",
                {"action": "remove", "name": f"off-{ssid.hex()}"},
                timeout=5,
            )

    async def restore(self) -> None:
        pass

    async def check(self, bench: UnitBench, status: dict[str, Any]) -> list[str]:
        return []


class NmWorld:
    """python-dbusmock's NetworkManager on a private system bus: a router switched off is its
    access point removed and the connection dropped (as NetworkManager reports a lost AP)."""

    name = "networkmanager"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env: dict[str, str] = dict(os.environ)
        self.nm: Any = None
        self.device = ""
        self.aps: dict[bytes, str] = {}
        self.serial = 0

    async def setup(self, stack: contextlib.AsyncExitStack, bench: UnitBench) -> None:
        from device_sim.apps.virtual.harness import VirtualBle
        from device_sim.testing.nm_mock import NMMock

        # A private system bus (BlueZoo idles on it: the unit's doors are the SoftAP's).
        bus = await stack.enter_async_context(VirtualBle(adapters=1))
        self.env = bus.env()
        self.nm = await stack.enter_async_context(
            NMMock(bus.bus_address, log_path=self.work / "nm-mock.log")
        )
        self.device = await self.nm.add_wifi_device("wlan0")
        await self.restore()
        self.cloud_args = [
            "--cloud-host",
            "localhost",
            "--cloud-port",
            str(bench.cloud_port()),
            "--cloud-ca",
            str(bench.cloud.ca_file),
        ]

    def daemon_args(self) -> list[str]:
        return [
            "--backend",
            "networkmanager",
            "--interface",
            "wlan0",
            "--nm-dnsmasq-dir",
            str(self.work / "nm-shared"),
            *self.cloud_args,
        ]

    async def restore(self) -> None:
        """Both access points on the air, as the mock says (a removal a kill interrupted may
        or may not have happened)."""
        from device_sim.network.base import Security
        from device_sim.network.nm.defs import AP_IFACE, WIRELESS_IFACE

        client = self.nm.client
        paths = await client.get(self.device, WIRELESS_IFACE, "AccessPoints")
        self.aps = {bytes(await client.get(str(p), AP_IFACE, "Ssid")): str(p) for p in paths}
        for i, ssid in enumerate(NETWORKS):
            if ssid not in self.aps:
                self.serial += 1
                self.aps[ssid] = await self.nm.add_access_point(
                    self.device,
                    f"lab{i}n{self.serial}",
                    ssid,
                    bssid=f"02:d5:e1:00:0{i}:01",
                    strength=80,
                    security=Security.WPA2_PSK,
                )

    async def switch_off(self, bench: UnitBench, ssid: bytes) -> None:
        from device_sim.network.nm.defs import DeviceStateReason

        if ssid in self.aps:
            await self.nm.remove_access_point(self.device, self.aps[ssid])
            del self.aps[ssid]
        await self.nm.drop_connection(self.device, DeviceStateReason.SSID_NOT_FOUND)

    async def switch_on(self, bench: UnitBench, ssid: bytes) -> None:
        await self.restore()

    async def check(self, bench: UnitBench, status: dict[str, Any]) -> list[str]:
        """NetworkManager's profiles agree with the device: one saved profile per saved
        network, in priority order, autoconnect off; none left unsaved; the hotspot's only
        while the access point is up; nothing of ours NetworkManager does not have."""
        problems: list[str] = []
        with DeviceStore(bench.state_dir) as store:
            saved = [n.ssid.hex() for n in store.saved_networks()]
            ledger = json.loads(store.setting(STORE_KEY) or "[]")
        in_nm = set(await self.nm.connections())
        stations = [p for p in ledger if p["purpose"] == "station"]
        hotspots = [p for p in ledger if p["purpose"] == "hotspot"]
        if [p for p in ledger if p["path"] not in in_nm]:
            problems.append("the store's ledger names profiles NetworkManager does not have")
        if [p for p in stations if not p["saved"]]:
            problems.append(f"unsaved station profiles left: {len(stations)}")
        if sorted(p["ssid_hex"] for p in stations) != sorted(saved):
            problems.append(
                f"profiles for {sorted(p['ssid_hex'] for p in stations)} but saved networks {saved}"
            )
        ap_up = bool((status.get("softap") or {}).get("up"))
        if len(hotspots) != (1 if ap_up else 0):
            problems.append(
                f"{len(hotspots)} hotspot profile(s) with the AP {'up' if ap_up else 'down'}"
            )
        for p in stations:
            if p["path"] not in in_nm:
                continue  # reported above
            settings = (await self.nm.connection(p["path"]))["settings"]["connection"]
            want = len(saved) - saved.index(p["ssid_hex"]) if p["ssid_hex"] in saved else None
            if settings.get("autoconnect") is not False:
                problems.append(f"profile {p['ssid_hex']} has autoconnect on")
            if status["state"] == "online" and settings.get("autoconnect-priority") != want:
                problems.append(
                    f"profile {p['ssid_hex']} priority "
                    f"{settings.get('autoconnect-priority')}, expected {want}"
                )
        ours = [c for c in in_nm if c not in {p["path"] for p in ledger}]
        for path in ours:
            name = (await self.nm.connection(path))["settings"]["connection"].get("id", "")
            if str(name).startswith("device-sim"):
                problems.append(
                    f"a device-sim profile NetworkManager has, not in the ledger: {name}"
                )
        return problems


class UnitBench:
    def __init__(self, work: Path, seed: int, backend: str = "simulated") -> None:
        self.work = work
        self.rng = random.Random(seed)
        self.profile = load_profile()
        self.world: SimWorld | NmWorld = (
            NmWorld(work) if backend == "networkmanager" else SimWorld(work)
        )
        self.unit: UnitResult
        self.cloud: CloudEmulator
        self.admin: CloudAdmin
        self.daemon: DaemonProcess | None = None
        self.ap_port, self.lan_port = free_port(), free_port()
        self.durations: dict[str, list[float]] = {
            "onboard": [],
            "reset": [],
            "reconnect": [],
            "reonboard": [],
        }

    @property
    def state_dir(self) -> Path:
        return self.unit.state_dir

    async def setup(self, stack: contextlib.AsyncExitStack) -> None:
        factory = self.work / "factory"
        create_factory_ca(factory, "Kill Loop Factory")
        registration = ensure_registration_key(factory)
        self.unit = provision_unit(
            factory, self.work / "units", station="kill-loop", registration=registration
        )
        assert self.unit.passed, self.unit
        assert self.unit.setup_code is not None  # made in this process: the label's code
        self.setup_code = self.unit.setup_code
        self.cloud = await stack.enter_async_context(
            CloudEmulator(self.work / "cloud", factory_chain=factory / "chain.pem")
        )
        self.admin = await stack.enter_async_context(
            CloudAdmin(self.cloud.url, self.cloud.ca_file, self.cloud.admin_token)
        )
        await self.admin.import_units(self.work / "units" / "cloud-import.json")
        await self.admin.add_account(ACCOUNT, PASSWORD)
        await self.admin.set_supply_chain(self.unit.serial, ACCOUNT)
        await self.world.setup(stack, self)
        stack.push_async_callback(self.stop)  # runs before the cloud closes

    def cloud_port(self) -> int:
        return int(self.cloud.url.rsplit(":", 1)[1].split("/")[0])

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()

    async def start(self) -> None:
        argv = [
            "-v",
            "run",
            "--state-dir",
            str(self.state_dir),
            *self.world.daemon_args(),
            "--doors",
            "softap-only",
            *LIFE,
            "--softap-listen",
            f"127.0.0.1:{self.ap_port}",
            "--softap-lan",
            f"127.0.0.1:{self.lan_port}",
            "--activation",
            "zero-touch",
            "--cloud-url",
            self.cloud.url,
            "--cloud-ca",
            str(self.cloud.ca_file),
        ]
        self.daemon = DaemonProcess(argv, self.world.env, self.work / "daemon.log")
        await self.daemon.start()

    async def status(self) -> dict[str, Any]:
        return await control_request(self.state_dir, "status", {}, timeout=5)

    async def settle(self) -> dict[str, Any]:
        """Bounded wait until nothing runs, no activation is pending, and a device with saved
        networks in a whole world is back online (it retries them by itself)."""
        status: dict[str, Any] = {}
        async with asyncio.timeout(SETTLE_S):
            while True:
                status = await self.status()
                busy = status["state"] in BUSY or status["activation"]["status"] == "pending"
                retrying = status["state"] == "failed" and status["saved_networks"]
                if not busy and not retrying:
                    return status
                await asyncio.sleep(POLL_S)

    async def onboard(self, ssid: bytes = b"Lab-A") -> None:
        await provision(
            self.profile,
            Target(softap_url=f"http://127.0.0.1:{self.ap_port}"),
            setup_code=self.setup_code,
            ssid=ssid,
            passphrase=Secret(NETWORKS[ssid]),
            activation={},
            outcome_timeout=15,
        )

    async def reset(self) -> None:
        await control_request(self.state_dir, "factory-reset", {}, timeout=15)

    async def online_on(self) -> bytes:
        status = await self.status()
        return bytes.fromhex(status["ssid_hex"]) if status.get("ssid_hex") else b"Lab-A"

    async def wait_online(self, timeout: float = 15) -> None:
        """Until the unit is online: its event stream (the snapshot first, then each event)."""
        async with asyncio.timeout(timeout):
            async for item in control_stream(self.state_dir, "watch", {"last": 0}):
                if item.get("state") == "online" and item.get("phase") in (None, "online"):
                    return
                if item.get("kind") == "state" and item.get("state") == "online":
                    return

    async def reconnect(self) -> None:
        """The router restarts: off for a moment, back; the unit rejoins by itself."""
        ssid = await self.online_on()
        await self.world.switch_off(self, ssid)
        await asyncio.sleep(self.rng.uniform(0.0, 0.3))  # the outage's length, not a sync
        await self.world.switch_on(self, ssid)
        await self.wait_online()

    async def reonboard(self) -> None:
        """The router is gone: the doors reopen and the phone moves the unit to the other
        network; the old router comes back later (both stay saved)."""
        ssid = await self.online_on()
        other = next(n for n in NETWORKS if n != ssid)
        await self.world.switch_off(self, ssid)
        try:
            await self.onboard(other)
        finally:
            await self.world.switch_on(self, ssid)

    async def action(self, name: str) -> float:
        started = time.monotonic()
        await getattr(self, name)()
        return time.monotonic() - started

    def choose(self, status: dict[str, Any]) -> str:
        """What happens next: a unit that is not online is onboarded; an online one is reset,
        loses its router for a moment, or is moved to the other network."""
        if status["state"] != "online":
            return "onboard"
        return self.rng.choices(["reset", "reconnect", "reonboard"], [2, 3, 3])[0]

    async def calibrate(self, rounds: int = 3) -> None:
        """Measure each action uninterrupted: the kill delays are drawn from its duration."""
        for _ in range(rounds):
            for name in ("onboard", "reconnect", "reonboard", "reset"):
                status = await self.settle()
                if (name == "onboard") == (status["state"] == "online"):
                    continue
                self.durations[name].append(await self.action(name))

    async def kill_during(self, name: str) -> tuple[float, str]:
        assert self.daemon is not None and self.daemon.proc is not None
        # The phone finishes a little after the device is online: 0.9 of an onboarding keeps
        # most kills inside the device's work; a reset is over when its answer arrives.
        share = {"reset": 1.2, "reonboard": 1.05}.get(name, 0.9)
        window = share * statistics.median(self.durations[name] or [0.5])
        delay = self.rng.uniform(0, window)
        task = asyncio.create_task(self.action(name))
        # The script, not a test: the random delay IS the moment of the power cut.
        await asyncio.sleep(delay)
        os.kill(self.daemon.proc.pid, signal.SIGKILL)
        await self.daemon.proc.wait()
        self.daemon.proc = None
        task.cancel()
        with contextlib.suppress(
            asyncio.CancelledError, DeviceSimError, OSError, aiohttp.ClientError, TimeoutError
        ):
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

    async def after_kill(self) -> None:
        """The world is whole again (a router the action switched off is back)."""
        await self.world.restore()

    async def check(self) -> list[str]:
        """The invariants of the module docstring; each problem as one line."""
        problems: list[str] = []
        status = await self.status()
        with DeviceStore(self.state_dir) as store:
            record, cloud, pending = store.record(), store.cloud(), store.pending_reset()
            credentials = store.credentials()
            saved = store.saved_networks()
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
        problems += self.check_saved(record.state.wire_name, credentials, saved)
        problems += await self.world.check(self, status)
        bound = [
            d
            for d in await self.admin.list_devices(ACCOUNT, PASSWORD)
            if d["device_id"] == self.unit.device_id
        ]
        if cloud.status == "active" and cloud.token is not None:
            code = await self.device_self(cloud.token.reveal())
            if code != 200:
                problems.append(
                    f"active in the store (generation {cloud.generation}) but the "
                    f"cloud answers {code} to its token"
                )
        if cloud.status == "none" and bound:
            problems.append(
                f"no binding in the store (after_reset={cloud.after_reset}) but "
                f"the cloud has {bound}"
            )
        return problems

    @staticmethod
    def check_saved(state: str, credentials: Any, saved: list[Any]) -> list[str]:
        """The saved networks: at most the limit, most recent first, each a network of the
        world with its own passphrase; online on the first; none after a reset."""
        problems = []
        if len(saved) > SAVED_MAX:
            problems.append(f"{len(saved)} saved networks (at most {SAVED_MAX})")
        times = [n.last_online_at for n in saved]
        if times != sorted(times, reverse=True):
            problems.append("the saved networks are not most recent first")
        for n in saved:
            if NETWORKS.get(n.ssid) != (n.passphrase.reveal() if n.passphrase else None):
                problems.append(f"saved network {n.ssid!r} with a passphrase not its own")
        if state == "online" and (
            not saved or credentials is None or saved[0].ssid != credentials.ssid
        ):
            problems.append("online, but not on the first saved network")
        if state == "unprovisioned" and (saved or credentials is not None):
            problems.append("unprovisioned with saved networks or credentials kept")
        return problems

    async def device_self(self, token: str) -> int:
        connector = aiohttp.TCPConnector(ssl=client_context(self.cloud.ca_file), force_close=True)
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=10)
            ) as http,
            http.get(
                self.cloud.url + "/v1/devices/self", headers={"Authorization": f"Bearer {token}"}
            ) as resp,
        ):
            return resp.status
