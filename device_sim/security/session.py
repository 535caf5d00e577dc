"""The secure session every door shares: SRP-6a on the setup code, then AES-256-GCM with counters.

Pure code, no I/O. Bodies below exclude the message type byte (the codec adds it); only
:meth:`SecureChannel.seal` / :meth:`SecureChannel.open` handle whole ``SECURE`` messages.

Handshake (clear messages, big-endian, see ``gatt_profile.yaml`` ``messages``)::

    PAKE_START     client -> device   u8 protocol_version (1) | A (384 bytes)
    PAKE_CHALLENGE device -> client   u8 salt_len | salt | B (384 bytes)
    PAKE_PROOF     client -> device   M1 (64 bytes)
    PAKE_CONFIRM   device -> client   HAMK (64 bytes)

A and B travel left-padded to 384 bytes; the SRP hashes use their minimal encoding (see
:mod:`.srp_group` for the exact formulas). Each handshake object is single-use: after a wrong
proof it refuses every further call, so one challenge can never test more than one guess (and the
library's non-constant-time comparison of M1 cannot be probed repeatedly).

Secure message (``SECURE``, type 0x0F)::

    0x0F | counter (u64) | AES-256-GCM(inner_type (u8) | payload) | tag (16 bytes)
    nonce = direction tag (b"c2d\\0" or b"d2c\\0") | counter (u64)
    AAD   = 0x0F | counter (u64)
    keys  = HKDF-SHA256(K, salt=A||B (384 + 384 bytes),
                        info=b"device-sim v1 c2d" | b"device-sim v1 d2c"), 32 bytes each

Counters start at 1 in each direction and must arrive exactly in order; they never wrap.
"""

from __future__ import annotations

import hmac
from typing import Any, Final, Literal

import srp

from ..codes import Code, MessageType
from ..errors import ProtocolError, SessionError
from .secret import Secret
from .setup_code import SetupCodeVerifier, normalize_setup_code
from .srp_group import HASH_LEN, N_BYTES, SRP_LOCK, USERNAME, N, is_portable_salt, srp_kwargs

#: ``protocol_version`` byte of PAKE_START (``gatt_profile.yaml`` top-level ``protocol_version``).
PROTOCOL_VERSION: Final[int] = 1
PAKE_START_LENGTH: Final[int] = 1 + N_BYTES
PAKE_PROOF_LENGTH: Final[int] = HASH_LEN
PAKE_CONFIRM_LENGTH: Final[int] = HASH_LEN

COUNTER_LENGTH: Final[int] = 8
TAG_LENGTH: Final[int] = 16
#: Shortest valid SECURE message: type, counter, tag, and an inner type byte.
MIN_SECURE_LENGTH: Final[int] = 1 + COUNTER_LENGTH + TAG_LENGTH + 1
#: SECURE overhead over the inner payload: type + counter + inner type + tag = 26 bytes.
SECURE_OVERHEAD: Final[int] = MIN_SECURE_LENGTH
MAX_COUNTER: Final[int] = 2**64 - 1

_SECURE = bytes([MessageType.SECURE])
_KEY_LENGTH = 32
_INFO = {"c2d": b"device-sim v1 c2d", "d2c": b"device-sim v1 d2c"}
_NONCE_PREFIX = {"c2d": b"c2d\x00", "d2c": b"d2c\x00"}
_FIRST_SECURE_TYPE = 0x10  # types below travel in clear and never inside SECURE

Role = Literal["device", "client"]


def _malformed(detail: str) -> ProtocolError:
    return ProtocolError(Code.MALFORMED_REQUEST, detail)


def _parse_public_value(raw: bytes, name: str) -> bytes:
    """Check an SRP public value (A or B) from the wire: 384 bytes, 0 < value < N."""
    if len(raw) != N_BYTES:
        raise _malformed(f"{name} must be {N_BYTES} bytes, got {len(raw)}")
    if not 0 < int.from_bytes(raw, "big") < N:
        raise _malformed(f"{name} is not in the range 1..N-1")
    return raw


def _wire_int(value: bytes) -> bytes:
    """Left-pad a minimal big-endian integer from ``srp`` to the 384-byte wire width."""
    return int.from_bytes(value, "big").to_bytes(N_BYTES, "big")


def _wrong_state(step: str, state: str) -> SessionError:
    return SessionError(Code.INVALID_STATE, f"{step} is not allowed in handshake state {state}")


