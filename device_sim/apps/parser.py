"""The ``device-sim`` argument tree, one function per command: :func:`build_parser` adds each.

The ``run`` flags come from the options model (:func:`device_sim.config.add_run_flags`), the
personalities' names and phone options from the door registry; ``fleet``, ``virtual-ble``,
``factory`` and ``cloud`` bring their own parsers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..doors import registry
from .commands.args import (
    Parser,
    hex_bytes,
    http_url,
    positive_float,
    positive_int,
    setup_code,
)
from .commands.eap_args import add_eap_flags

__all__ = ["build_parser", "version"]


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("device-sim")
    except PackageNotFoundError:
        return "(not installed: run from a source tree)"


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", default="hci1", help="the phone-side adapter (default hci1)")
    p.add_argument("--name", help="the device's advertised name (default: the first found)")
    p.add_argument(
        "--discover-timeout",
        type=positive_float,
        default=20.0,
        metavar="S",
        help="seconds to look for the device (default 20)",
    )
    p.add_argument(
        "--softap",
        metavar="URL",
        type=http_url,
        help="provision over the device's SoftAP HTTP API at URL instead of BLE",
    )
    p.add_argument(
        "--personality",
        default=registry.default(),
        choices=registry.names(),
        help=f"the protocol to speak (default {registry.default()})",
    )
    p.add_argument(
        "--fragment-size", type=positive_int, help="bytes per GATT write (default MTU-3)"
    )
    p.add_argument(
        "--ble-stack",
        default="bluez",
        choices=["bluez", "bumble"],
        help="the phone's BLE: bleak on a BlueZ adapter (--adapter), or bumble as a central on "
        "the controller --bumble-transport names (no D-Bus)",
    )
    p.add_argument(
        "--bumble-transport",
        metavar="SPEC",
        help="with --ble-stack bumble: a bumble transport moniker (tcp-client:HOST:PORT, "
        "android-netsim, serial:DEV, usb:N, hci-socket:N); --name may be the device's address",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")


SECURITY_CHOICES = ("open", "owe", "wpa2-psk", "wpa3-sae", "wpa2-wpa3")


def _add_credentials(p: argparse.ArgumentParser, required: bool, *, world: bool = False) -> None:
    p.add_argument("--ssid", help="network name (UTF-8)")
    p.add_argument(
        "--ssid-hex", type=hex_bytes, help="network name as hex bytes (for non-UTF-8 SSIDs)"
    )
    p.add_argument("--passphrase", help="Wi-Fi passphrase (omit for open networks)")
    p.add_argument("--hidden", action="store_true", help="the network does not broadcast its SSID")
    p.add_argument(
        "--security",
        choices=SECURITY_CHOICES,
        help="the network's security as the user chose it (native; default: the device reads "
        "it from the scan, or tries WPA3 then WPA2 for a hidden network)",
    )
    p.add_argument(
        "--setup-code", required=required, type=setup_code, help="the code on the device label"
    )
    add_eap_flags(p, world=world)


def _init(sub: Any) -> None:
    p = sub.add_parser("init", help="create a device identity (id + setup-code verifier)")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument(
        "--setup-code", type=setup_code, help="use this code (8 digits) instead of a random one"
    )
    p.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        help="give the device the scenario's history (the networks it saved, online before a "
        "power cut), e.g. late-router",
    )
    p.add_argument("--json", action="store_true")


def _run(sub: Any) -> None:
    p = sub.add_parser("run", help="run the device daemon")
    p.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help="daemon config file (packaging/device-sim.toml shows every key); "
        "DEVICE_SIM_* variables and the flags given here override it",
    )
    from ..config import add_run_flags

    add_run_flags(p)


def _client(sub: Any) -> None:
    p = sub.add_parser("client", help="the phone-side reference client")
    csub = p.add_subparsers(dest="client_command", required=True)
    c = csub.add_parser(
        "scan",
        help="list nearby provisioning devices and their state, each as it appears (until "
        "--discover-timeout; with --name or --first, until the first match)",
    )
    _add_target(c)
    c.add_argument("--first", action="store_true", help="stop at the first device found")
    c = csub.add_parser("networks", help="the device's Wi-Fi scan list")
    _add_target(c)
    c.add_argument(
        "--setup-code", required=True, type=setup_code, help="the code on the device label"
    )
    c = csub.add_parser(
        "saved-networks", help="the networks the device keeps, most recent first (a session)"
    )
    _add_target(c)
    c.add_argument(
        "--setup-code", required=True, type=setup_code, help="the code on the device label"
    )
    c = csub.add_parser("forget-network", help="make the device forget a saved network")
    _add_target(c)
    c.add_argument(
        "--setup-code", required=True, type=setup_code, help="the code on the device label"
    )
    which = c.add_mutually_exclusive_group(required=True)
    which.add_argument("--ssid", help="the network's name (UTF-8)")
    which.add_argument(
        "--ssid-hex", type=hex_bytes, metavar="HEX", help="the network's SSID as hex (any bytes)"
    )
    c = csub.add_parser("diagnostics", help="read the device's diagnostics bundle (a session)")
    _add_target(c)
    c.add_argument(
        "--setup-code", required=True, type=setup_code, help="the code on the device label"
    )
    c.add_argument("--out", type=Path, required=True, metavar="FILE", help="where it goes")
    _client_provision(csub)
    c = csub.add_parser("portal", help="detect a captive portal as a phone OS does (SoftAP)")
    c.add_argument(
        "--probe-url",
        default="http://connectivitycheck.gstatic.com/generate_204",
        type=http_url,
        help="the OS connectivity probe to send (default Android's)",
    )
    c.add_argument(
        "--api-url", type=http_url, help="the RFC 8908 API URI (DHCP option 114) to read too"
    )
    c.add_argument("--json", action="store_true", help="print one JSON document")


def _client_provision(csub: Any) -> None:
    c = csub.add_parser("provision", help="send Wi-Fi credentials and follow the onboarding")
    _add_target(c)
    _add_credentials(c, required=False)  # the setup code: required except for Improv
    c.add_argument(
        "--timeout", type=positive_float, default=120.0, help="seconds to wait for the outcome"
    )
    c.add_argument(
        "--activate",
        action="store_true",
        help="send activation details (below; none needed for zero-touch) and "
        "report the device's cloud activation",
    )
    c.add_argument("--account", help="activation: the user's cloud account")
    c.add_argument("--claim-token", help="activation: the claim token from the label's QR")
    c.add_argument("--device-password", help="registration: the device user's password")
    for option in registry.phone_options().values():  # the personalities' phone options
        c.add_argument(
            f"--{option.key.replace('_', '-')}",
            dest=option.key,
            type=option.kind,
            choices=option.choices,
            help=option.help,
        )
    c.add_argument(
        "--phone",
        metavar="JSON",
        help="play a phone and its user, e.g. '{\"bluetooth\": false}', "
        '\'{"typo_probability": 0.3, "think_s": [5, 20]}\', '
        "'{\"drops_no_internet_after_s\": 10}', '{\"walks_away_after_s\": 30}' "
        "(keys: device_sim/apps/bench/phone.py PhoneBehaviour)",
    )
    c.add_argument("--phone-seed", type=int, default=0, help="seeds the phone's draws (default 0)")
    c.add_argument(
        "--device-state-dir",
        type=Path,
        metavar="DIR",
        help="an emulated device on this machine: its control socket says when its access "
        "point is up (a phone without Bluetooth waits for it) and takes the button press a "
        "personality needs (Improv)",
    )
    c.add_argument(
        "--fleet",
        type=Path,
        metavar="ROOT",
        help="onboard every device of a running `device-sim fleet --root ROOT`, several at "
        "once, each with its world's credentials (--ssid/--passphrase: the same for all)",
    )
    c.add_argument("--devices", metavar="NAME[,NAME]", help="with --fleet: only these")
    c.add_argument(
        "--concurrency", type=positive_int, default=32, help="with --fleet: onboardings at once"
    )


def _demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="virtual adapters + daemon + client: one onboarding, timeline")
    p.add_argument("--scenario", default="typical-home")
    _add_credentials(p, required=False, world=True)
    p.add_argument("--json", action="store_true", help="print the client's JSON result")
    p.add_argument("--zero-delay", action="store_true")
    p.add_argument(
        "--time-scale",
        type=positive_float,
        default=1.0,
        metavar="X",
        help="run the world and the device's timers (timeouts, retries, the doors reopening) "
        "X times as slow: 0.1 plays a scenario's story ten times faster (default 1)",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed the world's draws (delay ranges, jitter, failure probabilities), so a run "
        "can be repeated exactly (default: the scenario's)",
    )
    p.add_argument(
        "--retry-with-default",
        action="store_true",
        help="after a failure, try again with the scenario's right credentials",
    )
    p.add_argument(
        "--transport",
        default="ble",
        choices=["ble", "softap"],
        help="onboard over BLE (virtual adapters) or the SoftAP HTTP API (loopback)",
    )
    p.add_argument(
        "--ble-stack",
        default="bluez",
        choices=["bluez", "bumble"],
        help="over BLE: BlueZoo's virtual adapters on a private D-Bus (bluez), or bumble's "
        "virtual controllers on one link, the device's served over TCP (bumble: no D-Bus)",
    )
    p.add_argument(
        "--personality",
        default=registry.default(),
        choices=registry.names(),
        help=f"over BLE: the protocol the phone speaks (default {registry.default()})",
    )
    p.add_argument(
        "--activation",
        choices=["zero-touch", "claim", "registration"],
        help="a factory unit activated with the cloud emulator (in-process, account "
        "alice): the demo succeeds only when online and activated",
    )


def _scenario(sub: Any) -> None:
    p = sub.add_parser("scenario", help="check scenario files; write their JSON Schema")
    ssub = p.add_subparsers(dest="scenario_command", required=True)
    c = ssub.add_parser("check", help="validate scenario files, every error of each at once")
    c.add_argument("scenarios", nargs="+", metavar="NAME|FILE")
    c = ssub.add_parser("schema", help="the JSON Schema of scenario files (editor completion)")
    c.add_argument("--out", type=Path, metavar="FILE", help="write it here (default: stdout)")
    c = ssub.add_parser(
        "certs",
        help="the simulated world's enterprise certificates as PEM files, for an app's own "
        "tests: the CAs world, public and other, and a client certificate and key",
    )
    c.add_argument("--out", type=Path, required=True, metavar="DIR")
    c.add_argument(
        "--identity",
        default="sensor-0042@devices.corp.example",
        help="the client certificate's identity (default: enterprise-tls's device)",
    )

    from .bench.cli import add_parser as add_bench_parser

    add_bench_parser(sub)


def _codes(sub: Any) -> None:
    p = sub.add_parser("codes", help="the diagnostic-code catalogue, or one code in full")
    p.add_argument("code", nargs="?", help="a code's number or name (e.g. 104, NO_DHCP_LEASE)")
    p.add_argument(
        "--shown",
        action="store_true",
        help="the reverse map: what an Improv or ESP app shows, and the device codes it may mean",
    )
    p.add_argument("--json", action="store_true")


def _docs(sub: Any) -> None:
    p = sub.add_parser("docs", help="write the per-error documentation (Markdown and an HTML page)")
    p.add_argument("--out", type=Path, default=Path("docs"), help="directory (default docs)")


def _doctor(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check this machine can run the daemon "
        "(D-Bus, BlueZ, NetworkManager, AP mode, country, state)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help="the daemon config (default /etc/device-sim/device-sim.toml if present)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _watch(sub: Any) -> None:
    p = sub.add_parser("watch", help="watch devices' onboarding as it happens")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--state-dir",
        type=Path,
        help="a device's state directory, or a directory of them (every one is watched)",
    )
    source.add_argument(
        "--url",
        type=http_url,
        help="a device's watch listener (run --watch), on this host or another",
    )
    source.add_argument(
        "--bundle",
        type=Path,
        metavar="FILE",
        help="open a diagnostics bundle a customer sent (ctl diagnostics --out FILE): its "
        "summary, timeline and failure card",
    )
    p.add_argument(
        "--token",
        help="with --url: the listener's token (its <state-dir>/watch.token; or "
        "DEVICE_SIM_WATCH_TOKEN)",
    )
    p.add_argument("--json", action="store_true", help="print the event stream as JSON lines")
    p.add_argument(
        "--last",
        type=int,
        default=20,
        choices=range(0, 201),
        metavar="N",
        help="events from before it joined to show first (0-200, default 20)",
    )
    p.add_argument(
        "--until-outcome",
        action="store_true",
        help="exit at the next outcome: 0 online, 1 failed",
    )
    p.add_argument("--timeout", type=positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--plain", action="store_true", help="one line per event, even on a terminal")


def _ctl(sub: Any) -> None:
    p = sub.add_parser("ctl", help="send a command to a running daemon (its control socket)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--state-dir", type=Path)
    where.add_argument(
        "--fleet", type=Path, metavar="ROOT", help="every device of a fleet (or --device NAME)"
    )
    p.add_argument("--device", metavar="NAME", help="with --fleet: one device (dev-0001)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--out", type=Path, metavar="FILE", help="where a command's file goes (diagnostics)"
    )
    p.add_argument(
        "ctl_command",
        metavar="COMMAND",
        help="e.g. ping, commands, status; fault add NAME step=dhcp [probability=0.5] "
        "[delay_ms=3000] [jitter_ms=500] [result=timeout] | fault remove NAME | fault list",
    )
    p.add_argument(
        "params",
        metavar="KEY=VALUE",
        nargs="*",
        help="command arguments; VALUE is read as JSON if it parses, else as text",
    )


def _service(sub: Any) -> None:
    from .service import add_parser

    add_parser(sub)


COMMANDS: list[Callable[[Any], None]] = [
    _init,
    _run,
    _client,
    _demo,
    _scenario,
    _codes,
    _docs,
    _doctor,
    _watch,
    _ctl,
    _service,
]


def build_parser(*, daemon_only: bool = False) -> argparse.ArgumentParser:
    """The command line. ``daemon_only``: without the commands whose parsers load the test
    harness, the cloud emulator and the factory (D-Bus and HTTP libraries): the daemon
    (``device-sim run``) then starts with only what it serves."""
    parser = Parser(prog="device-sim", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("--version", action="version", version=f"device-sim {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    if daemon_only:
        return parser
    from .fleet.cli import add_parser as add_fleet_parser

    add_fleet_parser(sub)
    from .virtual.cli import add_parser as add_virtual_parser

    add_virtual_parser(sub)
    from .factory.cli import add_parser as add_factory_parser

    add_factory_parser(sub)
    from .cloud.cli import add_parser as add_cloud_parser

    add_cloud_parser(sub)
    return parser
