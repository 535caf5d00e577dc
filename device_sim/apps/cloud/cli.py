"""``device-sim cloud serve|import|account add|supply-chain|devices``: the cloud emulator.

``serve`` runs :class:`~device_sim.apps.cloud.emulator.CloudEmulator` until SIGTERM or SIGINT and
prints one JSON line when it is ready::

    {"ready": true, "url": "https://localhost:8443", "ca_file": ".../server-ca.pem",
     "admin_token": "..."}

The other commands are admin clients (:class:`~device_sim.apps.cloud.admin.CloudAdmin`) and print
their result as JSON. The lead CLI wires this with :func:`add_parser` and :func:`run`;
``python -m device_sim.apps.cloud.cli serve ...`` works on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from ...errors import DeviceSimError
from .admin import CloudAdmin
from .emulator import CloudEmulator

__all__ = ["add_parser", "async_run", "main", "run"]

DEFAULT_LISTEN = "127.0.0.1:8443"


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``cloud`` subcommand (serve, import, account add, supply-chain, devices)."""
    parser = subparsers.add_parser(
        "cloud",
        help="the cloud emulator (activation, claim, registration) and its admin client",
        description="Run the loopback cloud emulator, or administer a running one.",
    )
    sub = parser.add_subparsers(dest="cloud_command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the emulator until SIGTERM/SIGINT")
    serve.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="CA, server certificate, admin token and database (made if missing)",
    )
    serve.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help="address to listen on; port 0 picks one (default: %(default)s)",
    )
    serve.add_argument(
        "--factory-chain",
        type=Path,
        metavar="PEM",
        help="the factory's issuing + root certificates (device client certs)",
    )

    def client(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", required=True, help="the emulator's URL (from the ready line)")
        p.add_argument("--ca", type=Path, required=True, help="its server-ca.pem")
        p.add_argument("--admin-token", default="", help="its admin token (from the ready line)")
        return p

    client(sub.add_parser("import", help="import the factory's cloud-import file")).add_argument(
        "file", type=Path, metavar="FILE"
    )
    account = sub.add_parser("account", help="accounts")
    asub = account.add_subparsers(dest="account_command", required=True, metavar="COMMAND")
    add = client(asub.add_parser("add", help="create an account"))
    add.add_argument("name", metavar="NAME")
    add.add_argument("--password", required=True)
    chain = client(sub.add_parser("supply-chain", help="record which account bought a unit"))
    chain.add_argument("serial", metavar="SERIAL")
    chain.add_argument("account", metavar="ACCOUNT")
    devices = client(sub.add_parser("devices", help="list an account's devices (as the account)"))
    devices.add_argument("account", metavar="ACCOUNT")
    devices.add_argument("--password", required=True)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``cloud`` command in a fresh event loop; return the exit code."""
    return asyncio.run(async_run(args))


async def async_run(args: argparse.Namespace) -> int:
    """Like :func:`run`, for callers already inside an event loop."""
    try:
        if args.cloud_command == "serve":
            return await _serve(args)
        return await _admin_command(args)
    except (DeviceSimError, aiohttp.ClientError, OSError, ValueError) as exc:
        print(f"cloud {args.cloud_command}: {exc}", file=sys.stderr)
        return 1


async def _serve(args: argparse.Namespace) -> int:
    host, port = _parse_listen(args.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with CloudEmulator(
            args.state_dir, host=host, port=port, factory_chain=args.factory_chain
        ) as cloud:
            print(
                json.dumps(
                    {
                        "ready": True,
                        "url": cloud.url,
                        "ca_file": str(cloud.ca_file),
                        "admin_token": cloud.admin_token,
                    }
                ),
                flush=True,
            )
            await stop.wait()
            logging.getLogger(__name__).info("stopping the cloud emulator")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


async def _admin_command(args: argparse.Namespace) -> int:
    result: Any
    async with CloudAdmin(args.url, args.ca, args.admin_token) as admin:
        if args.cloud_command == "import":
            result = {"imported": await admin.import_units(args.file)}
        elif args.cloud_command == "account":
            await admin.add_account(args.name, args.password)
            result = {"account": args.name}
        elif args.cloud_command == "supply-chain":
            await admin.set_supply_chain(args.serial, args.account)
            result = {"serial": args.serial, "account": args.account}
        else:
            result = await admin.list_devices(args.account, args.password)
    print(json.dumps(result))
    return 0


def _parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6).

    Raises:
        ValueError: not HOST:PORT with a port in 0-65535.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {listen!r}: HOST:PORT is required")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m device_sim.apps.cloud.cli cloud serve ...`` (or just ``serve ...``)."""
    parser = argparse.ArgumentParser(prog="device-sim")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, a in enumerate(args_list) if not a.startswith("-")), len(args_list))
    if args_list[first : first + 1] != ["cloud"]:  # allow the short form: `... cli serve`
        args_list.insert(first, "cloud")
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
