"""Native's session protocol, device side: the same for its BLE service and its HTTP API.

A door hands over whole (reassembled) messages tagged with a *peer* key (BLE: the central and
its channel; HTTP: the cookie's client) and gets back the messages to send to that peer:

* SRP6a on the setup code (PAKE_START, PAKE_PROOF), its backoff and the one-session rule kept
  by the session layer (:class:`~device_sim.session.port.DoorPort`);
* AES-256-GCM with per-direction counters for everything after the handshake, the requests
  dispatched to the device's requests, and the proof bundle (sealed requests after M1);
* the engine's diagnostic events pushed to the session holder as sealed EVENT messages.

Errors before a session exists travel as clear ERROR messages (code + retry-after, never
secrets); errors inside a session travel as sealed SECURE_ERROR.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ...codes import Code, MessageType
from ...errors import OnboardingError, ProtocolError, SessionError
from ...security.secret import Secret
from ...security.session import PAKE_PROOF_LENGTH, DeviceHandshake, SecureChannel
from ...session.port import (
    EAP_FILE_MAX_BYTES,
    DiagnosticEvent,
    DoorPort,
    EapMethod,
    EapSettings,
    Phase2,
)
from .wire import ErrorBody, decode_json, encode_json, split_type, unpack_messages

LOG = logging.getLogger(__name__)
DIAGNOSTICS_CHUNK = 2048  # bundle bytes per DIAGNOSTICS answer (fits a 4 KiB message as base64)
FILE_CHUNK = 2048  # bytes per CREDENTIAL_FILE part, the same bound
FILE_NAMES = ("ca_cert", "client_cert", "private_key")

Sender = Callable[[bytes], None]


@dataclass
class _Native:
    """Native's part of the session a peer holds."""

    peer: Hashable
    send: Sender
    handshake: DeviceHandshake | None
    channel: SecureChannel | None = None
    bundle: bytes | None = None  # the diagnostics bundle this session is reading
    # CREDENTIAL_FILE parts received: name -> (announced size, bytes so far). Memory only,
    # overwritten when the session ends (a private key among them).
    files: dict[str, tuple[int, bytearray]] = field(default_factory=dict)

    def wipe(self) -> None:
        for _, data in self.files.values():
            data[:] = bytes(len(data))
        self.files.clear()


