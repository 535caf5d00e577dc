"""bumble (Google's Python Bluetooth host stack) as device-sim uses it, on either side.

A bumble :class:`~bumble.device.Device` needs a controller. :func:`open_device` reaches one by a
transport moniker: bumble's own (``tcp-client:HOST:PORT``, ``android-netsim[:...]``,
``serial:DEV``, ``usb:N``, ``hci-socket:N``: bumble's ``open_transport``), or
``local:NAME``: a virtual controller of this process on the in-process link ``NAME`` (bumble's
``LocalLink``), for fleets and tests with no process and no bus between devices.
:func:`serve_controllers` exposes virtual controllers of one link on TCP ports, so a device
and a phone in two processes meet through them (what bumble's ``controllers`` app does).

bumble is an optional extra (``device-sim[bumble]``), pinned to one version because the hosts
rely on its internals; nothing here imports it until it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from .errors import SetupError

if TYPE_CHECKING:
    from bumble.device import Device
    from bumble.link import LocalLink

__all__ = ["LOCAL", "controllers_link", "open_device", "serve_controllers", "static_address"]

LOCAL = "local:"
_links: dict[str, LocalLink] = {}
_INSTALL = "pip install 'device-sim[bumble]'"
CLOSE_TIMEOUT_S = 2.0  # each step of closing a device whose controller may be gone


def _bumble() -> None:
    try:
        import bumble  # noqa: F401
    except ImportError:
        raise SetupError("the bumble BLE stack is not installed", _INSTALL) from None


def controllers_link(name: str) -> LocalLink:
    """The in-process link ``name`` (made on first use): an :func:`indexed_link`."""
    _bumble()
    if name not in _links:
        _links[name] = indexed_link()
    return _links[name]


SCANNERS_TTL_S = 0.05  # how long the list of scanning controllers is reused


def indexed_link() -> LocalLink:
    """bumble's LocalLink for fleets: a controller found by its address in a dict, and an
    advertisement handed to the controllers that scan, not to every controller.

    bumble's own link finds a packet's destination by a linear search over every controller
    (and every connection of each), and hands every advertising PDU to every controller: N
    advertising devices cost about N² per advertising round. Here a CONNECT_IND goes to its
    advertiser only, other PDUs to the scanning controllers (their list refreshed every
    :data:`SCANNERS_TTL_S`), and the rest of the link is bumble's."""
    import time

    from bumble import ll
    from bumble.link import LocalLink

    class IndexedLink(LocalLink):
        def __init__(self) -> None:
            super().__init__()
            self._by_address: dict[str, Any] = {}
            self._scanners: list[Any] = []
            self._scanners_at = 0.0

        def add_controller(self, controller: Any) -> None:
            super().add_controller(controller)
            self.on_address_changed(controller)

        def remove_controller(self, controller: Any) -> None:
            super().remove_controller(controller)
            self._by_address = {a: c for a, c in self._by_address.items() if c is not controller}

        def on_address_changed(self, controller: Any) -> None:
            for address in (controller.random_address, controller.public_address):
                if address is not None:
                    self._by_address[str(address)] = controller

        def find_le_controller(self, address: Any) -> Any:
            found = self._by_address.get(str(address))
            if found is not None and found in self.controllers:
                return found
            return super().find_le_controller(address)  # a resolvable address: bumble's search

        def send_advertising_pdu(self, sender_controller: Any, packet: Any) -> None:
            loop = asyncio.get_running_loop()
            if isinstance(packet, ll.ConnectInd):
                # to its advertiser; an advertising set's own address is in no index: to all
                # (a connection is rare next to advertisements)
                target = self._by_address.get(str(packet.advertiser_address))
                for controller in [target] if target is not None else list(self.controllers):
                    if controller is not sender_controller:
                        loop.call_soon(controller.on_ll_advertising_pdu, packet)
                return
            now = time.monotonic()
            if now - self._scanners_at > SCANNERS_TTL_S:
                self._scanners = [  # scanning, or initiating (it connects on the next PDU)
                    c for c in self.controllers if c.le_scan_enable or c.pending_le_connection
                ]
                self._scanners_at = now
            sender = packet.advertiser_address
            for controller in self._scanners:
                if controller is sender_controller:
                    continue
                pending = controller.pending_le_connection
                if not controller.le_scan_enable and (
                    pending is None or pending.peer_address != sender
                ):
                    continue  # initiating a connection to another device
                loop.call_soon(controller.on_ll_advertising_pdu, packet)

    return IndexedLink()


def static_address(seed: str | None = None) -> str:
    """A random static address (the two top bits set): from ``seed``, or random."""
    raw = hashlib.sha256(seed.encode()).digest()[:6] if seed else secrets.token_bytes(6)
    octets = bytes([raw[0] | 0xC0]) + raw[1:]
    return ":".join(f"{b:02X}" for b in octets)


@asynccontextmanager
async def open_device(spec: str, name: str, *, address: str | None = None) -> AsyncIterator[Device]:
    """A powered-on bumble Device named ``name`` on the controller ``spec`` reaches; closed
    (its transport too) on exit. Raises SetupError for a transport that cannot open."""
    _bumble()
    from bumble.controller import Controller
    from bumble.device import Device
    from bumble.hci import Address
    from bumble.host import Host
    from bumble.transport import open_transport
    from bumble.transport.common import AsyncPipeSink

    transport: Any = None
    if spec.startswith(LOCAL):
        controller = Controller(name, link=controllers_link(spec[len(LOCAL) :]))
        host = Host(controller, AsyncPipeSink(controller))
    else:
        try:
            transport = await open_transport(spec)
        except Exception as exc:  # bumble raises its own errors, OSError, ValueError...
            raise SetupError(
                f"bumble transport {spec!r} does not open: {exc or type(exc).__name__}",
                "check the moniker (docs: bumble's transports) and that its controller is up",
            ) from exc
        host = Host(transport.source, transport.sink)
    device = Device(name=name, address=Address(address or static_address()), host=host)
    try:
        await device.power_on()
        yield device
    finally:
        with contextlib.suppress(Exception):  # a controller gone: bumble would wait 10 s
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await device.power_off()
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()


@asynccontextmanager
async def serve_controllers(
    link: str, count: int, host: str = "127.0.0.1"
) -> AsyncIterator[list[str]]:
    """``count`` virtual controllers on the in-process link ``link``, each served on its own
    TCP port of ``host``: yields the ``tcp-client:HOST:PORT`` monikers that reach them (one
    process each: a controller serves one host)."""
    _bumble()
    from bumble.controller import Controller
    from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

    served: list[Any] = []
    monikers: list[str] = []
    try:
        for i in range(count):
            # IPPROTO_TCP named: asyncio sets TCP_NODELAY on an accepted socket only when its
            # listening socket says TCP (else each ATT round trip waits ~40 ms on delayed ACKs)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            port = sock.getsockname()[1]
            transport = await open_tcp_server_transport_with_socket(sock)
            served.append(transport)
            Controller(
                f"served-{i}",
                host_source=transport.source,
                host_sink=transport.sink,
                link=controllers_link(link),
            )
            monikers.append(f"tcp-client:{host}:{port}")
        yield monikers
    finally:
        for transport in served:
            # bumble's TCP server transport closes neither its server nor the connection it
            # accepted: both are closed here, so no socket outlives the controllers.
            connection = getattr(transport.sink, "transport", None)
            if connection is not None:
                connection.close()
            transport.server.close()
            with contextlib.suppress(Exception):
                await transport.close()
                async with asyncio.timeout(5):
                    await transport.server.wait_closed()
