"""Network namespaces joined by a veth pair: the simulated SoftAP link for tests and demos.

:class:`VethLink` makes a "device" and a "phone" namespace with one end of a veth pair in each.
The device end gets the access point's address (``192.168.4.1/24`` unless told otherwise); the
phone end stays unaddressed so that it can take a DHCP lease. Run programs inside either side with
``ip netns exec`` (:meth:`VethLink.exec_argv`). Linux only; needs root (CAP_SYS_ADMIN/NET_ADMIN).

Every command is bounded by a timeout and a failure raises
:class:`~device_sim.errors.TransportError` (code SOFTAP_UNAVAILABLE) naming the command and its
stderr. Stop processes running inside the namespaces before the link: deleting a namespace only
unmounts its name, and a process still inside keeps the namespace (and the veth) alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ...codes import Code
from ...errors import TransportError
from ...lifecycle import Component

LOG = logging.getLogger(__name__)

COMMAND_TIMEOUT = 10.0
NETNS_ETC = Path("/etc/netns")  # `ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc/*
IFNAMSIZ = 15  # longest Linux interface name
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,6}$")


def netns_unavailable_reason() -> str | None:
    """None if this process can create namespaces and veth pairs, else why not (a skip reason).

    Tries it for real: adds a uniquely named namespace, creates a veth pair inside it, deletes
    it. Synchronous, so that it can run at test collection time. Never raises.
    """
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    ip = shutil.which("ip")
    if ip is None:
        return "iproute2 'ip' not found on PATH (apt install iproute2)"
    name = f"dsim-probe-{secrets.token_hex(3)}"
    steps = [
        [ip, "netns", "add", name],
        [ip, "-n", name, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"],
    ]
    try:
        for argv in steps:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
            )
            if done.returncode != 0:
                return f"cannot run {shlex.join(argv[1:])} (root needed): {done.stderr.strip()}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ip netns trial failed: {exc}"
    finally:
        subprocess.run(
            [ip, "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT, check=False
        )
    return None


async def reap(proc: asyncio.subprocess.Process, timeout: float = COMMAND_TIMEOUT) -> bytes:
    """Kill ``proc`` if still running, read its pipes to the end and wait for it.

    Returns whatever stdout was still unread. Reading to EOF lets asyncio close the transport
    (no ResourceWarning). Never raises for a process that is already gone.
    """
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:  # a grandchild holds the pipe open; the child itself is dead
        LOG.warning("pid %s: pipes still open %g s after kill", proc.pid, timeout)
        return b""
    return out or b""


async def run(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a command to completion and return its stdout.

    Raises TransportError (SOFTAP_UNAVAILABLE) if it cannot start, exits non-zero (message holds
    its stderr) or does not finish within ``timeout`` seconds (it is killed and reaped first).
    """
    cmd = shlex.join(argv)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise TransportError(f"{cmd}: {exc}", code=Code.SOFTAP_UNAVAILABLE) from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException as exc:  # timeout or cancellation: never leave the child behind
        await reap(proc)
        if isinstance(exc, TimeoutError):
            raise TransportError(
                f"{cmd}: no exit within {timeout:g} s", code=Code.SOFTAP_UNAVAILABLE
            ) from None
        raise
    if proc.returncode != 0:
        stderr = err.decode(errors="replace").strip() or "no stderr"
        raise TransportError(
            f"{cmd} failed (exit {proc.returncode}): {stderr}", code=Code.SOFTAP_UNAVAILABLE
        )
    return out.decode(errors="replace")


