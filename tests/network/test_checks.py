"""Connectivity checks against real servers on 127.0.0.1 (no other traffic)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web

from device_sim.codes import Code
from device_sim.errors import NetworkError
from device_sim.network.checks import (
    check_captive_portal,
    check_dns,
    check_internet,
    check_tls,
    system_resolver,
)
from device_sim.network.simulated import (
    CertificateAuthority,
    client_ssl_context,
    server_ssl_context,
)

HOST = "cloud.device-sim.test"
LOOPBACK = "127.0.0.1"
SHORT = 0.3  # timeout for the checks that must time out

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- servers --------------------------------------------------------------------------------------


@pytest.fixture
async def http_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start an aiohttp app answering GET /generate_204 with ``handler``; returns the URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_get("/generate_204", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, LOOPBACK, 0).start()
        return f"http://{LOOPBACK}:{runner.addresses[0][1]}/generate_204"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        yield int(sock.getsockname()[1])


class Silent:
    """A loopback TCP server that accepts and never says anything (until the peer leaves)."""

    def __init__(self) -> None:
        self.port = 0
        self.connected = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connected.set()
        try:
            async with asyncio.timeout(10):
                await reader.read()  # until the client gives up and closes
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def was_connected(self) -> None:
        """Wait (bounded) until the server side saw the connection, so teardown can close it."""
        async with asyncio.timeout(5):
            await self.connected.wait()


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    state = Silent()
    server = await asyncio.start_server(state.handle, LOOPBACK, 0)
    state.port = int(server.sockets[0].getsockname()[1])
    yield state
    server.close()
    await server.wait_closed()
    for task in state.tasks:
        task.cancel()
    await asyncio.gather(*state.tasks, return_exceptions=True)


@pytest.fixture(scope="module")
def cloud_ca() -> CertificateAuthority:
    return CertificateAuthority("test cloud CA")


@pytest.fixture
def device_context(cloud_ca: CertificateAuthority) -> ssl.SSLContext:
    return client_ssl_context(cloud_ca.cert_pem)


@pytest.fixture
async def tls_server() -> AsyncIterator[Callable[[tuple[bytes, bytes]], Awaitable[int]]]:
    """Start a TLS server presenting (certificate PEM, key PEM); returns its port."""
    servers: list[asyncio.Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(5):
                await writer.wait_closed()

    async def start(cert: tuple[bytes, bytes]) -> int:
        server = await asyncio.start_server(handle, LOOPBACK, 0, ssl=server_ssl_context(*cert))
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def expect_error(code: Code, check: Awaitable[object]) -> NetworkError:
    with pytest.raises(NetworkError) as info:
        await check
    assert info.value.code is code, info.value
    return info.value


# -- captive portal probe -------------------------------------------------------------------------


async def test_probe_204_is_open_internet(http_server: Callable[[Handler], Awaitable[str]]) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(status=204)

    await check_captive_portal(await http_server(ok), timeout=5)


async def test_probe_empty_200_is_open_internet(
    http_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=200)

    await check_captive_portal(await http_server(empty), timeout=5)


async def test_probe_redirect_is_a_portal(http_server: Callable[[Handler], Awaitable[str]]) -> None:
    login = "http://login.hotel.example/portal?ap=1"

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": login})

    err = await expect_error(
        Code.CAPTIVE_PORTAL, check_captive_portal(await http_server(redirect), timeout=5)
    )
    assert login in err.detail
    assert err.raw["location"] == login and err.raw["status"] == 302


async def test_probe_page_is_a_portal(http_server: Callable[[Handler], Awaitable[str]]) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(status=200, text="<html>Please sign in</html>")

    await expect_error(
        Code.CAPTIVE_PORTAL, check_captive_portal(await http_server(page), timeout=5)
    )


async def test_probe_http_error_is_no_internet(
    http_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503)

    err = await expect_error(
        Code.NO_INTERNET, check_captive_portal(await http_server(broken), timeout=5)
    )
    assert "503" in err.detail


async def test_probe_refused_is_no_internet(refusing_port: int) -> None:
    url = f"http://{LOOPBACK}:{refusing_port}/generate_204"
    err = await expect_error(Code.NO_INTERNET, check_captive_portal(url, timeout=5))
    assert "refused" in err.detail


async def test_probe_timeout_is_no_internet(silent: Silent) -> None:
    url = f"http://{LOOPBACK}:{silent.port}/generate_204"
    err = await expect_error(Code.NO_INTERNET, check_captive_portal(url, timeout=SHORT))
    assert "timed out" in err.detail
    await silent.was_connected()


# -- internet reachability ------------------------------------------------------------------------


async def test_internet_reachable(silent: Silent) -> None:
    await check_internet([LOOPBACK], silent.port, timeout=5)
    await silent.was_connected()


async def test_internet_refused(refusing_port: int) -> None:
    await expect_error(Code.NO_INTERNET, check_internet([LOOPBACK], refusing_port, timeout=5))


# -- TLS ------------------------------------------------------------------------------------------


async def test_tls_trusted_certificate(
    cloud_ca: CertificateAuthority,
    device_context: ssl.SSLContext,
    tls_server: Callable[[tuple[bytes, bytes]], Awaitable[int]],
) -> None:
    port = await tls_server(cloud_ca.issue(HOST))
    await check_tls([LOOPBACK], port, ssl_context=device_context, server_hostname=HOST, timeout=5)


async def test_tls_expired_certificate(
    cloud_ca: CertificateAuthority,
    device_context: ssl.SSLContext,
    tls_server: Callable[[tuple[bytes, bytes]], Awaitable[int]],
) -> None:
    port = await tls_server(cloud_ca.issue(HOST, expired=True))
    # not valid now, by the device's clock: its own code (the user's next step differs)
    err = await expect_error(
        Code.TLS_CERTIFICATE_DATE,
        check_tls([LOOPBACK], port, ssl_context=device_context, server_hostname=HOST, timeout=5),
    )
    assert "certificate has expired" in err.detail


async def test_tls_wrong_host(
    cloud_ca: CertificateAuthority,
    device_context: ssl.SSLContext,
    tls_server: Callable[[tuple[bytes, bytes]], Awaitable[int]],
) -> None:
    port = await tls_server(cloud_ca.issue("elsewhere.device-sim.test"))
    err = await expect_error(
        Code.TLS_VERIFICATION_FAILED,
        check_tls([LOOPBACK], port, ssl_context=device_context, server_hostname=HOST, timeout=5),
    )
    assert "hostname mismatch" in err.detail.lower()


async def test_tls_untrusted_ca(
    device_context: ssl.SSLContext, tls_server: Callable[[tuple[bytes, bytes]], Awaitable[int]]
) -> None:
    interceptor = CertificateAuthority("intercepting proxy CA")
    port = await tls_server(interceptor.issue(HOST))
    err = await expect_error(
        Code.TLS_VERIFICATION_FAILED,
        check_tls([LOOPBACK], port, ssl_context=device_context, server_hostname=HOST, timeout=5),
    )
    assert "issuer certificate" in err.detail


async def test_tls_to_plain_http_fails_handshake(
    device_context: ssl.SSLContext, http_server: Callable[[Handler], Awaitable[str]]
) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(status=204)

    port = int((await http_server(ok)).split(":")[2].split("/")[0])
    err = await expect_error(
        Code.TLS_VERIFICATION_FAILED,
        check_tls([LOOPBACK], port, ssl_context=device_context, server_hostname=HOST, timeout=5),
    )
    assert "handshake failed" in err.detail


async def test_tls_refused(device_context: ssl.SSLContext, refusing_port: int) -> None:
    err = await expect_error(
        Code.CLOUD_UNREACHABLE,
        check_tls(
            [LOOPBACK], refusing_port, ssl_context=device_context, server_hostname=HOST, timeout=5
        ),
    )
    assert "refused" in err.detail


async def test_tls_timeout(device_context: ssl.SSLContext, silent: Silent) -> None:
    err = await expect_error(
        Code.CLOUD_UNREACHABLE,
        check_tls(
            [LOOPBACK], silent.port, ssl_context=device_context, server_hostname=HOST, timeout=SHORT
        ),
    )
    assert "timed out" in err.detail
    await silent.was_connected()


# -- DNS ------------------------------------------------------------------------------------------


async def test_dns_resolves() -> None:
    async def resolver(host: str) -> list[str]:
        return ["127.0.0.1"] if host == HOST else []

    assert await check_dns(HOST, resolver=resolver, timeout=5) == ["127.0.0.1"]
    await expect_error(Code.DNS_FAILURE, check_dns("other.test", resolver=resolver, timeout=5))


async def test_dns_resolver_error() -> None:
    async def resolver(host: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    err = await expect_error(Code.DNS_FAILURE, check_dns(HOST, resolver=resolver, timeout=5))
    assert "Name or service not known" in err.detail and HOST in err.detail


async def test_dns_timeout() -> None:
    never = asyncio.Event()

    async def resolver(host: str) -> list[str]:
        await never.wait()
        return []

    err = await expect_error(Code.DNS_FAILURE, check_dns(HOST, resolver=resolver, timeout=SHORT))
    assert "timed out" in err.detail


async def test_system_resolver_reads_hosts_file() -> None:
    addresses = await check_dns("localhost", resolver=system_resolver, timeout=5)
    assert set(addresses) & {"127.0.0.1", "::1"}
