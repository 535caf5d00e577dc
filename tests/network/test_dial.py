"""Every resolved address is tried, IPv6 and IPv4, as a device's connect logic does.

Servers listen on 127.0.0.1 only or on ::1 only; a host name resolves to the other family first
(as the stock Debian /etc/hosts makes ``localhost`` resolve to ::1 first). A "blackhole" address
is a loopback listener whose accept queue is full: connecting to it hangs, as to an IPv6 address
the home network cannot route. All traffic stays on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from device_sim.codes import Code
from device_sim.core.activation import ActivationConfig, CloudActivator
from device_sim.core.store import CloudBinding
from device_sim.dial import DialError, dial, interleave
from device_sim.doors.native.http_link import HttpLink
from device_sim.errors import DeviceUnreachable, NetworkError
from device_sim.network.checks import check_captive_portal, check_internet, check_tls
from device_sim.network.simulated import (
    CertificateAuthority,
    client_ssl_context,
    server_ssl_context,
)
from device_sim.profile import load_profile

NO_BINDING = CloudBinding("none", None, None, None, None, None, None, None, False, None, None, None)

HOST = "cloud.device-sim.test"
V4, V6 = "127.0.0.1", "::1"


def resolver_for(*addresses: str):
    async def resolve(host: str) -> list[str]:
        return list(addresses)

    return resolve


def test_interleave_alternates_families_from_the_first() -> None:
    assert interleave(["::1", "::2", "10.0.0.1", "10.0.0.2", "::3"]) == [
        "::1",
        "10.0.0.1",
        "::2",
        "10.0.0.2",
        "::3",
    ]
    assert interleave(["10.0.0.1", "::1"]) == ["10.0.0.1", "::1"]
    assert interleave([]) == []


@contextlib.contextmanager
def refusing(address: str, port: int) -> Iterator[None]:
    """Hold ``address:port`` bound but not listening: a connection there is refused."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, port))
        yield


@contextlib.contextmanager
def blackhole(address: str, port: int) -> Iterator[int]:
    """A listener with a full accept queue: connecting to it hangs (SYNs are dropped).
    ``port`` 0 picks a free one; yields the port."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with (
        socket.socket(family, socket.SOCK_STREAM) as listener,
        socket.socket(family, socket.SOCK_STREAM) as filler,
    ):
        listener.bind((address, port))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect((address, port))  # takes the only slot
        yield port


def free_on_the_other_family(address: str, port: int) -> bool:
    """Whether ``port`` can be bound on the other loopback (V4 for V6 and back): the tests
    then hold it there (``refusing``), and another process may be using it."""
    other, family = (V4, socket.AF_INET) if ":" in address else (V6, socket.AF_INET6)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((other, port))
        except OSError:
            return False
    return True


class Listener:
    """A TCP server on one address; ``port`` is free on the other family (checked)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.port = 0
        self.accepted = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.set()
        writer.close()


@pytest.fixture
async def listen() -> AsyncIterator:
    servers: list[asyncio.Server] = []

    async def start(address: str, ssl_context: ssl.SSLContext | None = None) -> Listener:
        listener = Listener(address)
        for _ in range(20):  # a port also free on the other family, bounded
            server = await asyncio.start_server(listener.handle, address, 0, ssl=ssl_context)
            servers.append(server)
            listener.port = int(server.sockets[0].getsockname()[1])
            if free_on_the_other_family(address, listener.port):
                return listener
        raise AssertionError("no port free on both loopback families in 20 tries")

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "server, order",
    [(V4, [V6, V4]), (V6, [V4, V6])],
    ids=["v4-only server, v6 first", "v6-only server, v4 first"],
)
async def test_dial_falls_back_to_the_address_that_answers(
    listen, server: str, order: list[str]
) -> None:
    listener = await listen(server)
    other = V6 if server == V4 else V4
    with refusing(other, listener.port):
        sock, address = await dial(order, listener.port, timeout=5)
    sock.close()
    assert address == server
    await asyncio.wait_for(listener.accepted.wait(), 5)


async def test_dial_does_not_wait_for_a_hanging_first_address(listen) -> None:
    listener = await listen(V4)
    with blackhole(V6, listener.port):
        sock, address = await dial([V6, V4], listener.port, timeout=10)
    sock.close()
    assert address == V4


async def test_dial_names_every_address_that_failed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((V4, 0))
        port = probe.getsockname()[1]
        with refusing(V6, port), pytest.raises(DialError) as info:
            await dial([V6, V4], port, timeout=5, target=HOST)
    assert [f.address for f in info.value.failures] == [V6, V4]
    assert all(f.reason == "connection refused" for f in info.value.failures)
    assert (
        info.value.reason == f"[::1]:{port} connection refused; 127.0.0.1:{port} connection refused"
    )


async def test_dial_timeout_names_the_hanging_address() -> None:
    with blackhole(V4, 0) as port, pytest.raises(DialError) as info:
        await dial([V4], port, timeout=0.5)
    assert [(f.address, f.reason) for f in info.value.failures] == [(V4, "timed out")]


# -- the checks and clients over it -----------------------------------------------------------


@pytest.fixture
def cloud_ca() -> CertificateAuthority:
    return CertificateAuthority("test cloud CA")