class NativeSession:
    """Turns a native peer's messages into the device's requests and answers."""

    def __init__(self, port: DoorPort) -> None:
        self.port = port
        self.profile = port.profile
        self._s: _Native | None = None
        self._held: list[DiagnosticEvent] | None = None
        self._current_peer: Hashable | None = None
        self._unsubscribe = port.subscribe(self._on_event)

    def close(self) -> None:
        self._unsubscribe()

    def _mine(self, peer: Hashable) -> _Native | None:
        """Native's state of the session ``peer`` holds (None: it holds none of native's)."""
        s = self._s
        if s is not None and s.peer == peer and self.port.session_peer == peer:
            return s
        return None

    async def handle(self, peer: Hashable, message: bytes, send: Sender) -> list[bytes]:
        """Process one message from ``peer``; return the messages to send back to it.

        ``send`` lets the session push later messages (events, timeout notices) to this peer.
        Never raises for bad input: every failure becomes an ERROR/SECURE_ERROR message.
        """
        # Events emitted while this request is handled (e.g. the session_open transition) are
        # held back and sent after the reply, so the client always sees its answer first.
        self._held, self._current_peer = [], peer
        try:
            replies = await self._handle(peer, message, send)
            held, self._held = self._held, None
            s = self._mine(peer)
            if s is not None and s.channel is not None:
                # Sealed only now, after the reply, so counters follow the order of sending.
                replies += [self._seal_event(s.channel, e) for e in held]
            return replies
        finally:
            self._held = None

    async def _handle(self, peer: Hashable, message: bytes, send: Sender) -> list[bytes]:
        session = self._mine(peer)
        try:
            msg_type, body = split_type(message)
            if msg_type is MessageType.PAKE_START:
                return [await self._pake_start(peer, body, send)]
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
                and session.channel is not None
                and self._mine(peer) is session
                and not isinstance(exc, SessionError)
            ):
                return [self._secure_error(session, exc)]
            return [ErrorBody(exc.code, exc.retry_after_ms, exc.detail).to_message()]

    def error_for(self, peer: Hashable, exc: OnboardingError) -> bytes:
        """The message reporting a framing-level error (raised by the door's reassembler)."""
        LOG.info("peer %s: %s", peer, exc)
        return ErrorBody(exc.code, exc.retry_after_ms, exc.detail).to_message()

    # --- handshake ---------------------------------------------------------------------------

    async def _pake_start(self, peer: Hashable, body: bytes, send: Sender) -> bytes:
        self.port.begin_session(peer, lambda code, notify: self._ended(peer, code, notify))
        if self._s is not None:
            self._s.wipe()
        identity = self.port.identity
        handshake = DeviceHandshake(identity.srp_salt, identity.srp_verifier)
        self._s = _Native(peer, send, handshake)
        # SRP's big-number work frees the GIL: in a thread, a fleet's handshakes use another
        # core while the event loop serves the other devices (the phone waits for the answer).
        challenge = await asyncio.to_thread(handshake.challenge, body)
        return bytes([MessageType.PAKE_CHALLENGE]) + challenge

    async def _pake_proof(self, peer: Hashable, body: bytes) -> list[bytes]:
        """M1, then (the proof bundle) sealed requests: the proof is checked first, and on a
        wrong code the rest is discarded unread. Answers PAKE_CONFIRM, then each request's."""
        s = self._mine(peer)
        if s is None or s.handshake is None:
            self.port.check_free(peer)
            raise SessionError(Code.SESSION_REQUIRED, "PAKE_PROOF without PAKE_START")
        proof, bundle = body[:PAKE_PROOF_LENGTH], body[PAKE_PROOF_LENGTH:]
        try:
            confirm, channel = await asyncio.to_thread(s.handshake.verify, proof)
        except SessionError as exc:
            if exc.code is Code.WRONG_SETUP_CODE:
                exc.retry_after_ms = self.port.session_proof_failed(peer, exc.code)
            else:
                self.port.end_session(exc.code)
            raise
        if self._mine(peer) is not s:  # the session ended while the proof was checked
            return []
        s.handshake, s.channel = None, channel
        self.port.establish_session(peer)
        replies = [bytes([MessageType.PAKE_CONFIRM]) + confirm]
        if bundle:
            replies += await self._bundle(s, bundle)
        return replies

    async def _bundle(self, s: _Native, bundle: bytes) -> list[bytes]:
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
            if not done or self._mine(s.peer) is not s:
                break
        return replies

    def _ended(self, peer: Hashable, code: Code, notify: bool) -> None:
        """The session layer ended ``peer``'s session (timeout, another door, a reset)."""
        s = self._s
        if s is None or s.peer != peer:
            return
        self._s = None
        s.wipe()
        if notify:
            s.send(ErrorBody(code, 0, "session closed").to_message())

    # --- secure requests -----------------------------------------------------------------------

    async def _secure(self, peer: Hashable, message: bytes) -> list[bytes]:
        s = self._mine(peer)
        if s is None or s.channel is None:
            self.port.check_free(peer)
            raise SessionError(Code.SESSION_REQUIRED, "no secure session: start with PAKE_START")
        inner, body = s.channel.open(message)  # REPLAYED_MESSAGE / MALFORMED_REQUEST
        answer, _ = await self._run_sealed(s, inner, body)
        return [answer]

    async def _run_sealed(self, s: _Native, inner: MessageType, body: bytes) -> tuple[bytes, bool]:
        """One opened request: its sealed answer, and whether it was done (not an error)."""
        assert s.channel is not None
        self.port.session_activity(s.peer)
        try:
            reply = await self._dispatch(s, inner, body)
        except OnboardingError as exc:
            return self._secure_error(s, exc), False
        out = s.channel.seal(reply[0], encode_json(reply[1]))
        if inner is MessageType.END_SESSION:
            self.port.release(s.peer)
        return out, True

    async def _dispatch(
        self, s: _Native, inner: MessageType, body: bytes
    ) -> tuple[MessageType, dict[str, Any]]:
        request = decode_json(body)
        port = self.port
        if inner is MessageType.SCAN_REQUEST:
            networks = await port.scan()
            return MessageType.SCAN_RESULT, {"networks": [ap.to_wire() for ap in networks]}
        if inner is MessageType.SET_CREDENTIALS:
            ssid, passphrase, hidden, security = parse_credentials(request)
            eap = parse_eap(request["eap"], s.files) if request.get("eap") is not None else None
            port.set_credentials(ssid, passphrase, hidden, security, eap)
            return MessageType.ACK, {"request": "SET_CREDENTIALS"}
        if inner is MessageType.CREDENTIAL_FILE:
            name, received = receive_file_part(s.files, request)
            return MessageType.ACK, {
                "request": "CREDENTIAL_FILE",
                "name": name,
                "received": received,
            }
        if inner is MessageType.CONNECT:
            port.connect()
            return MessageType.ACK, {"request": "CONNECT"}
        if inner is MessageType.STATUS_REQUEST:
            return MessageType.STATUS, port.status()
        if inner is MessageType.END_SESSION:
            return MessageType.ACK, {"request": "END_SESSION"}
        if inner is MessageType.SET_ACTIVATION:
            port.set_activation_inputs(*parse_activation(request))
            return MessageType.ACK, {"request": "SET_ACTIVATION"}
        if inner is MessageType.FACTORY_RESET:
            # Answered first; the reset runs right after and ends this session with it.
            port.factory_reset_soon("an authenticated app (FACTORY_RESET)")
            return MessageType.ACK, {"request": "FACTORY_RESET"}
        if inner is MessageType.DIAGNOSTICS_REQUEST:
            return MessageType.DIAGNOSTICS, await self._diagnostics_chunk(s, request)
        if inner is MessageType.LIST_NETWORKS:
            if request:
                raise ProtocolError(Code.MALFORMED_REQUEST, "LIST_NETWORKS takes {}")
            saved, most = port.saved_networks()
            return MessageType.NETWORKS, {"networks": saved, "max": most}
        if inner is MessageType.FORGET_NETWORK:
            ssid = parse_forget(request)
            await port.forget_network(ssid)
            return MessageType.ACK, {"request": "FORGET_NETWORK", "ssid_hex": ssid.hex()}
        if inner is MessageType.START_SOFTAP:
            info = await port.open_softap("requested over BLE")
            return MessageType.ACK, {"request": "START_SOFTAP", **info}
        raise ProtocolError(Code.MALFORMED_REQUEST, f"{inner.name} is not a request")

    async def _diagnostics_chunk(self, s: _Native, request: dict[str, Any]) -> dict[str, Any]:
        """One page of the diagnostics bundle; offset 0 builds it for this session."""
        offset = request.get("offset", 0)
        if set(request) - {"offset"} or not isinstance(offset, int) or offset < 0:
            raise ProtocolError(Code.MALFORMED_REQUEST, "DIAGNOSTICS_REQUEST takes {offset: int}")
        if offset == 0 or s.bundle is None:
            s.bundle = await self.port.diagnostics()
        if offset > len(s.bundle):
            raise ProtocolError(Code.MALFORMED_REQUEST, f"offset past the end ({len(s.bundle)})")
        chunk = s.bundle[offset : offset + DIAGNOSTICS_CHUNK]
        return {
            "size": len(s.bundle),
            "offset": offset,
            "chunk_b64": base64.b64encode(chunk).decode("ascii"),
        }

    def _secure_error(self, s: _Native, exc: OnboardingError) -> bytes:
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

    # --- events ----------------------------------------------------------------------------------

    def _on_event(self, event: DiagnosticEvent) -> None:
        s = self._s
        if s is None or s.channel is None or self.port.session_peer != s.peer:
            return
        if self._held is not None and s.peer == self._current_peer:
            self._held.append(event)
        else:
            s.send(self._seal_event(s.channel, event))

    @staticmethod
    def _seal_event(channel: SecureChannel, event: DiagnosticEvent) -> bytes:
        return channel.seal(MessageType.EVENT, encode_json(event.to_json()))


