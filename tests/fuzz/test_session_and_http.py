"""The session layer and the SoftAP HTTP API fed forged, mutated, replayed and random input:
the session layer answers every message with a coded message and never raises; every error the
HTTP API gives is the documented JSON with a code (never a 500, never text/plain)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_sim.codes import Code, MessageType
from device_sim.core.engine import Timeouts
from device_sim.core.store import DeviceStore
from device_sim.doors.native.device import NativePersonality
from device_sim.doors.native.session import NativeSession
from device_sim.doors.native.wire import ErrorBody, encode_json, split_type
from device_sim.doors.softap.door import SoftApDoor, SoftApOptions
from device_sim.options import HostPort
from device_sim.profile import load_profile
from device_sim.security.secret import Secret
from device_sim.security.session import ClientHandshake, SecureChannel
from device_sim.session.holder import SessionHolder
from device_sim.session.port import DoorPort
from device_sim.testing.stack import build_stack

from .conftest import FUZZ

PROFILE = load_profile()
CODE = Secret("2468-1357")
FAST_PROFILE = replace(
    PROFILE, softap=replace(PROFILE.softap, http=replace(PROFILE.softap.http, body_timeout_ms=200))
)
METHODS = st.sampled_from(
    [
        "GET",
        "POST",
        "PUT",
        "DELETE",
        "HEAD",
        "OPTIONS",
        "BREW",
        "G ET",
        "get",
        "POST\x00",
        "\u00e9",
        "",
    ]
)
PATHS = st.one_of(
    st.sampled_from(
        [ep.path for ep in PROFILE.softap.http.endpoints]
        + [
            "/",
            "/generate_204",
            "/hotspot-detect.html",
            "*",
            "http://x/api/v1/state",
            "//..//",
            "/%00",
            "/api/v1/state?wait_ms=-1",
            "/api/v1/events?wait_ms=99999999999",
        ]
    ),
    st.text(max_size=60).map(lambda t: "/" + t),
)
HEADER_NAMES = st.sampled_from(
    [
        "Content-Type",
        "Content-Length",
        "Transfer-Encoding",
        "Expect",
        "Cookie",
        "Host",
        "Connection",
        "X-Any",
        "Bad Name",
        "",
    ]
)
HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            "application/octet-stream",
            "application/json",
            "chunked",
            "gzip",
            "100-continue",
            "200-ok",
            "close",
            "-1",
            "99999999999",
            "0",
            "5",
            "session=abc",
            "session=",
        ]
    ),
    st.text(max_size=40),
)
# Backoff off: a fuzzer guessing codes would otherwise only ever see TOO_MANY_ATTEMPTS.
FUZZ_PROFILE = replace(
    FAST_PROFILE,
    session=replace(
        FAST_PROFILE.session, backoff=replace(FAST_PROFILE.session.backoff, free_attempts=10**9)
    ),
)
PEERS = st.sampled_from([("central-A", 1), ("central-A", 2), ("central-B", 1), ("improv", 0)])


@dataclass
class Device:
    loop: asyncio.AbstractEventLoop
    store: DeviceStore
    service: SessionHolder
    native: NativeSession
    channel: SecureChannel | None = None  # a genuine session's client end, when one is open

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    """A whole device stack (the daemon's wiring) in its own event loop (hypothesis drives it
    synchronously)."""
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    built = loop.run_until_complete(
        build_stack(
            stack,
            tmp_path / "device",
            scenario="engineering-wifi",
            profile=FUZZ_PROFILE,
            setup_code=CODE.reveal(),
            timeouts=Timeouts(60, 60, 60, 60),
        )
    )
    dev = Device(loop, built.store, built.service, NativeSession(built.port("native")))
    try:
        yield dev
    finally:
        loop.run_until_complete(stack.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _open_genuine(dev: Device, peer: Any) -> None:
    hs = ClientHandshake(CODE)
    replies = dev.run(
        dev.native.handle(peer, bytes([MessageType.PAKE_START]) + hs.start(), lambda m: None)
    )
    if replies[0][0] != MessageType.PAKE_CHALLENGE:
        return
    replies = dev.run(
        dev.native.handle(
            peer,
            bytes([MessageType.PAKE_PROOF]) + hs.process_challenge(replies[0][1:]),
            lambda m: None,
        )
    )
    if replies[0][0] == MessageType.PAKE_CONFIRM:
        dev.channel = hs.confirm(replies[0][1:])


@st.composite
def session_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """A message kind and its bytes: random, a typed random body, or a sealed request."""
    kind = draw(st.sampled_from(["random", "typed", "sealed", "sealed-mutated", "sealed-json"]))
    if kind == "random":
        return kind, draw(st.binary(min_size=0, max_size=400))
    if kind == "typed":
        t = draw(st.sampled_from(list(MessageType)))
        return kind, bytes([t]) + draw(st.binary(max_size=400))
    inner = draw(st.sampled_from([t for t in MessageType if t >= 0x10]))
    if kind == "sealed-json":
        body = encode_json(
            draw(
                st.dictionaries(
                    st.sampled_from(
                        ["ssid_hex", "passphrase", "hidden", "account", "claim_token", "x"]
                    ),
                    st.one_of(
                        st.none(),
                        st.booleans(),
                        st.integers(),
                        st.text(max_size=70),
                        st.text("0123456789abcdefABCDEFxyz", max_size=80),
                    ),
                    max_size=4,
                )
            )
        )
    else:
        body = draw(st.binary(max_size=300))
    return kind, bytes([inner]) + body


@FUZZ
@given(st.lists(st.tuples(PEERS, session_messages(), st.booleans()), min_size=1, max_size=12))
def test_session_layer(
    device: Device, fuzz_counts: Counter[str], steps: list[tuple[Any, tuple[str, bytes], bool]]
) -> None:
    fuzz_counts["session: messages"] += len(steps)
    dev = device
    for peer, (kind, data), replay in steps:
        message = data
        if kind.startswith("sealed"):
            if dev.channel is None or dev.service.session_peer is None:
                _open_genuine(dev, ("central-A", 1))
            if dev.channel is None:
                continue
            inner = MessageType(data[0])
            message = dev.channel.seal(inner, data[1:])
            if kind == "sealed-mutated" and len(message) > 1:
                i = data[-1] % len(message) if data[1:] else 1
                message = message[:i] + bytes([message[i] ^ 0x5A]) + message[i + 1 :]
            peer = ("central-A", 1)
        for _ in range(2 if replay else 1):
            replies = dev.run(dev.native.handle(peer, message, lambda m: None))
            for reply in replies:
                mtype, body = split_type(reply)  # every reply is a known message type
                if mtype is MessageType.ERROR:
                    err = ErrorBody.from_body(body)
                    assert err.code is not Code.INTERNAL_ERROR, err
        if dev.service.session_peer is None:
            dev.channel = None
        # Settle anything the message started (a join, a factory reset) before the next one.
        dev.run(asyncio.sleep(0))


# --- the SoftAP HTTP API --------------------------------------------------------------------------


@st.composite
def http_requests(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=1, max_size=300))
    method, path = draw(METHODS), draw(PATHS)
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1x", ""]))
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=5))
    body = draw(st.binary(max_size=200))
    lines = [
        f"{method} {path} {version}",
        "Host: device",
        *(f"{k}: {v}" for k, v in headers),
        "Connection: close",
    ]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


async def _ask(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes] | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(10):
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return None  # closed without an answer (e.g. after a complete 1xx)
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                if status == 100:
                    continue
                length = int(headers.get("content-length", "0"))
                return status, headers, await reader.readexactly(length)
    except (ConnectionError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()


@pytest.fixture
def softap(device: Device, tmp_path: Path) -> Iterator[tuple[Device, SoftApDoor]]:
    native = NativePersonality(DoorPort(device.service, "native"))  # native's HTTP API
    door = SoftApDoor(
        DoorPort(device.service, "softap"),
        SoftApOptions(
            listen=HostPort("127.0.0.1", 0), lan=HostPort("127.0.0.1", 0), state_dir=tmp_path
        ),
        routes=native.http_routes,
    )
    device.run(door.start())
    try:
        yield device, door
    finally:
        device.run(door.stop())
        native.close()


@FUZZ
@given(http_requests())
def test_http_api(softap: tuple[Device, SoftApDoor], fuzz_counts: Counter[str], raw: bytes) -> None:
    fuzz_counts["http: requests"] += 1
    dev, door = softap
    if not door.ap.up:  # a fuzzed provision joined: bring the AP back for the next input
        dev.run(door.start())
    answer = dev.run(_ask(door.ap.port, raw))
    if answer is None:
        return
    status, headers, body = answer
    assert status < 500, (raw[:120], status, body[:200])
    if status >= 400:
        assert headers.get("content-type", "").startswith("application/json"), (raw[:120], headers)
        error = json.loads(body)
        assert isinstance(error.get("code"), int) and error.get("code_name"), error