async def test_tls_check_reaches_a_v4_only_cloud_whose_name_resolves_v6_first(
    listen, cloud_ca: CertificateAuthority
) -> None:
    listener = await listen(V4, server_ssl_context(*cloud_ca.issue(HOST)))
    with refusing(V6, listener.port):
        await check_tls(
            [V6, V4],
            listener.port,
            ssl_context=client_ssl_context(cloud_ca.cert_pem),
            server_hostname=HOST,
            timeout=5,
        )


async def test_tls_check_unreachable_lists_each_address(cloud_ca: CertificateAuthority) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((V4, 0))
        port = probe.getsockname()[1]
        with refusing(V6, port), pytest.raises(NetworkError) as info:
            await check_tls(
                [V6, V4],
                port,
                ssl_context=client_ssl_context(cloud_ca.cert_pem),
                server_hostname=HOST,
                timeout=5,
            )
    assert info.value.code is Code.CLOUD_UNREACHABLE
    assert f"[::1]:{port} connection refused" in info.value.detail
    assert f"127.0.0.1:{port} connection refused" in info.value.detail
    assert [a["address"] for a in info.value.raw["addresses"]] == [V6, V4]


async def test_internet_check_reaches_a_v6_only_endpoint(listen) -> None:
    listener = await listen(V6)
    with refusing(V4, listener.port):
        await check_internet([V4, V6], listener.port, timeout=5)
    await asyncio.wait_for(listener.accepted.wait(), 5)


@pytest.fixture
async def http_app() -> AsyncIterator:
    runners: list[web.AppRunner] = []

    async def start(
        address: str, routes: list[web.RouteDef], ssl_context: ssl.SSLContext | None = None
    ) -> int:
        for _ in range(20):  # a port also free on the other family, bounded
            app = web.Application()
            app.add_routes(routes)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, address, 0, ssl_context=ssl_context).start()
            port = int(runner.addresses[0][1])
            if free_on_the_other_family(address, port):
                return port
        raise AssertionError("no port free on both loopback families in 20 tries")

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_captive_probe_by_name_reaches_a_v4_only_server(http_app) -> None:
    async def generate_204(request: web.Request) -> web.Response:
        return web.Response(status=204)

    port = await http_app(V4, [web.get("/generate_204", generate_204)])
    with refusing(V6, port):
        await check_captive_portal(
            f"http://probe.device-sim.test:{port}/generate_204",
            timeout=5,
            resolver=resolver_for(V6, V4),
        )


async def test_captive_probe_unreachable_names_each_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((V4, 0))
        port = probe.getsockname()[1]
        with refusing(V6, port), pytest.raises(NetworkError) as info:
            await check_captive_portal(
                f"http://probe.device-sim.test:{port}/generate_204",
                timeout=5,
                resolver=resolver_for(V6, V4),
            )
    assert info.value.code is Code.NO_INTERNET
    assert "every address failed" in info.value.detail
    assert f"[::1]:{port} connection refused" in info.value.detail
    assert f"127.0.0.1:{port} connection refused" in info.value.detail


@pytest.mark.parametrize("server, order", [(V4, (V6, V4)), (V6, (V4, V6))])
async def test_cloud_activation_tries_every_address(
    http_app, tmp_path: Path, cloud_ca: CertificateAuthority, server: str, order: tuple[str, str]
) -> None:
    seen: list[dict] = []

    async def activate(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response(
            {
                "mode": "registration",
                "account": "alice",
                "generation": 1,
                "credentials": {"token": "t0ken"},
            }
        )

    port = await http_app(
        server, [web.post("/v1/activate", activate)], server_ssl_context(*cloud_ca.issue(HOST))
    )
    (tmp_path / "ca.pem").write_bytes(cloud_ca.cert_pem)
    (tmp_path / "registration.json").write_text(json.dumps({"key_id": "k1", "secret": "s"}))
    activator = CloudActivator(
        ActivationConfig(
            "registration",
            f"https://{HOST}:{port}",
            tmp_path / "ca.pem",
            password_mode="cloud",
            timeout_s=5,
        ),
        tmp_path,
        "dev-1",
        resolver=resolver_for(*order),
    )
    with refusing(order[0], port):
        result = await activator.activate(NO_BINDING, "req-1")
    assert (result.account, seen[0]["request_id"]) == ("alice", "req-1")


async def test_phone_reaches_a_softap_api_on_v6_only(http_app) -> None:
    async def info(request: web.Request) -> web.Response:
        return web.json_response({"device_id": "d1", "lan_url": None})

    port = await http_app(V6, [web.get("/api/v1/info", info)])
    with refusing(V4, port):
        async with HttpLink(
            load_profile(), f"http://device.device-sim.test:{port}", resolver=resolver_for(V4, V6)
        ) as link:
            assert link.info["device_id"] == "d1"


async def test_phone_with_no_device_at_the_url_is_device_unreachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((V4, 0))
        port = probe.getsockname()[1]
        with pytest.raises(DeviceUnreachable) as info:
            async with HttpLink(load_profile(), f"http://127.0.0.1:{port}"):
                pass
    assert info.value.code is Code.DEVICE_UNREACHABLE
    assert "connection refused" in info.value.detail
