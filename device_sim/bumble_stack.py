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
import functools
import hashlib
import secrets
import socket
from collections.abc import AsyncIterator, Callable
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


FILTERED_POLICIES = (1, 3)  # scanning filter policies that use the filter accept list
ACCEPT_LIST_SIZE = 16
# The commands that change what a controller's scan or connection being made hears.
_LISTENING_COMMANDS = frozenset(
    f"hci_le_{name}_command"
    for name in (
        "set_scan_parameters",
        "set_scan_enable",
        "set_extended_scan_parameters",
        "set_extended_scan_enable",
        "create_connection",
        "extended_create_connection",
    )
)


def virtual_controller(
    name: str, link: LocalLink, *, host_source: Any = None, host_sink: Any = None
) -> Any:
    """A bumble virtual controller on ``link`` (see :func:`_controller_class`)."""
    return _controller_class()(name, host_source=host_source, host_sink=host_sink, link=link)


@functools.cache
def _controller_class() -> Any:
    """bumble's virtual Controller with a filter accept list, as real controllers have.

    bumble's Controller answers the accept-list commands and ignores them, so a scanning phone
    gets an advertising report for every device on the link: with a thousand devices
    advertising every 100 ms, 20,000 HCI events a second per phone. Here the list is kept (up
    to :data:`ACCEPT_LIST_SIZE` entries, not changed while a filtered scan uses it: the spec's
    rule) and a scan whose filter policy uses it reports listed advertisers only; a connection
    being made still hears its peer. Packets to the host skip bumble's debug line unless
    debug logging is on (bumble formats every packet into it even when it is not logged)."""
    import logging

    from bumble import hci
    from bumble.controller import Controller

    bumble_log = logging.getLogger("bumble.controller")
    status = hci.HCI_StatusReturnParameters
    disallowed = hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR

    class FilteringController(Controller):
        filter_accept_list_size = ACCEPT_LIST_SIZE

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.accept_list: set[hci.Address] = set()
            super().__init__(*args, **kwargs)

        @property
        def filtering(self) -> bool:
            """Scanning through the accept list."""
            return bool(self.le_scan_enable) and self.le_scanning_filter_policy in FILTERED_POLICIES

        def _list_change(self, change: Callable[[], None]) -> Any:
            if self.filtering:
                return status(disallowed)
            change()
            self._listening_changed()
            return status(hci.HCI_ErrorCode.SUCCESS)

        def _listening_changed(self) -> None:
            tell = getattr(self.link, "on_listening_changed", None)
            if tell is not None:  # an indexed link: it hands advertisements to listeners only
                tell(self)

        def on_hci_command_packet(self, command: Any) -> None:
            super().on_hci_command_packet(command)
            if command.name.lower() in _LISTENING_COMMANDS:  # the link is told of each change
                self._listening_changed()

        def create_le_connection(self, peer_address: Any) -> None:
            super().create_le_connection(peer_address)
            self._listening_changed()

        def on_hci_le_create_connection_cancel_command(self, command: Any) -> Any:
            """The spec's cancel (bumble's answers and keeps connecting: a phone whose connect
            timed out could never connect again): the connection being made ends with an LE
            Connection Complete of status Unknown Connection Identifier, after the command's
            own completion; with none, Command Disallowed."""
            pending = self.pending_le_connection
            if pending is None:
                return status(disallowed)
            self.pending_le_connection = None
            self._listening_changed()
            failed = hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=0,
                role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address.address_type,
                peer_address=pending.peer_address,
                connection_interval=0,
                peripheral_latency=0,
                supervision_timeout=0,
                central_clock_accuracy=0,
            )
            asyncio.get_running_loop().call_soon(self.send_hci_packet, failed)
            return status(hci.HCI_ErrorCode.SUCCESS)

        def on_hci_le_clear_filter_accept_list_command(self, _command: Any) -> Any:
            return self._list_change(self.accept_list.clear)

        def on_hci_le_add_device_to_filter_accept_list_command(self, command: Any) -> Any:
            address = hci.Address(bytes(command.address), command.address_type)
            if address not in self.accept_list and len(self.accept_list) >= ACCEPT_LIST_SIZE:
                return status(hci.HCI_ErrorCode.MEMORY_CAPACITY_EXCEEDED_ERROR)
            return self._list_change(lambda: self.accept_list.add(address))

        def on_hci_le_remove_device_from_filter_accept_list_command(self, command: Any) -> Any:
            address = hci.Address(bytes(command.address), command.address_type)
            return self._list_change(lambda: self.accept_list.discard(address))

        def accepts(self, address: Any) -> bool:
            """Whether a scan reports this advertiser."""
            return not self.filtering or address in self.accept_list

        def on_advertising_pdu(self, pdu: Any) -> None:
            if self.accepts(pdu.advertiser_address):
                super().on_advertising_pdu(pdu)
                return
            pending = self.pending_le_connection  # not reported, but still connected to
            if pending is not None and pending.peer_address == pdu.advertiser_address:
                self.create_le_connection(pdu.advertiser_address)

        def send_hci_packet(self, packet: Any) -> None:
            if bumble_log.isEnabledFor(logging.DEBUG):
                super().send_hci_packet(packet)
            elif self.host:
                asyncio.get_running_loop().call_soon(self.host.on_packet, bytes(packet))

        def on_hci_packet(self, packet: Any) -> None:
            if bumble_log.isEnabledFor(logging.DEBUG):
                super().on_hci_packet(packet)
            elif isinstance(packet, hci.HCI_AclDataPacket):
                self.on_hci_acl_data_packet(packet)
            elif isinstance(packet, hci.HCI_Command):
                self.on_hci_command_packet(packet)
            else:
                super().on_hci_packet(packet)

    return FilteringController


