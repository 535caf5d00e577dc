"""Connecting the way a device's network stack does: every resolved address, Happy Eyeballs.

A host name often resolves to several addresses, IPv6 first (the stock Debian ``/etc/hosts``
lists ``::1 localhost`` before ``127.0.0.1``; a cloud host may publish an AAAA record the home
network cannot route). A device that tries only the first address reports the cloud unreachable
although IPv4 works. :func:`dial` orders the addresses as RFC 8305 section 4 does (families
interleaved, the resolver's first family first), starts the next attempt when the previous one
failed or has not connected within :data:`ATTEMPT_DELAY_S`, keeps the first connection that
succeeds and closes the others. When none does, :class:`DialError` names every address with
its own reason, for the diagnostic detail.

For HTTP (the captive probe, cloud activation, the phone's SoftAP and LAN URLs), aiohttp's
connector does the same across what its resolver returns; :func:`http_connector` gives it the
project's :data:`Resolver` and :func:`describe_connect_error` turns its error into one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "ATTEMPT_DELAY_S",
    "AddressFailure",
    "DialError",
    "Resolver",
    "describe_connect_error",
    "dial",
    "http_connector",
    "interleave",
    "resolve",
    "system_resolver",
]

ATTEMPT_DELAY_S = 0.25
"""RFC 8305's recommended "Connection Attempt Delay": the head start of each attempt."""

Resolver = Callable[[str], Awaitable[Sequence[str]]]
"""Resolves a host name to its addresses; raises OSError (e.g. socket.gaierror) on failure."""


async def system_resolver(host: str) -> list[str]:
    """Resolve ``host`` with the operating system's resolver (getaddrinfo), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(host: str, resolver: Resolver = system_resolver) -> list[str]:
    """``[host]`` for an IP literal, else what ``resolver`` returns. Raises OSError."""
    if _is_address(host.strip("[]")):
        return [host.strip("[]")]
    return list(dict.fromkeys(await resolver(host)))


def interleave(addresses: Sequence[str]) -> list[str]:
    """RFC 8305 section 4: alternate the families, starting with the first address's family."""
    if not addresses:
        return []
    first_v6 = ":" in addresses[0]
    same = [a for a in addresses if (":" in a) == first_v6]
    other = [a for a in addresses if (":" in a) != first_v6]
    out: list[str] = []
    for i in range(max(len(same), len(other))):
        out.extend(group[i] for group in (same, other) if i < len(group))
    return out


@dataclass(frozen=True)
class AddressFailure:
    """One address that did not connect, and why (``connection refused``, ``timed out``, ...)."""

    address: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "reason": self.reason}


