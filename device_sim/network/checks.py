"""Connectivity checks after a join: DNS, captive portal, internet, TLS to the cloud.

Shared by every backend: the simulated one points them at its loopback servers, the
NetworkManager one at the real internet. Each check is bounded by its ``timeout`` and turns every
failure into a :class:`~device_sim.errors.NetworkError` with the matching diagnostic code. The
internet and TLS checks try every address the host resolved to (:mod:`.dial`: Happy Eyeballs),
and a failure's detail names each address with its own reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence

import aiohttp

from ..codes import Code
from ..dial import (
    DialError,
    Resolver,
    describe_connect_error,
    http_connector,
    open_stream,
    system_resolver,
)
from ..errors import NetworkError

__all__ = [
    "Resolver",
    "check_captive_portal",
    "check_dns",
    "check_internet",
    "check_tls",
    "system_resolver",
]

_MAX_BODY = 4096


async def check_dns(host: str, *, resolver: Resolver, timeout: float) -> list[str]:
    """Resolve ``host``; return its addresses.

    Raises NetworkError(DNS_FAILURE) when resolution fails, times out or returns nothing.
    """
    try:
        async with asyncio.timeout(timeout):
            addresses = list(await resolver(host))
    except TimeoutError:
        raise NetworkError(
            Code.DNS_FAILURE,
            f"resolving {host} timed out after {timeout:g} s",
            raw={"host": host, "reason": "timeout"},
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise NetworkError(
            Code.DNS_FAILURE,
            f"resolving {host} failed: {reason}",
            raw={"host": host, "reason": reason},
        ) from None
    if not addresses:
        raise NetworkError(
            Code.DNS_FAILURE,
            f"resolving {host} returned no address",
            raw={"host": host, "reason": "empty"},
        )
    return addresses


async def check_captive_portal(
    url: str, *, timeout: float, resolver: Resolver | None = None
) -> None:
    """Fetch the connectivity probe ``url`` (an endpoint answering 204) without following redirects.

    204, or a 2xx with an empty body, means open internet. A redirect or a 2xx page means a
    captive portal: NetworkError(CAPTIVE_PORTAL), the detail names the redirect location.
    No answer (refused, reset, timeout) or an HTTP error status: NetworkError(NO_INTERNET).
    Every address of the probe host is tried (``resolver``: default the system's).
    """
    try:
        async with (
            aiohttp.ClientSession(
                connector=http_connector(resolver), timeout=aiohttp.ClientTimeout(total=timeout)
            ) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            status = response.status
            location = response.headers.get("Location")
            body = await response.content.read(_MAX_BODY)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        reason = describe_connect_error(exc)
        raise NetworkError(
            Code.NO_INTERNET,
            f"connectivity probe {url}: {reason}",
            raw={"url": url, "reason": reason},
        ) from None
    if status == 204 or (200 <= status < 300 and not body):
        return
    if 300 <= status < 400:
        raise NetworkError(
            Code.CAPTIVE_PORTAL,
            f"connectivity probe {url} redirected ({status}) to {location or '?'}",
            raw={"url": url, "status": status, "location": location},
        )
    if 200 <= status < 300:
        raise NetworkError(
            Code.CAPTIVE_PORTAL,
            f"connectivity probe {url} answered {status} with a page instead of 204",
            raw={"url": url, "status": status},
        )
    raise NetworkError(
        Code.NO_INTERNET,
        f"connectivity probe {url} answered HTTP {status}",
        raw={"url": url, "status": status},
    )


async def check_internet(addresses: Sequence[str], port: int, *, timeout: float) -> None:
    """Open (and close) a TCP connection to an internet endpoint, on any of its ``addresses``.

    Raises NetworkError(NO_INTERNET) when every address refuses, is unreachable or times out;
    ``raw["addresses"]`` lists each one with its reason.
    """
    try:
        _, writer, _ = await open_stream(addresses, port, timeout=timeout)
    except DialError as exc:
        raise NetworkError(
            Code.NO_INTERNET,
            f"connecting to port {port}: {exc.reason}",
            raw={
                "port": port,
                "reason": exc.reason,
                "addresses": [f.to_json() for f in exc.failures],
            },
        ) from None
    await _close(writer, timeout)


async def check_tls(
    addresses: Sequence[str],
    port: int,
    *,
    ssl_context: ssl.SSLContext,
    server_hostname: str,
    timeout: float,
) -> None:
    """Complete a real TLS handshake with ``server_hostname`` on any of its ``addresses``.

    The TCP connection goes to the first address that answers (Happy Eyeballs); the handshake
    runs on it. Raises NetworkError(TLS_VERIFICATION_FAILED) when the certificate does not verify
    (the detail carries OpenSSL's reason, e.g. "certificate has expired") or the handshake fails,
    and NetworkError(CLOUD_UNREACHABLE) when every address refuses, resets or times out (the
    detail and ``raw["addresses"]`` name each address and its reason).
    """
    where = f"{server_hostname} port {port}"
    try:
        _, writer, _ = await open_stream(
            addresses,
            port,
            timeout=timeout,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            target=server_hostname,
        )
    except DialError as exc:
        raise NetworkError(
            Code.CLOUD_UNREACHABLE,
            f"{where}: {exc.reason}",
            raw={
                "host": server_hostname,
                "port": port,
                "reason": exc.reason,
                "addresses": [f.to_json() for f in exc.failures],
            },
        ) from None
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or exc.reason or str(exc)
        # OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID (9) and CERT_HAS_EXPIRED (10): the certificate
        # is not valid now, by the device's clock, which is the usual culprit; the user's next
        # step (let the clock set itself) differs from an untrusted certificate's.
        dated = exc.verify_code in (9, 10)
        raise NetworkError(
            Code.TLS_CERTIFICATE_DATE if dated else Code.TLS_VERIFICATION_FAILED,
            f"{where}: {reason}",
            raw={
                "host": server_hostname,
                "port": port,
                "reason": reason,
                "verify_code": exc.verify_code,
            },
        ) from None
    except ssl.SSLError as exc:
        reason = f"TLS handshake failed: {exc.reason or exc}"
        raise NetworkError(
            Code.TLS_VERIFICATION_FAILED,
            f"{where}: {reason}",
            raw={"host": server_hostname, "port": port, "reason": reason},
        ) from None
    except (TimeoutError, OSError) as exc:
        reason = describe_connect_error(exc)
        raise NetworkError(
            Code.CLOUD_UNREACHABLE,
            f"{where}: TLS handshake: {reason}",
            raw={"host": server_hostname, "port": port, "reason": reason},
        ) from None
    await _close(writer, timeout)


async def _close(writer: asyncio.StreamWriter, timeout: float) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