class DeviceHandshake:
    """The device side of the SRP-6a handshake, for one client attempt (single-use).

    ``challenge()`` then ``verify()``; the engine counts ``WRONG_SETUP_CODE`` failures for
    :class:`~.backoff.SetupCodeBackoff`.
    """

    def __init__(self, salt: bytes, verifier: bytes, *, ephemeral: bytes | None = None) -> None:
        """Raises ValueError/TypeError if ``(salt, verifier)`` is not a valid stored verifier.

        ``ephemeral``: the secret b, for the protocol's test vectors only (docs/protocol.md);
        left out, every handshake draws a fresh one."""
        self._ephemeral = ephemeral
        record = SetupCodeVerifier(bytes(salt), bytes(verifier))
        self._salt = record.salt
        self._verifier = record.verifier
        self._srp: Any = None
        self._a = b""
        self._b = b""
        self._state = "new"

    @property
    def state(self) -> str:
        """``new``, ``challenged``, ``done`` or ``failed``."""
        return self._state

    def challenge(self, pake_start_body: bytes) -> bytes:
        """Answer a PAKE_START body with a PAKE_CHALLENGE body.

        Raises:
            SessionError: ``UNSUPPORTED_VERSION`` (first byte is not :data:`PROTOCOL_VERSION`),
                ``INVALID_STATE`` (called twice).
            ProtocolError: ``MALFORMED_REQUEST`` (empty body, A not 384 bytes, A not in 1..N-1).
        """
        if self._state != "new":
            raise _wrong_state("PAKE_START", self._state)
        body = bytes(pake_start_body)
        if not body:
            raise _malformed("PAKE_START body is empty")
        if body[0] != PROTOCOL_VERSION:
            raise SessionError(
                Code.UNSUPPORTED_VERSION,
                f"protocol version {body[0]} is not supported (device speaks {PROTOCOL_VERSION})",
            )
        a = _parse_public_value(body[1:], "A")
        with SRP_LOCK:
            verifier = srp.Verifier(
                USERNAME, self._salt, self._verifier, a, bytes_b=self._ephemeral, **srp_kwargs()
            )
            _, b_min = verifier.get_challenge()
        if b_min is None:  # srp's own A % N check; unreachable after ours
            raise _malformed("A failed the SRP-6a safety check")
        self._srp = verifier
        self._a = a
        self._b = _wire_int(b_min)
        self._state = "challenged"
        return bytes([len(self._salt)]) + self._salt + self._b

    def verify(self, pake_proof_body: bytes) -> tuple[bytes, SecureChannel]:
        """Check the client's M1; return (PAKE_CONFIRM body = HAMK, the device's channel).

        Raises:
            SessionError: ``WRONG_SETUP_CODE`` (proof does not match; the handshake is spent),
                ``INVALID_STATE`` (no challenge yet, or already verified or failed).
            ProtocolError: ``MALFORMED_REQUEST`` (M1 not 64 bytes; the handshake stays usable).
        """
        if self._state != "challenged":
            raise _wrong_state("PAKE_PROOF", self._state)
        m1 = bytes(pake_proof_body)
        if len(m1) != PAKE_PROOF_LENGTH:
            raise _malformed(f"M1 must be {PAKE_PROOF_LENGTH} bytes, got {len(m1)}")
        verifier, self._srp = self._srp, None
        self._state = "failed"
        with SRP_LOCK:
            hamk = verifier.verify_session(m1)
            key = verifier.get_session_key() if hamk is not None else None
            authenticated = verifier.authenticated()
        if hamk is None or key is None or not authenticated:
            raise SessionError(Code.WRONG_SETUP_CODE, "the client's setup-code proof did not match")
        self._state = "done"
        return bytes(hamk), SecureChannel("device", bytes(key), self._a, self._b)

    def __repr__(self) -> str:
        return f"DeviceHandshake(state={self._state!r})"


