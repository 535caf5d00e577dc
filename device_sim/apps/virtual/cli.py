"""``device-sim virtual-ble up|down|status``: virtual BLE adapters that outlive the command.

For two-terminal work: ``up`` starts the private bus and BlueZoo detached, waits until every
adapter is powered, records them in ``RUN_DIR/state.json`` and prints a line for the shell::

    eval "$(device-sim virtual-ble up)"     # sets DBUS_SYSTEM_BUS_ADDRESS
    device-sim virtual-ble status
    device-sim virtual-ble down

It uses the same start routine as :class:`~device_sim.apps.virtual.harness.VirtualBle` and the same
stop routine (:func:`~device_sim.apps.virtual.harness.terminate`). The lead CLI wires it with
:func:`add_parser` and :func:`run`; ``python -m device_sim.apps.virtual.cli`` works on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ...errors import DeviceSimError, VirtualBleError
from .harness import (
    BUS_ENV,
    DEFAULT_TIMEOUT,
    ProcInfo,
    VirtualBle,
    VirtualBleState,
    is_running,
    terminate,
)


def default_run_dir() -> Path:
    """The user's own: ``$XDG_RUNTIME_DIR/device-sim-virtual-ble`` (systemd makes it per user,
    0700), else ``/tmp/device-sim-virtual-ble-<uid>``. One shared by every user and checkout
    of a host let one job's ``status`` see another's bus, and its ``down`` stop it."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "device-sim-virtual-ble"
    return Path(f"/tmp/device-sim-virtual-ble-{os.getuid()}")


def owner() -> str:
    """Who starts a harness: this installation of device-sim (a checkout, or site-packages)."""
    return str(Path(__file__).resolve().parents[3])  # above device_sim/apps/virtual/


DEFAULT_RUN_DIR = default_run_dir()
STATE_FILE = "state.json"
EXIT_NOT_UP = 3  # `status` when nothing is up (as LSB init scripts do)
_STATE_VERSION = 1
_DEFAULT_ADAPTERS = 2
_DEFAULT_SCAN_INTERVAL = 1


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``virtual-ble`` subcommand (with ``up``, ``down``, ``status``) to a CLI."""
    parser = subparsers.add_parser(
        "virtual-ble",
        help="virtual BLE adapters (private D-Bus + BlueZoo) that outlive the command",
        description="Run BlueZoo virtual BLE adapters on a private system bus, detached.",
    )
    sub = parser.add_subparsers(dest="virtual_ble_command", required=True, metavar="COMMAND")

    def with_run_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--run-dir",
            type=Path,
            default=DEFAULT_RUN_DIR,
            help="state, bus socket and logs (default: %(default)s)",
        )
        return p

    up = with_run_dir(sub.add_parser("up", help="start (or reuse) the bus and BlueZoo"))
    up.add_argument(
        "--adapters",
        type=int,
        default=None,
        metavar="N",
        help=f"number of adapters hci0..hciN-1 (default: {_DEFAULT_ADAPTERS})",
    )
    up.add_argument(
        "--scan-interval",
        type=int,
        default=None,
        metavar="S",
        help=f"BlueZoo seconds between scan rounds (default: {_DEFAULT_SCAN_INTERVAL})",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for powered adapters (default: %(default)s)",
    )
    down = with_run_dir(sub.add_parser("down", help="stop them and remove the state"))
    down.add_argument(
        "--force",
        action="store_true",
        help="stop a harness another checkout or installation started, too",
    )
    status = with_run_dir(
        sub.add_parser(
            "status", help="report; exit 0 if up and powered, 1 if unhealthy, 3 if not up"
        )
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``virtual-ble`` command in a fresh event loop; return the exit code."""
    return asyncio.run(async_run(args))


async def async_run(args: argparse.Namespace) -> int:
    """Like :func:`run`, for callers already inside an event loop."""
    commands = {"up": _up, "down": _down, "status": _status}
    try:
        return await commands[args.virtual_ble_command](args)
    except DeviceSimError as exc:
        print(f"virtual-ble {args.virtual_ble_command}: {exc.detail}", file=sys.stderr)
        return 1


