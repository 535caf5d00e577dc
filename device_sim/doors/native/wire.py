"""The wire format: fragments, messages, and the small fixed-layout values. Pure code, no I/O.

Layouts are documented in ``gatt_profile.yaml`` (``framing``, ``messages``, characteristic
descriptions); this module implements them byte by byte and raises
:class:`~device_sim.errors.ProtocolError` with MALFORMED_REQUEST or MESSAGE_TOO_LARGE for bad input.

Fragment header (3 bytes)::

    byte 0    flags: bit7 FIRST, bit6 LAST, bits 0-5 fragment index modulo 64
    byte 1-2  channel (u16): the client's per-connection id, echoed by the device; 0 = broadcast
    FIRST fragments then carry the total message length (u16) before their data.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ...codes import Code, MessageType, State
from ...document import loads_json
from ...errors import ProtocolError

FLAG_FIRST = 0x80
FLAG_LAST = 0x40
INDEX_MASK = 0x3F
HEADER = struct.Struct(">BH")
LENGTH = struct.Struct(">H")
MAX_PENDING_PER_SOURCE = 4  # partial messages one central may have at once
MAX_PENDING_TOTAL = 16  # over all centrals: at most 64 KB held (4,096 bytes each)


def fragment(message: bytes, channel: int, fragment_size: int) -> list[bytes]:
    """Split ``message`` into fragments of at most ``fragment_size`` bytes (headers included).

    Raises ValueError if the message is empty or longer than a u16, or the fragment size leaves
    no room for data.
    """
    if not message:
        raise ValueError("empty message")
    if len(message) > 0xFFFF:
        raise ValueError("message longer than 65535 bytes")
    if not 0 <= channel <= 0xFFFF:
        raise ValueError("channel must fit in 16 bits")
    room_first = fragment_size - HEADER.size - LENGTH.size
    room_next = fragment_size - HEADER.size
    if room_first < 1:
        raise ValueError(f"fragment size {fragment_size} leaves no room for data")
    chunks = [message[:room_first]]
    chunks += [message[i : i + room_next] for i in range(room_first, len(message), room_next)]
    out: list[bytes] = []
    for index, chunk in enumerate(chunks):
        flags = index & INDEX_MASK
        if index == 0:
            flags |= FLAG_FIRST
        if index == len(chunks) - 1:
            flags |= FLAG_LAST
        head = HEADER.pack(flags, channel)
        if index == 0:
            head += LENGTH.pack(len(message))
        out.append(head + chunk)
    return out


def peek_channel(frame: bytes) -> int:
    """The channel of a fragment. Raises ProtocolError if the frame has no complete header."""
    if len(frame) < HEADER.size:
        raise ProtocolError(Code.MALFORMED_REQUEST, f"fragment of {len(frame)} bytes has no header")
    return HEADER.unpack_from(frame)[1]


@dataclass
class _Partial:
    total: int
    next_index: int
    started: float
    data: bytearray = field(default_factory=bytearray)


class Reassembler:
    """Reassembles fragments into messages, per source and channel.

    ``feed`` returns ``(channel, message)`` when a message completes, ``None`` while more
    fragments are due, and raises ProtocolError for a bad sequence (after which that channel's
    partial message is dropped, so the next FIRST fragment starts clean). ``source`` is the
    connection the frame came from (the device side passes the central's BlueZ path): a channel
    id is chosen by the client, so another central that uses the same id must not be able to
    inject into, or break, this one's partial message.

    Room is shared fairly, so that a neighbour in range cannot block the owner's central: a
    message of one fragment needs no room at all; one central holds at most
    MAX_PENDING_PER_SOURCE partial messages (beyond that, BUSY for it alone); when all
    MAX_PENDING_TOTAL are taken, the oldest partial message of the central holding the most
    is dropped for the new one, never one of a source ``keep`` names (the session holder's).
    """

    def __init__(
        self,
        max_message_length: int,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        keep: Callable[[Hashable], bool] = lambda source: False,
    ) -> None:
        self.max_message_length = max_message_length
        self.timeout_s = timeout_s
        self._clock = clock
        self._keep = keep
        self._partials: dict[tuple[Hashable, int], _Partial] = {}

    def pending_channels(self, source: Hashable = None) -> list[int]:
        return [channel for (src, channel) in self._partials if src == source]

    def drop(self, channel: int, source: Hashable = None) -> None:
        self._partials.pop((source, channel), None)

    def sources(self, channel: int) -> set[Hashable]:
        """The sources with a partial message on ``channel``."""
        return {src for (src, ch) in self._partials if ch == channel}

    def drop_source(self, source: Hashable) -> None:
        """Forget every partial message of ``source`` (it disconnected)."""
        for key in [k for k in self._partials if k[0] == source]:
            del self._partials[key]

    def _expire(self, now: float) -> None:
        for key, partial in list(self._partials.items()):
            if now - partial.started > self.timeout_s:
                del self._partials[key]

    def _make_room(self, source: Hashable) -> None:
        """Room for one more partial message of ``source``. Raises ProtocolError(BUSY)."""
        held: dict[Hashable, list[tuple[float, tuple[Hashable, int]]]] = {}
        for key, partial in self._partials.items():
            held.setdefault(key[0], []).append((partial.started, key))
        if len(held.get(source, ())) >= MAX_PENDING_PER_SOURCE:
            raise ProtocolError(
                Code.BUSY, f"this central has {MAX_PENDING_PER_SOURCE} partial messages at once"
            )
        if len(self._partials) < MAX_PENDING_TOTAL:
            return
        others = {src: keys for src, keys in held.items() if src != source and not self._keep(src)}
        if not others:
            raise ProtocolError(Code.BUSY, "too many partial messages at once")
        most = max(len(keys) for keys in others.values())
        _, oldest = min(min(keys) for keys in others.values() if len(keys) == most)
        del self._partials[oldest]

    def feed(self, frame: bytes, source: Hashable = None) -> tuple[int, bytes] | None:
        channel = peek_channel(frame)
        key = (source, channel)
        flags = frame[0]
        index = flags & INDEX_MASK
        now = self._clock()
        self._expire(now)
        partial = self._partials.get(key)
        body = frame[HEADER.size :]
        if flags & FLAG_FIRST:
            if partial is not None:
                self._partials.pop(key, None)
                raise ProtocolError(
                    Code.MALFORMED_REQUEST, "a new message started before the previous one ended"
                )
            if index != 0:
                raise ProtocolError(Code.MALFORMED_REQUEST, f"first fragment has index {index}")
            if len(body) < LENGTH.size:
                raise ProtocolError(Code.MALFORMED_REQUEST, "first fragment has no length field")
            (total,) = LENGTH.unpack_from(body)
            body = body[LENGTH.size :]
            if total == 0:
                raise ProtocolError(Code.MALFORMED_REQUEST, "message length 0")
            if total > self.max_message_length:
                raise ProtocolError(
                    Code.MESSAGE_TOO_LARGE,
                    f"message of {total} bytes; the limit is {self.max_message_length}",
                )
            if not flags & FLAG_LAST:  # a message of one fragment is never held
                self._make_room(source)
            partial = _Partial(total=total, next_index=0, started=now)
            self._partials[key] = partial
        elif partial is None:
            raise ProtocolError(
                Code.MALFORMED_REQUEST, f"continuation fragment {index} without a first fragment"
            )
        if index != partial.next_index:
            self._partials.pop(key, None)
            raise ProtocolError(
                Code.MALFORMED_REQUEST, f"fragment {index} arrived, expected {partial.next_index}"
            )
        partial.next_index = (partial.next_index + 1) & INDEX_MASK
        partial.data += body
        if len(partial.data) > partial.total:
            self._partials.pop(key, None)
            raise ProtocolError(
                Code.MALFORMED_REQUEST,
                f"fragments carry more than the announced {partial.total} bytes",
            )
        if flags & FLAG_LAST:
            self._partials.pop(key, None)
            if len(partial.data) != partial.total:
                raise ProtocolError(
                    Code.MALFORMED_REQUEST,
                    f"message ended after {len(partial.data)} of {partial.total} bytes (truncated)",
                )
            return channel, bytes(partial.data)
        return None


def split_type(message: bytes) -> tuple[MessageType, bytes]:
    """Split a reassembled message into its type and body. Raises ProtocolError."""
    try:
        return MessageType(message[0]), message[1:]
    except (IndexError, ValueError):
        raise ProtocolError(
            Code.MALFORMED_REQUEST, f"unknown message type 0x{message[:1].hex() or '--'}"
        ) from None


# --- ERROR (clear) ----------------------------------------------------------------------------

ERROR_HEAD = struct.Struct(">HI")


@dataclass(frozen=True)
class ErrorBody:
    code: Code
    retry_after_ms: int = 0
    detail: str = ""

    def to_message(self) -> bytes:
        detail = self.detail.encode("utf-8")[:200]
        return bytes([MessageType.ERROR]) + ERROR_HEAD.pack(self.code, self.retry_after_ms) + detail

    @classmethod
    def from_body(cls, body: bytes) -> ErrorBody:
        if len(body) < ERROR_HEAD.size:
            raise ProtocolError(Code.MALFORMED_REQUEST, "ERROR body too short")
        code, retry = ERROR_HEAD.unpack_from(body)
        try:
            parsed = Code(code)
        except ValueError:
            parsed = Code.INTERNAL_ERROR
        return cls(parsed, retry, body[ERROR_HEAD.size :].decode("utf-8", "replace"))


# --- JSON bodies of secure messages ------------------------------------------------------------


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_json(body: bytes) -> dict[str, Any]:
    """Parse a JSON object body. Raises ProtocolError(MALFORMED_REQUEST)."""
    try:
        value = loads_json(body) if body else {}
    except ValueError as exc:  # not UTF-8, not JSON, or nested too deeply
        raise ProtocolError(Code.MALFORMED_REQUEST, f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(Code.MALFORMED_REQUEST, "body must be a JSON object")
    return value


# --- public state characteristic and advertisement ----------------------------------------------

STATE_VALUE = struct.Struct(">BHB")
MANUFACTURER_VALUE = struct.Struct(">BH3s")


@dataclass(frozen=True)
class PublicState:
    """The value of the ``state`` characteristic: no secrets, readable without a session."""

    state: State
    code: Code
    attempt: int

    def to_bytes(self) -> bytes:
        return STATE_VALUE.pack(self.state, self.code, min(self.attempt, 255))

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicState:
        if len(data) != STATE_VALUE.size:
            raise ProtocolError(Code.MALFORMED_REQUEST, f"state value of {len(data)} bytes")
        state, code, attempt = STATE_VALUE.unpack(data)
        try:
            return cls(State(state), Code(code), attempt)
        except ValueError:
            raise ProtocolError(Code.MALFORMED_REQUEST, "unknown state or code") from None


@dataclass(frozen=True)
class AdvertisedInfo:
    """The 6 advertised bytes (layout in the profile's ``advertising.manufacturer_data``)."""

    protocol_version: int
    state: State
    code: Code
    device_id_low: bytes

    def to_bytes(self) -> bytes:
        return MANUFACTURER_VALUE.pack(
            (self.protocol_version & 0x0F) << 4 | int(self.state),
            self.code,
            self.device_id_low[-3:],
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> AdvertisedInfo:
        if len(data) != MANUFACTURER_VALUE.size:
            raise ProtocolError(Code.MALFORMED_REQUEST, f"advertised data of {len(data)} bytes")
        version_state, code, low = MANUFACTURER_VALUE.unpack(data)
        try:
            return cls(version_state >> 4, State(version_state & 0x0F), Code(code), low)
        except ValueError:
            raise ProtocolError(Code.MALFORMED_REQUEST, "unknown state or code") from None


def pack_messages(messages: list[bytes]) -> bytes:
    """The SoftAP door's ``messages`` content type: each message as u16 length + bytes."""
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


def unpack_messages(body: bytes) -> list[bytes]:
    """Inverse of :func:`pack_messages`. Raises ProtocolError(MALFORMED_REQUEST)."""
    out: list[bytes] = []
    i = 0
    while i < len(body):
        if i + 2 > len(body):
            raise ProtocolError(Code.MALFORMED_REQUEST, "truncated message record header")
        n = int.from_bytes(body[i : i + 2], "big")
        if n == 0 or i + 2 + n > len(body):
            raise ProtocolError(Code.MALFORMED_REQUEST, "truncated or empty message record")
        out.append(body[i + 2 : i + 2 + n])
        i += 2 + n
    return out