class ClientHandshake:
    """The phone side of the handshake (used by the reference client and the tests)."""

    def __init__(self, setup_code: Secret, *, ephemeral: bytes | None = None) -> None:
        """Raises TypeError if ``setup_code`` is not a Secret, ValueError if not 8 digits.

        ``ephemeral``: the secret a, for the protocol's test vectors only (docs/protocol.md);
        left out, every handshake draws a fresh one."""
        self._ephemeral = ephemeral
        if not isinstance(setup_code, Secret):
            raise TypeError("ClientHandshake() takes the setup code as a Secret")
        self._code = Secret(normalize_setup_code(setup_code))
        self._srp: Any = None
        self._a = b""
        self._b = b""
        self._state = "new"
        self._early: SecureChannel | None = None

    @property
    def state(self) -> str:
        """``new``, ``started``, ``proved``, ``done`` or ``failed``."""
        return self._state

    def start(self) -> bytes:
        """The PAKE_START body: protocol version and a fresh A.

        Raises:
            SessionError: ``INVALID_STATE`` (called twice).
        """
        if self._state != "new":
            raise _wrong_state("start", self._state)
        with SRP_LOCK:
            user = srp.User(USERNAME, self._code.reveal(), bytes_a=self._ephemeral, **srp_kwargs())
            _, a_min = user.start_authentication()
        self._srp = user
        self._a = _wire_int(a_min)
        self._state = "started"
        return bytes([PROTOCOL_VERSION]) + self._a

    def process_challenge(self, body: bytes) -> bytes:
        """Answer a PAKE_CHALLENGE body with the PAKE_PROOF body (M1, 64 bytes).

        Raises:
            ProtocolError: ``MALFORMED_REQUEST`` (lengths, salt with a leading zero byte,
                B not in 1..N-1, or SRP's u == 0).
            SessionError: ``INVALID_STATE`` (not after :meth:`start`).
        """
        if self._state != "started":
            raise _wrong_state("PAKE_CHALLENGE", self._state)
        raw = bytes(body)
        if not raw:
            raise _malformed("PAKE_CHALLENGE body is empty")
        salt_len = raw[0]
        if len(raw) != 1 + salt_len + N_BYTES:
            raise _malformed(
                f"PAKE_CHALLENGE must be {1 + salt_len + N_BYTES} bytes for a {salt_len}-byte "
                f"salt, got {len(raw)}"
            )
        salt = raw[1 : 1 + salt_len]
        if not is_portable_salt(salt):
            raise _malformed("salt must be 1-255 bytes and must not start with a zero byte")
        b = _parse_public_value(raw[1 + salt_len :], "B")
        with SRP_LOCK:
            m1 = self._srp.process_challenge(salt, b)
        if m1 is None:
            raise _malformed("B failed the SRP-6a safety check")
        self._b = b
        self._state = "proved"
        return bytes(m1)

    def bundle_channel(self) -> SecureChannel:
        """The client's channel once it has proved (before the device confirmed): it seals the
        requests of a proof bundle. Only a holder of this code's verifier can open them, and
        :meth:`confirm` still checks the device's HAMK before any answer is trusted; it
        returns this same channel, its counters going on.

        Raises SessionError(INVALID_STATE) before :meth:`process_challenge`.
        """
        if self._state != "proved":
            raise _wrong_state("bundle", self._state)
        if self._early is None:
            self._early = SecureChannel("client", bytes(self._srp.K), self._a, self._b)
        return self._early

    def confirm(self, body: bytes) -> SecureChannel:
        """Check the device's HAMK (PAKE_CONFIRM body); return the client's channel.

        Raises:
            SessionError: ``WRONG_SETUP_CODE`` (HAMK does not match: the peer does not hold this
                code's verifier), ``INVALID_STATE`` (not after :meth:`process_challenge`).
            ProtocolError: ``MALFORMED_REQUEST`` (HAMK not 64 bytes).
        """
        if self._state != "proved":
            raise _wrong_state("PAKE_CONFIRM", self._state)
        hamk = bytes(body)
        if len(hamk) != PAKE_CONFIRM_LENGTH:
            raise _malformed(f"HAMK must be {PAKE_CONFIRM_LENGTH} bytes, got {len(hamk)}")
        user, self._srp = self._srp, None
        self._state = "failed"
        if not hmac.compare_digest(bytes(user.H_AMK), hamk):
            raise SessionError(
                Code.WRONG_SETUP_CODE,
                "the device's proof did not match: wrong setup code or not the expected device",
            )
        with SRP_LOCK:
            user.verify_session(hamk)
            key = user.get_session_key()
            authenticated = user.authenticated()
        if key is None or not authenticated:  # pragma: no cover - library disagreement
            raise SessionError(Code.WRONG_SETUP_CODE, "the device's proof did not match")
        self._state = "done"
        if self._early is not None:  # the bundle's requests were sealed with it
            return self._early
        return SecureChannel("client", bytes(key), self._a, self._b)

    def __repr__(self) -> str:
        return f"ClientHandshake(state={self._state!r})"


def _derive_key(session_key: bytes, salt: bytes, direction: str) -> bytes:
    # cryptography loads with the first session, not with the daemon (7 MB of an idle one).
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(algorithm=hashes.SHA256(), length=_KEY_LENGTH, salt=salt, info=_INFO[direction])
    return hkdf.derive(session_key)


