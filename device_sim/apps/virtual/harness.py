"""Virtual BLE adapters for machines without Bluetooth: a private system bus plus BlueZoo.

:class:`VirtualBle` starts a ``dbus-daemon`` of type *system* on a unix socket in its own work
directory, then BlueZoo (a BlueZ D-Bus mock) with N adapters on that bus, and waits until every
``/org/bluez/hciN`` is powered. bless and bleak find the bus through ``DBUS_SYSTEM_BUS_ADDRESS``:
pass :meth:`VirtualBle.env` to subprocesses, or wrap in-process code in :func:`use_bus`.

Both children run in their own session (process group), so the same start routine also serves
the detached ``device-sim virtual-ble up`` mode (:meth:`VirtualBle.detach`), and one stop routine
(:func:`terminate`) ends them from either mode. Linux only, like BlueZ.

Starting, watching and stopping the children lives in :mod:`device_sim.apps.virtual.process`;
:class:`ProcInfo`, :func:`is_running`, :func:`terminate` and ``STOP_TIMEOUT`` are re-exported here.
What is asked of BlueZoo over D-Bus lives in :mod:`device_sim.apps.virtual.bluez_bus`;
:func:`adapter_states` and :func:`add_adapter` are re-exported here (loaded on first use).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

from ...errors import ConfigError, VirtualBleError
from ...lifecycle import Component
from .process import (
    STOP_TIMEOUT,
    Proc,
    ProcInfo,
    first_exit,
    is_running,
    log_tail,
    read_line,
    stop_all,
    terminate,
)

__all__ = [
    "BUS_ENV",
    "DEFAULT_TIMEOUT",
    "STOP_TIMEOUT",
    "ProcInfo",
    "VirtualBle",
    "VirtualBleState",
    "default_addresses",
    "find_bluezoo",
    "is_running",
    "terminate",
    "use_bus",
]

_LOG = logging.getLogger(__name__)

BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"
DEFAULT_TIMEOUT = 15.0
_MAX_READY_ROUNDS = 1000  # each round is woken by a bus signal; the deadline bounds it too
_ADDRESS_RE = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_BLUEZOO_HINT = "bluezoo not installed: pip install 'device-sim[virtual]'"
# The private bus's limits, sized for a fleet of a few hundred BLE devices on one bus.
BUS_LIMITS = {"connections": 4096, "match_rules": 65536, "replies": 8192}
_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <!-- device-sim virtual BLE: a private, permissive system-type bus (test use only) -->
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <!-- Sized for a fleet (device-sim fleet: one adapter per device on this bus). The system bus
       defaults refuse BlueZoo's match rules (512 per connection: BlueZoo adds rules per device
       and per link), its pending calls (128) and the bless connections (256 per user). -->
  <limit name="max_connections_per_user">{connections}</limit>
  <limit name="max_completed_connections">{connections}</limit>
  <limit name="max_incomplete_connections">1024</limit>
  <limit name="max_match_rules_per_connection">{match_rules}</limit>
  <limit name="max_replies_per_connection">{replies}</limit>
  <limit name="max_names_per_connection">{connections}</limit>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


def default_addresses(count: int) -> list[str]:
    """Deterministic distinct adapter addresses: ``00:11:22:33:44:00``, ``...:01``, ..."""
    return [f"00:11:22:33:44:{i:02X}" for i in range(count)]


def find_bluezoo() -> list[str]:
    """Return the command that runs BlueZoo.

    When the package is importable (the venv of this interpreter): this interpreter running
    :mod:`device_sim.apps.virtual.bluezoo_launch`, which fixes reconnects (interop quirk 4).
    Else the ``bluezoo`` console script on PATH, unpatched.

    Raises:
        VirtualBleError: BlueZoo is not installed.
    """
    if importlib.util.find_spec("bluezoo") is not None:
        return [sys.executable, "-m", "device_sim.apps.virtual.bluezoo_launch"]
    on_path = shutil.which("bluezoo")
    if on_path:
        return [on_path]
    raise VirtualBleError(_BLUEZOO_HINT)


def _resolve_executable(program: str, hint: str) -> str:
    """Absolute path of ``program`` (a path or a name looked up on PATH).

    Raises:
        VirtualBleError: not found or not executable; the message includes ``hint``.
    """
    if os.sep in program:
        if os.path.isfile(program) and os.access(program, os.X_OK):
            return os.path.abspath(program)
    elif found := shutil.which(program):
        return found
    raise VirtualBleError(f"{hint} ({program!r} is not an executable)")


@dataclass(frozen=True)
class VirtualBleState:
    """What a running harness is: enough to reach it (bus address) and to stop it (processes)."""

    bus_address: str
    adapters: tuple[str, ...]
    addresses: tuple[str, ...]
    scan_interval: int
    workdir: Path
    bluezoo_log: Path
    processes: tuple[ProcInfo, ...]  # in stop order: bluezoo first, then dbus-daemon


class VirtualBle(Component):
    """Private system bus + BlueZoo with N powered virtual adapters, as an async context manager.

    ``async with VirtualBle(adapters=2) as vb:`` gives ``vb.bus_address`` and ``vb.adapters``
    (``["hci0", "hci1"]``). On exit, failure or cancellation both children are stopped
    (SIGTERM, bounded wait, SIGKILL to the process group) and a temporary work directory is
    removed unless ``keep=True``. A ``workdir`` passed in is never removed.

    Raises (from ``__aenter__``/:meth:`start`):
        ConfigError: bad arguments (adapter count, addresses, scan interval).
        VirtualBleError: dbus-daemon or BlueZoo missing, crashed, or not ready within ``timeout``.
    """

    def __init__(
        self,
        adapters: int | None = None,
        *,
        addresses: Sequence[str] | None = None,
        scan_interval: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
        keep: bool = False,
        workdir: str | os.PathLike[str] | None = None,
        bluezoo_command: Sequence[str] | None = None,
        dbus_daemon: str = "dbus-daemon",
    ) -> None:
        self._addresses = _check_addresses(adapters, addresses)
        if (
            not isinstance(scan_interval, int)
            or isinstance(scan_interval, bool)
            or scan_interval < 1
        ):
            raise ConfigError(
                "VirtualBle.scan_interval", f"must be an int >= 1 s, got {scan_interval!r}"
            )
        self._scan_interval = scan_interval
        self._timeout = timeout
        self._keep = keep
        self._given_workdir = Path(workdir) if workdir is not None else None
        self._bluezoo_command = list(bluezoo_command) if bluezoo_command else None
        self._dbus_daemon = dbus_daemon
        self._workdir: Path | None = None
        self._bus_address: str | None = None
        self._procs: list[Proc] = []  # in start order: dbus-daemon, bluezoo
        self._infos: list[ProcInfo] = []
        self._stage = "dbus-daemon"  # what start-up waits for, for the timeout message
        self._seen: dict[str, tuple[str, bool]] = {}  # adapter states last read during start-up

    def __repr__(self) -> str:
        return f"VirtualBle(adapters={self.adapters!r}, bus_address={self._bus_address!r})"

    # -- what a started harness exposes ------------------------------------------------------

    @property
    def bus_address(self) -> str:
        """D-Bus address of the private system bus. Raises VirtualBleError before start."""
        if self._bus_address is None:
            raise VirtualBleError("VirtualBle is not started")
        return self._bus_address

    @property
    def adapters(self) -> list[str]:
        """Adapter names, ``["hci0", "hci1", ...]``."""
        return [f"hci{i}" for i in range(len(self._addresses))]

    @property
    def addresses(self) -> list[str]:
        """Adapter Bluetooth addresses, in the order of :attr:`adapters`."""
        return list(self._addresses)

    @property
    def workdir(self) -> Path:
        """Directory with the bus config, socket and logs. Raises VirtualBleError before start."""
        if self._workdir is None:
            raise VirtualBleError("VirtualBle is not started")
        return self._workdir

    @property
    def bluezoo_log(self) -> Path:
        """BlueZoo's stdout/stderr log file."""
        return self.workdir / "bluezoo.log"

    @property
    def processes(self) -> list[ProcInfo]:
        """The children started so far (kept after stop, so tests can check they are gone)."""
        return list(self._infos)

    def env(self) -> dict[str, str]:
        """A copy of ``os.environ`` with ``DBUS_SYSTEM_BUS_ADDRESS`` set, for subprocesses."""
        return {**os.environ, BUS_ENV: self.bus_address}

    def state(self) -> VirtualBleState:
        """Snapshot of the running harness (what ``virtual-ble up`` saves)."""
        return VirtualBleState(
            bus_address=self.bus_address,
            adapters=tuple(self.adapters),
            addresses=tuple(self._addresses),
            scan_interval=self._scan_interval,
            workdir=self.workdir,
            bluezoo_log=self.bluezoo_log,
            processes=tuple(reversed(self._infos)),
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start dbus-daemon and BlueZoo and wait until every adapter is powered.

        On any failure, including cancellation, whatever was started is stopped again.

        Raises:
            VirtualBleError: a program is missing, exited early, or was not ready in time.
        """
        if self._procs:
            raise VirtualBleError("VirtualBle is already started")
        dbus_daemon = _resolve_executable(
            self._dbus_daemon, "dbus-daemon not found: apt-get install dbus"
        )
        program, *args = self._bluezoo_command or find_bluezoo()
        bluezoo = [_resolve_executable(program, _BLUEZOO_HINT), *args]
        self._infos, self._stage, self._seen = [], "dbus-daemon", {}
        self._workdir = self._prepare_workdir()
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._start(dbus_daemon, bluezoo)
            except TimeoutError:
                raise VirtualBleError(self._failure("did not start in time")) from None
            except VirtualBleError:
                raise
            except Exception as exc:  # bus connection or I/O trouble: say where it happened
                raise VirtualBleError(self._failure(f"failed: {exc!r}")) from exc
        except BaseException:  # also cancellation: stop what was started, then re-raise
            await self.stop()  # after the message above: it reads logs that stop() may delete
            raise
        _LOG.info("virtual BLE up: %s on %s", ", ".join(self._addresses), self._bus_address)

    async def stop(self) -> None:
        """Stop BlueZoo, then dbus-daemon; remove a temporary work directory unless ``keep``.

        Idempotent. Never raises for processes that are already gone.
        """
        procs, self._procs = self._procs, []
        self._bus_address = None
        await stop_all(list(reversed(procs)), STOP_TIMEOUT)
        workdir = self._workdir
        if workdir is not None and self._given_workdir is None:
            if self._keep:
                _LOG.info("virtual BLE: keeping %s", workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)

    def detach(self) -> VirtualBleState:
        """Let the children outlive this object (``virtual-ble up``); return how to reach them.

        After this, :meth:`stop` no longer touches them: use :func:`terminate` on
        ``state.processes``.

        Raises:
            VirtualBleError: not started.
        """
        state = self.state()
        for proc in self._procs:
            proc.close()
        self._procs = []
        return state

    # -- internals --------------------------------------------------------------------------

    def _prepare_workdir(self) -> Path:
        if self._given_workdir is None:
            return Path(tempfile.mkdtemp(prefix="device-sim-vble-"))
        path = self._given_workdir.absolute()
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise VirtualBleError(f"cannot create work directory {path}: {exc}") from exc
        return path

    async def _start(self, dbus_daemon: str, bluezoo: list[str]) -> None:
        workdir = self.workdir
        socket_path = workdir / "bus.sock"
        if len(os.fsencode(socket_path)) > 100:  # sun_path is 108 bytes including the NUL
            raise VirtualBleError(f"socket path too long for AF_UNIX: {socket_path}")
        if socket_path.exists():
            raise VirtualBleError(f"{socket_path} exists: another virtual BLE bus uses {workdir}?")
        conf = workdir / "bus.conf"
        conf.write_text(_BUS_CONF.format(socket=_dbus_escape(str(socket_path)), **BUS_LIMITS))
        self._stage = "dbus-daemon"
        dbus_log = workdir / "dbus-daemon.log"
        argv = [dbus_daemon, f"--config-file={conf}", "--nofork", "--nosyslog", "--print-address"]
        read_end, write_end = os.pipe()
        try:
            try:
                self._add(Proc.spawn("dbus-daemon", argv, dict(os.environ), dbus_log, write_end))
            finally:
                os.close(write_end)
            address = await read_line(read_end)  # printed once the socket is listening
        finally:
            os.close(read_end)
        if not address:
            raise VirtualBleError(
                f"dbus-daemon exited before printing its address\n{log_tail(dbus_log)}"
            )
        self._bus_address = address
        _LOG.debug("private system bus at %s", address)

        from dbus_fast import BusType  # lazy: a command that starts no bus loads no D-Bus
        from dbus_fast.aio import MessageBus

        from .bluez_bus import watch_bluez

        bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
        try:
            changed = asyncio.Event()
            await watch_bluez(bus, changed)  # subscribe before BlueZoo exists: no missed signal
            self._stage = "bluezoo"
            argv = [*bluezoo, "--auto-enable", "--scan-interval", str(self._scan_interval)]
            for address_ in self._addresses:
                argv += ["-a", address_]
            env = {**self.env(), "PYTHONUNBUFFERED": "1"}
            self._add(Proc.spawn("bluezoo", argv, env, self.bluezoo_log))
            await self._wait_powered(bus, changed)
        finally:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()

    def _add(self, proc: Proc) -> None:
        self._procs.append(proc)
        self._infos.append(proc.info)

    async def _wait_powered(self, bus: MessageBus, changed: asyncio.Event) -> None:
        """Return once every adapter is powered; re-read on each bus signal, fail if a child dies.

        Raises:
            VirtualBleError: dbus-daemon or BlueZoo exited.
        """
        exited = asyncio.ensure_future(first_exit(self._procs))
        try:
            for _ in range(_MAX_READY_ROUNDS):
                changed.clear()  # before reading, so a change during the read wakes us again
                from .bluez_bus import adapter_states

                self._seen = await adapter_states(bus)
                if all(self._seen.get(name, ("", False))[1] for name in self.adapters):
                    return
                woke = asyncio.ensure_future(changed.wait())
                try:
                    await asyncio.wait({woke, exited}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woke.cancel()
                if exited.done():
                    name = exited.result().info.name
                    log = (
                        self.bluezoo_log if name == "bluezoo" else self.workdir / "dbus-daemon.log"
                    )
                    raise VirtualBleError(f"{name} exited during start-up\n{log_tail(log)}")
            raise VirtualBleError(f"adapters not powered after {_MAX_READY_ROUNDS} bus signals")
        finally:
            exited.cancel()

    def _failure(self, what: str) -> str:
        """Error text for a start-up that ``what``, naming the stage and the tail of its log."""
        if self._stage == "dbus-daemon":
            head = f"dbus-daemon {what} (no address printed within {self._timeout:g} s)"
            return f"{head}\n{log_tail(self.workdir / 'dbus-daemon.log')}"
        missing = [n for n in self.adapters if not self._seen.get(n, ("", False))[1]]
        head = (
            f"BlueZoo {what}: adapters not powered within {self._timeout:g} s: {', '.join(missing)}"
        )
        return f"{head}\n{log_tail(self.bluezoo_log)}"


def _dbus_escape(value: str) -> str:
    """Escape a value for a D-Bus address (which also makes it safe inside XML text)."""
    safe = b"-_/.\\*" + bytes(range(48, 58)) + bytes(range(65, 91)) + bytes(range(97, 123))
    return "".join(chr(b) if b in safe else f"%{b:02x}" for b in os.fsencode(value))


def _check_addresses(count: int | None, addresses: Sequence[str] | None) -> list[str]:
    """Raises ConfigError for a bad count or bad/duplicate addresses."""
    if addresses is None:
        n = 2 if count is None else count
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 16:
            raise ConfigError("VirtualBle.adapters", f"must be an int in 1..16, got {count!r}")
        return default_addresses(n)
    result = [a.upper() for a in addresses]
    if count is not None and count != len(result):
        raise ConfigError("VirtualBle.addresses", f"{len(result)} addresses for {count} adapters")
    if (
        not result
        or len(set(result)) != len(result)
        or not all(_ADDRESS_RE.match(a) for a in result)
    ):
        raise ConfigError(
            "VirtualBle.addresses", f"need distinct XX:XX:XX:XX:XX:XX, got {addresses!r}"
        )
    return result


@contextlib.contextmanager
def use_bus(target: VirtualBle | VirtualBleState | str) -> Iterator[str]:
    """Point this process's ``DBUS_SYSTEM_BUS_ADDRESS`` at a virtual bus; restore it after.

    bless and bleak read the variable when they first connect to the system bus, so enter this
    before creating them. Yields the address.
    """
    address = target if isinstance(target, str) else target.bus_address
    previous = os.environ.get(BUS_ENV)
    os.environ[BUS_ENV] = address
    try:
        yield address
    finally:
        if previous is None:
            os.environ.pop(BUS_ENV, None)
        else:
            os.environ[BUS_ENV] = previous


def __getattr__(name: str) -> Any:
    """The bus helpers re-exported here (:mod:`.bluez_bus`), loaded on first use."""
    if name in ("adapter_states", "add_adapter"):
        from . import bluez_bus

        return getattr(bluez_bus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
