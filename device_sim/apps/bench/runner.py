"""One run of the QA bench: a fresh device and a phone, each a real process.

A run is one home: a new device identity in its own state directory, the device daemon
(``device-sim run``, the scenario's world, the personality, a seed) and the reference client
playing a phone (``device-sim client provision --phone ...``). Over BLE both sit on a BlueZoo
bus of the bench (each run gets fresh adapters; a bus serves a bounded number of runs, then a
new one starts); the device keeps its SoftAP fallback, so a phone without Bluetooth waits for it.
Over the SoftAP the device runs only that door. Each run's listeners get their own loopback
address (127.81.x.y), so two devices never share a port space. Secrets reach the phone through
its environment, never its command line.

The result is read from both sides: the phone's JSON (outcome, tries, drops) and the device's
event log (``onboarding.jsonl``: per-phase durations, the timeline).

A home with a story (a router that reboots or is replaced after the device is online) lives on
after its first onboarding (:func:`device_sim.apps.story.play`): the device daemon plays the world's
timeline, and when the story's phone comes back (the doors reopened) the same person, with the
same habits, sets the device up again in a second phone process. The run then also says how
long that re-onboarding took (from the doors reopening to online) or how long the device took
to be back by itself, and whether the story went as the scenario says.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...control import follow
from ...core.identity import create_identity
from ...core.store import Credentials, DeviceStore
from ...doors import registry
from ...errors import ConfigError, DeviceSimError
from ...network.scenario import Scenario, load_scenario
from ...profile import Profile
from ...security.secret import Secret
from ..daemon_process import DaemonProcess, spawn
from ..story import StoryLog, has_story, play
from ..virtual.harness import VirtualBle, add_adapter
from .phone import PhoneBehaviour

__all__ = ["Bench", "RunSpec", "phase_durations"]

# BlueZoo keeps every adapter it added, and a private bus has per-connection limits (match
# rules, pending replies): a bus serves RUNS_PER_BUS runs, RUNS_AT_ONCE at a time, then retires.
RUNS_PER_BUS = 24
RUNS_AT_ONCE = 4
BUSES = 6  # up to BUSES x RUNS_AT_ONCE BLE runs at once
JOIN_PHASES = ("scanning", "associating", "authenticating", "dhcp")
CHECK_PHASES = ("dns", "captive_portal", "internet", "clock", "tls", "activation")
PHASES = JOIN_PHASES + CHECK_PHASES


@dataclass(frozen=True)
class RunSpec:
    """One cell of a matrix (one repeat), or one home of a population."""

    id: str
    scenario: str
    transport: str  # ble | softap
    personality: str
    phone: PhoneBehaviour = field(default_factory=PhoneBehaviour)
    seed: int = 0
    repeat: int = 0
    home: str | None = None  # the population's name for this kind of home

    @property
    def cell(self) -> str:
        return f"{self.scenario} / {self.transport} / {self.personality}"


@dataclass
class _Bus:
    vble: VirtualBle
    runs: int = 0
    active: int = 0


@dataclass
class Bench:
    """Runs :class:`RunSpec` s, several at once; an async context manager (it owns the buses)."""

    profile: Profile
    workdir: Path
    time_scale: float = 1.0
    softap_window_s: float = 20.0
    run_cap_s: float = 240.0
    _buses: list[_Bus] = field(default_factory=list)
    _bus_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _bus_free: asyncio.Condition = field(default_factory=asyncio.Condition)
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _adapters: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def __aenter__(self) -> Bench:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for bus in self._buses:
            with contextlib.suppress(Exception):
                await bus.vble.stop()
        self._buses.clear()

    # -- BLE buses --------------------------------------------------------------------------------
    async def _take_bus(self) -> _Bus:
        """A bus with room: at most RUNS_AT_ONCE runs on it now and RUNS_PER_BUS in its life.
        A bus that served its runs drains (its last runs finish) while a fresh one starts."""
        async with self._bus_free:
            while True:
                live = [b for b in self._buses if b.runs < RUNS_PER_BUS]
                free = [b for b in live if b.active < RUNS_AT_ONCE]
                if free:
                    bus = min(free, key=lambda b: b.active)
                elif len(live) < BUSES:
                    bus = _Bus(VirtualBle(adapters=1))
                    await bus.vble.start()
                    self._buses.append(bus)
                else:
                    await self._bus_free.wait()
                    continue
                bus.runs += 1
                bus.active += 1
                return bus

    async def _give_bus(self, bus: _Bus) -> None:
        async with self._bus_free:
            bus.active -= 1
            if bus.runs >= RUNS_PER_BUS and bus.active == 0:  # drained: retire it
                self._buses.remove(bus)
                with contextlib.suppress(Exception):
                    await bus.vble.stop()
            self._bus_free.notify_all()

    async def _adapter(self, bus: _Bus) -> str:
        index = next(self._adapters) % 250 + 1
        return await add_adapter(
            bus.vble.bus_address, index, f"00:11:22:44:{index // 256:02X}:{index % 256:02X}"
        )

    # -- one run ----------------------------------------------------------------------------------
    async def run(self, spec: RunSpec) -> dict[str, Any]:
        """One run; its JSON result. Never raises for what happens in the run."""
        n = next(self._counter)
        home = self.workdir / f"{n:04d}-{spec.id}"
        home.mkdir(parents=True)
        started = time.monotonic()
        base: dict[str, Any] = {
            "id": spec.id,
            "n": n,
            "scenario": spec.scenario,
            "transport": spec.transport,
            "personality": spec.personality,
            "phone": spec.phone.name,
            "seed": spec.seed,
            "repeat": spec.repeat,
            "home": spec.home,
            "cell": spec.cell,
        }
        try:
            world = load_scenario(spec.scenario)
            base["expected"] = world.default_credentials.expect.name
            bus = await self._take_bus() if spec.transport == "ble" else None
            try:
                phone = await self._run(spec, world, home, n, bus)
            finally:
                if bus is not None:
                    await self._give_bus(bus)
        except (DeviceSimError, OSError) as exc:
            return {
                **base,
                "state": None,
                "code_name": "BENCH_ERROR",
                "online": False,
                "seconds": round((time.monotonic() - started) / self.time_scale, 3),
                "wall_seconds": round(time.monotonic() - started, 3),
                "error": f"{type(exc).__name__}: {exc}",
                "phases_ms": {},
                "wall_phases_ms": {},
                "timeline": [],
            }
        events = _events(home / "device")
        wall = phone.get("phone", {}).get("seconds")
        # Every figure in the user's time (the home's): wall time over the time scale (process
        # start-up, about a second, is scaled up with it: real delays give the true figure).
        # The wall time is kept apart, labelled as such.
        seconds = None if wall is None else round(wall / self.time_scale, 3)
        wall_phases = phase_durations(events)
        result = {
            **base,
            "state": phone.get("state"),
            "code_name": phone.get("code_name"),
            "detail": phone.get("detail", ""),
            "online": phone.get("state") == "online",
            "seconds": seconds,
            "wall_seconds": wall,
            "home_seconds": seconds,
            "phone_story": phone.get("phone", {}).get("story", []),
            "phone_transport": phone.get("phone", {}).get("transport", spec.transport),
            "tries": phone.get("phone", {}).get("tries"),
            "drops": phone.get("phone", {}).get("drops"),
            "phases_ms": {p: round(ms / self.time_scale) for p, ms in wall_phases.items()},
            "wall_phases_ms": wall_phases,
            "timeline": [_compact(e) for e in events],
        }
        result["passed"] = result["code_name"] == base["expected"]
        story = phone.get("story")
        if story is not None:  # the home's life after the first onboarding
            result["story"] = story
            result["passed"] = (
                result["passed"]
                and story["final"]["code_name"] == base["expected"]
                and not story["mismatches"]
            )
        return result

    # Over 80 lines on purpose: one run's life in order (its world, device and phone processes, the
    # story, the result), each step's failure a coded result.
    async def _run(
        self, spec: RunSpec, world: Scenario, home: Path, n: int, bus: _Bus | None
    ) -> dict[str, Any]:
        if world.cloud.mode or world.cloud.activation != "ok":
            raise ConfigError(
                spec.scenario,
                "the bench runs without cloud activation; play cloud scenarios with demo",
            )
        entry = registry.get(spec.personality, "--personality")
        if spec.transport not in ("ble", "ble-bumble", "softap"):
            raise ConfigError("--transports", f"ble, ble-bumble or softap, not {spec.transport!r}")
        state = home / "device"
        with DeviceStore(state) as store:
            identity, code = create_identity(store)
            local_name = self.profile.advertising.local_name_pattern.format(
                short_id=identity.short_id
            )
            labels = registry.make_labels(store, self.profile, local_name)
        loopback = f"127.81.{n // 250 % 250}.{n % 250 + 2}"
        argv = [
            "run",
            "--state-dir",
            str(state),
            "--scenario",
            spec.scenario,
            "--personality",
            spec.personality,
            "--seed",
            str(spec.seed),
            "--softap-listen",
            f"{loopback}:0",
            "--softap-lan",
            f"{loopback}:0",
        ]
        if self.time_scale != 1.0:  # the world's delays and the device's timeouts alike
            argv += [
                "--time-scale",
                f"{self.time_scale:g}",
                "--timeout-scale",
                f"{self.time_scale:g}",
            ]
        env = dict(os.environ)
        phone_args: list[str] = []
        if spec.transport == "ble":
            assert bus is not None
            device_adapter = await self._adapter(bus)
            phone_adapter = await self._adapter(bus)
            argv += [
                "--adapter",
                device_adapter,
                "--doors",
                "ble-then-softap",
                "--softap-window",
                f"{self.softap_window_s * self.time_scale:g}",
            ]
            env = bus.vble.env()
            phone_args += ["--adapter", phone_adapter, "--name", local_name]
        elif spec.transport == "softap":
            if "softap" not in entry.transports:
                raise ConfigError(
                    "--transports", f"the {entry.name} personality does not run over softap"
                )
            argv += ["--adapter", "hci0", "--doors", "softap-only"]
            if entry.concurrent_ap:
                argv.append("--softap-concurrent")
        radios = contextlib.AsyncExitStack()
        if spec.transport == "ble-bumble":  # the BLE stack chosen per run: bumble, no bus
            from ...bumble_stack import serve_controllers

            for_device, for_phone = await radios.enter_async_context(
                serve_controllers(f"bench-{n}", 2)
            )
            argv += ["--adapter", "hci0", "--doors", "ble-only", "--ble-stack", "bumble",
                     "--bumble-transport", for_device]  # fmt: skip
            phone_args += ["--ble-stack", "bumble", "--bumble-transport", for_phone]
        daemon = DaemonProcess(["-v", *argv], env, home / "daemon.log")
        try:
            ready = await daemon.start()
        except BaseException:
            await radios.aclose()
            raise
        if spec.transport == "ble-bumble":
            phone_args += ["--name", ready["address"]]  # bumble quirk 1: found by address
        log = StoryLog()
        watcher = (
            asyncio.ensure_future(follow(state, log.add, last=200)) if has_story(world) else None
        )
        try:
            if spec.transport == "softap":
                phone_args += ["--softap", ready["doors"]["softap"]["ap_url"]]
            first = await self._phone(
                spec, world, state, code.reveal(), labels, phone_args, env, home
            )
            if watcher is None or first.get("state") != "online":
                return first
            outcome = await log.wait_for(lambda e: e["phase"] == "online")

            async def again(creds: Credentials) -> dict[str, Any]:
                return await self._phone(
                    spec,
                    world,
                    state,
                    code.reveal(),
                    labels,
                    phone_args,
                    env,
                    home,
                    creds=creds,
                    log_name="phone-again.log",
                )

            story = await play(
                world, log, state, int(outcome["seq"]), again, self.time_scale, spec.transport
            )
            return {**first, "story": story}
        finally:
            if watcher is not None:
                watcher.cancel()
            await daemon.stop()
            await radios.aclose()

    # Over 80 lines on purpose: the phone process's command line from the run's spec, its label and
    # its secrets (kept out of the process list).
    async def _phone(
        self,
        spec: RunSpec,
        world: Scenario,
        state: Path,
        code: str,
        labels: dict[str, str],
        phone_args: list[str],
        env: dict[str, str],
        home: Path,
        *,
        creds: Credentials | None = None,
        log_name: str = "phone.log",
    ) -> dict[str, Any]:
        """The phone process: the scenario's credentials, or ``creds`` (a re-onboarding)."""
        if creds is None:
            default = world.default_credentials
            creds = Credentials(
                default.ssid,
                Secret(default.passphrase) if default.passphrase is not None else None,
                default.hidden,
            )
        behaviour = spec.phone.to_json()
        for key in ("think_s", "retype_s", "rejoin_s"):  # people's time, scaled like the world
            behaviour[key] = [v * self.time_scale for v in behaviour[key]]
        for key in ("drops_no_internet_after_s", "walks_away_after_s"):
            if behaviour[key] is not None:
                behaviour[key] = max(0.1, behaviour[key] * self.time_scale)
        argv = [
            sys.executable,
            "-m",
            "device_sim",
            "client",
            "provision",
            "--json",
            "--personality",
            spec.personality,
            "--ssid-hex",
            creds.ssid.hex(),
            "--timeout",
            f"{max(30.0, 150 * self.time_scale):g}",
            "--phone",
            json.dumps(behaviour),
            "--phone-seed",
            str(spec.seed),
            "--device-state-dir",
            str(state),
            *phone_args,
        ]
        if creds.hidden:
            argv.append("--hidden")
        entry = registry.get(spec.personality)
        for key, value in (entry.phone_label(labels) if entry.phone_label else {}).items():
            # The label's phone options, as `client provision` takes them (a secret revealed
            # to the phone process, as the label gives it to a user).
            shown = value.reveal() if isinstance(value, Secret) else str(value)
            argv += [f"--{key.replace('_', '-')}", shown]
        secrets_env = {**env, "DEVICE_SIM_SETUP_CODE": code}
        if creds.passphrase is not None:
            secrets_env["DEVICE_SIM_PASSPHRASE"] = creds.passphrase.reveal()
        with open(home / log_name, "wb") as log:  # noqa: ASYNC230 - the child's stderr
            proc = await spawn(*argv, env=secrets_env, stdout=asyncio.subprocess.PIPE, stderr=log)
        try:
            async with asyncio.timeout(self.run_cap_s):
                out, _ = await proc.communicate()
        except asyncio.CancelledError:  # the bench is stopping: the phone goes with it
            proc.kill()
            await proc.wait()
            raise
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return {
                "state": None,
                "code_name": "BENCH_TIMEOUT",
                "detail": f"the phone did not finish within {self.run_cap_s:g} s",
            }
        try:
            result = json.loads(out)
        except ValueError:
            tail = (home / log_name).read_text(errors="replace")[-400:]
            return {
                "state": None,
                "code_name": "BENCH_ERROR",
                "detail": f"the phone printed no result (exit {proc.returncode}): {tail}",
            }
        if isinstance(result, dict) and "phone" not in result:
            result["phone"] = {}
        return result if isinstance(result, dict) else {"state": None, "code_name": "BENCH_ERROR"}


def _events(state: Path) -> list[dict[str, Any]]:
    path = state / "onboarding.jsonl"
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def _compact(event: dict[str, Any]) -> dict[str, Any]:
    return {k: event.get(k) for k in ("at", "state", "phase", "code_name", "detail")}


def phase_durations(events: list[dict[str, Any]]) -> dict[str, int]:
    """Milliseconds spent in each backend phase of the attempts (from a ``joining`` event to
    its outcome), from each phase's event to the next event by the events' clock; summed when
    a phase runs twice (a mesh's next node, a second attempt)."""
    out: dict[str, int] = {}
    times = [(_at(e), str(e.get("phase"))) for e in events if e.get("at")]
    attempt = False
    for (start, phase), (end, _) in itertools.pairwise(times):
        if phase == "joining":
            attempt = True
        elif phase in ("online", "failed", "timeout"):
            attempt = False
        if attempt and phase in PHASES and start is not None and end is not None:
            out[phase] = out.get(phase, 0) + max(0, round((end - start).total_seconds() * 1000))
    return out


def _at(event: dict[str, Any]) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(event["at"]))
    except (KeyError, ValueError):
        return None
