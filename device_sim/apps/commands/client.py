"""``device-sim client scan|networks|provision|portal``: the phone-side reference client.

Over BLE (the native SRP session or Improv Wi-Fi) or the device's SoftAP HTTP API; ``portal``
detects a captive portal as a phone OS does. :func:`format_result` renders a provisioning
result for people.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from ...doors import registry
from ...errors import ConfigError
from .eap_args import eap_from_args
from .output import emit, write_out


async def run(args: argparse.Namespace) -> int:
    """Run ``args.client_command``; 0 when done (provision: when the device ended online), else 1.

    Raises:
        ConfigError: a missing ``--setup-code`` (except for Improv) or ``--ssid``.
        OnboardingError: the device reported a coded failure.
        DeviceSimError: no device found, or the link failed.
    """
    from ...client.target import Target
    from ...profile import load_profile

    if args.client_command == "portal":
        return await _portal(args)
    profile = load_profile()
    if getattr(args, "fleet", None) is not None:
        return await _provision_fleet(args, profile)
    target = Target(
        adapter=args.adapter,
        name=args.name,
        discover_timeout=args.discover_timeout,
        fragment_size=args.fragment_size,
        softap_url=args.softap,
        ble_stack=getattr(args, "ble_stack", "bluez"),
        bumble_transport=getattr(args, "bumble_transport", None),
    )
    if target.ble_stack == "bumble":
        from ...client.ble import close_radios

        try:
            return await _client_on(args, profile, target)
        finally:
            await close_radios()
    return await _client_on(args, profile, target)


async def _client_on(args: argparse.Namespace, profile: Any, target: Any) -> int:
    """The client command ``args`` names, on ``target``."""
    if args.client_command == "scan":
        return await _scan(args, profile, target)
    if args.client_command in ("saved-networks", "forget-network", "diagnostics"):
        return await _session_request(args, profile, target)
    entry = _entry_with_code(args)
    if args.client_command == "networks":
        list_networks = registry.phone_request(entry, "networks", "--personality")
        nets = await list_networks(profile, target, args.setup_code)
        emit(
            args,
            nets,
            lambda: "\n".join(
                f"{_network_name(n):<24} {n['rssi']:>4} dBm  {n['band']:<6} ch {n['channel']:<3} "
                f"{n['security']}"
                for n in nets
            ),
        )
        return 0
    return await _provision(args, profile, target, entry)


async def _scan(args: argparse.Namespace, profile: Any, target: Any) -> int:
    def row_text(r: dict[str, Any]) -> str:
        return (
            f"{r['name']:<10} {r['address']}  rssi {r['rssi']:>4}  {r['state']} ({r['code_name']})"
        )

    def show(found: Any) -> None:  # as each device appears (the JSON comes at the end)
        if not args.json:
            print(row_text(found.to_json()), flush=True)

    discover = registry.phone_request(registry.get(registry.default()), "discover", "scan")
    devices = await discover(
        profile,
        adapter=args.adapter,
        timeout=args.discover_timeout,
        name=args.name,
        first=args.first,
        on_found=show,
        radio=target.radio,
    )
    if args.json:
        emit(args, [d.to_json() for d in devices], lambda: "")
    elif not devices:
        print("no provisioning devices found")
    return 0


async def _session_request(args: argparse.Namespace, profile: Any, target: Any) -> int:
    """saved-networks, forget-network, diagnostics: requests of the reference personality's
    session."""
    reference = registry.get(registry.default())
    if args.client_command == "diagnostics":
        fetch_diagnostics = registry.phone_request(reference, "diagnostics", "client")
        data = await fetch_diagnostics(profile, target, args.setup_code)
        write_out(args.out, data)
        result = {"written": str(args.out), "bytes": len(data)}
        emit(args, result, lambda: f"wrote {args.out} ({len(data)} bytes)")
        return 0
    if args.client_command == "saved-networks":
        saved_networks = registry.phone_request(reference, "saved_networks", "client")
        saved = await saved_networks(profile, target, args.setup_code)
    else:
        forget = registry.phone_request(reference, "forget_network", "client")
        saved = await forget(profile, target, args.setup_code, _ssid_bytes(args))
    emit(args, saved, lambda: _saved_text(saved))
    return 0


def _entry_with_code(args: argparse.Namespace) -> Any:
    """The chosen personality, with the setup code it needs (the flag, or
    ``DEVICE_SIM_SETUP_CODE`` to keep it out of the process list). Raises ConfigError."""
    entry = registry.get(args.personality, "--personality")
    if args.setup_code is None and os.environ.get("DEVICE_SIM_SETUP_CODE"):
        from .args import setup_code

        try:
            args.setup_code = setup_code(os.environ["DEVICE_SIM_SETUP_CODE"])
        except argparse.ArgumentTypeError as exc:
            raise ConfigError("DEVICE_SIM_SETUP_CODE", str(exc)) from None
    if entry.setup_code and not args.setup_code:
        raise ConfigError("--setup-code", "required (the code on the device label)")
    return entry


async def _provision(args: argparse.Namespace, profile: Any, target: Any, entry: Any) -> int:
    from ...client.target import ProvisionRequest
    from ...security.secret import Secret

    registry.check_security(entry, getattr(args, "security", None), "--security")
    eap = eap_from_args(args)
    registry.check_eap(entry, eap, "--eap-method")
    activation = None
    if args.activate or args.account or args.claim_token:
        if not entry.activation:
            raise ConfigError("--activate", f"the {entry.name} personality sends no activation")
        activation = {
            "account": args.account,
            "claim_token": Secret(args.claim_token) if args.claim_token else None,
            "device_password": Secret(args.device_password) if args.device_password else None,
        }
    # Secrets may come from the environment, kept out of the process list (the QA bench).
    passphrase = args.passphrase
    if passphrase is None:
        passphrase = os.environ.get("DEVICE_SIM_PASSPHRASE")
    request = ProvisionRequest(
        ssid=_ssid_bytes(args),
        passphrase=Secret(passphrase) if passphrase is not None else None,
        hidden=args.hidden,
        security=args.security,
        eap=eap,
        setup_code=args.setup_code,
        activation=activation,
        outcome_timeout=args.timeout,
        extra={
            key: Secret(value) if option.secret else value
            for key, option in registry.phone_options().items()
            if (value := getattr(args, key, None)) is not None
        },
    )
    if args.phone is not None:
        result = await _play_phone(args, profile, target, request)
    else:
        result = await entry.phone(profile, target, request, None if args.json else _print_progress)
    emit(args, result, lambda: format_result(result))
    return 0 if result.get("state") == "online" else 1


async def _provision_fleet(args: argparse.Namespace, profile: Any) -> int:
    """``provision --fleet ROOT``: every device of a running fleet; 0 when all are online."""
    from ...security.secret import Secret
    from ..fleet.phones import provision_fleet

    credentials = None
    if args.ssid is not None or args.ssid_hex is not None:
        passphrase = args.passphrase or os.environ.get("DEVICE_SIM_PASSPHRASE")
        credentials = (
            _ssid_bytes(args),
            Secret(passphrase) if passphrase is not None else None,
            args.hidden,
        )
    names = [n for n in (args.devices or "").split(",") if n]
    done = await provision_fleet(
        profile,
        args.fleet,
        names=names or None,
        concurrency=args.concurrency,
        timeout=args.timeout,
        credentials=credentials,
    )
    summary = done["summary"]

    def text() -> str:
        lines = [
            f"{d['name']}  {d['state'] or '-':<8} {d['code_name']:<22} {d['seconds']:>7.3f} s"
            for d in done["devices"]
        ]
        per = summary["per_device_s"]
        lines.append(
            f"{summary['online']}/{summary['devices']} online in {summary['wall_s']:g} s "
            f"(per device p50 {per['p50']} s, p90 {per['p90']} s)"
            + (f"; not online: {summary['not_online']}" if summary["not_online"] else "")
        )
        return "\n".join(lines)

    emit(args, done, text)
    return 0 if summary["online"] == summary["devices"] else 1


async def _play_phone(
    args: argparse.Namespace, profile: Any, target: Any, request: Any
) -> dict[str, Any]:
    """``--phone``: the onboarding as that phone and its user play it (bench/phone.py)."""
    import random

    from ...control import control_request
    from ...doors import registry
    from ..bench.phone import parse_behaviour, play

    try:
        spec = json.loads(args.phone)
    except ValueError:
        raise ConfigError("--phone", "not a JSON object") from None
    behaviour = parse_behaviour(
        spec, "--phone", name=str(spec.get("name", "phone")) if isinstance(spec, dict) else "phone"
    )
    state_dir = args.device_state_dir
    entry = registry.get(args.personality, "--personality")

    async def softap_url() -> str:
        if target.softap_url:
            return str(target.softap_url)
        if state_dir is None:
            raise ConfigError(
                "--device-state-dir",
                "a phone without Bluetooth needs the "
                "device's access point: give --softap URL or --device-state-dir",
            )
        status = await control_request(
            state_dir, "status", {"wait_decided_ms": 600_000}, timeout=620
        )
        url = (status.get("softap") or {}).get("ap_url")
        if not url:
            from ...errors import DeviceUnreachable

            raise DeviceUnreachable("the device did not open its access point")
        return str(url)

    async def before_phone() -> None:
        if state_dir is not None:
            for command in entry.bench_commands:
                await control_request(state_dir, command)

    run = await play(
        behaviour,
        profile=profile,
        personality=args.personality,
        ble_target=None if target.softap_url else target,
        softap=softap_url,
        request=request,
        rng=random.Random(args.phone_seed),
        before_phone=before_phone,
    )
    return {
        **run.result,
        "phone": {
            "behaviour": behaviour.to_json(),
            "transport": run.transport,
            "tries": run.tries,
            "typos": run.typos,
            "drops": run.drops,
            "walked_away": run.walked_away,
            "seconds": round(run.seconds, 3),
            "story": run.story,
        },
    }


async def _portal(args: argparse.Namespace) -> int:
    import socket
    from urllib.parse import urlsplit

    from ...client.captive import probe_connectivity

    host = urlsplit(args.probe_url).hostname or ""
    loop = asyncio.get_running_loop()
    try:  # through the system resolver, as the OS would (on the AP: the device's DNS)
        infos = await loop.getaddrinfo(host, 80, family=socket.AF_INET, type=socket.SOCK_STREAM)
        addresses = sorted({str(info[4][0]) for info in infos})
    except OSError as exc:
        addresses = []
        print(f"device-sim: cannot resolve {host}: {exc}", file=sys.stderr)
    probe = await probe_connectivity(args.probe_url, api_url=args.api_url)
    data = {
        "probe_host": host,
        "resolved": addresses,
        "probe_url": probe.probe_url,
        "status": probe.status,
        "captive": probe.captive,
        "portal_url": probe.portal_url,
        "api": probe.api,
    }
    emit(args, data, lambda: "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


def _ssid_bytes(args: argparse.Namespace) -> bytes:
    if getattr(args, "ssid_hex", None):
        return bytes(args.ssid_hex)  # checked by the parser (commands.args.hex_bytes)
    if args.ssid is None:
        raise ConfigError("--ssid", "give --ssid or --ssid-hex")
    return str(args.ssid).encode("utf-8")


def _print_progress(phase: str, info: dict[str, Any]) -> None:
    if phase == "event":
        print(
            f"  device +{info['t_ms']:>6} ms  {info['state']:<20} {info['phase']:<16}"
            f" {info['code_name'] if info['code'] else ''}",
            flush=True,
        )
    else:
        print(f"- {phase} {json.dumps(info) if info else ''}", flush=True)


def outcome_text(result: dict[str, Any]) -> str:
    """The device's state in a result, or why there is none (never "None")."""
    state = result.get("state")
    if state:
        return str(state)
    if result.get("code_name") in ("DEVICE_NOT_FOUND", "DEVICE_UNREACHABLE"):
        return "device not reached"
    return "not onboarded (stopped before the device reported a state)"


