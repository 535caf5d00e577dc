"""``device-sim demo``: one onboarding on virtual adapters, end to end, with its timeline.

Gives a fresh device an identity (the setup code is shown as its label would show it) and runs
the device daemon as a real subprocess. Over BLE (default): a private D-Bus with two BlueZoo
adapters, the daemon on hci0 and the reference client on hci1. With ``--transport softap``: the
daemon opens only its SoftAP door (HTTP on loopback, the simulated access point) and the client
provisions over HTTP. Prints what the phone saw and what the device reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .client.flow import Target, provision
from .errors import TransportError
from .identity import create_identity
from .network.scenario import load_scenario
from .profile import load_profile
from .security.secret import Secret
from .security.setup_code import normalize_setup_code
from .store import DeviceStore
from .virtual.harness import VirtualBle, use_bus


class DaemonProcess:
    """``device-sim run`` as a child process; ``start`` returns once it printed its ready line."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}

    async def start(self, timeout: float = 30.0) -> dict[str, Any]:
        """Raises TransportError with the log's tail if the daemon exits or is not ready in time."""
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "device_sim", *self.argv, env=self.env,
                stdout=asyncio.subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            line = b""
        try:
            self.ready = json.loads(line) if line else {}
        except json.JSONDecodeError:
            self.ready = {}
        if not self.ready.get("ready"):
            await self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise TransportError(f"device daemon did not start:\n{tail}")
        return self.ready

    async def stop(self, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(timeout):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


def daemon_argv(state_dir: Path, *, adapter: str, scenario: str, zero_delay: bool,
                extra: list[str] | None = None, doors: str = "ble-only") -> list[str]:
    """``device-sim run`` arguments; SoftAP listeners on free loopback ports unless ble-only."""
    argv = ["run", "--state-dir", str(state_dir), "--adapter", adapter, "--scenario", scenario,
            "--doors", doors]
    if doors != "ble-only":
        argv += ["--softap-listen", "127.0.0.1:0", "--softap-lan", "127.0.0.1:0"]
    if zero_delay:
        argv.append("--zero-delay")
    return argv + list(extra or [])


async def run_demo(args: argparse.Namespace) -> int:
    profile = load_profile()
    scenario = load_scenario(args.scenario)
    creds = scenario.default_credentials
    ssid = bytes.fromhex(args.ssid_hex) if args.ssid_hex else (
        args.ssid.encode() if args.ssid else creds.ssid)
    passphrase = args.passphrase if args.passphrase is not None else creds.passphrase
    hidden = bool(args.hidden or (creds.hidden if args.ssid is None and not args.ssid_hex else False))
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="device-sim-demo-") as tmp:
        state_dir = Path(tmp) / "device"
        with DeviceStore(state_dir) as store:
            identity, label_code = create_identity(store)
        setup_code = Secret(normalize_setup_code(args.setup_code)) if args.setup_code else label_code
        say(f"device {identity.device_id}  label setup code {label_code.reveal()}")
        say(f"scenario {scenario.name}: {scenario.description}")
        retries = None
        if args.retry_with_default:
            retries = [(creds.ssid, Secret(creds.passphrase) if creds.passphrase else None,
                        creds.hidden)]
        async with contextlib.AsyncExitStack() as stack:
            if args.transport == "softap":
                env, adapter, doors = dict(os.environ), "hci0", "softap-only"
            else:
                vb = await stack.enter_async_context(VirtualBle(adapters=2))
                say(f"virtual BLE: {', '.join(vb.adapters)} on {vb.bus_address}")
                stack.enter_context(use_bus(vb))
                env, adapter, doors = vb.env(), vb.adapters[0], "ble-only"
            extra = ["--personality", args.personality] if args.transport == "ble" else []
            daemon = DaemonProcess(daemon_argv(state_dir, adapter=adapter, scenario=args.scenario,
                                               zero_delay=args.zero_delay, doors=doors,
                                               extra=extra),
                                   env, Path(tmp) / "daemon.log")
            stack.push_async_callback(daemon.stop)
            ready = await daemon.start()
            if args.transport == "softap":
                softap = ready["doors"]["softap"]
                say(f"device daemon: access point {softap['ssid']} up, API at {softap['ap_url']}")
                target = Target(softap_url=softap["ap_url"])
                say(f"\nphone joined {softap['ssid']}: provisioning {_ssid_text(ssid)} over HTTP ...")
            else:
                say(f"device daemon advertising as {ready['local_name']} on {adapter}")
                target = Target(adapter=vb.adapters[1], name=ready["local_name"])
                say(f"\nphone on {vb.adapters[1]}: provisioning {_ssid_text(ssid)} ...")
            if args.transport == "ble" and args.personality == "improv":
                result = await _improv(args, profile, state_dir, target, ssid, passphrase,
                                       retries, say)
            else:
                result = await provision(
                    profile, target, setup_code=setup_code, ssid=ssid,
                    passphrase=Secret(passphrase) if passphrase else None, hidden=hidden,
                    on_progress=None if args.json else _progress, retries=retries)
            for attempt in result.get("attempts", [result]):
                say(_timeline(attempt))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if result.get("state") == "online" else 1


async def _improv(args: argparse.Namespace, profile: Any, state_dir: Path, target: Target,
                  ssid: bytes, passphrase: str | None, retries: Any,
                  say: Any) -> dict[str, Any]:
    """The same onboarding through the device's Improv Wi-Fi service (authorization required)."""
    from .client.improv import provision_improv
    from .control import control_request

    say("the device requires Improv authorization: pressing its button "
        "(device-sim ctl improv-authorize)")
    await control_request(state_dir, "improv-authorize")
    return await provision_improv(
        profile, adapter=target.adapter, name=target.name, discover_timeout=20.0, ssid=ssid,
        passphrase=Secret(passphrase) if passphrase else None, retries=retries)


def _ssid_text(ssid: bytes) -> str:
    try:
        return repr(ssid.decode("utf-8"))
    except UnicodeDecodeError:
        return f"<hex {ssid.hex()}>"


def _progress(phase: str, info: dict[str, Any]) -> None:
    if phase != "event":
        print(f"  phone  {phase}", flush=True)


def _timeline(result: dict[str, Any]) -> str:
    lines = ["", "onboarding timeline (device events; ms since the session opened, then since CONNECT):"]
    for ev in result.get("events", []):
        code = f"  {ev.get('code_name', ev.get('code'))}" if ev.get("code") else ""
        lines.append(f"  +{ev['t_ms']:>6}  {ev['state']:<21} {ev['phase']:<15}{code}")
    t = result.get("timings_ms", {})
    lines.append("phone timings (ms): " + "  ".join(
        f"{k} {v}" for k, v in t.items() if v is not None))
    lines.append(f"round trips ({result.get('transport', 'ble')}): "
                 f"{result.get('gatt_round_trips')}")
    lines.append(f"RESULT: {result.get('state')}  [{result.get('code')} {result.get('code_name')}]"
                 f"  {result.get('message')}")
    if result.get("code"):
        lines.append(f"  next step: {result.get('next_step')}")
        if result.get("detail"):
            lines.append(f"  detail: {result.get('detail')}")
    return "\n".join(lines)