# --- native's request parsers ---------------------------------------------------------------


def parse_credentials(
    request: dict[str, Any],
) -> tuple[bytes, Secret | None, bool, str | None]:
    """SET_CREDENTIALS: ``ssid_hex``, ``passphrase``, ``hidden`` and, optionally, ``security``
    (the network's mode as the app knows it; the device checks the word)."""
    ssid_hex = request.get("ssid_hex")
    passphrase = request.get("passphrase")
    hidden = request.get("hidden", False)
    security = request.get("security")
    if (
        not isinstance(ssid_hex, str)
        or not isinstance(hidden, bool)
        or not (passphrase is None or isinstance(passphrase, str))
        or not (security is None or isinstance(security, str))
        or set(request) - {"ssid_hex", "passphrase", "hidden", "security", "eap"}
    ):
        raise ProtocolError(
            Code.MALFORMED_REQUEST,
            "SET_CREDENTIALS needs {ssid_hex: str, passphrase: str|null, hidden: bool, "
            "security?: str, eap?: object}",
        )
    passphrase_ = Secret(passphrase) if passphrase is not None else None
    return _ssid(ssid_hex), passphrase_, hidden, security


def receive_file_part(
    files: dict[str, tuple[int, bytearray]], request: dict[str, Any]
) -> tuple[str, int]:
    """CREDENTIAL_FILE: one part of a certificate or key, in order. Returns the file's name
    and the bytes received so far. Raises ProtocolError (MALFORMED_REQUEST, MESSAGE_TOO_LARGE)
    and leaves what was received as it was."""
    name, size, offset = request.get("name"), request.get("size"), request.get("offset")
    chunk_b64 = request.get("chunk_b64")
    if (
        set(request) != {"name", "size", "offset", "chunk_b64"}
        or not isinstance(name, str)
        or name not in FILE_NAMES
        or not isinstance(size, int)
        or not isinstance(offset, int)
        or isinstance(size, bool)
        or isinstance(offset, bool)
        or not isinstance(chunk_b64, str)
    ):
        raise ProtocolError(
            Code.MALFORMED_REQUEST,
            "CREDENTIAL_FILE takes {name: ca_cert|client_cert|private_key, size: int, "
            "offset: int, chunk_b64: str}",
        )
    if not 0 < size <= EAP_FILE_MAX_BYTES:
        raise ProtocolError(
            Code.MESSAGE_TOO_LARGE, f"{name}: 1 to {EAP_FILE_MAX_BYTES} bytes, not {size}"
        )
    try:
        chunk = base64.b64decode(chunk_b64, validate=True)
    except ValueError:
        raise ProtocolError(Code.MALFORMED_REQUEST, "chunk_b64 is not base64") from None
    if not 0 < len(chunk) <= FILE_CHUNK:
        raise ProtocolError(Code.MALFORMED_REQUEST, f"a part holds 1 to {FILE_CHUNK} bytes")
    old = files.get(name)
    if offset == 0:
        if old is not None:
            old[1][:] = bytes(len(old[1]))
        data = bytearray()
    elif old is None or old[0] != size or offset != len(old[1]):
        expected = len(old[1]) if old is not None else 0
        raise ProtocolError(
            Code.MALFORMED_REQUEST,
            f"{name}: the next part starts at offset {expected} (size {size} as first sent)",
        )
    else:
        data = old[1]
    if offset + len(chunk) > size:
        raise ProtocolError(Code.MALFORMED_REQUEST, f"{name}: parts run past its size {size}")
    data.extend(chunk)
    files[name] = (size, data)
    return name, len(data)