class VethLink(Component):
    """Two fresh namespaces (device, phone) joined by a veth pair; removed again on stop.

    Names are unique per instance: ``<prefix>-dev-<hex>`` / ``<prefix>-phone-<hex>`` for the
    namespaces and ``<prefix>-d<hex>`` / ``<prefix>-p<hex>`` for the interfaces (at most 15
    characters). Raises ValueError (from the constructor) for a bad prefix or address, and
    TransportError from :meth:`start` after undoing whatever it had already created.
    """

    def __init__(
        self,
        *,
        device_address: str = "192.168.4.1/24",
        prefix: str = "dsim",
        timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        if not _PREFIX_RE.match(prefix):
            raise ValueError(
                f"namespace prefix {prefix!r}: 1-7 lowercase letters/digits "
                "(interface names are limited to 15 characters)"
            )
        iface = ipaddress.IPv4Interface(device_address)  # ValueError when malformed
        if iface.network.prefixlen > 30 or iface.ip in (
            iface.network.network_address,
            iface.network.broadcast_address,
        ):
            raise ValueError(
                f"device address {device_address}: needs a host address in a /30 or larger subnet"
            )
        suffix = secrets.token_hex(3)
        self.device_ns = f"{prefix}-dev-{suffix}"
        self.phone_ns = f"{prefix}-phone-{suffix}"
        self.device_if = f"{prefix}-d{suffix}"
        self.phone_if = f"{prefix}-p{suffix}"
        assert len(self.device_if) <= IFNAMSIZ and len(self.phone_if) <= IFNAMSIZ
        self.device_address = str(iface.ip)
        self.prefix_len = iface.network.prefixlen
        self.timeout = timeout
        self._namespaces: list[str] = []
        self._etc_dirs: list[Path] = []
        self._made_netns_etc = False

    def __repr__(self) -> str:
        return (
            f"VethLink({self.device_ns}:{self.device_if} {self.device_address}/"
            f"{self.prefix_len} <-> {self.phone_ns}:{self.phone_if})"
        )

    @staticmethod
    def exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside namespace ``ns``: ``["ip", "netns", "exec", ns, *argv]``."""
        return ["ip", "netns", "exec", ns, *argv]

    async def _ip(self, *args: str) -> str:
        return await run(["ip", *args], timeout=self.timeout)

    async def start(self) -> None:
        """Create both namespaces, the veth pair, the device address; bring every link up.

        Raises TransportError (after cleaning up) when any step fails.
        """
        if self._namespaces:
            return
        try:
            for ns in (self.device_ns, self.phone_ns):
                await self._ip("netns", "add", ns)
                self._namespaces.append(ns)
            await self._ip(
                "link",
                "add",
                self.device_if,
                "netns",
                self.device_ns,
                "type",
                "veth",
                "peer",
                "name",
                self.phone_if,
                "netns",
                self.phone_ns,
            )
            await self._ip(
                "-n",
                self.device_ns,
                "addr",
                "add",
                f"{self.device_address}/{self.prefix_len}",
                "dev",
                self.device_if,
            )
            for ns, ifname in ((self.device_ns, self.device_if), (self.phone_ns, self.phone_if)):
                await self._ip("-n", ns, "link", "set", "lo", "up")
                await self._ip("-n", ns, "link", "set", ifname, "up")
        except BaseException:
            await self.stop()
            raise
        LOG.debug("veth link up: %r", self)

    def write_resolv_conf(self, ns: str, nameserver: str) -> Path:
        """Make ``ip netns exec ns ...`` processes resolve names through ``nameserver``.

        Writes ``/etc/netns/<ns>/resolv.conf`` (removed by :meth:`stop`); returns its path.
        Raises ValueError for a namespace not of this link or a nameserver that is not an IP.
        """
        if ns not in (self.device_ns, self.phone_ns):
            raise ValueError(f"namespace {ns!r} does not belong to {self!r}")
        server = ipaddress.ip_address(nameserver)
        directory = NETNS_ETC / ns
        if not NETNS_ETC.exists():
            self._made_netns_etc = True
        directory.mkdir(parents=True, exist_ok=True)
        if directory not in self._etc_dirs:
            self._etc_dirs.append(directory)
        path = directory / "resolv.conf"
        path.write_text(f"# device-sim {ns}\nnameserver {server}\n")
        return path

    async def stop(self) -> None:
        """Delete the namespaces (which removes the veth) and the /etc/netns files written.

        Tries every step; raises TransportError at the end if a namespace could not be deleted.
        Safe to call twice and after a failed start.
        """
        for directory in self._etc_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self._etc_dirs.clear()
        if self._made_netns_etc:  # leave /etc as found; another link may still be using it
            with contextlib.suppress(OSError):
                NETNS_ETC.rmdir()  # noqa: ASYNC240 - one local rmdir
            self._made_netns_etc = False
        failures: list[str] = []
        while self._namespaces:
            ns = self._namespaces.pop()
            try:
                await self._ip("netns", "del", ns)
            except TransportError as exc:
                LOG.warning("could not delete namespace %s: %s", ns, exc.detail)
                failures.append(exc.detail)
        if failures:
            raise TransportError("; ".join(failures), code=Code.SOFTAP_UNAVAILABLE)