class DialError(OSError):
    """No address of the target connected; ``failures`` has each address and its reason."""

    def __init__(self, target: str, port: int, failures: Sequence[AddressFailure]) -> None:
        self.target, self.port, self.failures = target, port, list(failures)
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """``[::1]:443 connection refused; 127.0.0.1:443 timed out``."""
        if not self.failures:
            return "no address to connect to"
        return "; ".join(f"{_hostport(f.address, self.port)} {f.reason}" for f in self.failures)


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def os_reason(exc: BaseException) -> str:
    """A short lowercase reason for a connection error (``connection refused``)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


async def _attempt(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def dial(
    addresses: Sequence[str],
    port: int,
    *,
    timeout: float,
    attempt_delay: float = ATTEMPT_DELAY_S,
    target: str | None = None,
) -> tuple[socket.socket, str]:
    """Connect to ``port`` on the first of ``addresses`` that answers (Happy Eyeballs).

    Returns the connected (non-blocking) socket and its address; the caller owns the socket.

    Raises:
        DialError: no address connected within ``timeout`` (each failure and its reason).
    """
    ordered = interleave(list(dict.fromkeys(addresses)))
    label = target or (ordered[0] if ordered else "?")
    failures: list[AddressFailure] = []
    pending: dict[asyncio.Task[socket.socket], str] = {}
    winner: tuple[socket.socket, str] | None = None
    queue = iter(ordered)
    next_address = next(queue, None)
    try:
        async with asyncio.timeout(timeout):
            while winner is None:
                if next_address is not None:
                    task = asyncio.create_task(_attempt(next_address, port))
                    pending[task] = next_address
                    next_address = next(queue, None)
                if not pending:
                    break
                done, _ = await asyncio.wait(
                    pending,
                    timeout=attempt_delay if next_address is not None else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done:
                    address = pending.pop(task)
                    exc = task.exception()
                    if exc is not None:
                        failures.append(AddressFailure(address, os_reason(exc)))
                    elif winner is None:
                        winner = (task.result(), address)
                    else:
                        task.result().close()
    except TimeoutError:
        failures.extend(AddressFailure(a, "timed out") for a in pending.values())
        if next_address is not None:
            failures.append(AddressFailure(next_address, "not tried (time ran out)"))
            failures.extend(AddressFailure(a, "not tried (time ran out)") for a in queue)
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                sock = await task
                sock.close()
    if winner is not None:
        return winner
    raise DialError(label, port, failures)


async def open_stream(
    addresses: Sequence[str],
    port: int,
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    target: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """:func:`dial`, then (with ``ssl_context``) a TLS handshake on that connection.

    Raises DialError (no address connected) and, with TLS, ssl.SSLError / OSError / TimeoutError
    from the handshake, which is bounded by ``timeout`` too.
    """
    sock, address = await dial(addresses, port, timeout=timeout, target=target)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                sock=sock,
                ssl=ssl_context,
                server_hostname=server_hostname if ssl_context is not None else None,
                ssl_handshake_timeout=timeout if ssl_context is not None else None,
            )
    except BaseException:
        sock.close()
        raise
    return reader, writer, address


class _AiohttpResolver(AbstractResolver):
    """aiohttp's resolver interface over a project :data:`Resolver` (every address, in order)."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await resolve(host, self._resolver)
        wanted = [
            a
            for a in addresses
            if family == socket.AF_UNSPEC or (":" in a) == (family == socket.AF_INET6)
        ]
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in interleave(wanted)
        ]

    async def close(self) -> None:
        return None


def http_connector(resolver: Resolver | None = None, **kwargs: Any) -> aiohttp.TCPConnector:
    """An aiohttp connector that tries every address (Happy Eyeballs, RFC 8305 interleaving).

    With ``resolver`` host names go through it (tests give a name ``::1`` first); without, through
    the system's resolver as usual. ``kwargs`` go to :class:`aiohttp.TCPConnector` (e.g. ``ssl``).
    """
    if resolver is not None:
        kwargs["resolver"] = _AiohttpResolver(resolver)
    return aiohttp.TCPConnector(
        happy_eyeballs_delay=ATTEMPT_DELAY_S, interleave=1, family=socket.AF_UNSPEC, **kwargs
    )


_CONNECT_FAILED = re.compile(r"\[Errno (\d+)\] Connect call failed \('([^']+)', (\d+)[^)]*\)")


def _tidy(match: re.Match[str]) -> str:
    errno_, address, port = int(match[1]), match[2], int(match[3])
    return f"{_hostport(address, port)} {os.strerror(errno_).lower()}"


def describe_connect_error(exc: BaseException) -> str:
    """One line for an aiohttp/OS connection error, naming each address that failed."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        inner = exc.os_error
        text = str(inner.strerror or inner)
        if text.startswith("Multiple exceptions: "):  # aiohttp tried several addresses
            return f"{exc.host} port {exc.port}: every address failed: " + _CONNECT_FAILED.sub(
                _tidy, text.removeprefix("Multiple exceptions: ")
            )
        return f"{exc.host} port {exc.port}: {os_reason(inner)}"
    if isinstance(exc, DialError):
        return exc.reason
    return os_reason(exc)


def reachable(host: str) -> str | None:
    """The host to tell phones for a listener bound to ``host``: None (``host`` itself) unless
    it is a wildcard (``0.0.0.0``, ``::``), which no phone can reach; then this machine's
    address on its default route (a UDP socket's choice: nothing is sent), or loopback."""
    if host not in ("0.0.0.0", "::", ""):
        return None
    family, probe, fallback = (
        (socket.AF_INET6, "2001:db8::1", "::1")
        if host == "::"
        else (socket.AF_INET, "192.0.2.1", "127.0.0.1")
    )
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))  # documentation addresses (RFC 5737, 3849): no traffic
            return str(sock.getsockname()[0])
    except OSError:  # no route at all
        return fallback
