"""Whatever arrives on the SoftAP listeners, the answer is the documented coded JSON: requests
aiohttp's own parser refuses, unsupported ``Expect`` headers, bad methods and paths, and slow
headers. Rejected requests are logged briefly and at a bounded rate, never with a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest

from device_sim.profile import Profile

from .conftest import Stack, StackFactory, until

MALFORMED = [
    b"GARBAGE\r\n\r\n",  # no request line
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",  # unknown version
    b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n",  # bad method token
    b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",  # control byte in the target
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",  # space in a field name
    b"GET / HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",  # empty field name
    b"POST /api/v1/message HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/v1/message HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",  # both framings
    b"POST /api/v1/message HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/octet-stream\r\n\r\nZZ\r\n",  # bad chunk size
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line too long
    b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 9000 + b"\r\n\r\n",  # header too long
    b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",  # unsupported Expect
    b"BREW /api/v1/state HTTP/1.1\r\nHost: x\r\n\r\n",  # unknown method
    b"DELETE /api/v1/message HTTP/1.1\r\nHost: x\r\n\r\n",  # wrong method
    b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",  # never reaches a route
    b"CONNECT / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",
]


async def exchange(
    url: str, raw: bytes, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; return the first answer's status, headers and body."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {
                k.lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return status, headers, body


def coded(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers.get("content-type", "").startswith("application/json"), (headers, body)
    answer = json.loads(body)
    assert {"code", "code_name", "message", "next_step", "detail"} <= set(answer), answer
    return answer


@pytest.mark.parametrize("listener", ["ap", "lan"])
async def test_every_malformed_request_gets_coded_json(
    make_stack: StackFactory, listener: str, caplog: pytest.LogCaptureFixture
) -> None:
    stack: Stack = await make_stack()
    if listener == "lan":
        await stack.door.lan.open(stack.door._routes.app("lan"))
    url = getattr(stack.door, listener).url
    caplog.set_level(logging.DEBUG)
    for raw in MALFORMED:
        status, headers, body = await exchange(url, raw)
        answer = coded(headers, body)
        assert 400 <= status < 500, (raw[:40], status, answer)
        assert answer["code_name"] in ("MALFORMED_REQUEST", "MESSAGE_TOO_LARGE"), answer
    # 100-continue still goes on to the handler.
    status, headers, body = await exchange(
        url, b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"
    )
    assert status == 100
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_rejections_are_logged_briefly_and_at_a_bounded_rate(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stack: Stack = await make_stack()
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        for raw in MALFORMED:
            await exchange(stack.url, raw)
    rejected = [r for r in caplog.records if "rejected request" in r.getMessage()]
    assert 1 <= len(rejected) <= stack.door.rejected.burst
    assert stack.door.rejected.total >= 5 * len(MALFORMED)
    assert all("\n" not in r.getMessage() and len(r.getMessage()) < 400 for r in rejected)
    assert not [r for r in caplog.records if r.exc_info]


async def test_slow_headers_time_out_like_slow_bodies(
    make_stack: StackFactory, profile: Profile
) -> None:
    fast = replace(
        profile,
        softap=replace(profile.softap, http=replace(profile.softap.http, body_timeout_ms=300)),
    )
    stack: Stack = await make_stack(profile=fast)
    parts = urlsplit(stack.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\n")  # ... and never the end
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()  # the device answers and closes the connection
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(body)["code_name"] == "CLIENT_TIMEOUT"


async def test_an_answer_sent_before_the_body_arrived_is_not_lost(make_stack: StackFactory) -> None:
    """The parser refuses the headers (two framings) and the device answers at once; the
    client's body arrives after that. The device used to close at once, its socket then reset
    the connection on the body's arrival, and the client's kernel dropped the coded 400 it had
    not read yet. Now it shuts its side and drops what still arrives (a lingering close)."""
    stack: Stack = await make_stack()
    parts = urlsplit(stack.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    try:
        sock.sendall(
            b"POST /api/v1/message HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        # The answer is there (peeked, not read) ...
        assert (await asyncio.to_thread(sock.recv, 12, socket.MSG_PEEK))[8:] == b" 400"
        await until(lambda: len(stack.door.ap.guard) == 0 or stack_lingers(stack), "a close")
        # ... when the body arrives, in two writes, as a client that writes its whole request
        # before it reads does. A socket closed outright resets the connection on the first
        # (on loopback, before sendall returns), and the second fails (EPIPE or ECONNRESET):
        # such a client never reads the answer.
        sock.sendall(b"5\r\nhello\r\n")
        sock.sendall(b"0\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := await asyncio.to_thread(sock.recv, 65536):
            received += chunk
    finally:
        sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and head[8:13] == b" 400 ", received
    assert json.loads(body)["code_name"] == "MALFORMED_REQUEST"


def stack_lingers(stack: Stack) -> bool:
    """The device has shut its side of the one connection and reads what still comes."""
    return any(getattr(h.transport, "lingering", False) for h in stack.door.ap.guard._all)
