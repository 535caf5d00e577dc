"""``device-sim demo``: one onboarding on virtual adapters, end to end, with its timeline.

Exit status: with the scenario's own credentials, 0 when the onboarding ends as the scenario's
``expect`` says (``--scenario no-dhcp`` exits 0 on NO_DHCP_LEASE) and 1 with a mismatch message
otherwise; with credentials of the user's (``--ssid``, ``--passphrase``, ...) or
``--retry-with-default``, 0 online and 1 a coded failure.

Gives a fresh device an identity (the setup code is shown as its label would show it) and runs
the device daemon as a real subprocess. Over BLE (default): a private D-Bus with two BlueZoo
adapters, the daemon on hci0 and the reference client on hci1. With ``--transport softap``: the
daemon opens only its SoftAP door (HTTP on loopback, the simulated access point) and the client
provisions over HTTP. Prints what the phone saw and what the device reported.

With ``--activation zero-touch|claim|registration`` the device is a factory unit (a temporary
factory CA, fleet registration key and label) and the cloud emulator runs in-process on loopback
with the account ``alice`` (also the unit's supply-chain account); the phone sends the
activation inputs (claim: the account and the label's claim token; registration: the account and
a device password) and the demo succeeds only when the device is online and activated.

A scenario with a story (:mod:`device_sim.apps.story`: a timeline, a history, a phone that comes
back) is played to its end: the device lives on in the changing world after its first
onboarding (none when the scenario gives it a history), the phone re-onboards it when the story
says, and the story's expectations (its event sequence, doors reopening, the time back online,
the phone's sessions, the network it ends on) are checked with the outcome. ``--time-scale``
runs the world and the device's timers faster (0.1: ten times).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..client.target import ProvisionRequest, Target
from ..control import control_request, follow
from ..core.identity import create_identity
from ..core.store import Credentials, DeviceStore
from ..doors import registry
from ..errors import ConfigError
from ..network.base import Security
from ..network.scenario import load_scenario
from ..profile import Profile, load_profile
from ..security.secret import Secret
from .commands.client import outcome_text
from .commands.eap_args import eap_from_args
from .commands.watch import Timeline
from .daemon_process import DaemonProcess, daemon_argv
from .demo_cloud import DEMO_ACCOUNT, DemoCloud, factory_unit
from .story import StoryLog, has_story, play

if TYPE_CHECKING:  # the factory and cloud modules load only for --activation
    from ..doors.personality import Personality
    from ..network.scenario import Scenario
    from .factory.unit import UnitResult


async def run_demo(args: argparse.Namespace) -> int:
    demo = _Demo(args)
    with tempfile.TemporaryDirectory(prefix="device-sim-demo-") as tmp:
        demo.make_identity(Path(tmp))
        async with contextlib.AsyncExitStack() as stack:
            phone = await demo.start(stack, Path(tmp))
            await demo.onboard(phone)
    return demo.verdict()


BUMBLE_LINK = "demo"  # the in-process link of --ble-stack bumble


class _Demo:
    """One demo's steps: check the options, give the device its identity, start the cloud,
    the adapters and the daemon, onboard (and play the story), check the outcome."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.profile = load_profile()
        self.scenario = scenario = load_scenario(args.scenario)
        creds = scenario.default_credentials
        self.ssid = (
            bytes(args.ssid_hex)
            if args.ssid_hex
            else (args.ssid.encode() if args.ssid else creds.ssid)
        )
        self.passphrase = args.passphrase if args.passphrase is not None else creds.passphrase
        self.hidden = bool(
            args.hidden or (creds.hidden if args.ssid is None and not args.ssid_hex else False)
        )
        # The scenario's sign-in, for its own network or another enterprise one of its world.
        enterprise = any(s.ap.security is Security.ENTERPRISE for s in scenario.bsses(self.ssid))
        own = self.ssid == creds.ssid or enterprise
        self.eap = eap_from_args(args, creds.eap if own else None)
        registry.check_eap(registry.get(args.personality), self.eap, "--eap-method")
        self.say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
        cloud_world = scenario.cloud
        self.mode = mode = getattr(args, "activation", None) or cloud_world.mode
        if cloud_world.activation != "ok" and not mode:
            raise ConfigError(
                "--activation",
                f"the scenario's cloud is {cloud_world.activation}: give an activation mode",
            )
        if cloud_world.activation == "claim_token_expired" and mode != "claim":
            raise ConfigError("--activation", "a claim token expires only in claim mode")
        self.entry = entry = registry.get(args.personality)
        if args.transport not in entry.transports:
            raise ConfigError(
                "--transport", f"the {entry.name} personality does not run over {args.transport}"
            )
        if mode and not entry.activation:
            raise ConfigError(
                "--activation",
                f"the {entry.name} personality has no activation inputs; "
                f"use --personality {registry.default()}",
            )
        self.result: dict[str, Any] = {}
        self.storied = has_story(scenario)
        self.story_out: dict[str, Any] | None = None
        self.labels: dict[str, str] = {}
        self.unit: UnitResult | None = None
        self.cloud: DemoCloud | None = None

    def make_identity(self, tmp: Path) -> None:
        """A factory unit (with activation) or a fresh identity, and the scenario's history."""
        scenario, say = self.scenario, self.say
        if self.mode:
            # 0 days: the claim token has expired by the time the device presents it
            ttl = 0 if scenario.cloud.activation == "claim_token_expired" else 365
            unit = self.unit = factory_unit(tmp, claim_ttl_days=ttl)
            self.state_dir, label_code, self.device_id = (
                unit.state_dir,
                unit.setup_code,
                unit.device_id,
            )
            assert label_code is not None  # made in this process
            _give_history(self.state_dir, scenario)
            say(
                f"factory unit {unit.serial}, device {self.device_id}  "
                f"label setup code {label_code.reveal()}"
            )
        else:
            self.state_dir = tmp / "device"
            with DeviceStore(self.state_dir) as store:
                identity, label_code = create_identity(store)
                local_name = self.profile.advertising.local_name_pattern.format(
                    short_id=identity.short_id
                )
                self.labels = registry.make_labels(store, self.profile, local_name)
            _give_history(self.state_dir, scenario)
            self.device_id = identity.device_id
            say(f"device {self.device_id}  label setup code {label_code.reveal()}")
        self.setup_code = self.args.setup_code or label_code  # checked by the parser
        say(f"scenario {scenario.name}: {scenario.description}")
        if scenario.history is not None:
            names = ", ".join(_ssid_text(n.ssid) for n in scenario.history.networks)
            say(
                f"the device's past: saved networks {names}"
                + (" (it was online on the first)" if scenario.history.online else "")
            )

    async def start(self, stack: contextlib.AsyncExitStack, tmp: Path) -> _Phone:
        """The cloud (with activation), the virtual adapters (over BLE), the daemon and the
        watcher of its events; the phone that will onboard it."""
        args, say, cloud_world = self.args, self.say, self.scenario.cloud
        if self.mode:
            assert self.unit is not None
            cloud = self.cloud = await stack.enter_async_context(
                DemoCloud(tmp, self.unit, self.mode, cloud_world.activation)
            )
            say(
                f"cloud emulator at {cloud.url}: account {DEMO_ACCOUNT}, supply chain "
                f"{self.unit.serial} -> {DEMO_ACCOUNT}; device activation: {self.mode}"
                + (
                    f"; the cloud plays: {cloud_world.activation}"
                    if cloud_world.activation != "ok"
                    else ""
                )
            )
        bumble: list[str] = []
        if args.transport == "softap":
            env, adapter, doors = dict(os.environ), "hci0", "softap-only"
        elif args.ble_stack == "bumble":
            from ..bumble_stack import serve_controllers
            from ..client.ble import close_radios

            (moniker,) = await stack.enter_async_context(serve_controllers(BUMBLE_LINK, 1))
            stack.push_async_callback(close_radios)
            say(f"bumble: one virtual link; the device's controller served at {moniker}")
            env, adapter, doors = dict(os.environ), "hci0", "ble-only"
            bumble = ["--ble-stack", "bumble", "--bumble-transport", moniker]
        else:
            from .virtual.harness import VirtualBle, use_bus  # dbus-fast: for BlueZoo only

            vb = await stack.enter_async_context(VirtualBle(adapters=2))
            say(f"virtual BLE: {', '.join(vb.adapters)} on {vb.bus_address}")
            stack.enter_context(use_bus(vb))
            env, adapter, doors = vb.env(), vb.adapters[0], "ble-only"
        daemon = DaemonProcess(
            daemon_argv(
                self.state_dir,
                adapter=adapter,
                scenario=args.scenario,
                zero_delay=args.zero_delay,
                doors=doors,
                extra=self._daemon_flags() + bumble,
            ),
            env,
            tmp / "daemon.log",
        )
        stack.push_async_callback(daemon.stop)
        ready = await daemon.start()
        self.log = StoryLog()
        view = Timeline("device", self.profile)

        def seen(item: dict[str, Any]) -> None:
            self.log.add(item)
            if args.json:
                return
            view.add(item)  # the device's events as they happen, as `device-sim watch`
            if item.get("kind") == "event":
                say(view.line(item))

        watcher = asyncio.ensure_future(
            follow(self.state_dir, seen, last=200 if self.storied else 0)
        )
        stack.callback(watcher.cancel)
        if args.transport == "softap":
            softap = ready["doors"]["softap"]
            say(f"device daemon: access point {softap['ssid']}, API at {softap['ap_url']}")
            target = Target(softap_url=softap["ap_url"])
        elif bumble:
            say(f"device daemon advertising as {ready['local_name']} ({ready['address']})")
            target = Target(  # found by address: bumble quirk 1 (doors/ble/bumble_host.py)
                name=ready["address"], ble_stack="bumble", bumble_transport=f"local:{BUMBLE_LINK}"
            )
        else:
            say(f"device daemon advertising as {ready['local_name']} on {adapter}")
            target = Target(adapter=vb.adapters[1], name=ready["local_name"])
        return _Phone(
            self.profile,
            self.entry,
            target,
            self.state_dir,
            self.setup_code,
            self.labels,
            say,
            args.json,
        )

    def _daemon_flags(self) -> list[str]:
        args, scale = self.args, self.args.time_scale
        extra = ["--personality", args.personality]
        if args.transport == "softap" and self.entry.concurrent_ap:
            # A personality's own SoftAP API (ESP's) is read on the AP after the join, as
            # an ESP32 keeps its AP up (APSTA): the emulated radio does both at once.
            extra.append("--softap-concurrent")
        if scale != 1.0:  # the world and the device's timers, both faster
            extra += ["--time-scale", f"{scale:g}", "--timeout-scale", f"{scale:g}"]
        if args.seed is not None:  # the world's draws, as `run --seed` takes them
            extra += ["--seed", str(args.seed)]
        return extra + (self.cloud.daemon_args() if self.cloud is not None else [])

    async def onboard(self, phone: _Phone) -> None:
        """The phone's onboarding (none when the scenario gives the device a history), the
        story after it, and what the cloud lists."""
        args, say, scenario, cloud = self.args, self.say, self.scenario, self.cloud
        first_seq = 0
        if scenario.history is None:
            say(f"\nphone: provisioning {_ssid_text(self.ssid)} ...")
            creds = scenario.default_credentials
            retries = []
            if args.retry_with_default:
                key = Secret(creds.passphrase) if creds.passphrase else None
                retries = [(creds.ssid, key, creds.hidden)]
            request = ProvisionRequest(
                ssid=self.ssid,
                passphrase=Secret(self.passphrase) if self.passphrase else None,
                hidden=self.hidden,
                security=getattr(args, "security", None),
                eap=self.eap,
                setup_code=self.setup_code,
                activation=cloud.inputs() if cloud is not None else None,
                retries=retries,
                extra=self.labels,  # what the phone scans from the label (e.g. ESP's QR)
            )
            self.result = await phone.provision(request)
            if self.storied and self.result.get("state") in ("online", "failed"):
                async with asyncio.timeout(30):  # the outcome the phone read, in the stream
                    outcome = await self.log.wait_for(lambda e: e["phase"] in ("online", "failed"))
                first_seq = int(outcome["seq"])
            else:
                self.storied = False  # no outcome of the first onboarding: no story after it
        if self.storied:
            await self._play_story(phone, first_seq)
        if cloud is not None:
            say(_activation_line(self.result.get("activation")))
            listed = await cloud.listed(self.device_id)
            self.result["cloud_listing"] = listed
            say(
                f"cloud: account {DEMO_ACCOUNT} lists the device: "
                + (f"mode {listed['mode']}, generation {listed['generation']}" if listed else "no")
            )

    async def _play_story(self, phone: _Phone, first_seq: int) -> None:
        args = self.args
        story_out = self.story_out = await play(
            self.scenario,
            self.log,
            self.state_dir,
            first_seq,
            phone.again,
            args.time_scale,
            args.transport,
            self.say,
        )
        final = story_out.pop("final")
        entry_code = self.profile.code(int(final["code"]))
        self.result.update(
            state=final["state"],
            code=entry_code.id,
            code_name=entry_code.name,
            message=entry_code.user_message,
            next_step=entry_code.next_step,
            activation=final.get("activation"),  # the binding after the story
        )
        self.result["story"] = story_out

    def verdict(self) -> int:
        """With the scenario's own credentials, 0 when it ended as the scenario expects (and
        its story held); else 0 online (and activated, with activation)."""
        args, result, scenario = self.args, self.result, self.scenario
        expect = scenario.default_credentials.expect
        own = (
            args.ssid is None and not args.ssid_hex and args.passphrase is None and not args.hidden
        )
        checked = own and not args.retry_with_default and args.setup_code is None
        story_out = self.story_out
        problems = list(story_out["mismatches"]) if story_out and checked else []
        if checked:  # the scenario's own credentials: its `expect` is the outcome to check
            result["expected"] = expect.name
            if result.get("code_name") != expect.name:
                problems.insert(
                    0,
                    f"the scenario {scenario.name} expects {expect.name}, the onboarding ended "
                    f"{result.get('code_name')}",
                )
            self.say(
                f"as the scenario expects: {expect.name}"
                + (" (and its story)" if self.storied else "")
                if not problems
                else "\n".join(f"MISMATCH: {problem}" for problem in problems)
            )
        if args.json:
            print(json.dumps(result, indent=2))
        if checked:
            return 0 if not problems else 1
        online = result.get("state") == "online"
        if self.mode:
            online = online and (result.get("activation") or {}).get("status") == "active"
        return 0 if online else 1