# -- commands -----------------------------------------------------------------------------


async def _up(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir.absolute()
    with _locked(run_dir):
        state = _load(run_dir)
        if state is not None and all(is_running(p) for p in state.processes):
            wanted = {
                "adapters": (args.adapters, len(state.adapters)),
                "scan interval": (args.scan_interval, state.scan_interval),
            }
            for what, (asked, actual) in wanted.items():
                if asked is not None and asked != actual:
                    print(
                        f"virtual-ble up: already up in {run_dir} with {what} {actual}, not "
                        f"{asked}; run `device-sim virtual-ble down --run-dir {run_dir}` first",
                        file=sys.stderr,
                    )
                    return 1
            print(f"# virtual-ble already up in {run_dir}; reusing it")
            _print_env(state)
            return 0
        if state is not None:
            print(f"# virtual-ble: stale state in {run_dir}; cleaning up", file=sys.stderr)
            await terminate(state.processes)
        _remove_state(run_dir)  # also a socket or config left by a failed or killed `up`
        vb = VirtualBle(
            _DEFAULT_ADAPTERS if args.adapters is None else args.adapters,
            scan_interval=_DEFAULT_SCAN_INTERVAL
            if args.scan_interval is None
            else args.scan_interval,
            timeout=args.timeout,
            workdir=run_dir,
        )
        await vb.start()
        state = vb.detach()
        try:
            _save(run_dir, state)
        except BaseException:
            await terminate(state.processes)
            raise
    print(f"# virtual-ble up in {run_dir} (log: {state.bluezoo_log})")
    _print_env(state)
    return 0


async def _down(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir.absolute()
    if not (run_dir / STATE_FILE).exists():
        print(f"virtual-ble down: not up (no state in {run_dir})")
        return 0
    with _locked(run_dir):
        state = _load(run_dir)
        if state is None:
            print(f"virtual-ble down: not up (no state in {run_dir})")
            return 0
        started_by = _owner_of(run_dir)
        if started_by not in (None, owner()) and not args.force:
            print(
                f"virtual-ble down: the harness in {run_dir} was started by {started_by}, not "
                f"this installation ({owner()}); not stopping it (--force stops it)",
                file=sys.stderr,
            )
            return 1
        await terminate(state.processes)
        _remove_state(run_dir)
    print(f"virtual-ble down: stopped ({', '.join(f'{p.name} {p.pid}' for p in state.processes)})")
    return 0


async def _status(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir.absolute()
    state = _load(run_dir)
    report: dict[str, Any] = {"up": False, "run_dir": str(run_dir)}
    if state is not None:
        procs = {p.name: {"pid": p.pid, "running": is_running(p)} for p in state.processes}
        adapters = await _read_adapters(state) if all(v["running"] for v in procs.values()) else {}
        report.update(
            owner=_owner_of(run_dir),
            bus_address=state.bus_address,
            export=_export_line(state),
            processes=procs,
            adapters=[
                {"name": n, "address": a, "powered": adapters.get(n, ("", False))[1]}
                for n, a in zip(state.adapters, state.addresses, strict=True)
            ],
            bluezoo_log=str(state.bluezoo_log),
        )
        report["up"] = all(a["powered"] for a in report["adapters"]) and bool(adapters)
    if args.json:
        print(json.dumps(report, indent=2))
    elif state is None:
        print(f"virtual-ble: not up (no state in {run_dir})")
    else:
        print(f"virtual-ble: {'up' if report['up'] else 'UNHEALTHY'} (run dir {run_dir})")
        for name, proc in report["processes"].items():
            print(f"  {name}: pid {proc['pid']} {'running' if proc['running'] else 'NOT RUNNING'}")
        for a in report["adapters"]:
            print(f"  {a['name']} {a['address']} {'powered' if a['powered'] else 'NOT POWERED'}")
        print(f"  log: {state.bluezoo_log}")
        print(report["export"])
    if state is None:
        return EXIT_NOT_UP
    return 0 if report["up"] else 1


# -- helpers ------------------------------------------------------------------------------


async def _read_adapters(
    state: VirtualBleState, timeout: float = 3.0
) -> dict[str, tuple[str, bool]]:
    """Adapter states over the bus; empty if the bus does not answer within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            from dbus_fast import BusType
            from dbus_fast.aio import MessageBus

            from .bluez_bus import adapter_states

            bus = await MessageBus(bus_address=state.bus_address, bus_type=BusType.SYSTEM).connect()
            try:
                return await adapter_states(bus)
            finally:
                bus.disconnect()
                await bus.wait_for_disconnect()
    except (OSError, TimeoutError, EOFError) as exc:
        logging.getLogger(__name__).debug("bus %s unreachable: %s", state.bus_address, exc)
        return {}


def _export_line(state: VirtualBleState) -> str:
    # Without the ",guid=..." part: the socket path survives down/up, the guid does not, and
    # libdbus clients refuse a server whose guid differs from the one in the address.
    address = ",".join(p for p in state.bus_address.split(",") if not p.startswith("guid="))
    return f"export {BUS_ENV}={shlex.quote(address)}"


def _print_env(state: VirtualBleState) -> None:
    print(_export_line(state))
    print(
        "# adapters: "
        + " ".join(f"{n}={a}" for n, a in zip(state.adapters, state.addresses, strict=True))
    )


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/lock so two commands never start or stop the same harness at once.

    Raises:
        VirtualBleError: the run dir cannot be made, or another command holds the lock.
    """
    try:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(run_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise VirtualBleError(f"cannot use run dir {run_dir}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VirtualBleError(f"another virtual-ble command is using {run_dir}") from None
        yield
    finally:
        os.close(fd)


def _load(run_dir: Path) -> VirtualBleState | None:
    """The recorded state, or None if there is none.

    Raises:
        VirtualBleError: the state file exists but cannot be read or parsed.
    """
    path = run_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != _STATE_VERSION:
            raise ValueError(f"unknown version {raw.get('version')!r}")
        return VirtualBleState(
            bus_address=str(raw["bus_address"]),
            adapters=tuple(str(a) for a in raw["adapters"]),
            addresses=tuple(str(a) for a in raw["addresses"]),
            scan_interval=int(raw["scan_interval"]),
            workdir=Path(raw["workdir"]),
            bluezoo_log=Path(raw["bluezoo_log"]),
            processes=tuple(
                ProcInfo(str(p["name"]), int(p["pid"]), int(p["start_ticks"]))
                for p in raw["processes"]
            ),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VirtualBleError(
            f"unreadable state file {path} ({exc}); stop the processes by hand and delete it"
        ) from exc


def _owner_of(run_dir: Path) -> str | None:
    """The installation that started the harness in ``run_dir`` (None: not recorded)."""
    try:
        raw = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    found = raw.get("owner") if isinstance(raw, dict) else None
    return str(found) if found else None


def _save(run_dir: Path, state: VirtualBleState) -> None:
    """Write the state file atomically (a reader never sees half of it)."""
    raw = {
        "version": _STATE_VERSION,
        "bus_address": state.bus_address,
        "adapters": list(state.adapters),
        "addresses": list(state.addresses),
        "scan_interval": state.scan_interval,
        "workdir": str(state.workdir),
        "bluezoo_log": str(state.bluezoo_log),
        "processes": [
            {"name": p.name, "pid": p.pid, "start_ticks": p.start_ticks} for p in state.processes
        ],
        "owner": owner(),  # `down` stops only a harness its own installation started
    }
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    os.replace(tmp, run_dir / STATE_FILE)


def _remove_state(run_dir: Path) -> None:
    """Remove the state, bus config and socket; logs stay for a post-mortem."""
    for name in (STATE_FILE, "bus.conf", "bus.sock"):
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m device_sim.apps.virtual.cli virtual-ble up`` (or just ``up``)."""
    parser = argparse.ArgumentParser(prog="device-sim")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args_list = list(sys.argv[1:] if argv is None else argv)
    if "virtual-ble" not in args_list:  # allow the short form: `... cli up`
        first = next((i for i, a in enumerate(args_list) if not a.startswith("-")), len(args_list))
        args_list.insert(first, "virtual-ble")
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
