"""dnsmasq for the SoftAP: DHCP with the captive-portal option, and DNS that answers every name.

:class:`DnsmasqConfig` is pure data that renders a dnsmasq config file: bound to the access
point's interface only, no upstream servers, every DNS name answered with the device's address
(``address=/#/``), DHCP leases that name the device as router and DNS server and carry RFC 8910
option 114 (the RFC 8908 captive-portal API URI). Clients only get option 114 when they ask for
it in their parameter request list, as Android 11+ and iOS 14+ do (``udhcpc -O 114``).

:class:`Dnsmasq` runs it in the foreground as a child process (optionally inside a network
namespace through an argv prefix such as ``ip netns exec dev-ns``) and reads its log: ready is
the "DHCP, IP range" line, written once every socket is bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from ...codes import Code
from ...errors import ConfigError, TransportError
from ...lifecycle import Component

LOG = logging.getLogger(__name__)

MIN_LEASE_SECONDS = 120  # dnsmasq silently raises anything shorter to two minutes
_READY_RE = re.compile(r"DHCP, IP range ")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_URI_FORBIDDEN = re.compile(r'[\s"\\,#\x00-\x1f\x7f]')


class LeaseEntry(NamedTuple):
    """One line of dnsmasq's lease file."""

    mac: str
    ip: str
    hostname: str | None


@dataclass(frozen=True, kw_only=True)
class DnsmasqConfig:
    """What dnsmasq serves on the access point. Raises ConfigError (a ValueError) when invalid.

    ``ping_check`` off (the default) adds ``no-ping``: dnsmasq would otherwise ping a fresh
    address before offering it and ignore the client for about three seconds meanwhile; an access
    point that was just opened has no other hosts to collide with.
    """

    interface: str
    address: str
    prefix_len: int = 24
    dhcp_start: str
    dhcp_end: str
    lease_seconds: int = 300
    captive_portal_api: str
    state_dir: Path
    dns_port: int = 53
    ping_check: bool = False
    verbose: bool = True  # log-dhcp and log-queries (into the DEBUG log)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, field: str, problem: str) -> None:
            if not ok:
                raise ConfigError(f"DnsmasqConfig.{field}", problem)

        need(
            bool(_IFNAME_RE.match(self.interface)),
            "interface",
            f"{self.interface!r} is not an interface name (1-15 of letters, digits, '_', '.', '-')",
        )
        need(8 <= self.prefix_len <= 30, "prefix_len", f"{self.prefix_len} not in 8..30")
        ips: dict[str, ipaddress.IPv4Address] = {}
        for field in ("address", "dhcp_start", "dhcp_end"):
            value = getattr(self, field)
            try:
                ips[field] = ipaddress.IPv4Address(value)
            except ValueError:
                need(False, field, f"{value!r} is not an IPv4 address")
        net = self.network
        for field, ip in ips.items():
            need(ip in net, field, f"{ip} is outside the device's subnet {net}")
            need(
                ip not in (net.network_address, net.broadcast_address),
                field,
                f"{ip} is the network or broadcast address of {net}",
            )
        address, start, end = ips["address"], ips["dhcp_start"], ips["dhcp_end"]
        need(start <= end, "dhcp_end", f"range {start} -- {end} is empty (end before start)")
        need(
            not start <= address <= end,
            "address",
            f"{address} lies inside the DHCP range {start} -- {end}",
        )
        need(
            MIN_LEASE_SECONDS <= self.lease_seconds < 2**31,
            "lease_seconds",
            f"{self.lease_seconds} s: dnsmasq needs at least {MIN_LEASE_SECONDS} s",
        )
        uri = self.captive_portal_api
        parts = urlsplit(uri)
        need(
            parts.scheme in ("http", "https") and bool(parts.hostname),
            "captive_portal_api",
            f"{uri!r} is not an absolute http(s) URL",
        )
        need(
            not _URI_FORBIDDEN.search(uri) and len(uri.encode()) <= 255,
            "captive_portal_api",
            f"{uri!r}: no spaces, quotes, commas, '#' or control characters, at most 255 "
            "bytes (one DHCP option)",
        )
        need(1 <= self.dns_port <= 65535, "dns_port", f"{self.dns_port} not in 1..65535")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.address}/{self.prefix_len}", strict=False)

    @property
    def conf_path(self) -> Path:
        return self.state_dir / "dnsmasq.conf"

    @property
    def lease_path(self) -> Path:
        return self.state_dir / "dnsmasq.leases"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "dnsmasq.pid"

    def render(self) -> str:
        """The dnsmasq config file text (pure; no I/O)."""
        lines = [
            "# generated by device-sim (SoftAP); do not edit",
            f"interface={self.interface}",
            "bind-interfaces",
            "except-interface=lo",
            f"port={self.dns_port}",
            "no-resolv",
            "no-hosts",
            f"address=/#/{self.address}",
            f"dhcp-range={self.dhcp_start},{self.dhcp_end},{self.network.netmask},"
            f"{self.lease_seconds}",
            f"dhcp-option=option:router,{self.address}",
            f"dhcp-option=option:dns-server,{self.address}",
            f'dhcp-option=114,"{self.captive_portal_api}"',
            "dhcp-authoritative",
            f"dhcp-leasefile={self.lease_path}",
        ]
        if not self.ping_check:
            lines.append("no-ping")
        if self.verbose:
            lines += ["log-dhcp", "log-queries"]
        return "\n".join(lines) + "\n"