class _Phone:
    """The demo's phone: one personality's phone side, on one target, with the label."""

    def __init__(
        self,
        profile: Profile,
        entry: Personality,
        target: Target,
        state_dir: Path,
        setup_code: Secret,
        labels: dict[str, str],
        say: Any,
        quiet: bool,
    ) -> None:
        self.profile, self.entry, self.target, self.state_dir = profile, entry, target, state_dir
        self.setup_code, self.labels, self.say, self.quiet = setup_code, labels, say, quiet
        self.results: list[dict[str, Any]] = []

    async def provision(self, request: ProvisionRequest) -> dict[str, Any]:
        for command in self.entry.bench_commands:  # e.g. Improv: press the device's button
            self.say(f"the {self.entry.name} personality asks for it: device-sim ctl {command}")
            await control_request(self.state_dir, command)
        result = await self.entry.phone(
            self.profile, self.target, request, None if self.quiet else _progress
        )
        for attempt in result.get("attempts", [result]):
            self.say(_timeline(attempt))
        self.results.append(result)
        return result

    async def again(self, creds: Credentials) -> dict[str, Any]:
        """The user sets the device up again (the story's phone): the same label, new Wi-Fi."""
        return await self.provision(
            ProvisionRequest(
                ssid=creds.ssid,
                passphrase=creds.passphrase,
                hidden=creds.hidden,
                setup_code=self.setup_code,
                extra=self.labels,
            )
        )


