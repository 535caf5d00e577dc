"""The proof bundle (protocol revision 2): PAKE_PROOF carries the sealed SET_CREDENTIALS and
CONNECT, so an onboarding takes two round trips. The proof is checked first; everything after it
runs as if sent one request at a time, and nothing runs on a wrong code."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from device_sim.codes import Code, MessageType, State
from device_sim.doors.native.session import NativeSession
from device_sim.doors.native.wire import (
    ErrorBody,
    decode_json,
    encode_json,
    pack_messages,
    split_type,
)
from device_sim.network.scenario import load_scenario
from device_sim.security.secret import Secret
from device_sim.security.session import ClientHandshake
from device_sim.testing.stack import SETUP_CODE, build_stack

HOME = load_scenario("typical-home").default_credentials
CREDS = {"ssid_hex": HOME.ssid.hex(), "hidden": False, "passphrase": HOME.passphrase}


async def prove(
    service: Any,
    code: str,
    bundle: list[tuple[MessageType, dict[str, Any] | bytes]],
    raw_tail: bytes | None = None,
) -> tuple[ClientHandshake, list[bytes]]:
    """PAKE_START, then PAKE_PROOF carrying ``bundle`` sealed (a body given as bytes is sealed
    as it is, JSON or not) or the ``raw_tail`` bytes."""
    sent: list[bytes] = []

    def send(message: bytes) -> None:
        sent.append(message)

    hs = ClientHandshake(Secret(code))
    (challenge,) = await service.handle("phone", bytes([MessageType.PAKE_START]) + hs.start(), send)
    proof = hs.process_challenge(challenge[1:])
    early = hs.bundle_channel()
    tail = (
        raw_tail
        if raw_tail is not None
        else pack_messages(
            [
                early.seal(kind, body if isinstance(body, bytes) else encode_json(body))
                for kind, body in bundle
            ]
        )
    )
    replies = await service.handle("phone", bytes([MessageType.PAKE_PROOF]) + proof + tail, send)
    return hs, replies


def opened(hs: ClientHandshake, replies: list[bytes]) -> list[tuple[MessageType, dict[str, Any]]]:
    """Confirm the device, then open every sealed answer after PAKE_CONFIRM."""
    assert replies[0][0] == MessageType.PAKE_CONFIRM, replies[0][:1]
    channel = hs.confirm(replies[0][1:])
    out = []
    for reply in replies[1:]:
        kind, body = channel.open(reply)
        out.append((kind, decode_json(body)))
    return out


async def test_credentials_and_connect_ride_with_the_proof(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path)
        hs, replies = await prove(
            NativeSession(device.port("native")),
            SETUP_CODE,
            [(MessageType.SET_CREDENTIALS, CREDS), (MessageType.CONNECT, {})],
        )
        answers = opened(hs, replies)
        assert [(k, b.get("request")) for k, b in answers[:2]] == [
            (MessageType.ACK, "SET_CREDENTIALS"),
            (MessageType.ACK, "CONNECT"),
        ]
        assert {k for k, _ in answers[2:]} <= {MessageType.EVENT}  # then the session's events
        stored = device.store.credentials()
        assert stored is not None and stored.ssid == HOME.ssid
        assert device.engine.state in (State.JOINING, State.VERIFYING, State.ONLINE)


async def test_a_wrong_code_runs_nothing_of_the_bundle(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path)
        _, replies = await prove(
            NativeSession(device.port("native")),
            "1111-2222",
            [(MessageType.SET_CREDENTIALS, CREDS), (MessageType.CONNECT, {})],
        )
        (reply,) = replies
        kind, body = split_type(reply)
        assert kind is MessageType.ERROR
        assert ErrorBody.from_body(body).code is Code.WRONG_SETUP_CODE
        assert device.store.credentials() is None
        assert device.engine.state is State.UNPROVISIONED
        assert device.store.auth_failures()[0] == 1  # counted like any wrong code


async def test_a_refused_request_ends_the_bundle(tmp_path: Path) -> None:
    """A CONNECT after a refused SET_CREDENTIALS would join what was stored before: it does
    not run."""
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path)
        bad = {**CREDS, "ssid_hex": "zz"}
        hs, replies = await prove(
            NativeSession(device.port("native")),
            SETUP_CODE,
            [(MessageType.SET_CREDENTIALS, bad), (MessageType.CONNECT, {})],
        )
        answers = opened(hs, replies)
        assert answers[0][0] is MessageType.SECURE_ERROR
        assert answers[0][1]["code"] == Code.MALFORMED_REQUEST
        assert all(kind is MessageType.EVENT for kind, _ in answers[1:])  # no CONNECT answer
        assert device.engine.state is State.SESSION_OPEN


async def test_a_bad_bundle_is_one_error_and_the_session_stays_open(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path)
        for tail in (
            b"\x00\x09abc",  # a truncated frame
            pack_messages([b"\x07" + b"x" * 20]),
        ):  # not a SECURE message
            hs, replies = await prove(
                NativeSession(device.port("native")), SETUP_CODE, [], raw_tail=tail
            )
            answers = opened(hs, replies)
            assert answers[0][0] is MessageType.SECURE_ERROR
            assert answers[0][1]["code"] == Code.MALFORMED_REQUEST
            assert device.engine.state is State.SESSION_OPEN
        too_many: list[tuple[MessageType, dict[str, Any] | bytes]] = [
            (MessageType.STATUS_REQUEST, {})
        ] * (device.profile.max_bundled_requests + 1)
        hs, replies = await prove(NativeSession(device.port("native")), SETUP_CODE, too_many)
        answers = opened(hs, replies)
        assert answers[0][0] is MessageType.SECURE_ERROR and len(answers) <= 2


async def test_json_nested_past_any_parser_in_a_bundle_is_one_coded_error(tmp_path: Path) -> None:
    """The proof is accepted, PAKE_CONFIRM is sent, and the nested SET_CREDENTIALS gets its
    own MALFORMED_REQUEST: the session stays open for a corrected one."""
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path)
        hs, replies = await prove(
            NativeSession(device.port("native")),
            SETUP_CODE,
            [(MessageType.SET_CREDENTIALS, b"[" * 1020 + b"]" * 1020)],
        )
        answers = opened(hs, replies)
        assert answers[0][0] is MessageType.SECURE_ERROR
        assert answers[0][1]["code"] == Code.MALFORMED_REQUEST
        assert "nested" in answers[0][1]["detail"]
        assert device.engine.state is State.SESSION_OPEN and device.store.credentials() is None


async def test_a_replayed_request_in_a_bundle_is_refused(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path)
        sent: list[bytes] = []

        def send(message: bytes) -> None:
            sent.append(message)

        hs = ClientHandshake(Secret(SETUP_CODE))
        native = NativeSession(device.port("native"))
        (challenge,) = await native.handle(
            "phone", bytes([MessageType.PAKE_START]) + hs.start(), send
        )
        proof = hs.process_challenge(challenge[1:])
        status = hs.bundle_channel().seal(MessageType.STATUS_REQUEST, encode_json({}))
        replies = await native.handle(
            "phone", bytes([MessageType.PAKE_PROOF]) + proof + pack_messages([status, status]), send
        )
        answers = opened(hs, replies)
        assert answers[0][0] is MessageType.STATUS
        assert answers[1][0] is MessageType.SECURE_ERROR
        assert answers[1][1]["code"] == Code.REPLAYED_MESSAGE
