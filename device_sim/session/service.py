"""The provisioning session layer, shared by every door (BLE GATT, SoftAP HTTP).

Doors reach it through a :class:`~.port.DoorPort` each, never directly.

A door hands over whole (reassembled) messages tagged with a *peer* key (for BLE: the client's
channel) and gets back the messages to send to that peer. This layer enforces:

* one session at a time: another peer gets BUSY until the holder ends, times out or vanishes;
  a peer is the door's notion of one client on one connection (BLE: the central and its
  channel), so another client cannot end, answer or finish the holder's handshake or session;
* SRP6a on the setup code, with the persisted exponential backoff on wrong codes; a handshake
  that ends without a proof (abandoned, timed out, restarted) counts as a wrong code too, or a
  client that only ever sends PAKE_START could hold the one session forever at no cost;
* AES-256-GCM with per-direction counters for everything after the handshake;
* idle and handshake timeouts (CLIENT_TIMEOUT), never while a join the session started runs
  (the SoftAP phone loses the AP during the join and comes back for the outcome);
* pushing the engine's diagnostic events to the session holder as encrypted EVENT messages.

Errors before a session exist travel as clear ERROR messages (code + retry-after, never secrets);
errors inside a session travel as encrypted SECURE_ERROR.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from ..codes import Code, MessageType
from ..core.engine import BUSY_STATES, OnboardingEngine
from ..core.events import DiagnosticEvent
from ..core.store import DeviceStore, Identity
from ..errors import OnboardingError, ProtocolError, SessionError
from ..profile import Profile
from ..security.backoff import SetupCodeBackoff
from ..security.secret import Secret
from ..security.session import (
    PAKE_PROOF_LENGTH,
    ClientHandshake,
    DeviceHandshake,
    SecureChannel,
)
from ..wire import ErrorBody, decode_json, encode_json, split_type, unpack_messages

LOG = logging.getLogger(__name__)
DIAGNOSTICS_CHUNK = 2048  # bundle bytes per DIAGNOSTICS answer (fits a 4 KiB message as base64)

Sender = Callable[[bytes], None]
SoftApOpener = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass
class _Session:
    peer: Hashable
    handshake: DeviceHandshake | None
    channel: SecureChannel | None = None
    deadline: float = 0.0
    send: Sender | None = None
    direct: bool = False  # the door authorized its user (page, Improv): no channel
    bundle: bytes | None = None  # the diagnostics bundle this session is reading

    @property
    def established(self) -> bool:
        return self.channel is not None or self.direct


class ProvisioningService:
    """Turns peer messages into engine requests and answers. One instance per daemon."""

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
        self._session: _Session | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._unsubscribe = engine.events.subscribe(self._on_event)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._held: list[DiagnosticEvent] | None = None
        self._current_peer: Hashable | None = None
        # Who follows sessions (doors, the door supervisor): registered through follow_sessions.
        self._opened_listeners: list[Callable[[Hashable], None]] = []
        self._closed_listeners: list[Callable[[Hashable, Code], None]] = []
        # Who opens the access point on START_SOFTAP (the door supervisor, when a SoftAP door
        # exists): registered through serve_softap_requests.
        self._softap_opener: SoftApOpener | None = None
        # Who makes the diagnostics bundle (the daemon): registered through serve_diagnostics.
        self._diagnostics: Callable[[], Awaitable[bytes]] | None = None

    async def aclose(self) -> None:
        self._unsubscribe()
        if self._watchdog is not None:
            self._watchdog.cancel()
        for task in list(self._tasks):
            task.cancel()

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
        """START_SOFTAP calls ``opener(reason)`` from now on (one server at a time; the door
        supervisor registers itself when it starts). Returns the function that ends it."""
        if self._softap_opener is not None:
            raise RuntimeError("START_SOFTAP already has a server")
        self._softap_opener = opener

        def stop() -> None:
            if self._softap_opener is opener:
                self._softap_opener = None

        return stop

    def serve_diagnostics(self, make: Callable[[], Awaitable[bytes]]) -> Callable[[], None]:
        """DIAGNOSTICS_REQUEST gets the bundle ``make()`` builds from now on (one maker, the
        daemon). Returns the function that ends it."""
        self._diagnostics = make

        def stop() -> None:
            if self._diagnostics is make:
                self._diagnostics = None

        return stop

    @property
    def session_peer(self) -> Hashable | None:
        return self._session.peer if self._session else None

    # --- entry points for doors ---------------------------------------------------------------

    async def handle(self, peer: Hashable, message: bytes, send: Sender) -> list[bytes]:
        """Process one message from ``peer``; return the messages to send back to it.

        ``send`` lets the service push later messages (events, timeout notices) to this peer.
        Never raises for bad input: every failure becomes an ERROR/SECURE_ERROR message.
        """
        # Events emitted while this request is handled (e.g. the session_open transition) are
        # held back and sent after the reply, so the client always sees its answer first.
        self._held, self._current_peer = [], peer
        try:
            replies = await self._handle(peer, message, send)
            held, self._held = self._held, None
            s = self._session
            if s is not None and s.channel is not None and s.peer == peer:
                # Sealed only now, after the reply, so counters follow the order of sending.
                replies += [self._seal_event(s.channel, e) for e in held]
            return replies
        finally:
            self._held = None

    async def _handle(self, peer: Hashable, message: bytes, send: Sender) -> list[bytes]:
        session = self._session
        try:
            msg_type, body = split_type(message)
            if msg_type is MessageType.PAKE_START:
                return [self._pake_start(peer, body, send)]
            if msg_type is MessageType.PAKE_PROOF:
                return await self._pake_proof(peer, body)
            if msg_type is MessageType.SECURE:
                return await self._secure(peer, message)
            raise ProtocolError(
                Code.MALFORMED_REQUEST,
                f"{msg_type.name} is not a request a client may send in clear",
            )
        except OnboardingError as exc:
            LOG.info("peer %s: %s", peer, exc)
            if (
                session is not None
                and session.peer == peer
                and session.established
                and self._session is session
                and not isinstance(exc, SessionError)
            ):
                return [self._secure_error(session, exc)]
            return [ErrorBody(exc.code, exc.retry_after_ms, exc.detail).to_message()]

    def error_for(self, peer: Hashable, exc: OnboardingError) -> bytes:
        """The message reporting a framing-level error (raised by the door's reassembler)."""
        LOG.info("peer %s: %s", peer, exc)
        return ErrorBody(exc.code, exc.retry_after_ms, exc.detail).to_message()

    def peer_gone(self, peer: Hashable) -> None:
        """The door lost ``peer`` (disconnected). Frees the session it held, if any."""
        if self._session is not None and self._session.peer == peer:
            LOG.info("session holder %s disconnected", peer)
            self._close(Code.CLIENT_TIMEOUT, notify=False)

    # --- handshake ---------------------------------------------------------------------------

    def _check_free(self, peer: Hashable) -> None:
        s = self._session
        if s is not None and s.peer != peer:
            left = s.deadline - self._clock()
            if left > 0:  # says when the holder's session idles out, so a phone can come back
                raise SessionError(
                    Code.BUSY,
                    "another client holds the provisioning session",
                    retry_after_ms=max(1, math.ceil(left * 1000)),
                )
            self._close(Code.CLIENT_TIMEOUT)

    def check_backoff(self) -> None:
        failures, last_ms = self.store.auth_failures()
        wait = self.backoff.retry_after_ms(failures, last_ms, self._wall_ms())
        if wait > 0:
            raise SessionError(
                Code.TOO_MANY_ATTEMPTS,
                f"{failures} wrong setup codes; try again in {wait / 1000:.0f} s",
                retry_after_ms=wait,
            )

    def count_failure(self, what: str) -> int:
        """One more failed setup-code attempt (persisted); returns the backoff to report."""
        failures = self.store.record_auth_failure(self._wall_ms())
        LOG.warning("%s (%d failures in a row)", what, failures)
        return self.backoff.retry_after_ms(failures, self._wall_ms(), self._wall_ms())

    def _count_wrong_code(self, exc: SessionError) -> None:
        exc.retry_after_ms = self.count_failure("wrong setup code")

    def _pake_start(self, peer: Hashable, body: bytes, send: Sender) -> bytes:
        self._check_free(peer)
        self.check_backoff()
        if self._session is not None:  # the same peer starts over: drop its old session
            self._close(Code.OK, notify=False)
        handshake = DeviceHandshake(self.identity.srp_salt, self.identity.srp_verifier)
        challenge = handshake.challenge(body)
        self._session = _Session(
            peer, handshake, send=send, deadline=self._clock() + self.handshake_timeout_s
        )
        self._ensure_watchdog()
        return bytes([MessageType.PAKE_CHALLENGE]) + challenge

    async def _pake_proof(self, peer: Hashable, body: bytes) -> list[bytes]:
        """M1, then (the proof bundle) sealed requests: the proof is checked first, and on a
        wrong code the rest is discarded unread. Answers PAKE_CONFIRM, then each request's."""
        s = self._session
        if s is None or s.peer != peer or s.handshake is None:
            self._check_free(peer)
            raise SessionError(Code.SESSION_REQUIRED, "PAKE_PROOF without PAKE_START")
        proof, bundle = body[:PAKE_PROOF_LENGTH], body[PAKE_PROOF_LENGTH:]
        try:
            confirm, channel = s.handshake.verify(proof)
        except SessionError as exc:
            if exc.code is Code.WRONG_SETUP_CODE:
                self._count_wrong_code(exc)
                s.handshake = None  # counted once
            self._close(exc.code, notify=False)
            raise
        self.store.reset_auth_failures()
        s.handshake, s.channel = None, channel
        self._set_deadline(s, self._clock() + self.idle_timeout_s)
        self._opened(peer)
        replies = [bytes([MessageType.PAKE_CONFIRM]) + confirm]
        if bundle:
            replies += await self._bundle(s, bundle)
        return replies

    async def _bundle(self, s: _Session, bundle: bytes) -> list[bytes]:
        """The sealed requests after M1, answered in order as if sent one by one; the first
        that fails ends the bundle (a CONNECT after a refused SET_CREDENTIALS would join the
        network stored before). A bundle that is not whole frames of at most
        ``max_bundled_requests`` SECURE messages gets one SECURE_ERROR; the session stays open
        either way, so the client can go on one request at a time."""
        assert s.channel is not None
        limit = self.profile.max_bundled_requests
        try:
            requests = unpack_messages(bundle)
            if not 1 <= len(requests) <= limit or any(
                m[:1] != bytes([MessageType.SECURE]) for m in requests
            ):
                raise ProtocolError(
                    Code.MALFORMED_REQUEST, f"a proof bundle holds 1 to {limit} SECURE requests"
                )
        except OnboardingError as exc:
            return [self._secure_error(s, exc)]
        replies: list[bytes] = []
        for request in requests:
            try:
                inner, body = s.channel.open(request)
            except OnboardingError as exc:  # REPLAYED_MESSAGE / MALFORMED_REQUEST
                replies.append(self._secure_error(s, exc))
                break
            answer, done = await self._run_sealed(s, inner, body)
            replies.append(answer)
            if not done or self._session is not s:
                break
        return replies

    def _opened(self, peer: Hashable) -> None:
        self.engine.session_opened()
        LOG.info("session open with %s", peer)
        for listener in list(self._opened_listeners):
            listener(peer)

    # --- the browser page (SoftAP door) -----------------------------------------------------

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
        self._check_free(peer)
        self.check_backoff()
        client = ClientHandshake(setup_code)
        device = DeviceHandshake(self.identity.srp_salt, self.identity.srp_verifier)
        try:
            device.verify(client.process_challenge(device.challenge(client.start())))
        except SessionError as exc:
            if exc.code is Code.WRONG_SETUP_CODE:
                self._count_wrong_code(exc)
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
        self._check_free(peer)
        s = self._session
        if s is None or s.peer != peer or not s.direct:
            if s is not None:  # the same peer had an app session: this one replaces it
                self._close(Code.OK, notify=False)
            self._session = s = _Session(peer, None, direct=True)
            self._opened(peer)
            self._ensure_watchdog()
        self._set_deadline(s, self._clock() + self.idle_timeout_s)
        self.engine.set_credentials(ssid, passphrase, hidden)  # validates the format
        self.engine.connect()

    def release(self, peer: Hashable) -> None:
        """``peer`` is done with its session (e.g. Improv after the outcome was reported)."""
        if self._session is not None and self._session.peer == peer:
            self._close(Code.OK, notify=False)

    def touch(self, peer: Hashable) -> bool:
        """The session holder ``peer`` is still there (it polled): extend its idle deadline."""
        s = self._session
        if s is None or s.peer != peer:
            return False
        s.deadline = max(s.deadline, self._clock() + self.idle_timeout_s)
        return True

    # --- secure requests -----------------------------------------------------------------------

    async def _secure(self, peer: Hashable, message: bytes) -> list[bytes]:
        s = self._session
        if s is None or s.peer != peer or s.channel is None:
            self._check_free(peer)
            raise SessionError(Code.SESSION_REQUIRED, "no secure session: start with PAKE_START")
        inner, body = s.channel.open(message)  # REPLAYED_MESSAGE / MALFORMED_REQUEST
        answer, _ = await self._run_sealed(s, inner, body)
        return [answer]

    async def _run_sealed(self, s: _Session, inner: MessageType, body: bytes) -> tuple[bytes, bool]:
        """One opened request: its sealed answer, and whether it was done (not an error)."""
        assert s.channel is not None
        s.deadline = self._clock() + self.idle_timeout_s
        try:
            reply = await self._dispatch(inner, body)
        except OnboardingError as exc:
            return self._secure_error(s, exc), False
        out = s.channel.seal(reply[0], encode_json(reply[1]))
        if inner is MessageType.END_SESSION:
            self._close(Code.OK, notify=False)
        return out, True

    async def _dispatch(
        self, inner: MessageType, body: bytes
    ) -> tuple[MessageType, dict[str, Any]]:
        request = decode_json(body)
        if inner is MessageType.SCAN_REQUEST:
            networks = await self.engine.scan()
            return MessageType.SCAN_RESULT, {"networks": [ap.to_wire() for ap in networks]}
        if inner is MessageType.SET_CREDENTIALS:
            ssid, passphrase, hidden = _parse_credentials(request)
            self.engine.set_credentials(ssid, passphrase, hidden)
            return MessageType.ACK, {"request": "SET_CREDENTIALS"}
        if inner is MessageType.CONNECT:
            self.engine.connect()
            return MessageType.ACK, {"request": "CONNECT"}
        if inner is MessageType.STATUS_REQUEST:
            return MessageType.STATUS, self.status()
        if inner is MessageType.END_SESSION:
            return MessageType.ACK, {"request": "END_SESSION"}
        if inner is MessageType.SET_ACTIVATION:
            account, claim_token, password = _parse_activation(request)
            self.store.set_activation_inputs(account, claim_token, password)
            return MessageType.ACK, {"request": "SET_ACTIVATION"}
        if inner is MessageType.FACTORY_RESET:
            # Answered first; the reset runs right after and ends this session with it.
            task = asyncio.get_running_loop().create_task(self._factory_reset())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return MessageType.ACK, {"request": "FACTORY_RESET"}
        if inner is MessageType.DIAGNOSTICS_REQUEST:
            return MessageType.DIAGNOSTICS, await self._diagnostics_chunk(request)
        if inner is MessageType.LIST_NETWORKS:
            if request:
                raise ProtocolError(Code.MALFORMED_REQUEST, "LIST_NETWORKS takes {}")
            current = self.engine.record.ssid
            saved = self.engine.saved_networks()
            return MessageType.NETWORKS, {
                "networks": [n.public(current) for n in saved],
                "max": self.engine.life.timers.saved_networks,
            }
        if inner is MessageType.FORGET_NETWORK:
            ssid_hex = request.get("ssid_hex")
            if set(request) != {"ssid_hex"} or not isinstance(ssid_hex, str):
                raise ProtocolError(Code.MALFORMED_REQUEST, "FORGET_NETWORK takes {ssid_hex: str}")
            try:
                ssid = bytes.fromhex(ssid_hex)
            except ValueError:
                raise ProtocolError(Code.MALFORMED_REQUEST, "ssid_hex is not hexadecimal") from None
            await self.engine.forget_network(ssid)
            return MessageType.ACK, {"request": "FORGET_NETWORK", "ssid_hex": ssid.hex()}
        if inner is MessageType.START_SOFTAP:
            if self._softap_opener is None:
                raise OnboardingError(
                    Code.SOFTAP_UNAVAILABLE,
                    "this device runs no SoftAP door (fallback policy ble-only)",
                )
            info = await self._softap_opener("requested over BLE")
            return MessageType.ACK, {"request": "START_SOFTAP", **info}
        raise ProtocolError(Code.MALFORMED_REQUEST, f"{inner.name} is not a request")

    async def _diagnostics_chunk(self, request: dict[str, Any]) -> dict[str, Any]:
        """One page of the diagnostics bundle; offset 0 builds it for this session."""
        offset = request.get("offset", 0)
        if set(request) - {"offset"} or not isinstance(offset, int) or offset < 0:
            raise ProtocolError(Code.MALFORMED_REQUEST, "DIAGNOSTICS_REQUEST takes {offset: int}")
        if self._diagnostics is None:
            raise OnboardingError(Code.INVALID_STATE, "this device makes no diagnostics bundle")
        s = self._session
        assert s is not None
        if offset == 0 or s.bundle is None:
            s.bundle = await self._diagnostics()
        if offset > len(s.bundle):
            raise ProtocolError(Code.MALFORMED_REQUEST, f"offset past the end ({len(s.bundle)})")
        chunk = s.bundle[offset : offset + DIAGNOSTICS_CHUNK]
        return {
            "size": len(s.bundle),
            "offset": offset,
            "chunk_b64": base64.b64encode(chunk).decode("ascii"),
        }

    def status(self) -> dict[str, Any]:
        record = self.engine.record
        return {
            "state": record.state.wire_name,
            "code": int(record.code),
            "code_name": record.code.name,
            "phase": record.phase,
            "attempt": record.attempt,
            "detail": record.detail,
            "ssid_hex": record.ssid.hex() if record.ssid else None,
            "activation": self.store.cloud().public(),
        }

    async def _factory_reset(self) -> None:
        await asyncio.sleep(0)  # let the ACK leave first
        self._close(Code.OK, notify=False)
        await self.engine.factory_reset("an authenticated app (FACTORY_RESET)")

    def _secure_error(self, s: _Session, exc: OnboardingError) -> bytes:
        assert s.channel is not None
        return s.channel.seal(
            MessageType.SECURE_ERROR,
            encode_json(
                {
                    "code": int(exc.code),
                    "code_name": exc.code.name,
                    "detail": exc.detail,
                    "retry_after_ms": exc.retry_after_ms,
                }
            ),
        )

    # --- events and timeouts --------------------------------------------------------------------

    def _on_event(self, event: DiagnosticEvent) -> None:
        s = self._session
        if s is None or s.channel is None or s.send is None:
            return
        if self._held is not None and s.peer == self._current_peer:
            self._held.append(event)
        else:
            s.send(self._seal_event(s.channel, event))

    @staticmethod
    def _seal_event(channel: SecureChannel, event: DiagnosticEvent) -> bytes:
        return channel.seal(MessageType.EVENT, encode_json(event.to_json()))

    def _close(self, code: Code, *, notify: bool = True) -> None:
        s, self._session = self._session, None
        if s is None:
            return
        if s.handshake is not None:
            self.count_failure(
                f"a handshake ended without a proof ({code.name}): counted as a wrong setup code"
            )
        if notify and s.send is not None and code is not Code.OK:
            s.send(ErrorBody(code, 0, "session closed").to_message())
        if s.established:
            self.engine.session_closed(code)
            for listener in list(self._closed_listeners):
                listener(s.peer, code)
        LOG.info("session with %s closed (%s)", s.peer, code.name)

    def _set_deadline(self, s: _Session, deadline: float) -> None:
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
                self._close(Code.CLIENT_TIMEOUT)
                return
            await asyncio.sleep(delay)  # a deadline timer; re-checked because activity extends it


def _parse_credentials(request: dict[str, Any]) -> tuple[bytes, Secret | None, bool]:
    ssid_hex = request.get("ssid_hex")
    passphrase = request.get("passphrase")
    hidden = request.get("hidden", False)
    if (
        not isinstance(ssid_hex, str)
        or not isinstance(hidden, bool)
        or not (passphrase is None or isinstance(passphrase, str))
        or set(request) - {"ssid_hex", "passphrase", "hidden"}
    ):
        raise ProtocolError(
            Code.MALFORMED_REQUEST,
            "SET_CREDENTIALS needs {ssid_hex: str, passphrase: str|null, hidden: bool}",
        )
    try:
        ssid = bytes.fromhex(ssid_hex)
    except ValueError:
        raise ProtocolError(Code.MALFORMED_REQUEST, "ssid_hex is not hexadecimal") from None
    return ssid, Secret(passphrase) if passphrase is not None else None, hidden


def _parse_activation(request: dict[str, Any]) -> tuple[str | None, Secret | None, Secret | None]:
    fields = {"account", "claim_token", "device_password"}
    if set(request) - fields or not all(isinstance(request.get(k), str | None) for k in fields):
        raise ProtocolError(
            Code.MALFORMED_REQUEST,
            "SET_ACTIVATION takes {account, claim_token, device_password}: str",
        )
    account, token, password = (
        request.get(k) for k in ("account", "claim_token", "device_password")
    )
    if account is not None and not 0 < len(account) <= 128:
        raise ProtocolError(Code.MALFORMED_REQUEST, "account: 1 to 128 characters")
    return (account, Secret(token) if token else None, Secret(password) if password else None)
