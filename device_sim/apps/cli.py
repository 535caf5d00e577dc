"""The ``device-sim`` command: daemon, identity, reference client, demo and virtual adapters.

``main(argv) -> int`` parses and dispatches: this module holds the whole argument tree, each
subcommand is one function in :mod:`device_sim.apps.commands` (``virtual-ble``, ``factory`` and
``cloud`` bring their own parsers). ``--json`` prints machine output.
Exit codes: 0 success (provisioning ended online), 1 a coded onboarding failure, 2 usage or
configuration error (for ``ctl``: no daemon running).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import traceback

from ..errors import ConfigError, DeviceSimError, OnboardingError, SetupError
from ..ratelimit import LimitedFilter
from .commands import admin, client, device
from .commands.client import format_result
from .parser import build_parser

__all__ = ["build_parser", "format_result", "main"]


def _setup_logging(verbose: int, command: str = "") -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(logging.DEBUG, level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if command == "run":  # each onboarding's outcome reaches the journal without -v
        logging.getLogger("device_sim.outcome").setLevel(logging.INFO)
        # The daemon's log ring in its state directory keeps INFO lines whatever -v says
        # (support reads them in a diagnostics bundle): the root passes INFO, and the
        # terminal's handler keeps the level -v asked for.
        root = logging.getLogger()
        shown = max(logging.DEBUG, level)

        def terminal(record: logging.LogRecord) -> bool:
            return record.levelno >= shown or record.name == "device_sim.outcome"

        for handler in root.handlers:
            handler.addFilter(terminal)
        root.setLevel(min(root.level, logging.INFO))
    # A flood of connections must not flood the journal: asyncio's own accept errors, each
    # with a traceback, pass a few a minute, in one line each.
    logging.getLogger("asyncio").addFilter(
        LimitedFilter(("socket.accept() out of system resource", "Error on reading from"))
    )
    if verbose < 2:
        # bleak warns that it cannot run `bluetoothctl` to read the BlueZ version (there is no
        # BlueZ package under BlueZoo) and when the virtual bus goes away at the end of a demo.
        logging.getLogger("bleak").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status: 0 done, 1 a coded failure, 2 usage or this machine's
    setup, 130 interrupted, 141 output pipe closed, 70 an unexpected error (a bug: report it)."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a reader that went away is a closed pipe here
        return code
    except BrokenPipeError:
        # `device-sim codes --json | head -1`: the reader left. No message, no traceback; point
        # stdout at /dev/null so the interpreter's last flush does not fail again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


def _main(argv: list[str] | None) -> int:
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    args = build_parser(daemon_only=words[:1] == ["run"]).parse_args(argv)
    _setup_logging(args.verbose, args.command)
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
        return asyncio.run(_terminable(args))
    except KeyboardInterrupt:
        _say("device-sim: interrupted")
        return 130
    except _Terminated:
        _say("device-sim: terminated")
        return 143  # 128 + SIGTERM
    except BrokenPipeError:
        raise
    except SetupError as exc:
        _say(f"device-sim: {exc}")
        return 2
    except OnboardingError as exc:
        from ..profile import load_profile

        entry = load_profile().code(exc.code)
        _say(
            f"device-sim: {entry.name} ({entry.id}): {exc.detail or entry.user_message}\n"
            f"  next step: {entry.next_step}"
        )
        return 1
    except ConfigError as exc:
        _say(f"device-sim: {exc}")
        return 2
    except DeviceSimError as exc:
        _say(f"device-sim: {exc.detail or exc}")
        return 2
    except Exception as exc:  # a bug: one line (the traceback with -v), never a bare trace
        if args.verbose:
            traceback.print_exc()
        _say(
            f"device-sim: unexpected error {type(exc).__name__}: {exc} (this is a bug: "
            "run again with -v and report the output)"
        )
        return 70


class _Terminated(Exception):
    """SIGTERM ended the command (after everything it started was stopped)."""


# Commands that handle SIGTERM themselves (a daemon stops cleanly; the bench reports).
OWN_SIGTERM = frozenset({"run", "fleet", "bench"})


async def _terminable(args: argparse.Namespace) -> int:
    """:func:`_dispatch`, with SIGTERM (``timeout``, a cancelled CI job, ``kill``) ending the
    command as Ctrl-C does: the main task is cancelled, so every process, bus and temporary
    directory it started is stopped and removed on the way out."""
    if args.command in OWN_SIGTERM:
        return await _dispatch(args)
    main = asyncio.current_task()
    assert main is not None
    terminated = asyncio.Event()

    def on_sigterm() -> None:
        terminated.set()
        main.cancel()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await _dispatch(args)
    except asyncio.CancelledError:
        if terminated.is_set():
            raise _Terminated() from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "init":
        return device.init(args)
    if args.command == "run":
        return await device.run(args)
    if args.command == "client":
        return await client.run(args)
    if args.command == "demo":
        from .demo import run_demo

        return await run_demo(args)
    if args.command == "codes":
        return admin.codes(args)
    if args.command == "scenario":
        return admin.scenario(args)
    if args.command == "bench":
        from .bench.cli import run as run_bench

        return await run_bench(args)
    if args.command == "docs":
        return admin.write_docs(args)
    if args.command == "doctor":
        return await admin.doctor(args)
    if args.command == "ctl":
        return await admin.ctl(args)
    if args.command == "watch":
        from .commands import watch

        return await watch.run(args)
    if args.command == "fleet":
        from .fleet.cli import run as run_fleet

        return await run_fleet(args)
    if args.command == "service":
        from .service import run as run_service

        return run_service(args)
    raise ConfigError(args.command, "unknown command")


if __name__ == "__main__":
    sys.exit(main())
