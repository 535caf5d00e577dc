"""The SoftAP door: a temporary access point serving the provisioning API over HTTP.

Lifecycle (one radio, as on most hardware):

1. ``start()``: scan and cache the network list, bring the access point up (the backend's radio
   in AP mode; dnsmasq for DHCP with option 114 and catch-all DNS when configured), then open
   the ``ap`` HTTP listener.
2. A join (from this door, BLE or a restart) calls :meth:`before_station`: in-flight answers are
   delivered, then the listener, dnsmasq and the AP go down.
3. :meth:`after_station`: after ``failed`` the AP comes back with a fresh scan, and the failure
   code is readable there (public state, and the HTTP session's queued events); after ``online``
   the AP stays down and, while the HTTP session that started the join is open, the ``lan``
   listener serves the same API on the home network so that phone reads the outcome.

The routes live in :mod:`.routes`; the door owns listeners, the radio and the clients' outboxes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from aiohttp import web

from ...codes import Code, State
from ...dial import reachable
from ...errors import OnboardingError, TransportError
from ...guarded_http import ACCEPT_BURST, ConnectionGuard, GuardedRunner
from ...profile import Profile
from ...ratelimit import LimitedLog
from ...security.ap_credentials import wifi_qr_string
from ...security.secret import Secret
from ...session.port import AccessPoint, AccessPointConfig, DiagnosticEvent, DoorPort, EventPhase
from ..base import Door
from ..personality import HttpRoute
from .api import SoftApHost
from .http import coded_answer
from .options import SoftApOptions
from .routes import Routes
from .sessions import HttpClients

LOG = logging.getLogger(__name__)
IN_USE_S = 30.0  # a phone that asked the AP something this recently is using it
# An idle kept-alive connection is closed quietly after this: Espressif's esp_prov keeps one
# connection and waits 5 s between requests, browsers keep theirs for about a minute.
KEEPALIVE_S = 60.0


class _Listener:
    """One aiohttp server on one address, on a socket bound once for the door's life.

    The socket is bound and listening from :meth:`reserve` (the door's construction) until
    :meth:`release` (the door's stop): the URL is known before the door serves, and no other
    listener on the host can take the port while the AP is down for a join; there is no
    bind-release-rebind anywhere. aiohttp serves a duplicate of it while the listener is up.
    A phone that connects while it is down waits in the kernel's backlog and is answered when
    the listener opens again, or reset when the door stops: it waits for the device to be
    ready, as a phone does for an AP that is off the air, instead of polling.
    """

    BACKLOG = ACCEPT_BURST  # the kernel's queue, and what asyncio accepts at one wake-up

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        grace_s: float,
        *,
        profile: Profile,
        header_timeout_s: float,
        rejected: LimitedLog,
        protected: Callable[[str | None], bool],
        announce: str | None = None,
    ) -> None:
        self.name, self.host, self.port, self.grace_s = name, host, port, grace_s
        self.announce = announce  # the host in the URL clients are given (default: host)
        self.profile, self.header_timeout_s, self.rejected = profile, header_timeout_s, rejected
        # Capped per address and in all; the session holder's address is never pushed out.
        self.guard = ConnectionGuard(f"softap {name}", rejected, protected=protected)
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None

    @property
    def up(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        name = self.announce or self.host
        host = f"[{name}]" if ":" in name else name
        return f"http://{host}" + ("" if self.port == 80 else f":{self.port}")

    def reserve(self) -> None:
        """Bind and listen now (port 0: any free port, fixed from now on). Raises OSError."""
        if self._sock is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.host, self.port))
            sock.listen(self.BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.port = int(sock.getsockname()[1])

    def release(self) -> None:
        """Close the socket for good: connections still waiting are reset."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    async def open(self, app: web.Application) -> None:
        if self._runner is not None:
            return
        try:
            self.reserve()  # only after release(): a door started again after its stop
        except OSError as exc:
            raise TransportError(
                f"cannot listen on {self.host}:{self.port} ({self.name}): {exc.strerror or exc}",
                code=Code.SOFTAP_UNAVAILABLE,
            ) from exc
        assert self._sock is not None
        runner = GuardedRunner(
            app,
            answer=coded_answer(self.profile),
            header_timeout_s=self.header_timeout_s,
            rejected=self.rejected,
            guard=self.guard,
            keepalive_s=KEEPALIVE_S,
            access_log=None,
            shutdown_timeout=self.grace_s,
        )
        await runner.setup()
        try:
            # aiohttp closes the socket it serves when the listener closes: give it a copy.
            await web.SockSite(runner, self._sock.dup(), backlog=self.BACKLOG).start()
        except OSError as exc:
            await runner.cleanup()
            raise TransportError(
                f"cannot serve on {self.host}:{self.port} ({self.name}): {exc.strerror or exc}",
                code=Code.SOFTAP_UNAVAILABLE,
            ) from exc
        self._runner = runner
        LOG.info("softap: %s listener on %s", self.name, self.url)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # stops accepting, lets in-flight answers finish (grace_s)
            LOG.info("softap: %s listener closed", self.name)


class SoftApDoor(Door):
    name = "softap"

    def __init__(
        self,
        port: DoorPort,
        options: SoftApOptions,
        *,
        doors_status: Callable[[], dict[str, Any]] | None = None,
        routes: Callable[[SoftApHost], Sequence[HttpRoute]] = lambda host: (),
    ) -> None:
        """``routes(door)``: the personalities' own endpoints, served next to the door's (a
        clash with one of them is a ConfigError)."""
        profile, identity = port.profile, port.identity
        self.port, self.profile, self.identity, self.options = port, profile, identity, options
        self._doors_status = doors_status or (lambda: {})
        ssid = profile.softap.ssid_pattern.format(short_id=identity.short_id)
        if options.open:
            passphrase = None
        elif identity.softap_passphrase is None:
            raise TransportError(
                "the device identity has no SoftAP passphrase", code=Code.SOFTAP_UNAVAILABLE
            )
        else:
            passphrase = identity.softap_passphrase
        self.ap_config = AccessPointConfig(
            ssid, passphrase, address=options.listen_host, concurrent=options.concurrent
        )
        self.clients = HttpClients(
            lambda peer: port.session_peer == peer, profile.softap.http.session_cookie
        )
        # A rejected request is logged once, briefly; a flood of them at most 10 lines a minute.
        self.rejected = LimitedLog(LOG, "softap: rejected request", burst=10, window_s=60)
        header_timeout_s = profile.softap.http.body_timeout_ms / 1000
        self.ap = _Listener(
            "ap",
            options.listen_host,
            options.listen.port,
            options.shutdown_grace_s,
            announce=options.announce or reachable(options.listen_host),
            profile=profile,
            header_timeout_s=header_timeout_s,
            rejected=self.rejected,
            protected=self._holder_address,
        )
        self.lan = _Listener(
            "lan",
            options.lan_host,
            options.lan.port,
            options.shutdown_grace_s,
            announce=options.lan_announce or reachable(options.lan_host),
            profile=profile,
            header_timeout_s=header_timeout_s,
            rejected=self.rejected,
            protected=self._holder_address,
        )
        self.networks: list[AccessPoint] = []
        self.scanned_at_ms = 0
        self._last_request = -IN_USE_S  # monotonic time of the last request on the AP
        self.latest: DiagnosticEvent | None = None
        self._changed = asyncio.Event()
        self.closing = False  # a listener is going down: long polls answer at once
        self._wanted = False  # the AP should be up (started and not stopped)
        self._suspended = False  # down for a join, to come back if it fails
        self._down_after_session = False  # concurrent AP: down when the holder's session ends
        self._dnsmasq: Any = None
        self._lock = asyncio.Lock()
        self._routes = Routes(port, self, routes(self))
        self._unsubscribe: Callable[[], None] | None = None
        self._unfollow: Callable[[], None] = lambda: None
        self._release_radio: Callable[[], None] = lambda: None
        self._tasks: set[asyncio.Task[None]] = set()
        for listener, flag in ((self.ap, "--softap-listen"), (self.lan, "--softap-lan")):
            try:
                listener.reserve()
            except OSError as exc:
                self.ap.release()
                raise TransportError(
                    f"cannot listen on {listener.host}:{listener.port} ({flag}): "
                    f"{exc.strerror or exc}; another process holds it, or give another "
                    f"address or port with {flag}",
                    code=Code.SOFTAP_UNAVAILABLE,
                ) from exc

    # --- public ------------------------------------------------------------------------------

    @property
    def ap_up(self) -> bool:
        return self.ap.up

    # What the routes read (routes.SoftApView).

    @property
    def ap_url(self) -> str:
        return self.ap.url

    @property
    def ap_host(self) -> str:
        return self.ap.host

    @property
    def lan_url(self) -> str:
        return self.lan.url

    @property
    def captive_mode(self) -> str:
        return self.options.captive_mode

    def doors_status(self) -> dict[str, Any]:
        return self._doors_status()

    @property
    def wifi_qr(self) -> Secret:
        return wifi_qr_string(self.ap_config.ssid, self.ap_config.passphrase)

    def describe(self) -> dict[str, Any]:
        """For /api/v1/info and the doors diagnostics: never the AP passphrase."""
        return {
            "ssid": self.ap_config.ssid,
            "open": self.ap_config.passphrase is None,
            "ap_url": self.ap.url,
            "lan_url": self.lan.url,
            "up": self.ap.up,
            "captive_mode": self.options.captive_mode,
        }

    async def start(self) -> None:
        """Scan, bring the AP up and serve. Raises TransportError(SOFTAP_UNAVAILABLE)."""
        if self._unsubscribe is None:
            self._release_radio = self.port.claim_radio(self)
            self._unfollow = self.port.follow_sessions(closed=self._session_closed)
            self._unsubscribe = self.port.subscribe(self._on_event)
            self.latest = None
        async with self._lock:
            self._wanted = True
            if self.port.busy:
                self._suspended = True  # comes up when the running attempt fails
                return
            await self._bring_up()

    async def stop(self) -> None:
        async with self._lock:
            self._wanted = self._suspended = False
            await self._take_down()
            await self._close_lan()
            self.ap.release()
            self.lan.release()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            self._unfollow()
            self._release_radio()

    # --- RadioUser (called by the engine around every join) ------------------------------------

    async def before_station(self) -> None:
        async with self._lock:
            await self._close_lan()
            if self.ap.up and self.options.concurrent:
                LOG.info("softap: access point stays up during the join (concurrent)")
                return
            if self.ap.up:
                self._suspended = True
                LOG.info("softap: access point down for the join (one radio)")
                await self._take_down()

    def in_use(self) -> bool:
        """A phone is on the access point: it holds the session, or asked something without
        one within :data:`IN_USE_S` (retries of the saved networks, which take the radio,
        wait)."""
        if not self.ap.up:
            return False
        holder = self.port.session_peer
        if holder is not None and any(holder == box.peer for box in self.clients):
            return True
        return time.monotonic() - self._last_request < IN_USE_S

    def request_seen(self) -> None:
        self._last_request = time.monotonic()

    def _holder_address(self, address: str | None) -> bool:
        """Whether ``address`` is the one of the HTTP client that holds the session."""
        holder = self.port.session_peer
        return address is not None and any(
            box.peer == holder and box.remote == address for box in self.clients
        )

    async def after_station(self, state: State) -> None:
        async with self._lock:
            if self.options.concurrent and self.ap.up and state is State.ONLINE:
                # The phone on the AP reads its outcome there; the AP goes when its session
                # does (or now, when no session started the join).
                self._wanted = False
                if self.port.session_peer is None:
                    await self._take_down()
                else:
                    self._down_after_session = True
                return
            if not self._suspended or not self._wanted:
                return
            self._suspended = False
            if state is State.ONLINE:
                self._wanted = False
                holder = self.port.session_peer
                if any(holder == box.peer for box in self.clients):
                    await self.lan.open(self._routes.app("lan"))
                return
            LOG.info("softap: join ended %s: access point back up", state.wire_name)
            try:
                await self._bring_up()
            except OnboardingError as exc:
                LOG.error("softap: cannot bring the access point back: %s", exc)
                self.port.note(
                    EventPhase.DOOR,
                    f"softap could not come back: {exc.detail}",
                    {"door": "softap", "up": False, "code": int(exc.code)},
                )

    # --- internals -----------------------------------------------------------------------------

    async def _bring_up(self) -> None:
        if self.ap.up:
            return
        try:
            self.networks = await self.port.scan()  # one radio: scan before the AP takes it
            self.scanned_at_ms = int(time.time() * 1000)
        except OnboardingError as exc:
            LOG.warning("softap: scan before the AP failed (%s); the page lists no networks", exc)
            self.networks = []
        if self.ap_config.passphrase is None:
            LOG.warning(
                "softap: the access point %r is OPEN (no WPA2): anyone nearby can join "
                "it and read the setup code and Wi-Fi passphrase a phone sends. Use an "
                "open AP only on a bench.",
                self.ap_config.ssid,
            )
        try:
            await self.port.start_access_point(self.ap_config)
            if self.options.dnsmasq:
                await self._start_dnsmasq()
            await self.ap.open(self._routes.app("ap"))
        except BaseException:
            await self._take_down()
            raise

    async def _take_down(self) -> None:
        self._last_request = -IN_USE_S  # the phones on the AP go with it
        self.closing = True  # long polls (now and arriving) answer at once, not after the grace
        self.clients.wake_all()
        self._changed.set()
        try:
            await self.ap.close()
        finally:
            self.closing = False
        if self._dnsmasq is not None:
            dnsmasq, self._dnsmasq = self._dnsmasq, None
            await dnsmasq.stop()
        await self.port.stop_access_point()

    async def _start_dnsmasq(self) -> None:
        from .dnsmasq import Dnsmasq, DnsmasqConfig

        if self.options.state_dir is None:
            raise TransportError("dnsmasq needs a state directory", code=Code.SOFTAP_UNAVAILABLE)
        address = self.options.listen_host
        prefix = address.rsplit(".", 1)[0]
        config = DnsmasqConfig(
            interface=self.options.dnsmasq or "",
            address=address,
            prefix_len=24,
            dhcp_start=f"{prefix}.10",
            dhcp_end=f"{prefix}.100",
            captive_portal_api=f"{self.ap.url}/captive-portal/api",
            state_dir=self.options.state_dir / "dnsmasq",
        )
        dnsmasq = Dnsmasq(config)
        await dnsmasq.start()
        self._dnsmasq = dnsmasq

    async def _take_down_locked(self) -> None:
        async with self._lock:
            if not self._wanted:
                await self._take_down()

    async def _close_lan(self) -> None:
        if self.lan.up:
            self.closing = True
            self.clients.wake_all()
            try:
                await self.lan.close()
            finally:
                self.closing = False

    def _on_event(self, event: DiagnosticEvent) -> None:
        self.latest = event
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_event_after(self, seq: int, wait_s: float) -> None:
        """Return when an event newer than ``seq`` exists, or after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while (self.latest is None or self.latest.seq <= seq) and not self.closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return

    def _session_closed(self, peer: Hashable, code: Code) -> None:
        if self._down_after_session:  # a concurrent AP's phone has its outcome: AP down
            self._down_after_session = False
            task = asyncio.get_running_loop().create_task(self._take_down_locked())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if self.lan.up and any(peer == box.peer for box in self.clients):
            # The session that read its outcome over the home network is over: stop serving.
            task = asyncio.get_running_loop().create_task(self._close_lan())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
