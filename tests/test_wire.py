"""Fragmentation and fixed layouts, byte by byte."""

from __future__ import annotations

import json

import pytest

from device_sim.codes import Code, MessageType, State
from device_sim.document import json_depth
from device_sim.doors.native.wire import (
    AdvertisedInfo,
    ErrorBody,
    PublicState,
    Reassembler,
    decode_json,
    fragment,
    split_type,
)
from device_sim.errors import ProtocolError


def test_single_fragment_layout() -> None:
    (frame,) = fragment(b"\x24{}", channel=0x1234, fragment_size=20)
    assert frame == bytes([0xC0, 0x12, 0x34, 0x00, 0x03]) + b"\x24{}"


def test_multi_fragment_layout_and_roundtrip() -> None:
    message = bytes(range(256)) * 3
    frames = fragment(message, channel=7, fragment_size=20)
    assert frames[0][0] == 0x80 and frames[-1][0] & 0x40
    assert all(len(f) <= 20 for f in frames)
    assert [f[0] & 0x3F for f in frames] == [i % 64 for i in range(len(frames))]
    r = Reassembler(4096, 5.0)
    out = [r.feed(f) for f in frames]
    assert out[:-1] == [None] * (len(frames) - 1)
    assert out[-1] == (7, message)


def test_index_wraps_after_64_fragments() -> None:
    message = b"x" * 2000
    frames = fragment(message, 1, 23)
    assert len(frames) > 64
    r = Reassembler(4096, 5.0)
    results = [r.feed(f) for f in frames]
    assert results[-1] == (1, message)


def test_channels_reassemble_independently() -> None:
    a = fragment(b"A" * 50, 1, 20)
    b = fragment(b"B" * 50, 2, 20)
    r = Reassembler(4096, 5.0)
    done: list[tuple[int, bytes] | None] = [
        x for pair in zip(a, b, strict=False) for x in (r.feed(pair[0]), r.feed(pair[1])) if x
    ]
    done += [r.feed(f) for f in a[len(b) :] + b[len(a) :]]
    assert (1, b"A" * 50) in done and (2, b"B" * 50) in done


@pytest.mark.parametrize(
    "frames, code, text",
    [
        ([b"\x80"], Code.MALFORMED_REQUEST, "no header"),
        ([b"\xc0\x00\x01"], Code.MALFORMED_REQUEST, "no length"),
        ([b"\x01\x00\x01abc"], Code.MALFORMED_REQUEST, "without a first fragment"),
        ([b"\xc0\x00\x01\x00\x00"], Code.MALFORMED_REQUEST, "length 0"),
        ([b"\xc0\x00\x01\x10\x01x"], Code.MESSAGE_TOO_LARGE, "limit is 4096"),
        ([b"\xc0\x00\x01\x00\x05abc"], Code.MALFORMED_REQUEST, "truncated"),
        ([b"\xc0\x00\x01\x00\x02abc"], Code.MALFORMED_REQUEST, "more than the announced"),
        ([b"\x80\x00\x01\x00\x09abc", b"\x42\x00\x01def"], Code.MALFORMED_REQUEST, "expected 1"),
        (
            [b"\x80\x00\x01\x00\x09abc", b"\x80\x00\x01\x00\x09abc"],
            Code.MALFORMED_REQUEST,
            "before the previous",
        ),
        ([b"\x81\x00\x01\x00\x09abc"], Code.MALFORMED_REQUEST, "first fragment has index 1"),
    ],
)
def test_bad_sequences_get_their_code(frames: list[bytes], code: Code, text: str) -> None:
    r = Reassembler(4096, 5.0)
    with pytest.raises(ProtocolError) as info:
        for f in frames:
            r.feed(f)
    assert info.value.code is code and text in info.value.detail


def test_an_error_clears_the_channel_so_the_next_message_works() -> None:
    r = Reassembler(4096, 5.0)
    r.feed(b"\x80\x00\x01\x00\x09abc")
    with pytest.raises(ProtocolError):
        r.feed(b"\x45\x00\x01def")
    assert r.feed(fragment(b"ok", 1, 20)[0]) == (1, b"ok")


def test_stale_partials_expire() -> None:
    now = [0.0]
    r = Reassembler(4096, 5.0, clock=lambda: now[0])
    r.feed(b"\x80\x00\x01\x00\x09abc")
    now[0] = 6.0
    with pytest.raises(ProtocolError, match="without a first fragment"):
        r.feed(b"\x41\x00\x01def")


def first(channel: int, total: int = 9) -> bytes:
    return bytes([0x80, channel >> 8, channel & 0xFF]) + total.to_bytes(2, "big") + b"abc"


def test_one_central_holds_at_most_four_partial_messages() -> None:
    r = Reassembler(4096, 5.0)
    for ch in range(1, 5):
        r.feed(first(ch), source="neighbour")
    with pytest.raises(ProtocolError) as info:
        r.feed(first(9), source="neighbour")
    assert info.value.code is Code.BUSY