def _give_history(state_dir: Path, scenario: Scenario) -> None:
    """The scenario's past: the networks the device saved, online on the first."""
    history = scenario.history
    if history is None:
        return
    with DeviceStore(state_dir) as store:
        store.remember_history(
            [
                Credentials(n.ssid, Secret(n.passphrase) if n.passphrase else None, n.hidden)
                for n in history.networks
            ],
            online=history.online,
        )


def _activation_line(activation: dict[str, Any] | None) -> str:
    if not activation:
        return "ACTIVATION: no status from the device"
    status = activation.get("status") or "none"
    if status == "none":
        return "ACTIVATION: none (the device has not activated with the cloud)"
    parts = [
        f"{label} {activation[key]}"
        for key, label in (
            ("mode", "mode"),
            ("account", "account"),
            ("generation", "generation"),
            ("device_user", "device user"),
        )
        if activation.get(key) is not None
    ]
    return f"ACTIVATION: {status}" + (f"  {', '.join(parts)}" if parts else "")


def _ssid_text(ssid: bytes) -> str:
    try:
        return repr(ssid.decode("utf-8"))
    except UnicodeDecodeError:
        return f"<hex {ssid.hex()}>"


def _progress(phase: str, info: dict[str, Any]) -> None:
    if phase != "event":
        print(f"  phone  {phase}", flush=True)


def _timeline(result: dict[str, Any]) -> str:
    lines = [
        "",
        "onboarding timeline (device events; ms since the session opened, then since CONNECT):",
    ]
    for ev in result.get("events", []):
        code = f"  {ev.get('code_name', ev.get('code'))}" if ev.get("code") else ""
        lines.append(f"  +{ev['t_ms']:>6}  {ev['state']:<21} {ev['phase']:<15}{code}")
    t = result.get("timings_ms", {})
    lines.append(
        "phone timings (ms): " + "  ".join(f"{k} {v}" for k, v in t.items() if v is not None)
    )
    lines.append(
        f"round trips ({result.get('transport', 'ble')}): {result.get('gatt_round_trips')}"
    )
    lines.append(
        f"RESULT: {outcome_text(result)}  [{result.get('code')} {result.get('code_name')}]"
        f"  {result.get('message')}"
    )
    if result.get("code"):
        lines.append(f"  next step: {result.get('next_step')}")
        if result.get("detail"):
            lines.append(f"  detail: {result.get('detail')}")
    return "\n".join(lines)
