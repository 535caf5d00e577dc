"""The session layer, shared by every door and every personality: one session per device.

Doors and personalities reach it through a :class:`~.port.DoorPort` each, never directly. What a
session carries (native's SRP6a handshake and sealed channel, ESP's protocomm session, Improv's
authorized write) is the personality's; this layer keeps what they all need:

* one session at a time: another peer gets BUSY until the holder ends, times out or vanishes;
  a peer is the door's notion of one client on one connection (BLE: the central and its
  channel), so another client cannot end, answer or finish the holder's session;
* the persisted exponential backoff on wrong proofs (setup code, PoP), shared by every
  personality; a session begun with a proof due (:meth:`SessionHolder.begin`) that ends
  without one counts as a wrong proof too, or a client that only ever starts could hold the
  one session forever at no cost;
* idle and handshake deadlines (CLIENT_TIMEOUT), never while a join the session started runs
  (the SoftAP phone loses the AP during the join and comes back for the outcome);
* provisioning from doors that authorized their user their own way (:meth:`direct_provision`,
  and the browser page's setup-code proof, :meth:`portal_provision`);
* the device's requests every protocol may offer: the access point on request, the
  diagnostics bundle, a factory reset after the answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from ..codes import Code
from ..core.engine import BUSY_STATES, OnboardingEngine
from ..core.store import DeviceStore, Identity
from ..errors import OnboardingError, SessionError
from ..profile import Profile
from ..security.backoff import SetupCodeBackoff
from ..security.secret import Secret
from ..security.session import ClientHandshake, DeviceHandshake

LOG = logging.getLogger(__name__)

SoftApOpener = Callable[[str], Awaitable[dict[str, Any]]]
# How a session's protocol tells its peer the session ended (code, tell the peer?).
Closer = Callable[[Code, bool], None]


@dataclass
class Session:
    peer: Hashable
    deadline: float
    proving: bool = False  # begun, its proof not yet checked: ending now counts as wrong
    established: bool = False
    direct: bool = False  # the door authorized its user (page, Improv): no proof here
    on_close: Closer | None = None


class SessionHolder:
    """The device's one session, its deadlines and the proof backoff. One per daemon."""

    def __init__(
        self,
        profile: Profile,
        engine: OnboardingEngine,
        store: DeviceStore,
        identity: Identity,
        *,
        idle_timeout_s: float | None = None,
        handshake_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.profile = profile
        self.engine = engine
        self.store = store
        self.identity = identity
        self.idle_timeout_s = idle_timeout_s or profile.session.idle_timeout_ms / 1000
        self.handshake_timeout_s = (
            handshake_timeout_s or profile.session.handshake_timeout_ms / 1000
        )
        b = profile.session.backoff
        self.backoff = SetupCodeBackoff(b.free_attempts, b.base_ms, b.max_ms)
        self._clock = clock
        self._wall_ms = wall_ms
        self._session: Session | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Who follows sessions (doors, the door supervisor): registered through follow_sessions.
        self._opened_listeners: list[Callable[[Hashable], None]] = []
        self._closed_listeners: list[Callable[[Hashable, Code], None]] = []
        # Who opens the access point on request (the door supervisor, when a SoftAP door
        # exists): registered through serve_softap_requests.
        self._softap_opener: SoftApOpener | None = None
        # Who makes the diagnostics bundle (the daemon): registered through serve_diagnostics.
        self._diagnostics: Callable[[], Awaitable[bytes]] | None = None

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for task in list(self._tasks):
            task.cancel()

    # --- who follows and serves ----------------------------------------------------------------

    def follow_sessions(
        self,
        opened: Callable[[Hashable], None] | None = None,
        closed: Callable[[Hashable, Code], None] | None = None,
    ) -> Callable[[], None]:
        """Call ``opened(peer)`` / ``closed(peer, code)`` for every session from now on;
        returns the function that stops it."""
        if opened is not None:
            self._opened_listeners.append(opened)
        if closed is not None:
            self._closed_listeners.append(closed)

        def stop() -> None:
            if opened in self._opened_listeners:
                self._opened_listeners.remove(opened)
            if closed in self._closed_listeners:
                self._closed_listeners.remove(closed)

        return stop

    def serve_softap_requests(self, opener: SoftApOpener) -> Callable[[], None]:
        """:meth:`open_softap` calls ``opener(reason)`` from now on (one server at a time; the
        door supervisor registers itself when it starts). Returns the function that ends it."""
        if self._softap_opener is not None:
            raise RuntimeError("the access point already has a server")
        self._softap_opener = opener

        def stop() -> None:
            if self._softap_opener is opener:
                self._softap_opener = None

        return stop

    async def open_softap(self, reason: str) -> dict[str, Any]:
        """Open the access point for a session's phone. Raises OnboardingError."""
        if self._softap_opener is None:
            raise OnboardingError(
                Code.SOFTAP_UNAVAILABLE,
                "this device runs no SoftAP door (fallback policy ble-only)",
            )
        return await self._softap_opener(reason)

    def serve_diagnostics(self, make: Callable[[], Awaitable[bytes]]) -> Callable[[], None]:
        """:meth:`diagnostics` returns the bundle ``make()`` builds from now on (one maker,
        the daemon). Returns the function that ends it."""
        self._diagnostics = make

        def stop() -> None:
            if self._diagnostics is make:
                self._diagnostics = None

        return stop

    async def diagnostics(self) -> bytes:
        """A new diagnostics bundle. Raises OnboardingError(INVALID_STATE) without a maker."""
        if self._diagnostics is None:
            raise OnboardingError(Code.INVALID_STATE, "this device makes no diagnostics bundle")
        return await self._diagnostics()

    # --- the one session -----------------------------------------------------------------------

    @property
    def session_peer(self) -> Hashable | None:
        return self._session.peer if self._session else None

    def holds(self, peer: Hashable) -> bool:
        return self._session is not None and self._session.peer == peer

    def check_free(self, peer: Hashable) -> None:
        """Raises SessionError(BUSY, with when the holder idles out) if another peer holds the
        session; ends the holder's session if its deadline has passed."""
        s = self._session
        if s is not None and s.peer != peer:
            left = s.deadline - self._clock()
            if left > 0:  # says when the holder's session idles out, so a phone can come back
                raise SessionError(
                    Code.BUSY,
                    "another client holds the provisioning session",
                    retry_after_ms=max(1, math.ceil(left * 1000)),
                )
            self.close(Code.CLIENT_TIMEOUT)

    def begin(self, peer: Hashable, on_close: Closer | None = None) -> None:
        """``peer`` starts a session whose proof is due within the handshake timeout (the same
        peer starting over replaces its own). Raises SessionError (BUSY, TOO_MANY_ATTEMPTS)."""
        self.check_free(peer)
        self.check_backoff()
        if self._session is not None:
            self.close(Code.OK, notify=False)
        self._session = Session(
            peer, self._clock() + self.handshake_timeout_s, proving=True, on_close=on_close
        )
        self._ensure_watchdog()

    def establish(self, peer: Hashable) -> None:
        """``peer``'s proof was right: its session is open, with the idle deadline."""
        s = self._session
        assert s is not None and s.peer == peer
        self.store.reset_auth_failures()
        s.proving, s.established = False, True
        self._set_deadline(s, self._clock() + self.idle_timeout_s)
        self._opened(peer)

    def proof_failed(self, peer: Hashable, code: Code, what: str) -> int:
        """``peer``'s proof was wrong (counted once): its session ends. Returns the backoff to
        report, in milliseconds."""
        s = self._session
        if s is not None and s.peer == peer:
            s.proving = False
        retry_after_ms = self.count_failure(what)
        if s is not None and s.peer == peer:
            self.close(code, notify=False)
        return retry_after_ms

    def check_backoff(self) -> None:
        """Raises SessionError(TOO_MANY_ATTEMPTS) while the backoff on wrong proofs runs."""
        failures, last_ms = self.store.auth_failures()
        wait = self.backoff.retry_after_ms(failures, last_ms, self._wall_ms())
        if wait > 0:
            raise SessionError(
                Code.TOO_MANY_ATTEMPTS,
                f"{failures} wrong setup codes; try again in {wait / 1000:.0f} s",
                retry_after_ms=wait,
            )

    def count_failure(self, what: str) -> int:
        """One more failed proof (persisted); returns the backoff to report."""
        failures = self.store.record_auth_failure(self._wall_ms())
        LOG.warning("%s (%d failures in a row)", what, failures)
        return self.backoff.retry_after_ms(failures, self._wall_ms(), self._wall_ms())

    def activity(self, peer: Hashable) -> None:
        """The holder sent a request: its idle deadline starts over."""
        s = self._session
        if s is not None and s.peer == peer:
            s.deadline = self._clock() + self.idle_timeout_s

    def touch(self, peer: Hashable) -> bool:
        """The session holder ``peer`` is still there (it polled): extend its idle deadline."""
        s = self._session
        if s is None or s.peer != peer:
            return False
        s.deadline = max(s.deadline, self._clock() + self.idle_timeout_s)
        return True

    def release(self, peer: Hashable) -> None:
        """``peer`` is done with its session (an END_SESSION, Improv after its outcome)."""
        if self._session is not None and self._session.peer == peer:
            self.close(Code.OK, notify=False)

    def peer_gone(self, peer: Hashable) -> None:
        """The door lost ``peer`` (disconnected). Frees the session it held, if any."""
        if self._session is not None and self._session.peer == peer:
            LOG.info("session holder %s disconnected", peer)
            self.close(Code.CLIENT_TIMEOUT, notify=False)

    def close(self, code: Code, *, notify: bool = True) -> None:
        """End the session (``notify``: its protocol tells its peer, unless ``code`` is OK)."""
        s, self._session = self._session, None
        if s is None:
            return
        if s.proving:
            self.count_failure(
                f"a handshake ended without a proof ({code.name}): counted as a wrong setup code"
            )
        if s.on_close is not None:
            s.on_close(code, notify and code is not Code.OK)
        if s.established:
            self.engine.session_closed(code)
            for listener in list(self._closed_listeners):
                listener(s.peer, code)
        LOG.info("session with %s closed (%s)", s.peer, code.name)

    def _opened(self, peer: Hashable) -> None:
        self.engine.session_opened()
        LOG.info("session open with %s", peer)
        for listener in list(self._opened_listeners):
            listener(peer)

    # --- doors that authorize their user their own way ----------------------------------------

    def portal_provision(
        self,
        peer: Hashable,
        setup_code: Secret,
        ssid: bytes,
        passphrase: Secret | None,
        hidden: bool,
    ) -> None:
        """One browser-page submit: check the setup code, store credentials, start the join.

        A browser on the SoftAP cannot run the SRP/AES-GCM session (no WebCrypto outside secure
        contexts), so the page sends the code over the AP's WPA2 link and the device runs both
        SRP halves itself against its stored verifier: the same proof, the same backoff, no code
        kept. Raises OnboardingError (TOO_MANY_ATTEMPTS, WRONG_SETUP_CODE, and what
        :meth:`direct_provision` raises).
        """
        self.check_free(peer)
        self.check_backoff()
        client = ClientHandshake(setup_code)
        device = DeviceHandshake(self.identity.srp_salt, self.identity.srp_verifier)
        try:
            device.verify(client.process_challenge(device.challenge(client.start())))
        except SessionError as exc:
            if exc.code is Code.WRONG_SETUP_CODE:
                exc.retry_after_ms = self.count_failure("wrong setup code")
            raise
        self.store.reset_auth_failures()
        self.direct_provision(peer, ssid, passphrase, hidden)

    def direct_provision(
        self, peer: Hashable, ssid: bytes, passphrase: Secret | None, hidden: bool
    ) -> None:
        """Credentials from a door that authorized its user its own way (the browser page's
        setup-code check, Improv's physical authorization): ``peer`` holds the session (others
        get BUSY) until it is released, idles out, or the join it started ends and is read.
        Raises OnboardingError (BUSY, INVALID_STATE, INVALID_CREDENTIALS_FORMAT).
        """
        self.check_free(peer)
        s = self._session
        if s is None or s.peer != peer or not s.direct:
            if s is not None:  # the same peer had an app session: this one replaces it
                self.close(Code.OK, notify=False)
            self._session = s = Session(peer, 0.0, established=True, direct=True)
            self._opened(peer)
            self._ensure_watchdog()
        self._set_deadline(s, self._clock() + self.idle_timeout_s)
        self.engine.set_credentials(ssid, passphrase, hidden)  # validates the format
        self.engine.connect()

    # --- requests every protocol may offer -----------------------------------------------------

    def factory_reset_soon(self, reason: str) -> None:
        """The session's answer leaves first; then the session ends and the device resets."""

        async def reset() -> None:
            await asyncio.sleep(0)  # let the answer leave first
            self.close(Code.OK, notify=False)
            await self.engine.factory_reset(reason)

        task = asyncio.get_running_loop().create_task(reset())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- deadlines -------------------------------------------------------------------------------

    def _set_deadline(self, s: Session, deadline: float) -> None:
        earlier = deadline < s.deadline
        s.deadline = deadline
        if earlier and self._watchdog is not None and not self._watchdog.done():
            self._watchdog.cancel()  # it sleeps until the old, later deadline: re-arm it
            self._watchdog = None
        self._ensure_watchdog()

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while self._session is not None:
            delay = self._session.deadline - self._clock()
            if delay <= 0 and self._session.established and self.engine.state in BUSY_STATES:
                # The join this session started is still running (over SoftAP the phone has
                # even lost the AP): the holder comes back for the outcome, so wait for it.
                self._session.deadline = self._clock() + self.idle_timeout_s
                continue
            if delay <= 0:
                LOG.info("session with %s timed out", self._session.peer)
                self.close(Code.CLIENT_TIMEOUT)
                return
            await asyncio.sleep(delay)  # a deadline timer; re-checked because activity extends it