def format_result(result: dict[str, Any]) -> str:
    """A provisioning result (the client's JSON document) as a few lines for people."""
    t = result.get("timings_ms", {})
    lines = [
        f"result: {outcome_text(result)}  code {result.get('code')} {result.get('code_name')}",
        f"  {result.get('message')}",
        f"  next step: {result.get('next_step')}",
        "  timings (ms): " + ", ".join(f"{k} {v}" for k, v in t.items() if v is not None),
        f"  round trips ({result.get('transport', 'ble')}): {result.get('gatt_round_trips')}",
    ]
    if result.get("detail"):
        lines.insert(2, f"  detail: {result['detail']}")
    return "\n".join(lines)


def _saved_text(saved: dict[str, Any]) -> str:
    lines = [f"forgot {saved['forgotten']}"] if "forgotten" in saved else []
    for n in saved["networks"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(n["last_online_at"]))
        mark = "  (current)" if n.get("current") else ""
        lines.append(f"{_network_name(n):<32} last online {when}{mark}")
    return "\n".join(lines or ["no saved networks"])


def _network_name(network: dict[str, Any]) -> str:
    """A scan entry's name for a terminal: the SSID, its hex when it is not UTF-8, or hidden."""
    if network["hidden"]:
        return "<hidden>"
    return network["ssid"] if network["ssid"] is not None else f"<hex {network['ssid_hex']}>"
