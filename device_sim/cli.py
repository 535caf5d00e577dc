"""The ``device-sim`` command: daemon, identity, reference client, demo and virtual adapters.

``main(argv) -> int`` parses; each subcommand is one function. ``--json`` prints machine output.
Exit codes: 0 success (provisioning ended online), 1 a coded onboarding failure, 2 usage or
configuration error (for ``ctl``: no daemon running).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError, DeviceSimError, OnboardingError


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(logging.DEBUG, level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        # bleak warns that it cannot run `bluetoothctl` to read the BlueZ version (there is no
        # BlueZ package under BlueZoo) and when the virtual bus goes away at the end of a demo.
        logging.getLogger("bleak").setLevel(logging.ERROR)


def _ssid_bytes(args: argparse.Namespace) -> bytes:
    if getattr(args, "ssid_hex", None):
        return bytes.fromhex(args.ssid_hex)
    if args.ssid is None:
        raise ConfigError("--ssid", "give --ssid or --ssid-hex")
    return str(args.ssid).encode("utf-8")


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", default="hci1", help="the phone-side adapter (default hci1)")
    p.add_argument("--name", help="the device's advertised name (default: the first found)")
    p.add_argument("--discover-timeout", type=float, default=20.0)
    p.add_argument("--softap", metavar="URL",
                   help="provision over the device's SoftAP HTTP API at URL instead of BLE")
    p.add_argument("--personality", default="native", choices=["native", "improv"],
                   help="BLE service to use: native (SRP session) or Improv Wi-Fi")
    p.add_argument("--fragment-size", type=int, help="bytes per GATT write (default MTU-3)")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _add_credentials(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--ssid", help="network name (UTF-8)")
    p.add_argument("--ssid-hex", help="network name as hex bytes (for non-UTF-8 SSIDs)")
    p.add_argument("--passphrase", help="Wi-Fi passphrase (omit for open networks)")
    p.add_argument("--hidden", action="store_true", help="the network does not broadcast its SSID")
    p.add_argument("--setup-code", required=required, help="the code on the device label")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="device-sim", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create a device identity (id + setup-code verifier)")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--setup-code", help="use this code instead of a random one")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("run", help="run the device daemon")
    p.add_argument("--config", type=Path, metavar="TOML",
                   help="daemon config file (packaging/device-sim.toml shows every key); "
                        "flags given here override it")
    p.add_argument("--state-dir", type=Path,
                   help="required without --config (the config's default: /var/lib/device-sim)")
    p.add_argument("--adapter", help="BLE adapter (default hci0)")
    p.add_argument("--backend", choices=["simulated", "networkmanager"],
                   help="network backend (default simulated)")
    p.add_argument("--scenario", help="scenario name or YAML path (default typical-home)")
    p.add_argument("--interface", help="networkmanager: the Wi-Fi interface (default: the first)")
    p.add_argument("--cloud-host", help="the TLS endpoint the connectivity check verifies")
    p.add_argument("--cloud-port", type=int, help="its port (default 443)")
    p.add_argument("--cloud-ca", type=Path, help="a PEM CA bundle for it (default: the system's)")
    p.add_argument("--activation", choices=["zero-touch", "claim", "registration"],
                   help="activate with the cloud after the checks (default: no cloud)")
    p.add_argument("--cloud-url", help="the cloud for activation, e.g. https://localhost:8443")
    p.add_argument("--activation-password", choices=["user", "cloud"],
                   help="registration: the device user's password comes from the app or cloud")
    p.add_argument("--zero-delay", action="store_true", help="no simulated delays (benchmarks)")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply simulated delays")
    p.add_argument("--timeout-scale", type=float,
                   help="multiply the profile's state timeouts (tests shorten them; default 1)")
    p.add_argument("--idle-timeout", type=float, help="session idle timeout in seconds")
    p.add_argument("--notify-size", type=int, help="bytes per notification (default 244)")
    g = p.add_argument_group("BLE personalities (native, Improv Wi-Fi)")
    g.add_argument("--personality", choices=["native", "improv", "both"],
                   help="GATT services to present (default: the profile's `personalities`)")
    g.add_argument("--improv-auth", choices=["none", "required"],
                   help="Improv authorization (default: the profile's improv.authorization)")
    g.add_argument("--improv-auth-timeout", type=float, metavar="S",
                   help="an Improv authorization lapses after S s (default 60)")
    g.add_argument("--improv-redirect-url", metavar="URL",
                   help="returned to the Improv client after a successful join")
    g.add_argument("--improv-button", metavar="CHIP:LINE",
                   help="a GPIO button that authorizes Improv (e.g. gpiochip0:17)")
    g = p.add_argument_group("doors (BLE and the SoftAP fallback)")
    g.add_argument("--doors", choices=["ble-only", "softap-only", "ble-then-softap", "both"],
                   help="fallback policy (default ble-then-softap)")
    g.add_argument("--softap-window", type=float, metavar="S",
                   help="ble-then-softap: open the AP when no BLE session started within S s "
                        "(default 60)")
    g.add_argument("--softap-listen", metavar="HOST:PORT",
                   help="the device's address on its AP (port 0: any free port; "
                        "default 127.0.0.1:8380)")
    g.add_argument("--softap-lan", metavar="HOST:PORT",
                   help="where the outcome is served on the home network after a SoftAP join "
                        "(default 127.0.0.1:8381)")
    g.add_argument("--softap-lan-announce", metavar="HOST",
                   help="the host name phones are told for the LAN listener (e.g. the Pi's "
                        "mDNS name raspberrypi.local; default: the --softap-lan host)")
    g.add_argument("--captive-mode", choices=["app", "portal"],
                   help="app: answer OS probes as online; portal: redirect them to the page "
                        "(default app)")
    g.add_argument("--softap-open", action="store_true",
                   help="run the AP without WPA2 (bench only; logged loudly)")
    g.add_argument("--softap-dnsmasq", metavar="IFACE",
                   help="run dnsmasq on IFACE while the AP is up (DHCP with option 114, "
                        "every DNS name -> the device)")

    p = sub.add_parser("client", help="the phone-side reference client")
    csub = p.add_subparsers(dest="client_command", required=True)
    c = csub.add_parser("scan", help="list nearby provisioning devices and their state")
    _add_target(c)
    c = csub.add_parser("networks", help="the device's Wi-Fi scan list")
    _add_target(c)
    c.add_argument("--setup-code", required=True)
    c = csub.add_parser("provision", help="send Wi-Fi credentials and follow the onboarding")
    _add_target(c)
    _add_credentials(c, required=False)  # the setup code: required except for Improv
    c.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the outcome")
    c.add_argument("--activate", action="store_true",
                   help="send activation details (below; none needed for zero-touch) and "
                        "report the device's cloud activation")
    c.add_argument("--account", help="activation: the user's cloud account")
    c.add_argument("--claim-token", help="activation: the claim token from the label's QR")
    c.add_argument("--device-password", help="registration: the device user's password")
    c = csub.add_parser("portal", help="detect a captive portal as a phone OS does (SoftAP)")
    c.add_argument("--probe-url", default="http://connectivitycheck.gstatic.com/generate_204",
                   help="the OS connectivity probe to send (default Android's)")
    c.add_argument("--api-url", help="the RFC 8908 API URI (DHCP option 114) to read too")
    c.add_argument("--json", action="store_true", help="print one JSON document")

    p = sub.add_parser("demo", help="virtual adapters + daemon + client: one onboarding, timeline")
    p.add_argument("--scenario", default="typical-home")
    _add_credentials(p, required=False)
    p.add_argument("--json", action="store_true", help="print the client's JSON result")
    p.add_argument("--zero-delay", action="store_true")
    p.add_argument("--retry-with-default", action="store_true",
                   help="after a failure, try again with the scenario's right credentials")
    p.add_argument("--transport", default="ble", choices=["ble", "softap"],
                   help="onboard over BLE (virtual adapters) or the SoftAP HTTP API (loopback)")
    p.add_argument("--personality", default="native", choices=["native", "improv"],
                   help="over BLE: the native service or the Improv Wi-Fi service")
    p.add_argument("--activation", choices=["zero-touch", "claim", "registration"],
                   help="a factory unit activated with the cloud emulator (in-process, account "
                        "alice): the demo succeeds only when online and activated")

    sub.add_parser("codes", help="print the diagnostic-code catalogue").add_argument(
        "--json", action="store_true")

    p = sub.add_parser("doctor", help="check this machine can run the daemon "
                                      "(D-Bus, BlueZ, NetworkManager, AP mode, country, state)")
    p.add_argument("--config", type=Path, metavar="TOML",
                   help="the daemon config (default /etc/device-sim/device-sim.toml if present)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")

    p = sub.add_parser("ctl", help="send a command to a running daemon (its control socket)")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("ctl_command", metavar="COMMAND", help="e.g. ping, commands")
    p.add_argument("params", metavar="KEY=VALUE", nargs="*",
                   help="command arguments; VALUE is read as JSON if it parses, else as text")

    from .virtual.cli import add_parser as add_virtual_parser
    add_virtual_parser(sub)
    from .factory.cli import add_parser as add_factory_parser
    add_factory_parser(sub)
    from .cloud.cli import add_parser as add_cloud_parser
    add_cloud_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        if args.command == "virtual-ble":
            from .virtual.cli import run as run_virtual
            return run_virtual(args)
        if args.command == "factory":
            from .factory.cli import run as run_factory
            return run_factory(args)
        if args.command == "cloud":
            from .cloud.cli import run as run_cloud
            return run_cloud(args)
        return asyncio.run(_dispatch(args))
    except KeyboardInterrupt:
        return 130
    except OnboardingError as exc:
        print(f"device-sim: {exc}", file=sys.stderr)
        return 1
    except DeviceSimError as exc:
        print(f"device-sim: {exc}", file=sys.stderr)
        return 2


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "init":
        return _cmd_init(args)
    if args.command == "run":
        return await _cmd_run(args)
    if args.command == "client":
        return await _cmd_client(args)
    if args.command == "demo":
        from .demo import run_demo
        return await run_demo(args)
    if args.command == "codes":
        return _cmd_codes(args)
    if args.command == "doctor":
        return await _cmd_doctor(args)
    if args.command == "ctl":
        return await _cmd_ctl(args)
    raise ConfigError(args.command, "unknown command")


def _cmd_init(args: argparse.Namespace) -> int:
    from .identity import create_identity
    from .security.secret import Secret
    from .security.setup_code import format_setup_code, normalize_setup_code
    from .store import DeviceStore

    from .profile import load_profile
    from .security.ap_credentials import wifi_qr_string

    profile = load_profile()
    code = Secret(normalize_setup_code(args.setup_code)) if args.setup_code else None
    with DeviceStore(args.state_dir) as store:
        identity, setup_code = create_identity(
            store, code, ap_passphrase_length=profile.softap.passphrase_length)
    shown = format_setup_code(setup_code.reveal())
    ap_ssid = profile.softap.ssid_pattern.format(short_id=identity.short_id)
    assert identity.softap_passphrase is not None
    ap_pass = identity.softap_passphrase.reveal()
    qr = wifi_qr_string(ap_ssid, identity.softap_passphrase).reveal()
    # The label's content, printed once: the device keeps the setup code only as a verifier.
    if args.json:
        print(json.dumps({"device_id": identity.device_id, "setup_code": shown,
                          "softap_ssid": ap_ssid, "softap_passphrase": ap_pass,
                          "softap_wifi_qr": qr}))
    else:
        print(f"device id:  {identity.device_id}\nsetup code: {shown}  (print it on the label; "
              "the device keeps only its SRP verifier)\n"
              f"setup Wi-Fi (SoftAP): {ap_ssid}  passphrase {ap_pass}\n"
              f"Wi-Fi QR:   {qr}")
    return 0


async def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses

    from .config import DaemonConfig, load_config
    from .daemon import DaemonOptions, run_daemon
    from .doors import Policy

    if args.config is None and args.state_dir is None:
        raise ConfigError("--state-dir", "give --state-dir or --config")
    # The config file (or the built-in defaults), then every flag given on the command line.
    kwargs = (load_config(args.config) if args.config else DaemonConfig()).to_daemon_options()
    flags = {"state_dir": args.state_dir, "adapter": args.adapter, "backend": args.backend,
             "scenario": args.scenario, "timeout_scale": args.timeout_scale,
             "idle_timeout_s": args.idle_timeout, "notify_size": args.notify_size,
             "doors": Policy(args.doors) if args.doors else None,
             "softap_window_s": args.softap_window,
             "personalities": _personalities(args.personality),
             "improv_authorization": args.improv_auth,
             "improv_authorization_timeout_s": args.improv_auth_timeout,
             "improv_redirect_url": args.improv_redirect_url,
             "improv_button": args.improv_button, "interface": args.interface,
             "cloud_host": args.cloud_host, "cloud_port": args.cloud_port,
             "cloud_ca": args.cloud_ca, "activation": args.activation,
             "cloud_url": args.cloud_url, "activation_password": args.activation_password}
    kwargs.update({k: v for k, v in flags.items() if v is not None})
    softap: dict[str, Any] = {}
    if args.softap_listen:
        softap["listen_host"], softap["listen_port"] = _host_port(args.softap_listen,
                                                                  "--softap-listen")
    if args.softap_lan:
        softap["lan_host"], softap["lan_port"] = _host_port(args.softap_lan, "--softap-lan")
    if args.softap_lan_announce:
        softap["lan_announce"] = args.softap_lan_announce
    if args.captive_mode:
        softap["captive_mode"] = args.captive_mode
    if args.softap_open:
        softap["open_ap"] = True
    if args.softap_dnsmasq:
        softap["dnsmasq_interface"] = args.softap_dnsmasq
    kwargs["softap"] = dataclasses.replace(kwargs["softap"], **softap)
    opts = DaemonOptions(**kwargs, zero_delay=args.zero_delay, time_scale=args.time_scale)
    return await run_daemon(opts)


async def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose, exit_code, format_results

    results = await diagnose(args.config)
    _print(args, [r.to_json() for r in results], lambda: format_results(results))
    return exit_code(results)


def _personalities(choice: str | None) -> tuple[str, ...] | None:
    return None if choice is None else ("native", "improv") if choice == "both" else (choice,)


def _host_port(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(flag, f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


async def _cmd_client(args: argparse.Namespace) -> int:
    from .client.ble import discover
    from .client.flow import Target, list_networks, provision
    from .profile import load_profile
    from .security.secret import Secret

    if args.client_command == "portal":
        return await _cmd_portal(args)
    profile = load_profile()
    target = Target(adapter=args.adapter, name=args.name,
                    discover_timeout=args.discover_timeout, fragment_size=args.fragment_size,
                    softap_url=args.softap)
    if args.client_command == "scan":
        devices = await discover(profile, adapter=args.adapter, timeout=args.discover_timeout,
                                 name=args.name)
        rows = [d.to_json() for d in devices]
        _print(args, rows, lambda: "\n".join(
            f"{r['name']:<10} {r['address']}  rssi {r['rssi']:>4}  {r['state']} ({r['code_name']})"
            for r in rows) or "no provisioning devices found")
        return 0
    if args.personality != "improv" and not args.setup_code:
        raise ConfigError("--setup-code", "required (the code on the device label)")
    setup_code = Secret(args.setup_code or "")
    if args.client_command == "networks":
        nets = await list_networks(profile, target, setup_code)
        _print(args, nets, lambda: "\n".join(
            f"{(n['ssid'] if n['ssid'] is not None else '<hex ' + n['ssid_hex'] + '>') if not n['hidden'] else '<hidden>':<24}"
            f" {n['rssi']:>4} dBm  {n['band']:<6} ch {n['channel']:<3} {n['security']}"
            for n in nets))
        return 0
    if args.personality == "improv":
        from .client.improv import provision_improv

        result = await provision_improv(
            profile, adapter=args.adapter, name=args.name, discover_timeout=args.discover_timeout,
            ssid=_ssid_bytes(args), outcome_timeout=args.timeout,
            passphrase=Secret(args.passphrase) if args.passphrase is not None else None)
        _print(args, result, lambda: format_result(result))
        return 0 if result.get("state") == "online" else 1
    result = await provision(
        profile, target, setup_code=setup_code, ssid=_ssid_bytes(args),
        passphrase=Secret(args.passphrase) if args.passphrase is not None else None,
        hidden=args.hidden, outcome_timeout=args.timeout,
        on_progress=None if args.json else _print_progress,
        activation=({"account": args.account,
                     "claim_token": Secret(args.claim_token) if args.claim_token else None,
                     "device_password": (Secret(args.device_password)
                                         if args.device_password else None)}
                    if args.activate or args.account or args.claim_token else None))
    _print(args, result, lambda: format_result(result))
    return 0 if result.get("state") == "online" else 1


async def _cmd_portal(args: argparse.Namespace) -> int:
    import socket
    from urllib.parse import urlsplit

    from .client.captive import probe_connectivity

    host = urlsplit(args.probe_url).hostname or ""
    loop = asyncio.get_running_loop()
    try:  # through the system resolver, as the OS would (on the AP: the device's DNS)
        infos = await loop.getaddrinfo(host, 80, family=socket.AF_INET, type=socket.SOCK_STREAM)
        addresses = sorted({str(info[4][0]) for info in infos})
    except OSError as exc:
        addresses = []
        print(f"device-sim: cannot resolve {host}: {exc}", file=sys.stderr)
    probe = await probe_connectivity(args.probe_url, api_url=args.api_url)
    data = {"probe_host": host, "resolved": addresses, "probe_url": probe.probe_url,
            "status": probe.status, "captive": probe.captive, "portal_url": probe.portal_url,
            "api": probe.api}
    _print(args, data, lambda: "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


def _print_progress(phase: str, info: dict[str, Any]) -> None:
    if phase == "event":
        print(f"  device +{info['t_ms']:>6} ms  {info['state']:<20} {info['phase']:<16}"
              f" {info['code_name'] if info['code'] else ''}", flush=True)
    else:
        print(f"- {phase} {json.dumps(info) if info else ''}", flush=True)


def format_result(result: dict[str, Any]) -> str:
    t = result.get("timings_ms", {})
    lines = [f"result: {result.get('state')}  code {result.get('code')} {result.get('code_name')}",
             f"  {result.get('message')}",
             f"  next step: {result.get('next_step')}",
             "  timings (ms): " + ", ".join(f"{k} {v}" for k, v in t.items() if v is not None),
             f"  round trips ({result.get('transport', 'ble')}): "
             f"{result.get('gatt_round_trips')}"]
    if result.get("detail"):
        lines.insert(2, f"  detail: {result['detail']}")
    return "\n".join(lines)


def _cmd_codes(args: argparse.Namespace) -> int:
    from .profile import load_profile

    profile = load_profile()
    rows = [vars(c) for c in profile.codes.values()]
    _print(args, rows, lambda: "\n".join(
        f"{r['id']:>4} {r['name']:<26} {r['user_message']}\n{'':>31}next: {r['next_step']}"
        for r in rows))
    return 0


async def _cmd_ctl(args: argparse.Namespace) -> int:
    from .control import control_request
    from .errors import TransportError

    params: dict[str, Any] = {}
    for item in args.params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    try:
        result = await control_request(args.state_dir, args.ctl_command, params)
    except OnboardingError as exc:
        print(f"error {exc.code.name} ({int(exc.code)}): {exc.detail}", file=sys.stderr)
        return 1
    except TransportError as exc:
        print(f"device-sim: {exc.detail}", file=sys.stderr)
        return 2
    _print(args, result, lambda: "\n".join(
        f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in result.items()) or "ok")
    return 0


def _print(args: argparse.Namespace, data: Any, human: Any) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else human())


if __name__ == "__main__":
    sys.exit(main())
