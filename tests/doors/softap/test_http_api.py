"""The SoftAP door's HTTP API on loopback: the whole flow with the reference client, the one-radio
lifecycle (AP down while joining, back after a failure, the lan listener after a success), every
kind of bad input with its status and code, routes against the profile, and no secrets in logs or
public answers."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from device_sim.codes import Code, MessageType, State
from device_sim.core.events import DiagnosticEvent
from device_sim.doors.native.client import ClientSession
from device_sim.doors.native.flow import Provisioner, Target, provision
from device_sim.doors.native.http_link import HttpLink
from device_sim.doors.native.wire import ErrorBody, decode_json, encode_json, unpack_messages
from device_sim.network.scenario import load_scenario
from device_sim.profile import Profile
from device_sim.security.secret import Secret
from device_sim.security.session import ClientHandshake, SecureChannel

from .conftest import SETUP_CODE, Stack, StackFactory, until

HOME = load_scenario("typical-home").default_credentials
HOME_PASSPHRASE = HOME.passphrase or ""
WRONG_CODE = "1111-2222"
BLE_RESULT_KEYS = {
    "state",
    "code",
    "code_name",
    "message",
    "next_step",
    "detail",
    "timings_ms",
    "gatt_round_trips",
    "events",
    "device",
}
JSON_ERROR_KEYS = {"code", "code_name", "message", "next_step", "detail", "retry_after_ms"}
WAIT = 10.0  # upper bound of any wait in this file; tests normally finish far sooner


# --- helpers --------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    content_type: str
    body: bytes

    def json(self) -> Any:
        assert self.content_type == "application/json", (self.status, self.content_type)
        return json.loads(self.body)


class RawClient:
    """A client of the door driven request by request (no retries, every status visible)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, profile: Profile) -> None:
        self.http, self.url, self.profile = http, url, profile
        self.conf = profile.softap.http
        self.cookie: str | None = None
        self.channel: SecureChannel | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        data: Any = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        cookie: bool = True,
    ) -> Reply:
        h = dict(headers or {})
        if content_type is not None:
            h["Content-Type"] = content_type
        if cookie and self.cookie is not None:
            h["Cookie"] = f"{self.conf.session_cookie}={self.cookie}"
        async with asyncio.timeout(WAIT):
            async with self.http.request(
                method, self.url + path, data=data, headers=h, allow_redirects=False
            ) as resp:
                body = await resp.read()
                set_cookie = resp.cookies.get(self.conf.session_cookie)
                if set_cookie is not None:
                    self.cookie = set_cookie.value
                return Reply(resp.status, resp.headers, resp.content_type, body)

    async def send(self, message: bytes, **kw: Any) -> Reply:
        return await self.request(
            "POST",
            "/api/v1/message",
            data=message,
            content_type=self.conf.message_content_type,
            **kw,
        )

    def messages(self, reply: Reply) -> list[bytes]:
        assert reply.content_type == self.conf.messages_content_type, reply
        return unpack_messages(reply.body)

    def clear_error(self, reply: Reply) -> ErrorBody:
        """The one clear ERROR a session-level error answer holds."""
        messages = self.messages(reply)
        assert len(messages) == 1 and messages[0][0] == MessageType.ERROR, messages
        return ErrorBody.from_body(messages[0][1:])

    async def handshake(self, code: str = SETUP_CODE) -> Reply:
        """PAKE_START + PAKE_PROOF; keeps the channel on success; returns the last answer."""
        hs = ClientHandshake(Secret(code))
        reply = await self.send(bytes([MessageType.PAKE_START]) + hs.start())
        if reply.status != 200:
            return reply
        (challenge,) = self.messages(reply)
        assert challenge[0] == MessageType.PAKE_CHALLENGE
        reply = await self.send(
            bytes([MessageType.PAKE_PROOF]) + hs.process_challenge(challenge[1:])
        )
        if reply.status == 200:
            confirm, *events = self.messages(reply)
            assert confirm[0] == MessageType.PAKE_CONFIRM
            self.channel = hs.confirm(confirm[1:])
            opened = [self.open(m) for m in events]  # the session_open event, sealed
            assert [(k, e["state"]) for k, e in opened] == [(MessageType.EVENT, "session_open")]
        return reply

    def open(self, message: bytes) -> tuple[MessageType, dict[str, Any]]:
        assert self.channel is not None
        kind, body = self.channel.open(message)
        return kind, decode_json(body)

    async def call(
        self, inner: MessageType, body: dict[str, Any]
    ) -> tuple[Reply, list[tuple[MessageType, dict[str, Any]]]]:
        """One sealed request; the answer's messages opened (events included)."""
        assert self.channel is not None
        reply = await self.send(self.channel.seal(inner, encode_json(body)))
        assert reply.status == 200, reply
        return reply, [self.open(m) for m in self.messages(reply)]


def assert_json_error(profile: Profile, reply: Reply, status: int, code: Code) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body)
    err = reply.json()
    assert set(err) == JSON_ERROR_KEYS, err
    entry = profile.code(code)
    assert (err["code"], err["code_name"]) == (entry.id, entry.name), err
    assert (err["message"], err["next_step"]) == (entry.user_message, entry.next_step)
    return dict(err)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