def parse_eap(eap: Any, files: dict[str, tuple[int, bytearray]]) -> EapSettings:
    """SET_CREDENTIALS' ``eap`` object: the method and its fields, each certificate or key
    named by the SHA-256 of a whole CREDENTIAL_FILE of this session. Raises ProtocolError
    (MALFORMED_REQUEST: not the object's shape; EAP_SETTINGS_INVALID: a word or file that is
    not right)."""
    texts = ("method", "phase2", "identity", "anonymous_identity", "password", "domain")
    if (
        not isinstance(eap, dict)
        or set(eap) - {*texts, *FILE_NAMES}
        or not all(isinstance(v, str) for v in eap.values())
    ):
        raise ProtocolError(
            Code.MALFORMED_REQUEST,
            "eap takes {method, phase2?, identity, anonymous_identity?, password?, domain?, "
            "ca_cert?, client_cert?, private_key?}: strings",
        )

    def bad(detail: str) -> ProtocolError:
        return ProtocolError(Code.EAP_SETTINGS_INVALID, detail)

    try:
        method = EapMethod(str(eap.get("method")))
    except ValueError:
        raise bad(f"method: {', '.join(EapMethod)}, not {eap.get('method')!r}") from None
    try:
        phase2 = Phase2(eap["phase2"]) if "phase2" in eap else None
    except ValueError:
        raise bad(f"phase2: {', '.join(Phase2)}, not {eap['phase2']!r}") from None
    if "identity" not in eap:
        raise bad("identity: missing")
    pems: dict[str, bytes] = {}
    for name in FILE_NAMES:
        if name not in eap:
            continue
        size, data = files.get(name, (0, bytearray()))
        if len(data) != size or not data or hashlib.sha256(data).hexdigest() != eap[name].lower():
            raise bad(
                f"{name}: no whole CREDENTIAL_FILE with that SHA-256 in this session "
                f"({len(data)} of {size} bytes received)"
            )
        pems[name] = bytes(data)
    try:
        key = Secret(pems["private_key"].decode("ascii")) if "private_key" in pems else None
    except UnicodeDecodeError:
        raise bad("private_key: not a PEM private key") from None
    return EapSettings(
        method=method,
        identity=eap["identity"],
        anonymous_identity=eap.get("anonymous_identity"),
        password=Secret(eap["password"]) if "password" in eap else None,
        phase2=phase2,
        ca_cert=pems.get("ca_cert"),
        domain=eap.get("domain"),
        client_cert=pems.get("client_cert"),
        private_key=key,
    )


def parse_activation(request: dict[str, Any]) -> tuple[str | None, Secret | None, Secret | None]:
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


def parse_forget(request: dict[str, Any]) -> bytes:
    ssid_hex = request.get("ssid_hex")
    if set(request) != {"ssid_hex"} or not isinstance(ssid_hex, str):
        raise ProtocolError(Code.MALFORMED_REQUEST, "FORGET_NETWORK takes {ssid_hex: str}")
    return _ssid(ssid_hex)


def _ssid(ssid_hex: str) -> bytes:
    try:
        return bytes.fromhex(ssid_hex)
    except ValueError:
        raise ProtocolError(Code.MALFORMED_REQUEST, "ssid_hex is not hexadecimal") from None