def quiet_host(source: Any, sink: Any) -> Any:
    """A bumble Host that skips bumble's per-packet debug line while debug logging is off, as
    :func:`_controller_class`'s controller does (bumble formats every packet into it, logged
    or not: a third of a fleet's time); with a snooper or debug on, bumble's own path."""
    return _host_class()(source, sink)


@functools.cache
def _host_class() -> Any:
    import logging

    from bumble import hci
    from bumble.host import Host

    bumble_log = logging.getLogger("bumble.host")

    class QuietHost(Host):
        def _plain(self) -> bool:
            return self.snooper is None and not bumble_log.isEnabledFor(logging.DEBUG)

        def on_hci_packet(self, packet: Any) -> None:
            if not self._plain():
                super().on_hci_packet(packet)
            elif isinstance(packet, hci.HCI_AclDataPacket):
                self.on_hci_acl_data_packet(packet)
            elif isinstance(packet, hci.HCI_Event):
                self.on_hci_event_packet(packet)
            else:
                super().on_hci_packet(packet)

        def send_hci_packet(self, packet: Any) -> None:
            if not self._plain():
                super().send_hci_packet(packet)
            elif self.hci_sink:
                self.hci_sink.on_packet(bytes(packet))

    return QuietHost


def indexed_link() -> LocalLink:
    """bumble's LocalLink for fleets: a controller found by its address in a dict, and an
    advertisement handed to the controllers that want it, not to every controller.

    bumble's own link finds a packet's destination by a linear search over every controller
    (and every connection of each), and hands every advertising PDU to every controller: N
    advertising devices cost about N² per advertising round. Here a CONNECT_IND goes to its
    advertiser only; other PDUs go to the controllers scanning with no filter, to those whose
    filter accept list has the advertiser, and to those connecting to it. The controllers
    (:func:`virtual_controller`) tell the link when they start or stop scanning or
    connecting, so a phone hears the next advertisement after its command; the rest of the
    link is bumble's."""
    from bumble import ll
    from bumble.link import LocalLink

    class IndexedLink(LocalLink):
        def __init__(self) -> None:
            super().__init__()
            self._by_address: dict[Any, Any] = {}
            self._listening: set[Any] = set()  # scanning or connecting: a few phones
            self._open: list[Any] = []  # scanning, unfiltered
            self._wanting: dict[Any, list[Any]] = {}  # advertiser -> who filters it in or connects

        def add_controller(self, controller: Any) -> None:
            super().add_controller(controller)
            self.on_address_changed(controller)

        def remove_controller(self, controller: Any) -> None:
            super().remove_controller(controller)
            self._by_address = {a: c for a, c in self._by_address.items() if c is not controller}
            self._listening.discard(controller)
            self._reindex()

        def on_address_changed(self, controller: Any) -> None:
            for address in (controller.random_address, controller.public_address):
                if address is not None:
                    self._by_address[address] = controller

        def on_listening_changed(self, controller: Any) -> None:
            """``controller`` started or stopped scanning or connecting, or changed its list."""
            if controller.le_scan_enable or controller.pending_le_connection is not None:
                self._listening.add(controller)
            else:
                self._listening.discard(controller)
            self._reindex()

        def find_le_controller(self, address: Any) -> Any:
            found = self._by_address.get(address)
            if found is not None and found in self.controllers:
                return found
            return super().find_le_controller(address)  # a resolvable address: bumble's search

        def _reindex(self) -> None:
            self._open, self._wanting = [], {}
            for c in self._listening:
                pending = c.pending_le_connection
                if pending is not None:
                    self._wanting.setdefault(pending.peer_address, []).append(c)
                if not c.le_scan_enable:
                    continue
                if c.le_scanning_filter_policy in FILTERED_POLICIES:
                    for address in c.accept_list:
                        self._wanting.setdefault(address, []).append(c)
                else:
                    self._open.append(c)

        def send_advertising_pdu(self, sender_controller: Any, packet: Any) -> None:
            loop = asyncio.get_running_loop()
            if isinstance(packet, ll.ConnectInd):
                # to its advertiser; an advertising set's own address is in no index: to all
                # (a connection is rare next to advertisements)
                target = self._by_address.get(packet.advertiser_address)
                for controller in [target] if target is not None else list(self.controllers):
                    if controller is not sender_controller:
                        loop.call_soon(controller.on_ll_advertising_pdu, packet)
                return
            wanting = self._wanting.get(packet.advertiser_address, ())
            for controller in (*self._open, *wanting) if wanting else self._open:
                if controller is not sender_controller:
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
    from bumble.device import Device
    from bumble.hci import Address
    from bumble.transport import open_transport
    from bumble.transport.common import AsyncPipeSink

    transport: Any = None
    if spec.startswith(LOCAL):
        controller = virtual_controller(name, controllers_link(spec[len(LOCAL) :]))
        hci_host = quiet_host(controller, AsyncPipeSink(controller))
    else:
        try:
            transport = await open_transport(spec)
        except Exception as exc:  # bumble raises its own errors, OSError, ValueError...
            raise SetupError(
                f"bumble transport {spec!r} does not open: {exc or type(exc).__name__}",
                "check the moniker (docs: bumble's transports) and that its controller is up",
            ) from exc
        hci_host = quiet_host(transport.source, transport.sink)
    device = Device(name=name, address=Address(address or static_address()), host=hci_host)
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
            virtual_controller(
                f"served-{i}",
                controllers_link(link),
                host_source=transport.source,
                host_sink=transport.sink,
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