@asynccontextmanager
async def app_session(profile: Profile, url: str) -> AsyncIterator[tuple[HttpLink, ClientSession]]:
    """The reference client's HttpLink with an open secure session."""
    async with HttpLink(profile, url) as link:
        session = ClientSession(link, timeout=WAIT)
        await session.open(Secret(SETUP_CODE))
        yield link, session
        kind, _ = await session.call(MessageType.END_SESSION, {})
        assert kind is MessageType.ACK


def session_closed_event(stack: Stack) -> tuple[asyncio.Event, list[tuple[Hashable, Code]]]:
    closed = asyncio.Event()
    seen: list[tuple[Hashable, Code]] = []

    def on_closed(peer: Hashable, code: Code) -> None:
        seen.append((peer, code))
        closed.set()

    stack.service.follow_sessions(closed=on_closed)
    return closed, seen


async def next_event_until(session: ClientSession, state: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["state"] != state:
        events.append(await session.next_event(WAIT))
    return events


def home_creds(passphrase: str = HOME_PASSPHRASE) -> dict[str, Any]:
    return {"ssid_hex": HOME.ssid.hex(), "passphrase": passphrase, "hidden": False}


# --- 1-3: the whole flow and the one-radio lifecycle ---------------------------------------------


async def test_whole_flow_over_http_ends_online(make_stack: StackFactory, profile: Profile) -> None:
    stack = await make_stack()
    result = await provision(
        profile,
        Target(softap_url=stack.url),
        setup_code=Secret(SETUP_CODE),
        ssid=HOME.ssid,
        passphrase=Secret(HOME_PASSPHRASE),
        outcome_timeout=WAIT,
    )
    assert (result["state"], result["code_name"]) == ("online", "OK"), result
    assert result["transport"] == "softap"
    assert set(result) >= BLE_RESULT_KEYS, BLE_RESULT_KEYS - set(result)
    assert result["code"] == 0 and result["message"] == profile.code(Code.OK).user_message
    phases = [e["phase"] for e in result["events"]]
    assert phases.index("joining") < phases.index("dhcp") < phases.index("online"), phases
    assert result["gatt_round_trips"] == 2  # PAKE_START; PAKE_PROOF + SET_CREDENTIALS + CONNECT
    assert result["device"]["transport"] == "softap" and result["device"]["url"] == stack.url
    assert result["device"]["name"] == stack.door.ap_config.ssid
    assert all(
        result["timings_ms"][k] is not None
        for k in ("connect", "session", "credentials", "join", "verify", "total")
    )
    assert stack.engine.state is State.ONLINE
    assert stack.store.credentials().ssid == HOME.ssid


async def test_a_revision_1_device_gets_the_four_step_flow(
    make_stack: StackFactory, profile: Profile
) -> None:
    """A device that announces revision 1 never sees a proof bundle: the client sends M1
    alone, then SET_CREDENTIALS and CONNECT, one round trip each."""
    old = replace(profile, protocol_revision=1)
    stack = await make_stack(profile=old)
    result = await provision(
        profile,
        Target(softap_url=stack.url),
        setup_code=Secret(SETUP_CODE),
        ssid=HOME.ssid,
        passphrase=Secret(HOME_PASSPHRASE),
        outcome_timeout=WAIT,
    )
    assert (result["state"], result["code_name"]) == ("online", "OK"), result
    assert result["gatt_round_trips"] == 4


async def test_wrong_passphrase_then_right_one_in_the_same_session(
    make_stack: StackFactory, profile: Profile
) -> None:
    stack = await make_stack()
    result = await provision(
        profile,
        Target(softap_url=stack.url),
        setup_code=Secret(SETUP_CODE),
        ssid=HOME.ssid,
        passphrase=Secret("not-the-password"),
        outcome_timeout=WAIT,
        retries=[(HOME.ssid, Secret(HOME_PASSPHRASE), False)],
    )
    first, second = result["attempts"]
    assert (first["state"], first["code_name"]) == ("failed", "WRONG_CREDENTIALS"), first
    assert (second["state"], second["code_name"]) == ("online", "OK"), second
    assert result["state"] == "online" and stack.engine.record.attempt == 2


async def test_ap_is_down_while_joining_and_back_with_the_failure(
    make_stack: StackFactory, profile: Profile
) -> None:
    stack = await make_stack()
    ap_ssid = stack.door.ap_config.ssid
    assert stack.door.ap_up and stack.backend.access_point is not None
    during_join: list[tuple[str, bool, Any]] = []

    def record(event: DiagnosticEvent) -> None:
        # The `joining` transition is committed before CONNECT is acknowledged (the ACK must
        # still reach the phone over the AP); every event of the join itself comes after the
        # radio was released.
        if event.state in (State.JOINING, State.VERIFYING) and event.phase != "joining":
            during_join.append((event.phase, stack.door.ap_up, stack.backend.access_point))

    unsubscribe = stack.engine.events.subscribe(record)
    try:
        async with app_session(profile, stack.url) as (link, session):
            await session.call(MessageType.SET_CREDENTIALS, home_creds("not-the-password"))
            await session.call(MessageType.CONNECT, {})
            events = await next_event_until(session, "failed")
    finally:
        unsubscribe()
    assert during_join, "no event during the join"
    assert {"scanning", "associating", "authenticating"} <= {p for p, _, _ in during_join}
    assert all(not up and radio is None for _, up, radio in during_join), during_join
    failed = events[-1]
    assert (failed["code"], failed["code_name"]) == (
        int(Code.WRONG_CREDENTIALS),
        "WRONG_CREDENTIALS",
    ), failed
    # The AP is back (same SSID, same URL) and tells anyone the outcome.
    assert stack.door.ap_up and stack.backend.access_point is not None
    assert stack.backend.access_point.ssid == ap_ssid
    assert link.base == stack.url  # the outcome came over the AP, not the lan listener
    assert not stack.door.lan.up
    async with aiohttp.ClientSession() as http, http.get(stack.url + "/api/v1/state") as resp:
        state = await resp.json()
    assert (state["state"], state["code_name"]) == ("failed", "WRONG_CREDENTIALS"), state
    assert state["code"] == int(Code.WRONG_CREDENTIALS)


async def test_after_success_ap_stays_down_and_lan_closes_with_the_session(
    make_stack: StackFactory, profile: Profile
) -> None:
    stack = await make_stack()
    closed, closes = session_closed_event(stack)
    prov = Provisioner(profile, Target(softap_url=stack.url), Secret(SETUP_CODE))
    async with prov:
        outcome = await prov.attempt(HOME.ssid, Secret(HOME_PASSPHRASE), outcome_timeout=WAIT)
        assert outcome["state"] == "online", outcome
        assert stack.door.ap_up is False and stack.backend.access_point is None
        assert stack.door.lan.up
        assert isinstance(prov.link, HttpLink)
        assert prov.link.base == stack.door.lan.url  # the outcome was read on the lan listener
        async with aiohttp.ClientSession() as http:
            async with http.get(stack.door.lan.url + "/api/v1/state") as resp:
                assert (await resp.json())["state"] == "online"
            assert not await answered(http, stack.url + "/api/v1/state")  # the AP stays down
        assert not closed.is_set()
    # Provisioner's exit sent END_SESSION over the lan listener.
    async with asyncio.timeout(WAIT):
        await closed.wait()
    assert [code for _, code in closes] == [Code.OK]
    await until(lambda: not stack.door.lan.up, "the lan listener to close")
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*list(stack.door._tasks))
    async with aiohttp.ClientSession() as http:
        assert not await answered(http, stack.door.lan.url + "/api/v1/state")
    assert stack.door.ap_up is False and stack.engine.state is State.ONLINE


