"""The wire codec (fragments, messages, public characteristics), the Improv codec and the ESP
protobuf codec, fed
anything: they answer with their coded error (ProtocolError, PacketError), never a crash."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from device_sim.doors.esp import proto
from device_sim.doors.improv.codec import PacketError, RpcAssembler, build_packet, parse_packet
from device_sim.doors.native.wire import (
    AdvertisedInfo,
    ErrorBody,
    PublicState,
    Reassembler,
    decode_json,
    fragment,
    split_type,
    unpack_messages,
)
from device_sim.errors import OnboardingError

from .conftest import FUZZ

CHANNELS = st.integers(0, 3)
# Frames: well-formed fragments of real-looking messages, mutated, or plain random bytes.
messages = st.binary(min_size=1, max_size=700)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["fragment", "mutated", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=40))
    message = draw(messages)
    pieces = fragment(message, draw(CHANNELS), draw(st.integers(8, 256)))
    frame = draw(st.sampled_from(pieces))
    if kind == "mutated" and frame:
        i = draw(st.integers(0, len(frame) - 1))
        frame = frame[:i] + bytes([draw(st.integers(0, 255))]) + frame[i + 1 :]
    return frame


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), frames()), max_size=30))
def test_reassembler(fuzz_counts: Counter[str], sequence: list[tuple[str, bytes]]) -> None:
    fuzz_counts["wire: fragment sequences"] += 1
    r = Reassembler(4096, 5.0)
    for source, frame in sequence:
        try:
            done = r.feed(frame, source=source)
        except OnboardingError:
            continue
        if done is not None:
            channel, message = done
            assert 0 <= channel <= 0xFFFF and 0 < len(message) <= 4096


@FUZZ
@given(st.binary(max_size=600))
def test_message_decoders(fuzz_counts: Counter[str], data: bytes) -> None:
    fuzz_counts["wire: message decoders"] += 1
    for decode in (
        split_type,
        ErrorBody.from_body,
        decode_json,
        PublicState.from_bytes,
        AdvertisedInfo.from_bytes,
        unpack_messages,
    ):
        try:
            decode(data)
        except OnboardingError:
            pass


packets = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda cmd, strings: build_packet(cmd, strings),
        st.integers(0, 255),
        st.lists(st.binary(max_size=60), max_size=4),
    ),
)


@FUZZ
@given(st.lists(st.one_of(packets, packets.map(lambda p: p[: len(p) // 2])), max_size=8))
def test_improv_codec(fuzz_counts: Counter[str], writes: list[bytes]) -> None:
    fuzz_counts["improv: packets"] += 1
    assembler = RpcAssembler(2.0)
    for value in writes:
        try:
            packet = assembler.feed(value)
        except PacketError:
            continue
        if packet is not None:
            try:
                parse_packet(packet)
            except PacketError:
                pass


# --- ESP-IDF provisioning (protobuf) -----------------------------------------------------------

ESP_SCHEMAS = [proto.SESSION, proto.CONFIG, proto.SCAN, proto.CTRL]


@st.composite
def esp_messages(draw: st.DrawFn) -> bytes:
    """Valid encodings of real shapes, mutated, truncated, or random bytes."""
    kind = draw(st.sampled_from(["valid", "mutated", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=80))
    message = draw(
        st.sampled_from(
            [
                {
                    "sec_ver": 2,
                    "sec2": {
                        "msg": 0,
                        "sc0": {"client_username": b"wifiprov", "client_pubkey": b"\x05" * 48},
                    },
                },
                {"msg": 2, "cmd_set_config": {"ssid": b"Lab", "passphrase": b"pass-word"}},
                {"msg": 5, "resp_scan_result": {"entries": [{"ssid": b"A", "rssi": -60}]}},
                {"msg": 1, "cmd_ctrl_reset": {}},
            ]
        )
    )
    schema = next(s for s in ESP_SCHEMAS if set(message) <= set(s))
    data = bytearray(proto.encode(schema, message))
    if kind == "mutated" and data:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@FUZZ
@given(esp_messages(), st.sampled_from(ESP_SCHEMAS))
def test_esp_codec(fuzz_counts: Counter[str], data: bytes, schema: proto.Schema) -> None:
    fuzz_counts["esp: protobuf messages"] += 1
    try:
        decoded = proto.decode(schema, data)
    except proto.DecodeError:
        return
    # A stable round trip, as proto3 has it: a scalar at its default (0, empty) is not written,
    # so an explicit one on the wire (b"\x10\x00": sec_ver 0) comes back absent.
    assert proto.decode(schema, proto.encode(schema, decoded)) == without_defaults(schema, decoded)


def without_defaults(schema: proto.Schema, message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in message.items():
        _, kind, sub = schema[name]
        if kind == "m" and sub is not None:
            out[name] = without_defaults(sub, value)
        elif kind == "r" and sub is not None:
            out[name] = [without_defaults(sub, v) for v in value]
        elif value not in (0, b"", ""):
            out[name] = value
    return out
