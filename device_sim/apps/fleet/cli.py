"""``device-sim fleet``: the command line of :mod:`device_sim.apps.fleet.host`."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from ...doors import registry
from ...errors import ConfigError
from ...security.secret import Secret

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fleet",
        help="run N emulated devices in one process (one event loop)",
        description="Each device has its own identity, state directory, doors and control "
        "socket under --root; ROOT/fleet.json indexes them for `client provision --fleet`, "
        "`ctl --fleet` and `watch --fleet`.",
    )
    p.add_argument("--root", type=Path, required=True, help="the fleet's directory")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--count", type=int, metavar="N", help="N devices of one kind")
    what.add_argument("--file", type=Path, metavar="YAML", help="a fleet file (groups)")
    p.add_argument("--transport", choices=("softap", "ble"), default="softap")
    p.add_argument("--scenario", default="engineering-wifi", help="with --count")
    p.add_argument("--personality", default=registry.default(), help="with --count")
    p.add_argument("--seed", type=int, default=0, help="with --count: seeds every world")
    p.add_argument(
        "--phones",
        type=int,
        default=16,
        help="BLE: phone adapters to add for the client side (each onboards one device at a "
        "time; default 16)",
    )
    p.add_argument(
        "--bus", metavar="ADDRESS", help="BLE: an existing BlueZoo bus (default: start one)"
    )
    p.add_argument(
        "--ble-stack",
        choices=("bluez", "bumble"),
        default="bluez",
        help="BLE: BlueZoo adapters on a D-Bus (bluez), or every device on one in-process link "
        "of bumble's virtual controllers, the phones' controllers served over TCP (bumble)",
    )
    p.add_argument(
        "--config", type=Path, metavar="TOML", help="options every device shares (as `run`)"
    )
    p.add_argument("--zero-delay", action="store_true", help="no simulated delays")
    p.add_argument("--time-scale", type=float, help="multiply the worlds' delays")
    p.add_argument("--timeout-scale", type=float, help="multiply the devices' timeouts")


async def run(args: argparse.Namespace) -> int:
    """Raises ConfigError (bad fleet, file or option), DeviceSimError (a device cannot start)."""
    from ...config import resolve_options
    from .host import FleetHost
    from .model import fleet_of, load_fleet

    if args.file is not None:
        fleet = load_fleet(args.file, args.ble_stack)
    else:
        fleet = fleet_of(
            args.count,
            args.transport,
            scenario=args.scenario,
            personality=args.personality,
            seed=args.seed,
            ble_stack=args.ble_stack,
        )
    if not 0 <= args.phones <= 64:
        raise ConfigError("--phones", "0 to 64 phone adapters")
    base = resolve_options(args.config)
    network = base.network
    if args.zero_delay:
        network = dataclasses.replace(network, zero_delay=True)
    if args.time_scale is not None:
        network = dataclasses.replace(network, time_scale=args.time_scale)
    timeouts = base.timeouts
    if args.timeout_scale is not None:
        if not 0 < args.timeout_scale <= 1000:
            raise ConfigError("--timeout-scale", "above 0, at most 1000")
        timeouts = dataclasses.replace(timeouts, scale=args.timeout_scale)
    ble = base.ble
    if args.ble_stack == "bumble":
        ble = dataclasses.replace(ble, stack="bumble")
    base = dataclasses.replace(base, network=network, timeouts=timeouts, ble=ble)
    code = None
    if os.environ.get("DEVICE_SIM_SETUP_CODE"):  # one code for every device
        from ...security.setup_code import normalize_setup_code

        try:
            code = Secret(normalize_setup_code(os.environ["DEVICE_SIM_SETUP_CODE"]))
        except ValueError as exc:
            raise ConfigError("DEVICE_SIM_SETUP_CODE", str(exc)) from None
    host = FleetHost(
        fleet, args.root, base, phones=args.phones, setup_code=code, bus_address=args.bus
    )
    return await host.run()