async def answered(http: aiohttp.ClientSession, url: str, within_s: float = 0.3) -> bool:
    """Whether a GET of ``url`` is answered within ``within_s``. A closed listener keeps its
    socket (no other listener can take the port), so a request to it waits unanswered."""
    try:
        async with asyncio.timeout(within_s):
            async with http.get(url) as resp:
                await resp.read()
                return True
    except TimeoutError:
        return False


# --- 4: bad input, each with its status and code --------------------------------------------------


async def test_wrong_content_type_is_415(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    start = bytes([MessageType.PAKE_START]) + ClientHandshake(Secret(SETUP_CODE)).start()
    for ctype in ("application/octet-stream", "application/json"):
        reply = await raw.request("POST", "/api/v1/message", data=start, content_type=ctype)
        assert_json_error(profile, reply, 415, Code.UNSUPPORTED_MEDIA_TYPE)
    reply = await raw.request(
        "POST",
        "/portal/v1/provision",
        content_type="text/plain",
        data=json.dumps({"setup_code": SETUP_CODE, "ssid": "x"}),
    )
    assert_json_error(profile, reply, 415, Code.UNSUPPORTED_MEDIA_TYPE)
    reply = await raw.request(
        "POST",
        "/portal/v1/provision",
        data=b"setup_code=24681357&ssid=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert_json_error(profile, reply, 415, Code.UNSUPPORTED_MEDIA_TYPE)
    assert stack.service.session_peer is None and raw.cookie is None


async def test_body_over_the_message_limit_is_413(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    limit = profile.framing.max_message_length
    big = bytes([MessageType.PAKE_START]) + bytes(limit)  # one byte over
    err = assert_json_error(profile, await raw.send(big), 413, Code.MESSAGE_TOO_LARGE)
    assert str(limit) in err["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to judge by
        yield bytes([MessageType.PAKE_START])
        for _ in range(limit // 1024 + 1):
            yield bytes(1024)

    reply = await raw.send(chunks())  # type: ignore[arg-type]
    assert_json_error(profile, reply, 413, Code.MESSAGE_TOO_LARGE)
    # Exactly at the limit the body is read and judged by the session layer instead.
    reply = await raw.send(bytes([0x7F]) + bytes(limit - 1))
    assert reply.status != 413
    # The portal's JSON bodies have their own, smaller limit.
    reply = await raw.request(
        "POST",
        "/portal/v1/provision",
        content_type="application/json",
        data=json.dumps(
            {"setup_code": SETUP_CODE, "ssid": "x" * profile.softap.http.max_json_bytes}
        ),
    )
    assert_json_error(profile, reply, 413, Code.MESSAGE_TOO_LARGE)
    assert stack.service.session_peer is None


async def test_slow_body_is_408(make_stack: StackFactory, profile: Profile) -> None:
    http_conf = replace(profile.softap.http, body_timeout_ms=300)
    short = replace(profile, softap=replace(profile.softap, http=http_conf))
    stack = await make_stack(profile=short)
    host, port = stack.door.ap.host, stack.door.ap.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            (
                f"POST /api/v1/message HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: {profile.softap.http.message_content_type}\r\n"
                "Content-Length: 100\r\n\r\n"
            ).encode()
            + b"\x01"
            + bytes(9)
        )
        await writer.drain()
        async with asyncio.timeout(WAIT):  # the server answers on its own; we send nothing more
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
        await writer.wait_closed()
    assert lines[0].split(" ", 2)[1] == "408", lines[0]
    assert headers["content-type"].startswith("application/json")
    err = json.loads(body)
    assert set(err) == JSON_ERROR_KEYS
    assert (err["code"], err["code_name"]) == (int(Code.CLIENT_TIMEOUT), "CLIENT_TIMEOUT")
    assert stack.service.session_peer is None


async def test_empty_body_unknown_type_and_secure_without_cookie(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    assert_json_error(profile, await raw.send(b""), 400, Code.MALFORMED_REQUEST)
    # Not a request at all: answered like over BLE, with a clear ERROR, cookie or not.
    for message in (b"\x7f", bytes([MessageType.ACK]) + b"{}"):
        reply = await raw.send(message)
        assert reply.status == 400, reply
        assert raw.clear_error(reply).code is Code.MALFORMED_REQUEST
    sealed = bytes([MessageType.SECURE]) + bytes(40)
    assert_json_error(profile, await raw.send(sealed), 401, Code.SESSION_REQUIRED)
    proof = bytes([MessageType.PAKE_PROOF]) + bytes(64)
    assert_json_error(profile, await raw.send(proof), 401, Code.SESSION_REQUIRED)
    assert raw.cookie is None and stack.service.session_peer is None
    # With a cookie (handshake started) the session layer answers an unknown type.
    hs = ClientHandshake(Secret(SETUP_CODE))
    assert (await raw.send(bytes([MessageType.PAKE_START]) + hs.start())).status == 200
    assert raw.cookie is not None
    reply = await raw.send(b"\x7f")
    assert reply.status == 400 and raw.clear_error(reply).code is Code.MALFORMED_REQUEST
    # Inside an established session it is reported inside the channel.
    assert (await raw.handshake()).status == 200
    reply = await raw.send(b"\x7f")
    assert reply.status == 200
    (answer,) = raw.messages(reply)
    kind, body = raw.open(answer)
    assert (kind, body["code_name"]) == (MessageType.SECURE_ERROR, "MALFORMED_REQUEST")
    _, opened = await raw.call(MessageType.STATUS_REQUEST, {})
    assert opened[0][0] is MessageType.STATUS and opened[0][1]["state"] == "session_open"


async def test_second_client_is_busy_until_the_first_ends(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    first, second = RawClient(http, stack.url, profile), RawClient(http, stack.url, profile)
    assert (await first.handshake()).status == 200
    reply = await second.send(
        bytes([MessageType.PAKE_START]) + ClientHandshake(Secret(SETUP_CODE)).start()
    )
    assert reply.status == 409, reply
    assert second.clear_error(reply).code is Code.BUSY
    assert (await second.handshake()).status == 409
    # The holder is not disturbed.
    _, opened = await first.call(MessageType.STATUS_REQUEST, {})
    assert opened[0][1]["state"] == "session_open"
    _, opened = await first.call(MessageType.END_SESSION, {})
    assert opened[0] == (MessageType.ACK, {"request": "END_SESSION"})
    assert stack.service.session_peer is None
    assert (await second.handshake()).status == 200 and second.channel is not None
    _, opened = await second.call(MessageType.STATUS_REQUEST, {})
    assert opened[0][1]["state"] == "session_open"


async def test_wrong_setup_codes_back_off_across_app_and_portal(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    free = profile.session.backoff.free_attempts
    assert free >= 2
    raw = RawClient(http, stack.url, profile)
    for n in range(1, free):  # all but one free attempt through the app's handshake
        reply = await raw.handshake(WRONG_CODE)
        assert reply.status == 403, reply
        err = raw.clear_error(reply)
        assert err.code is Code.WRONG_SETUP_CODE and err.retry_after_ms == 0
        assert stack.store.auth_failures()[0] == n
    assert stack.service.session_peer is None
    # The last free one through the page: it counts too, and starts the wait.
    portal = {"setup_code": WRONG_CODE, "ssid": "Miller Family", "passphrase": HOME_PASSPHRASE}
    reply = await raw.request(
        "POST", "/portal/v1/provision", data=json.dumps(portal), content_type="application/json"
    )
    refused = assert_json_error(profile, reply, 403, Code.WRONG_SETUP_CODE)
    assert refused["retry_after_ms"] > 0 and int(reply.headers["Retry-After"]) >= 1
    assert stack.store.auth_failures()[0] == free
    # Now both doors refuse, even the right code, until the wait is over.
    reply = await raw.send(
        bytes([MessageType.PAKE_START]) + ClientHandshake(Secret(SETUP_CODE)).start()
    )
    assert reply.status == 429, reply
    err_body = raw.clear_error(reply)
    assert err_body.code is Code.TOO_MANY_ATTEMPTS and err_body.retry_after_ms > 0
    assert int(reply.headers["Retry-After"]) == -(-err_body.retry_after_ms // 1000)
    reply = await raw.request(
        "POST",
        "/portal/v1/provision",
        content_type="application/json",
        data=json.dumps({**portal, "setup_code": SETUP_CODE}),
    )
    waiting = assert_json_error(profile, reply, 429, Code.TOO_MANY_ATTEMPTS)
    assert waiting["retry_after_ms"] > 0 and int(reply.headers["Retry-After"]) >= 1
    assert stack.service.session_peer is None and stack.engine.state is State.UNPROVISIONED
    assert stack.store.credentials() is None


async def test_replayed_secure_message(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    assert (await raw.handshake()).status == 200
    assert raw.channel is not None
    sealed = raw.channel.seal(MessageType.STATUS_REQUEST, b"{}")
    reply = await raw.send(sealed)
    assert reply.status == 200 and raw.open(raw.messages(reply)[0])[0] is MessageType.STATUS
    replay = await raw.send(sealed)
    # Reported as a clear ERROR (the session layer never seals a SessionError), in the
    # messages content type with the code's status; the session goes on.
    assert replay.status == 400, replay
    assert raw.clear_error(replay).code is Code.REPLAYED_MESSAGE
    peer = stack.service.session_peer
    assert peer is not None
    _, opened = await raw.call(MessageType.STATUS_REQUEST, {})
    assert opened[0][0] is MessageType.STATUS and opened[0][1]["state"] == "session_open"
    assert stack.service.session_peer == peer
    # A tampered copy (right counter, broken tag) is the same code and spends no counter: the
    # genuine message with that counter still opens afterwards.
    genuine = raw.channel.seal(MessageType.SET_CREDENTIALS, encode_json(home_creds()))
    forged = bytearray(genuine)
    forged[-1] ^= 1
    reply = await raw.send(bytes(forged))
    assert reply.status == 400 and raw.clear_error(reply).code is Code.REPLAYED_MESSAGE
    reply = await raw.send(genuine)
    assert reply.status == 200
    assert raw.open(raw.messages(reply)[0]) == (MessageType.ACK, {"request": "SET_CREDENTIALS"})
    assert stack.engine.state is State.CREDENTIALS_RECEIVED


async def test_cookie_from_another_client_address_is_refused(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    first = RawClient(http, stack.url, profile)
    assert (await first.handshake()).status == 200
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as other_http:
        thief = RawClient(other_http, stack.url, profile)
        thief.cookie = first.cookie
        assert first.channel is not None
        stolen = first.channel.seal(MessageType.STATUS_REQUEST, b"{}")
        assert_json_error(profile, await thief.send(stolen), 401, Code.SESSION_REQUIRED)
        events = await thief.request("GET", "/api/v1/events?wait_ms=0")
        assert_json_error(profile, events, 401, Code.SESSION_REQUIRED)
        start = bytes([MessageType.PAKE_START]) + ClientHandshake(Secret(SETUP_CODE)).start()
        assert_json_error(profile, await thief.send(start), 401, Code.SESSION_REQUIRED)
        # Without the cookie it is just another client: BUSY, not a takeover.
        thief.cookie = None
        reply = await thief.send(start)
        assert reply.status == 409 and thief.clear_error(reply).code is Code.BUSY
    # The owner's counters were untouched: the message the thief replayed is still the next one.
    reply = await first.send(stolen)
    assert reply.status == 200 and first.open(first.messages(reply)[0])[0] is MessageType.STATUS


async def test_events_endpoint(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    assert_json_error(
        profile, await raw.request("GET", "/api/v1/events?wait_ms=0"), 401, Code.SESSION_REQUIRED
    )
    assert (await raw.handshake()).status == 200
    reply = await raw.request("GET", "/api/v1/events?wait_ms=100")
    assert reply.status == 204 and reply.body == b""
    for bad in ("abc", "-1", "1.5"):
        reply = await raw.request("GET", f"/api/v1/events?wait_ms={bad}")
        assert_json_error(profile, reply, 400, Code.MALFORMED_REQUEST)
    # A pushed event waits in the outbox and is delivered, sealed, to the holder.
    stack.engine.note("test", "hello")
    reply = await raw.request("GET", "/api/v1/events?wait_ms=1000")
    assert reply.status == 200
    (event,) = [raw.open(m) for m in raw.messages(reply)]
    assert event[0] is MessageType.EVENT and event[1]["phase"] == "test"


async def test_events_are_kept_until_acknowledged(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    """A poll with ``after`` leaves its messages queued until a later poll acknowledges them:
    an answer lost with its request (a connection dropped as the AP goes down, a request left in
    a listener's backlog) is sent again, not lost."""
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    assert (await raw.handshake()).status == 200
    stack.engine.note("test", "one")
    stack.engine.note("test", "two")
    first = raw.messages(await raw.request("GET", "/api/v1/events?wait_ms=1000&after=0"))
    assert len(first) == 2
    again = raw.messages(await raw.request("GET", "/api/v1/events?wait_ms=0&after=0"))
    assert again == first  # not acknowledged: the same two, again
    assert [raw.open(m)[1]["detail"] for m in again] == ["one", "two"]
    stack.engine.note("test", "three")
    rest = raw.messages(await raw.request("GET", "/api/v1/events?wait_ms=1000&after=2"))
    assert [raw.open(m)[1]["detail"] for m in rest] == ["three"]
    reply = await raw.request("GET", "/api/v1/events?wait_ms=0&after=3")
    assert reply.status == 204  # all three acknowledged
    for bad in ("2", "4", "-1", "x"):  # behind what was acknowledged, ahead of what was sent
        reply = await raw.request("GET", f"/api/v1/events?wait_ms=0&after={bad}")
        assert_json_error(profile, reply, 400, Code.MALFORMED_REQUEST)


async def test_two_polls_at_once_both_get_the_messages(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    """A phone polling the AP and the home network at once: with ``after`` both waiting polls
    get the same messages and the phone keeps one answer; nothing is split between them."""
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    assert (await raw.handshake()).status == 200
    polls = [
        asyncio.create_task(raw.request("GET", "/api/v1/events?wait_ms=20000&after=0"))
        for _ in range(2)
    ]
    await until(lambda: any(box.waiting == 2 for box in stack.door.clients), "both polls to wait")
    stack.engine.note("test", "for both")
    first, second = await asyncio.gather(*polls)
    assert raw.messages(first) == raw.messages(second)  # the same sealed message, twice
    assert [raw.open(m)[1]["detail"] for m in raw.messages(first)] == ["for both"]


async def test_a_listener_holds_its_port_while_it_is_down(make_stack: StackFactory) -> None:
    """The AP's socket is bound from the door's start to its stop: while the AP is down for a
    join, no other listener on the host can take its port (a phone would talk to another
    device); the request a phone sends meanwhile is answered when the AP comes back."""
    stack = await make_stack()
    door = stack.door
    async with door._lock:
        await door._take_down()
    assert not door.ap_up
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError) as refused:
            other.bind((door.ap.host, door.ap.port))
        assert refused.value.errno == errno.EADDRINUSE
    async with aiohttp.ClientSession() as http:
        waiting = asyncio.create_task(http.get(door.ap.url + "/api/v1/state"))
        assert not await answered(http, door.ap.url + "/api/v1/state")
        async with door._lock:
            await door._bring_up()
        async with asyncio.timeout(WAIT):
            resp = await waiting
        assert resp.status == 200 and (await resp.json())["state"] == "unprovisioned"
        resp.release()


async def test_idle_session_times_out(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    # A short handshake timeout too (but room for a slow machine's SRP): see the next test.
    quick = replace(profile, session=replace(profile.session, handshake_timeout_ms=1000))
    stack = await make_stack(idle_timeout_s=0.3, profile=quick)
    closed, closes = session_closed_event(stack)
    raw = RawClient(http, stack.url, profile)
    assert (await raw.handshake()).status == 200
    assert stack.engine.state is State.SESSION_OPEN
    async with asyncio.timeout(5):
        await closed.wait()
    assert [code for _, code in closes] == [Code.CLIENT_TIMEOUT]
    reply = await raw.request("GET", "/api/v1/events?wait_ms=0")
    assert reply.status == 200
    assert raw.clear_error(reply).code is Code.CLIENT_TIMEOUT
    assert_json_error(
        profile, await raw.request("GET", "/api/v1/events?wait_ms=0"), 401, Code.SESSION_REQUIRED
    )
    assert stack.engine.state is State.UNPROVISIONED
    assert stack.service.session_peer is None


async def test_idle_timeout_shorter_than_the_handshake_timeout(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    assert profile.session.handshake_timeout_ms >= 5000
    stack = await make_stack(idle_timeout_s=0.3)
    closed, closes = session_closed_event(stack)
    raw = RawClient(http, stack.url, profile)
    assert (await raw.handshake()).status == 200
    async with asyncio.timeout(1.5):  # 0.3 s idle timeout, not the 10 s handshake timeout
        await closed.wait()
    assert [code for _, code in closes] == [Code.CLIENT_TIMEOUT]


async def test_portal_provision_bad_bodies(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    good = {"setup_code": SETUP_CODE, "ssid": "Miller Family", "passphrase": HOME_PASSPHRASE}

    async def submit(body: Any) -> Reply:
        data = body if isinstance(body, bytes) else json.dumps(body)
        return await raw.request(
            "POST", "/portal/v1/provision", data=data, content_type="application/json"
        )

    bad_bodies: list[Any] = [
        b"{not json",
        b"\xff\xfe",
        [good],
        "just a string",
        None,
        b"[" * 1020 + b"]" * 1020,  # nested past any parser
        {**good, "extra": 1},
        {**good, "ssid_hex": HOME.ssid.hex()},  # both ssid and ssid_hex
        {"setup_code": SETUP_CODE, "passphrase": HOME_PASSPHRASE},  # neither
        {**{k: v for k, v in good.items() if k != "ssid"}, "ssid_hex": "zz"},
        {**{k: v for k, v in good.items() if k != "ssid"}, "ssid_hex": 41},
        {**good, "passphrase": 12345678},
        {**good, "hidden": "yes"},
        {**good, "setup_code": 24681357},
        {k: v for k, v in good.items() if k != "setup_code"},
    ]
    for body in bad_bodies:
        assert_json_error(profile, await submit(body), 400, Code.MALFORMED_REQUEST)
    # A setup code that is not 8 digits cannot be right, but is no guess at the code either.
    for code in ("12", "2468-135x", ""):
        assert_json_error(
            profile, await submit({**good, "setup_code": code}), 403, Code.WRONG_SETUP_CODE
        )
    assert stack.store.auth_failures()[0] == 0
    assert stack.service.session_peer is None and stack.store.credentials() is None
    # The right code with an impossible WPA passphrase: nothing stored, nothing started.
    assert_json_error(
        profile, await submit({**good, "passphrase": "short"}), 400, Code.INVALID_CREDENTIALS_FORMAT
    )
    assert stack.store.credentials() is None and stack.door.ap_up
    # The same browser corrects the passphrase and is not locked out by its own page session.
    reply = await submit(good)
    assert reply.status == 202, reply
    accepted = reply.json()
    assert accepted["accepted"] is True and accepted["lan_url"] == stack.door.lan.url
    record = await stack.engine.wait_settled(WAIT)
    assert record.state is State.ONLINE and stack.store.credentials().ssid == HOME.ssid


async def test_non_utf8_ssid_is_kept_as_bytes(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    app_ssid, page_ssid = b"\xff\xfeA", b"\xc3(caf\xe9"
    async with app_session(profile, stack.url) as (_, session):
        kind, body = await session.call(
            MessageType.SET_CREDENTIALS,
            {"ssid_hex": app_ssid.hex(), "passphrase": HOME_PASSPHRASE, "hidden": False},
        )
        assert (kind, body) == (MessageType.ACK, {"request": "SET_CREDENTIALS"})
        assert stack.store.credentials().ssid == app_ssid
        await session.call(MessageType.CONNECT, {})
        failed = (await next_event_until(session, "failed"))[-1]
        assert failed["code_name"] == "NETWORK_NOT_FOUND"  # no such network: still these bytes
        kind, status = await session.call(MessageType.STATUS_REQUEST, {})
        assert kind is MessageType.STATUS and status["ssid_hex"] == app_ssid.hex()
    assert stack.store.credentials().ssid == app_ssid
    raw = RawClient(http, stack.url, profile)
    reply = await raw.request(
        "POST",
        "/portal/v1/provision",
        content_type="application/json",
        data=json.dumps(
            {
                "setup_code": SETUP_CODE,
                "ssid_hex": page_ssid.hex().upper(),
                "passphrase": HOME_PASSPHRASE,
            }
        ),
    )
    assert reply.status == 202, reply
    assert stack.store.credentials().ssid == page_ssid
    record = await stack.engine.wait_settled(WAIT)
    assert (record.state, record.code) == (State.FAILED, Code.NETWORK_NOT_FOUND)
    assert stack.store.credentials().ssid == page_ssid


async def test_unknown_path_is_404_and_wrong_method_405(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    for method in ("GET", "POST", "DELETE"):
        reply = await raw.request(method, "/api/v1/nope")
        assert_json_error(profile, reply, 404, Code.MALFORMED_REQUEST)
    reply = await raw.request("GET", "/api/v1/message")
    assert_json_error(profile, reply, 405, Code.MALFORMED_REQUEST)
    assert reply.headers.get("Allow") == "POST"
    reply = await raw.request("POST", "/api/v1/state", data=b"{}", content_type="application/json")
    assert_json_error(profile, reply, 405, Code.MALFORMED_REQUEST)
    assert reply.headers.get("Allow") == "GET"


# --- 5: routes match the profile ------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["ap", "lan"])
async def test_routes_match_the_profile(
    make_stack: StackFactory, profile: Profile, listener: str
) -> None:
    stack = await make_stack(start=False)
    app = stack.door._routes.app(listener)
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    listed = {
        (ep.method, ep.path) for ep in profile.softap.http.endpoints if listener in ep.listeners
    }
    assert listed, f"no endpoint for the {listener} listener in the profile"
    assert listed <= registered, listed - registered
    extra = registered - listed
    if listener == "ap":
        # The OS connectivity probes and the captive catch-all, and nothing else.
        assert extra == {("GET", p.path) for p in profile.softap.probes} | {("*", "/{tail}")}
        assert ("POST", "/portal/v1/provision") in registered
    else:
        assert extra == {("*", "/{tail}")}  # the catch-all that answers in coded JSON
        assert not any(
            path.startswith(("/portal/", "/captive")) or path == "/" for _, path in registered
        )
    # Served, that app answers what it lacks with coded JSON too.
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        raw = RawClient(http, str(server.make_url("")).rstrip("/"), profile)
        assert_json_error(
            profile, await raw.request("GET", "/api/v1/nope"), 404, Code.MALFORMED_REQUEST
        )
        reply = await raw.request("GET", "/api/v1/message")
        assert_json_error(profile, reply, 405, Code.MALFORMED_REQUEST)
        assert reply.headers.get("Allow") == "POST"
        if listener == "lan":
            assert_json_error(
                profile,
                await raw.request("GET", "/portal/v1/networks"),
                404,
                Code.MALFORMED_REQUEST,
            )


# --- 6-7: no secrets in logs or public answers ----------------------------------------------------


async def test_secrets_are_never_logged(
    make_stack: StackFactory,
    profile: Profile,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_passphrase = "Not-The-Garden-77"
    # The browser page: a wrong code, then the whole provision.
    page = await make_stack()
    raw = RawClient(http, page.url, profile)
    submit = {"setup_code": WRONG_CODE, "ssid": "Miller Family", "passphrase": HOME_PASSPHRASE}
    reply = await raw.request(
        "POST", "/portal/v1/provision", data=json.dumps(submit), content_type="application/json"
    )
    assert reply.status == 403
    reply = await raw.request(
        "POST",
        "/portal/v1/provision",
        content_type="application/json",
        data=json.dumps({**submit, "setup_code": SETUP_CODE}),
    )
    assert reply.status == 202, reply
    assert (await page.engine.wait_settled(WAIT)).state is State.ONLINE
    # The app: a wrong passphrase, then the right one, in one session.
    app = await make_stack()
    result = await provision(
        profile,
        Target(softap_url=app.url),
        setup_code=Secret(SETUP_CODE),
        ssid=HOME.ssid,
        passphrase=Secret(wrong_passphrase),
        outcome_timeout=WAIT,
        retries=[(HOME.ssid, Secret(HOME_PASSPHRASE), False)],
    )
    assert [a["code_name"] for a in result["attempts"]] == ["WRONG_CREDENTIALS", "OK"]

    secrets = {
        HOME_PASSPHRASE,
        wrong_passphrase,
        SETUP_CODE,
        SETUP_CODE.replace("-", ""),
        WRONG_CODE,
        WRONG_CODE.replace("-", ""),
    }
    for stack in (page, app):
        ap_pass = stack.door.identity.softap_passphrase
        assert ap_pass is not None
        secrets.add(ap_pass.reveal())
    messages = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("wrong setup code" in m for m in messages)  # the logs were captured...
    assert any("WRONG_CREDENTIALS" in m for m in messages)
    assert sum("session open" in m for m in messages) >= 2
    for secret in secrets:  # ...and hold no secret
        leaks = [m for m in messages if secret in m]
        assert not leaks, f"a secret is in {len(leaks)} log records, e.g. {leaks[0]!r}"
        assert secret not in caplog.text


async def test_info_and_state_hold_no_secrets(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack()
    raw = RawClient(http, stack.url, profile)
    ap_pass = stack.door.identity.softap_passphrase
    assert ap_pass is not None
    reply = await raw.request("GET", "/api/v1/info")
    info = reply.json()
    assert {"ssid", "open", "ap_url", "lan_url"} <= set(info)
    assert (info["ssid"], info["open"]) == (stack.door.ap_config.ssid, False)
    assert (info["ap_url"], info["lan_url"]) == (stack.url, stack.door.lan.url)
    assert info["max_msg"] == profile.framing.max_message_length
    assert ap_pass.reveal() not in reply.body.decode()
    assert not {"passphrase", "softap_passphrase", "wifi_qr"} & set(info)
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    # A failed join leaves a detail, an SSID and a passphrase in the device: none is public.
    reply = await raw.request(
        "POST",
        "/portal/v1/provision",
        content_type="application/json",
        data=json.dumps(
            {"setup_code": SETUP_CODE, "ssid": "Miller Family", "passphrase": "Not-The-Garden-77"}
        ),
    )
    assert reply.status == 202
    record = await stack.engine.wait_settled(WAIT)
    assert record.state is State.FAILED and record.detail
    await until(lambda: stack.door.ap_up, "the AP to come back")
    reply = await raw.request("GET", "/api/v1/state")
    state = reply.json()
    assert (state["state"], state["code_name"]) == ("failed", "WRONG_CREDENTIALS")
    assert not {"detail", "ssid", "ssid_hex", "passphrase"} & set(state), state
    text = reply.body.decode()
    for secret in (
        "Miller Family",
        HOME.ssid.hex(),
        "Not-The-Garden-77",
        record.detail,
        ap_pass.reveal(),
    ):
        assert secret not in text
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    open_stack = await make_stack(open=True)
    async with http.get(open_stack.url + "/api/v1/info") as resp:
        assert (await resp.json())["open"] is True


async def test_a_session_cookie_moves_to_the_home_network_once_and_never_again(
    make_stack: StackFactory, profile: Profile, caplog: pytest.LogCaptureFixture
) -> None:
    """The phone comes back from the home network (a new address) for the outcome: that one
    move is allowed, on the lan listener, for the session holder. Anyone else who presents the
    cookie from yet another address afterwards (it travels in clear on the home LAN) is refused,
    and the cookie token itself never reaches the log."""
    caplog.set_level(logging.DEBUG)
    stack = await make_stack()
    async with HttpLink(profile, stack.url) as link:
        session = ClientSession(link, timeout=WAIT)
        await session.open(Secret(SETUP_CODE))
        assert link.token is not None
        await session.call(
            MessageType.SET_CREDENTIALS,
            {"ssid_hex": HOME.ssid.hex(), "passphrase": HOME_PASSPHRASE, "hidden": False},
        )
        await session.call(MessageType.CONNECT, {})
        record = await stack.engine.wait_settled(WAIT)
        assert record.state is State.ONLINE
        await until(lambda: stack.door.lan.up, "the lan listener")
        cookie = {"Cookie": f"{profile.softap.http.session_cookie}={link.token}"}

        async def poll_from(address: str) -> tuple[int, Any]:
            connector = aiohttp.TCPConnector(local_addr=(address, 0))
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                http.get(stack.door.lan.url + "/api/v1/events?wait_ms=0", headers=cookie) as resp,
            ):
                body = await resp.read()
                return resp.status, (
                    json.loads(body) if resp.content_type == "application/json" else None
                )

        status, _ = await poll_from("127.0.0.2")  # the phone, back from the home network
        assert status in (200, 204)
        status, answer = await poll_from("127.0.0.3")  # someone else on the LAN
        assert (status, answer["code_name"]) == (
            profile.softap.http.status(Code.SESSION_REQUIRED),
            "SESSION_REQUIRED",
        )
        status, _ = await poll_from("127.0.0.2")
        assert status in (200, 204)
        assert stack.service.session_peer is not None
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "session open with http client" in logged
    assert link.token not in logged
