"""Daemon processes for the virtual BLE harness: start, watch, stop, each in its own session.

A :class:`Proc` is a process leading its own session (process group), started by
:meth:`Proc.spawn` or adopted from a recorded :class:`ProcInfo` (``virtual-ble up`` state file).
:func:`stop_all` is the one stop routine (SIGTERM, bounded wait, SIGKILL to the group, reap);
:func:`terminate` applies it to recorded processes, checking their start time so that a reused
pid is never signalled. Linux only (``/proc``, pidfd).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import VirtualBleError

_LOG = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class ProcInfo:
    """A started daemon: name, pid (also its process group id) and kernel start time (ticks)."""

    name: str
    pid: int
    start_ticks: int


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc/PID/stat; None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    return fields[0], int(fields[19])


def is_running(info: ProcInfo) -> bool:
    """True while ``info.pid`` is the recorded process and it has not exited (zombies count as
    gone)."""
    stat = _stat(info.pid)
    return stat is not None and stat[1] == info.start_ticks and stat[0] not in "ZXx"


def log_tail(path: Path | None, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, headed by its path, for error messages."""
    try:
        tail = (path.read_text(errors="replace") if path else "").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return f"--- end of {path} ---\n" + "\n".join(tail) if tail else f"({path} is empty)"


class Proc:
    """A process leading its own session/process group: awaited via pidfd, signalled, reaped.

    Our own children are reaped here; adopted ones (from a state file) are left to their parent.
    """

    def __init__(self, info: ProcInfo, *, child: bool) -> None:
        self.info = info
        self._child = child
        self._reaped = False
        self._pidfd: int | None = None
        with contextlib.suppress(OSError):  # no pidfd (Linux < 5.3, seccomp): wait() polls
            self._pidfd = os.pidfd_open(info.pid)

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        stdout_fd: int | None = None,
    ) -> Proc:
        """Start ``argv`` in a new session; stdin /dev/null, stderr (and stdout) to ``log``.

        Raises:
            VirtualBleError: the program could not be executed.
        """
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 2 if stdout_fd is None else stdout_fd, 1),
        ]
        try:
            pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
        except OSError as exc:
            raise VirtualBleError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        stat = _stat(pid)  # our unreaped child: /proc/PID exists even if it already died
        _LOG.debug("started %s, pid %d: %s", name, pid, " ".join(argv))
        return cls(ProcInfo(name, pid, stat[1] if stat else 0), child=True)

    @classmethod
    def adopt(cls, info: ProcInfo) -> Proc | None:
        """Handle on a recorded process that is not our child; None if it is gone or reused."""
        if not is_running(info):
            return None
        proc = cls(info, child=False)
        if not is_running(info):  # re-check now that the pidfd pins whatever holds the pid
            proc.close()
            return None
        return proc

    def exited(self) -> bool:
        """True once the process has terminated (reaped or not). Never reaps."""
        if self._reaped:
            return True
        if not self._child:
            return not is_running(self.info)
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.info.pid, flags) is not None
        except ChildProcessError:
            return True

    async def wait(self, timeout: float | None) -> bool:
        """Wait until the process has exited; False if ``timeout`` seconds pass first."""
        if self.exited():
            return True
        try:
            async with asyncio.timeout(timeout):
                if self._pidfd is not None:
                    await _readable(self._pidfd)  # a pidfd turns readable when its process exits
                else:
                    # No pidfd to await: poll briefly; the timeout (or the caller) bounds it.
                    while not self.exited():  # noqa: ASYNC110 - nothing to await but the poll
                        await asyncio.sleep(0.05)
        except TimeoutError:
            return False
        return True

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process group while its id is still ours to name."""
        if self._reaped or (not self._child and not is_running(self.info)):
            return  # a reaped leader frees the id; an adopted one we cannot pin once it exits
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.info.pid, sig)

    def finish(self) -> None:
        """SIGKILL whatever is left of the group, reap our child, release the pidfd. No await."""
        self.signal_group(signal.SIGKILL)
        if self._child and not self._reaped:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.info.pid, 0)  # exited or SIGKILLed: returns at once
            self._reaped = True
        self.close()

    def close(self) -> None:
        """Release the pidfd (the process itself is left alone)."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


async def stop_all(procs: Sequence[Proc], timeout: float) -> None:
    """The one stop routine: in order, SIGTERM, bounded wait, SIGKILL the group, reap.

    If cancelled or failing part-way, the rest are killed without awaiting, so none is left.
    """
    pending = list(procs)
    try:
        while pending:
            proc = pending[0]
            if not proc.exited():
                proc.signal_group(signal.SIGTERM)
                if not await proc.wait(timeout):
                    _LOG.warning(
                        "%s (pid %d) ignored SIGTERM for %g s; killing it",
                        proc.info.name,
                        proc.info.pid,
                        timeout,
                    )
                    proc.signal_group(signal.SIGKILL)
                    await proc.wait(timeout)
            pending.pop(0).finish()
    finally:
        for proc in pending:
            proc.finish()


async def _readable(fd: int) -> None:
    """Wait until ``fd`` is readable: a pipe with data or at EOF, a pidfd whose process exited."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def first_exit(procs: Sequence[Proc]) -> Proc:
    """Wait until one of ``procs`` exits; return it."""
    waits = {asyncio.ensure_future(p.wait(None)): p for p in procs}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return waits[next(iter(done))]
    finally:
        for task in waits:
            task.cancel()


async def read_line(fd: int, limit: int = 4096) -> str:
    """First line (or what came before EOF) from a pipe, without blocking the event loop."""
    os.set_blocking(fd, False)
    data = b""
    for _ in range(limit):  # each round reads >= 1 byte or ends
        if b"\n" in data or len(data) >= limit:
            break
        await _readable(fd)
        try:
            chunk = os.read(fd, limit)
        except BlockingIOError:
            continue
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace").strip()


async def terminate(processes: Sequence[ProcInfo], timeout: float = STOP_TIMEOUT) -> None:
    """Stop processes recorded by :meth:`~device_sim.apps.virtual.harness.VirtualBle.detach`,
    in order.

    Any already gone are skipped.

    A pid is only signalled while it still names the recorded process (start time checked), so a
    stale state file cannot kill an unrelated process that reused the pid.
    """
    procs = [p for p in (Proc.adopt(info) for info in processes) if p is not None]
    await stop_all(procs, timeout)
