"""Fixtures: a private system bus (session), a fresh NetworkManager mock per test, a loopback cloud.

No sleeps as synchronisation: the bus address is read from dbus-daemon's pipe, the mock is ready
once it owns its name, and every wait in the tests is on a signal or call, with a bound.
"""

from __future__ import annotations

import asyncio
import selectors
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from device_sim.core.store import DeviceStore
from device_sim.network.base import Security
from device_sim.network.nm.backend import NetworkManagerBackend
from device_sim.network.simulated import CertificateAuthority, server_ssl_context
from device_sim.testing.nm_mock import NMMock

CLOUD = "cloud.device-sim.test"
WAIT = 5.0

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


@pytest.fixture(scope="session")
def system_bus(
    tmp_path_factory: pytest.TempPathFactory, require: Callable[[str | None], None]
) -> Iterator[str]:
    """A private, permissive system-type dbus-daemon; yields its address."""
    daemon = shutil.which("dbus-daemon")
    require(None if daemon else "needs dbus-daemon (apt install dbus)")
    assert daemon is not None
    workdir = tmp_path_factory.mktemp("nm-bus")
    conf = workdir / "bus.conf"
    conf.write_text(_BUS_CONF.format(socket=workdir / "bus.sock"))
    proc = subprocess.Popen(
        [daemon, f"--config-file={conf}", "--nofork", "--nosyslog", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=10):
                raise RuntimeError("dbus-daemon printed no address within 10 s")
        address = proc.stdout.readline().decode().strip()
        assert address, "dbus-daemon exited before printing its address"
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.fixture
async def nm(system_bus: str, tmp_path: Path) -> AsyncIterator[NMMock]:
    async with NMMock(system_bus, log_path=tmp_path / "nm-mock.log") as mock:
        yield mock


@pytest.fixture
async def wifi(nm: NMMock) -> str:
    """wlan0 with a typical neighbourhood."""
    dev = await nm.add_wifi_device("wlan0")
    await nm.add_access_point(
        dev, "home", b"Home", bssid="02:00:00:00:00:01", strength=80, security=Security.WPA2_PSK
    )
    await nm.add_access_point(
        dev,
        "wpa3",
        b"Modern",
        bssid="02:00:00:00:00:02",
        frequency=5180,
        strength=60,
        security=Security.WPA3_SAE,
    )
    await nm.add_access_point(
        dev, "cafe", b"Cafe", bssid="02:00:00:00:00:03", strength=40, security=Security.OPEN
    )
    return dev


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeviceStore]:
    with DeviceStore(tmp_path / "state") as opened:
        yield opened


class Cloud:
    """A TLS endpoint on 127.0.0.1 with a certificate for :data:`CLOUD` from a test CA."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = CertificateAuthority("device-sim test cloud CA")
        self.ca_file = tmp_path / "cloud-ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, cert: tuple[bytes, bytes] | None = None) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        self._server = await asyncio.start_server(
            serve, "127.0.0.1", 0, ssl=server_ssl_context(*(cert or self.ca.issue(CLOUD)))
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    server = Cloud(tmp_path)
    await server.start()
    yield server
    await server.stop()


def resolver_for(names: dict[str, Sequence[str]]) -> Callable[[str], Awaitable[list[str]]]:
    async def resolve(host: str) -> list[str]:
        if host in names:
            return list(names[host])
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


MakeBackend = Callable[..., Awaitable[NetworkManagerBackend]]


@pytest.fixture
async def make_backend(
    system_bus: str, store: DeviceStore, cloud: Cloud, tmp_path: Path
) -> AsyncIterator[MakeBackend]:
    """Start a backend on the private bus (options override the test defaults); stopped after."""
    started: list[NetworkManagerBackend] = []

    async def make(**options: Any) -> NetworkManagerBackend:
        defaults: dict[str, Any] = {
            "store": store,
            "bus_address": system_bus,
            "scan_timeout": 2.0,
            "join_timeout": WAIT,
            "check_timeout": 2.0,
            "cloud_host": CLOUD,
            "cloud_port": cloud.port,
            "cloud_ca": cloud.ca_file,
            "resolver": resolver_for({CLOUD: ["127.0.0.1"]}),
            "dnsmasq_shared_dir": tmp_path / "dnsmasq-shared.d",
        }
        backend = NetworkManagerBackend(**{**defaults, **options})
        await backend.start()
        started.append(backend)
        return backend

    yield make
    for backend in started:
        await backend.stop()


@pytest.fixture
async def backend(wifi: str, make_backend: MakeBackend) -> NetworkManagerBackend:
    return await make_backend()
