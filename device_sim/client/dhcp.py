"""The phone side of the SoftAP: take a DHCP lease with busybox udhcpc, like a phone joining.

:func:`take_lease` runs ``udhcpc`` in the foreground (optionally inside a network namespace),
asking for RFC 8910 option 114 (captive-portal API URI). A generated event script configures
the interface (address, default route) and records what the server sent; :func:`parse_lease_env`
turns that record into a :class:`Lease`.

busybox udhcpc hands an option it has no name for to its script as ``opt<code>`` in hex, so
option 114 arrives as ``opt114=687474703a2f2f...`` and is decoded back to text here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..codes import Code
from ..errors import TransportError

LOG = logging.getLogger(__name__)

LEASE_FILE_ENV = "DSIM_LEASE_FILE"
RECORDED = ("interface", "ip", "mask", "subnet", "router", "dns", "serverid", "lease", "opt114")

# Runs inside the client's namespace with udhcpc's environment (ip, mask, router, ...).
_EVENT_SCRIPT = r"""#!/bin/sh
# device-sim udhcpc event script: configure the interface, then record the lease.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    ;;
  bound|renew)
    [ "$1" = bound ] && ip -4 addr flush dev "$interface"
    ip -4 addr replace "$ip/${mask:-32}" broadcast + dev "$interface" || exit 1
    gw="${router%% *}"
    if [ -n "$gw" ]; then
      ip -4 route replace default via "$gw" dev "$interface" || exit 1
    fi
    tmp="$DSIM_LEASE_FILE.tmp"
    for var in __RECORDED__; do
      eval "val=\${$var-}"
      printf '%s=%s\n' "$var" "$val"
    done > "$tmp" && mv "$tmp" "$DSIM_LEASE_FILE"
    ;;
esac
exit 0
""".replace("__RECORDED__", " ".join(RECORDED))


@dataclass(frozen=True)
class Lease:
    """What the DHCP server handed out."""

    ip: str
    prefix_len: int
    router: str | None
    dns: tuple[str, ...]
    captive_portal_api: str | None  # RFC 8910 option 114
    lease_seconds: int | None
    server: str | None


def decode_option_text(value: str) -> str | None:
    """A string option as udhcpc exports it (hex when it has no name for it) back to text.

    Returns None for an empty value; text that is not hex is returned unchanged.
    """
    value = value.strip()
    if not value:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return value
    return raw.decode("utf-8", errors="replace").rstrip("\x00") or None


def parse_lease_env(text: str) -> Lease:
    """Parse the ``name=value`` lines the event script recorded. Raises ValueError if no ip."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            env[name] = value.strip()
    ip = env.get("ip", "")
    ipaddress.IPv4Address(ip)  # ValueError when missing or malformed
    mask = env.get("mask", "")
    if mask.isdigit():
        prefix_len = int(mask)
    elif env.get("subnet"):
        prefix_len = ipaddress.IPv4Network(f"0.0.0.0/{env['subnet']}").prefixlen
    else:
        prefix_len = 32
    routers = env.get("router", "").split()
    lease = env.get("lease", "")
    return Lease(
        ip=ip,
        prefix_len=prefix_len,
        router=routers[0] if routers else None,
        dns=tuple(env.get("dns", "").split()),
        captive_portal_api=decode_option_text(env.get("opt114", "")),
        lease_seconds=int(lease) if lease.isdigit() else None,
        server=env.get("serverid") or None,
    )


async def take_lease(
    interface: str, *, netns: str | None = None, timeout: float = 15.0, udhcpc: str = "udhcpc"
) -> Lease:
    """Take a DHCP lease on ``interface`` (inside ``netns`` if given) and configure it.

    The interface keeps the address and a default route through the router afterwards.
    Raises TransportError (NO_DHCP_LEASE) when udhcpc cannot run, gets no lease within
    ``timeout`` seconds (udhcpc's own output is in the message) or the lease is unreadable.
    """
    where = f"{interface} in {netns}" if netns else interface
    tries = max(1, math.floor(timeout))  # one DISCOVER a second (-T 1)
    with tempfile.TemporaryDirectory(prefix="dsim-dhcp-") as tmp:
        script = Path(tmp) / "udhcpc-event.sh"
        script.write_text(_EVENT_SCRIPT)
        script.chmod(0o700)
        record = Path(tmp) / "lease.env"
        argv = [
            udhcpc,
            "-i",
            interface,
            "-f",
            "-q",
            "-n",
            "-t",
            str(tries),
            "-T",
            "1",
            "-O",
            "114",
            "-s",
            str(script),
        ]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        env = {**os.environ, LEASE_FILE_ENV: str(record)}
        output = await _run_client(argv, env, timeout, where)
        try:
            return parse_lease_env(record.read_text())
        except (OSError, ValueError) as exc:
            raise TransportError(
                f"udhcpc on {where} reported a lease the event script did not "
                f"record ({exc}): {output}",
                code=Code.NO_DHCP_LEASE,
            ) from exc


async def _run_client(argv: list[str], env: dict[str, str], timeout: float, where: str) -> str:
    """Run udhcpc to exit; return its output. Raises TransportError unless it exits 0 in time."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
    except OSError as exc:
        raise TransportError(
            f"cannot run {shlex.join(argv)}: {exc}", code=Code.NO_DHCP_LEASE
        ) from exc
    lines: list[str] = []

    async def pump() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            LOG.debug("%s", line)
        await proc.wait()

    try:
        await asyncio.wait_for(pump(), timeout)
    except BaseException as exc:  # timeout or cancellation: never leave udhcpc behind
        rest = await _reap(proc)
        lines += rest.decode(errors="replace").splitlines()
        if isinstance(exc, TimeoutError):
            raise TransportError(
                f"no DHCP lease on {where} within {timeout:g} s: "
                f"{' | '.join(lines) or 'no output'}",
                code=Code.NO_DHCP_LEASE,
            ) from None
        raise
    output = " | ".join(lines) or "no output"
    if proc.returncode != 0:
        raise TransportError(
            f"no DHCP lease on {where} (udhcpc exit {proc.returncode}): {output}",
            code=Code.NO_DHCP_LEASE,
        )
    return output


async def _reap(proc: asyncio.subprocess.Process, timeout: float = 5.0) -> bytes:
    """Kill ``proc`` if running, read its output to the end (so asyncio closes the pipe)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:  # an event-script child still holds the pipe; udhcpc itself is dead
        return b""
    return out or b""