def test_a_neighbours_partial_messages_do_not_block_the_owner() -> None:
    """The finding: a second central's 4 partial messages of 4,096 bytes made the owner's
    PAKE_START, and one-fragment requests in its session, BUSY."""
    r = Reassembler(4096, 5.0)
    for ch in range(1, 5):
        r.feed(first(ch, 4096), source="neighbour")
    assert r.feed(bytes([0xC0, 0, 7, 0, 3]) + b"one", source="owner") == (7, b"one")
    assert r.feed(first(8, 6), source="owner") is None  # a PAKE_START in two parts
    assert r.feed(bytes([0x41, 0, 8]) + b"def", source="owner") == (8, b"abcdef")


def test_when_all_room_is_taken_the_biggest_holder_loses_its_oldest() -> None:
    now = [0.0]
    r = Reassembler(4096, 5.0, clock=lambda: now[0], keep=lambda src: src == "owner")
    r.feed(first(1), source="owner")
    for n in range(5):  # 5 neighbours with random addresses: 1 + 15 fill the 16 slots
        for ch in range(10, 13):
            now[0] += 0.01
            r.feed(first(ch), source=f"n{n}")
    assert sum(len(r.pending_channels(f"n{n}")) for n in range(5)) == 15
    now[0] += 0.01
    r.feed(first(2), source="owner")  # full: a neighbour's oldest goes, not the owner's
    assert r.pending_channels("owner") == [1, 2]
    assert r.pending_channels("n0") == [11, 12]
    with pytest.raises(ProtocolError, match="without a first fragment"):
        r.feed(bytes([0x41, 0, 10]) + b"def", source="n0")


def test_only_kept_sources_left_is_busy() -> None:
    r = Reassembler(4096, 5.0, keep=lambda src: True)
    for n in range(4):
        for ch in range(1, 5):
            r.feed(first(ch), source=n)
    with pytest.raises(ProtocolError) as info:
        r.feed(first(1), source="late")
    assert info.value.code is Code.BUSY


def test_error_body_and_types() -> None:
    msg = ErrorBody(Code.TOO_MANY_ATTEMPTS, 4000, "wait").to_message()
    kind, body = split_type(msg)
    assert kind is MessageType.ERROR
    assert msg[1:7] == bytes.fromhex("012e00000fa0")
    assert ErrorBody.from_body(body) == ErrorBody(Code.TOO_MANY_ATTEMPTS, 4000, "wait")
    with pytest.raises(ProtocolError):
        split_type(b"\x99")
    with pytest.raises(ProtocolError):
        split_type(b"")
    with pytest.raises(ProtocolError):
        decode_json(b"[1]")
    with pytest.raises(ProtocolError):
        decode_json(b"\xff")


@pytest.mark.parametrize(
    "nested", [b"[" * 1020 + b"]" * 1020, b'{"a":' * 33 + b"1" + b"}" * 33, b"[" * 100_000]
)
def test_json_nested_deeper_than_any_message_is_malformed_not_a_recursion(nested: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_json(nested)
    assert info.value.code is Code.MALFORMED_REQUEST and "nested" in info.value.detail


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"ssid": "[" * 200, "note": '"]{\\'}).encode()
    assert json_depth(text) == 1
    assert decode_json(text)["ssid"] == "[" * 200
    assert decode_json(b'{"a":' * 31 + b"1" + b"}" * 31)  # 31 levels: at the limit, kept


def test_public_values() -> None:
    s = PublicState(State.FAILED, Code.WRONG_CREDENTIALS, 2)
    assert s.to_bytes() == bytes([6, 0, 101, 2])
    assert PublicState.from_bytes(s.to_bytes()) == s
    a = AdvertisedInfo(1, State.FAILED, Code.NO_DHCP_LEASE, bytes.fromhex("d4e5f6"))
    assert a.to_bytes() == bytes.fromhex("160068d4e5f6")
    assert AdvertisedInfo.from_bytes(a.to_bytes()) == a
    with pytest.raises(ProtocolError):
        PublicState.from_bytes(b"\x09\x00\x00\x00")


def test_partial_messages_are_kept_apart_per_source() -> None:
    """Another central writing on the same channel id cannot complete or break this one's
    partial message."""
    r = Reassembler(4096, 5.0)
    frames = fragment(b"\x20" + b"a" * 300, 9, 100)
    intruder = fragment(b"\x20" + b"b" * 50, 9, 100)
    assert r.feed(frames[0], source="A") is None
    assert r.feed(intruder[0], source="B") == (9, b"\x20" + b"b" * 50)
    assert r.sources(9) == {"A"}
    for frame in frames[1:-1]:
        assert r.feed(frame, source="A") is None
    assert r.feed(frames[-1], source="A") == (9, b"\x20" + b"a" * 300)
    r.feed(frames[0], source="A")
    r.drop_source("A")
    assert r.sources(9) == set()