class Dnsmasq(Component):
    """dnsmasq as a foreground child process; ``async with Dnsmasq(config):`` serves meanwhile.

    ``argv_prefix`` runs it elsewhere, e.g. ``["ip", "netns", "exec", "dsim-dev-1a2b3c"]``; the
    prefix must exec dnsmasq (not fork it) so that stop's signals reach dnsmasq itself.
    """

    def __init__(
        self,
        config: DnsmasqConfig,
        *,
        argv_prefix: Sequence[str] = (),
        binary: str = "dnsmasq",
        ready_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.config = config
        self.argv_prefix = list(argv_prefix)
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=20)

    @property
    def argv(self) -> list[str]:
        cfg = self.config
        return [
            *self.argv_prefix,
            self.binary,
            "--keep-in-foreground",
            "--log-facility=-",
            f"--conf-file={cfg.conf_path}",
            f"--pid-file={cfg.pid_path}",
        ]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Write the config, start dnsmasq and wait until it serves.

        Raises TransportError (SOFTAP_UNAVAILABLE) if the binary is missing, dnsmasq exits
        (port in use, unknown interface, bad option: its own last log lines are in the message)
        or is not ready within ``ready_timeout``; whatever was started is stopped first.
        """
        if self._proc is not None:
            return
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        cfg.conf_path.write_text(cfg.render())
        cfg.lease_path.unlink(missing_ok=True)  # every opening of the AP starts without leases
        if not self.argv_prefix and shutil.which(self.binary) is None:
            raise TransportError(
                f"dnsmasq binary not found: {self.binary!r} (apt install dnsmasq-base)",
                code=Code.SOFTAP_UNAVAILABLE,
            )
        self._ready.clear()
        self._tail.clear()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            raise TransportError(
                f"cannot run {self.argv[0]}: {exc}", code=Code.SOFTAP_UNAVAILABLE
            ) from exc
        try:
            self._reader = asyncio.create_task(self._read_log(), name="dnsmasq-log")
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise
        LOG.info("dnsmasq serving on %s (%s, pid %s)", cfg.interface, cfg.address, self._proc.pid)

    async def _wait_ready(self) -> None:
        assert self._proc is not None and self._reader is not None
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait(
                {ready, self._reader},
                timeout=self.ready_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if self._ready.is_set():
            return
        if self._reader.done():  # output closed: dnsmasq has exited
            try:
                code = await asyncio.wait_for(self._proc.wait(), self.stop_timeout)
                why = f"exited with status {code}"
            except TimeoutError:
                why = "closed its output"
        else:
            why = f"not ready within {self.ready_timeout:g} s"
        tail = " | ".join(self._tail) or "no output"
        raise TransportError(
            f"dnsmasq on {self.config.interface} {why}: {tail}", code=Code.SOFTAP_UNAVAILABLE
        )

    async def _read_log(self) -> None:
        """Copy dnsmasq's output into the DEBUG log until EOF, so its pipe never fills."""
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the stream limit: dropped, keep reading
                continue
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            self._tail.append(line)
            LOG.debug("%s", line)
            if not self._ready.is_set() and _READY_RE.search(line):
                self._ready.set()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; wait for exit and the end of the log.

        Safe to call twice and after a failed start; never raises for a process already gone.
        """
        proc, reader = self._proc, self._reader
        self._proc = self._reader = None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                LOG.warning(
                    "dnsmasq pid %s ignored SIGTERM for %g s; killing", proc.pid, self.stop_timeout
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if reader is not None:
            try:
                await asyncio.wait_for(reader, self.stop_timeout)
            except TimeoutError:
                LOG.warning("dnsmasq output still open after exit; stopped reading it")
            except Exception:
                LOG.exception("reading dnsmasq's log failed")
        LOG.debug("dnsmasq on %s stopped (status %s)", self.config.interface, proc.returncode)

    def leases(self) -> list[LeaseEntry]:
        """The leases dnsmasq has granted, from its lease file (empty before the first one).

        dnsmasq writes the file before it sends the DHCPACK, so a client's lease is listed
        once the client holds it.
        """
        try:
            text = self.config.lease_path.read_text()
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            fields = line.split()  # expiry mac ip hostname client-id
            if len(fields) >= 4 and fields[0] != "duid":
                entries.append(
                    LeaseEntry(fields[1], fields[2], None if fields[3] == "*" else fields[3])
                )
        return entries
