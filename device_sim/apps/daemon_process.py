"""The device daemon as a child process (``device-sim run``), for the demo, the tests and the
scripts that drive a device many times over (kill loop, soak, benchmarks).

:class:`DaemonProcess` starts it and returns once it printed its ready line (no sleeping until
it is up), stops it (SIGTERM, then SIGKILL after a bound) or kills it outright.
:func:`daemon_argv` builds the usual ``run`` arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import TransportError

__all__ = ["DaemonProcess", "daemon_argv"]


class DaemonProcess:
    """``device-sim run`` as a child process; ``start`` returns once it printed its ready line."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        *,
        fd_limit: int | None = None,
    ) -> None:
        """``fd_limit``: the child's descriptor limit, soft and hard, as a service unit's
        ``LimitNOFILE=`` gives it (default: this process's)."""
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.fd_limit = fd_limit
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}

    async def start(self, timeout: float = 30.0) -> dict[str, Any]:
        """Raises TransportError with the log's tail if the daemon exits or is not ready in time."""
        with open(self.log_path, "ab") as log:  # noqa: ASYNC230 - opened for the child
            self.proc = await spawn(
                sys.executable,
                "-m",
                "device_sim",
                *self.argv,
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                preexec_fn=None if self.fd_limit is None else self._limit_fds,
            )
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            line = b""
        except asyncio.CancelledError:  # the caller is stopping: so is the daemon it started
            await asyncio.shield(self.stop())
            raise
        try:
            self.ready = json.loads(line) if line else {}
        except json.JSONDecodeError:
            self.ready = {}
        if not self.ready.get("ready"):
            await self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise TransportError(f"device daemon did not start:\n{tail}")
        return self.ready

    def _limit_fds(self) -> None:  # runs in the child, before it executes Python
        import resource

        assert self.fd_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

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


async def spawn(*argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec`` that leaves no child behind when cancelled: a
    cancellation that arrives while the child is being made waits for it, kills it, and goes
    on."""
    making = asyncio.ensure_future(asyncio.create_subprocess_exec(*argv, **kwargs))
    try:
        return await asyncio.shield(making)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            child = await making
            if child.returncode is None:
                child.kill()
            await child.wait()
        raise


def daemon_argv(
    state_dir: Path,
    *,
    adapter: str,
    scenario: str,
    zero_delay: bool,
    extra: list[str] | None = None,
    doors: str = "ble-only",
) -> list[str]:
    """``device-sim run`` arguments; SoftAP listeners on free loopback ports unless ble-only."""
    argv = [
        "run",
        "--state-dir",
        str(state_dir),
        "--adapter",
        adapter,
        "--scenario",
        scenario,
        "--doors",
        doors,
    ]
    if doors != "ble-only":
        argv += ["--softap-listen", "127.0.0.1:0", "--softap-lan", "127.0.0.1:0"]
    if zero_delay:
        argv.append("--zero-delay")
    return argv + list(extra or [])
