"""The SoftAP listeners under a flood of connections, and a client that keeps its connection:
the header timer starts at a request's first byte, idle kept-alive connections are served
(and closed quietly, late), connections are capped per address and in all, and a phone
onboards while hundreds of half-open connections come from many addresses."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from device_sim.codes import State
from device_sim.doors.native.flow import Target, provision
from device_sim.network.scenario import load_scenario
from device_sim.profile import Profile
from device_sim.security.secret import Secret

from .conftest import SETUP_CODE, Stack, StackFactory, until

HOME = load_scenario("typical-home").default_credentials
WAIT = 10.0
STATE = b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\n\r\n"


def short_headers(profile: Profile, ms: int = 300) -> Profile:
    return replace(
        profile,
        softap=replace(profile.softap, http=replace(profile.softap.http, body_timeout_ms=ms)),
    )


async def connect(
    url: str, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port, local_addr=(source, 0))


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        return int(head.split()[1]), await reader.readexactly(length)


async def closed(reader: asyncio.StreamReader) -> bytes:
    """What the device sent before it closed the connection (b"": closed quietly)."""
    async with asyncio.timeout(WAIT):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def test_a_kept_alive_connection_idle_past_the_header_timeout_is_served(
    make_stack: StackFactory, profile: Profile
) -> None:
    """esp_prov's pattern, scaled: one connection, a pause three times the header timeout
    between requests. The device used to re-arm the header timer after each answer and send
    an unprompted 408 on the idle connection."""
    stack: Stack = await make_stack(profile=short_headers(profile))
    reader, writer = await connect(stack.url)
    try:
        for _ in range(3):
            writer.write(STATE)
            status, body = await answer(reader)
            assert status == 200 and json.loads(body)["state"]
            await asyncio.sleep(1.0)  # idle on purpose: the gap between a client's requests
        assert not reader.at_eof()
    finally:
        writer.close()


async def test_a_client_waiting_6_s_between_requests_on_one_connection_is_served(
    make_stack: StackFactory,
) -> None:
    """The real timings, with the client esp_prov uses: Python's http.client keeps one
    connection; 6 s between requests; the default 5 s header timeout."""
    stack: Stack = await make_stack()
    parts = urlsplit(stack.url)

    def client() -> list[tuple[int, int]]:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=WAIT)
        seen = []
        try:
            for n in range(2):
                if n:
                    time.sleep(6.0)  # idle on purpose: the gap under test
                conn.request("GET", "/api/v1/state")
                reply = conn.getresponse()
                reply.read()
                assert conn.sock is not None
                seen.append((reply.status, conn.sock.getsockname()[1]))
        finally:
            conn.close()
        return seen

    (first, port1), (second, port2) = await asyncio.to_thread(client)
    assert (first, second) == (200, 200) and port1 == port2  # one connection served both


async def test_trickled_headers_after_an_idle_gap_still_time_out(
    make_stack: StackFactory, profile: Profile
) -> None:
    stack: Stack = await make_stack(profile=short_headers(profile))
    reader, writer = await connect(stack.url)
    try:
        writer.write(STATE)
        assert (await answer(reader))[0] == 200
        await asyncio.sleep(0.5)  # idle on purpose
        writer.write(b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\n")  # and never the end
        sent = await closed(reader)
    finally:
        writer.close()
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), sent
    assert json.loads(body)["code_name"] == "CLIENT_TIMEOUT"


async def test_a_connection_never_used_is_closed_quietly(
    make_stack: StackFactory, profile: Profile
) -> None:
    stack: Stack = await make_stack(profile=short_headers(profile))
    reader, writer = await connect(stack.url)
    try:
        assert await closed(reader) == b""
    finally:
        writer.close()


async def test_per_address_cap_pushes_out_the_oldest_half_open_connection(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stack: Stack = await make_stack()
    guard = stack.door.ap.guard
    guard.per_address = 3
    caplog.set_level(logging.INFO)
    conns = [await connect(stack.url, "127.0.0.7") for _ in range(3)]
    for _reader, writer in conns:
        writer.write(b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\nX-a: ")
        await writer.drain()
    newest = await connect(stack.url, "127.0.0.7")
    assert await closed(conns[0][0]) == b""  # the oldest half-open one made room
    newest[1].write(STATE)
    assert (await answer(newest[0]))[0] == 200
    assert guard.evicted == 1 and guard.refused == 0
    # Another address has room of its own.
    other = await connect(stack.url, "127.0.0.8")
    other[1].write(STATE)
    assert (await answer(other[0]))[0] == 200
    for _, writer in [*conns, newest, other]:
        writer.close()


async def test_when_nothing_can_go_the_new_connection_is_closed(
    make_stack: StackFactory, profile: Profile
) -> None:
    """Connections with a request in progress (long polls) are never pushed out."""
    stack: Stack = await make_stack()
    guard = stack.door.ap.guard
    guard.per_address = 2
    kind = profile.softap.http.message_content_type
    polls = []
    for _ in range(2):  # two requests whose bodies are still arriving
        reader, writer = await connect(stack.url, "127.0.0.9")
        writer.write(
            b"POST /api/v1/message HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n"
            + f"Content-Type: {kind}\r\n\r\n".encode()
            + b"\x01"
        )
        await writer.drain()
        polls.append((reader, writer))
    await until(
        lambda: len(guard) == 2 and all(h.busy for h in guard._all), "both requests in progress"
    )
    late_reader, late_writer = await connect(stack.url, "127.0.0.9")
    assert await closed(late_reader) == b""
    assert (guard.refused, guard.evicted, len(guard)) == (1, 0, 2)
    assert not polls[0][0].at_eof() and not polls[1][0].at_eof()
    for _, writer in [*polls, (late_reader, late_writer)]:
        writer.close()


async def test_a_phone_onboards_through_hundreds_of_half_open_connections(
    make_stack: StackFactory, profile: Profile, caplog: pytest.LogCaptureFixture
) -> None:
    """300 connections from 30 addresses, each sending part of its headers and keeping the
    connection, against caps of 8 per address and 64 in all: the phone's onboarding over the
    SoftAP still ends online, and the log stays short."""
    stack: Stack = await make_stack()
    stack.door.ap.guard.cap = 64
    caplog.set_level(logging.INFO)
    hostile = []
    for i in range(300):
        try:
            _reader, writer = await connect(stack.url, f"127.0.1.{10 + i % 30}")
        except OSError:
            continue
        writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\nX-a: ")
        hostile.append(writer)
    try:
        result = await provision(
            profile,
            Target(softap_url=stack.url),
            setup_code=Secret(SETUP_CODE),
            ssid=HOME.ssid,
            passphrase=Secret(HOME.passphrase or ""),
            outcome_timeout=WAIT,
        )
        assert result["state"] == "online", result
        assert stack.engine.state is State.ONLINE
        assert len(stack.door.ap.guard) <= 64
        assert stack.door.ap.guard.evicted + stack.door.ap.guard.refused >= 300 - 64
        assert len(caplog.text) < 20_000
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        for writer in hostile:
            writer.close()