class SecureChannel:
    """One end of an established session: seals outgoing and opens incoming SECURE messages.

    ``A`` and ``B`` are the 384-byte wire encodings from the handshake. The session key is used
    only to derive the two direction keys and is not kept.
    """

    __slots__ = (
        "_recv_aead",
        "_recv_counter",
        "_recv_prefix",
        "_role",
        "_send_aead",
        "_send_counter",
        "_send_prefix",
    )

    def __init__(self, role: Role, session_key: bytes, A: bytes, B: bytes) -> None:
        """Raises ValueError for an unknown role, an empty key or A/B not 384 bytes."""
        if role not in ("device", "client"):
            raise ValueError("role must be 'device' or 'client'")
        if len(session_key) < 16:
            raise ValueError("session key too short")
        if len(A) != N_BYTES or len(B) != N_BYTES:
            raise ValueError(f"A and B must be the {N_BYTES}-byte wire encodings")
        salt = bytes(A) + bytes(B)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        keys = {d: AESGCM(_derive_key(bytes(session_key), salt, d)) for d in ("c2d", "d2c")}
        send, recv = ("d2c", "c2d") if role == "device" else ("c2d", "d2c")
        self._role: Role = role
        self._send_aead = keys[send]
        self._send_prefix = _NONCE_PREFIX[send]
        self._recv_aead = keys[recv]
        self._recv_prefix = _NONCE_PREFIX[recv]
        self._send_counter = 0
        self._recv_counter = 0

    @property
    def role(self) -> Role:
        return self._role

    @property
    def send_counter(self) -> int:
        """Counter of the last message sealed (0 before the first)."""
        return self._send_counter

    @property
    def recv_counter(self) -> int:
        """Counter of the last message accepted by :meth:`open` (0 before the first)."""
        return self._recv_counter

    def seal(self, inner_type: MessageType, payload: bytes) -> bytes:
        """A whole SECURE message carrying ``inner_type`` and ``payload``.

        Raises:
            ValueError: ``inner_type`` is not a message type that travels inside SECURE (>= 0x10).
            SessionError: ``SESSION_REQUIRED`` once the send counter is exhausted (never wraps).
        """
        inner = MessageType(inner_type)
        if inner < _FIRST_SECURE_TYPE:
            raise ValueError(f"{inner.name} travels in clear, not inside SECURE")
        if self._send_counter >= MAX_COUNTER:
            raise SessionError(Code.SESSION_REQUIRED, "send counter exhausted; start a new session")
        counter = self._send_counter + 1
        ctr = counter.to_bytes(COUNTER_LENGTH, "big")
        sealed = self._send_aead.encrypt(
            self._send_prefix + ctr, bytes([inner]) + bytes(payload), _SECURE + ctr
        )
        self._send_counter = counter
        return _SECURE + ctr + sealed

    def open(self, message: bytes) -> tuple[MessageType, bytes]:
        """Authenticate and decrypt a whole SECURE message; return (inner type, payload).

        A rejected message leaves the receive counter unchanged, so the next genuine message
        still opens. An authentic message with a bad inner type consumes its counter.

        Raises:
            ProtocolError: ``MALFORMED_REQUEST`` (not 0x0F, shorter than 26 bytes, unknown inner
                type or a clear type inside SECURE).
            SessionError: ``REPLAYED_MESSAGE`` (counter is not the next one: replay or reorder;
                or authentication failed), ``SESSION_REQUIRED`` (receive counter exhausted).
        """
        data = bytes(message)
        if len(data) < MIN_SECURE_LENGTH or data[0] != MessageType.SECURE:
            raise _malformed(
                f"a SECURE message starts with 0x0f and has at least {MIN_SECURE_LENGTH} bytes"
            )
        if self._recv_counter >= MAX_COUNTER:
            raise SessionError(
                Code.SESSION_REQUIRED, "receive counter exhausted; start a new session"
            )
        ctr = data[1 : 1 + COUNTER_LENGTH]
        counter = int.from_bytes(ctr, "big")
        expected = self._recv_counter + 1
        if counter != expected:
            raise SessionError(Code.REPLAYED_MESSAGE, f"expected counter {expected}, got {counter}")
        from cryptography.exceptions import InvalidTag

        try:
            plain = self._recv_aead.decrypt(
                self._recv_prefix + ctr, data[1 + COUNTER_LENGTH :], _SECURE + ctr
            )
        except InvalidTag:
            raise SessionError(Code.REPLAYED_MESSAGE, "authentication failed") from None
        self._recv_counter = counter
        try:
            inner = MessageType(plain[0])
        except ValueError:
            raise _malformed("unknown inner message type") from None
        if inner < _FIRST_SECURE_TYPE:
            raise _malformed("a clear message type inside SECURE")
        return inner, plain[1:]

    def __repr__(self) -> str:
        return (
            f"SecureChannel(role={self._role!r}, send_counter={self._send_counter}, "
            f"recv_counter={self._recv_counter})"
        )
