"""HTTP listeners that face untrusted clients: the SoftAP's, and the watch listener.

aiohttp answers some requests before the application sees them: a request its parser refuses
(a bad request line, method or header, an oversized line, a broken chunked body) gets a
``text/plain`` 400 and an ERROR log line with a traceback, and an ``Expect`` header other than
``100-continue`` gets a ``text/plain`` 417. Anyone on the access point can send those, as fast
as they like, and can open connections and never finish them. :class:`GuardedRunner` serves an
application so that:

* every answer is coded JSON (an :data:`Answer` gives the status and body for a code): parser
  errors are MALFORMED_REQUEST (or MESSAGE_TOO_LARGE for an oversized line or header), logged
  once, briefly, at a bounded rate (:class:`~device_sim.ratelimit.LimitedLog`);
  :func:`expect_handler` lets
  ``Expect: 100-continue`` through and answers any other expectation with a coded 417;
* a request's headers must be complete within ``header_timeout_s`` of its first byte (or of
  the connection opening, for the first request): a client that trickles header bytes gets a
  JSON 408 (CLIENT_TIMEOUT) and is closed. Between requests a kept-alive connection is idle,
  not late: it is closed quietly after ``keepalive_s``, as any web server does (Espressif's
  esp_prov keeps one connection and waits 5 s between requests);
* connections are capped (:class:`ConnectionGuard`): per client address, per listener, and over
  the process, the caps derived from the descriptor limit, so that no flood of connections can
  take the descriptors the daemon needs (its store, its control socket, a phone's connection).
  A new connection over a cap pushes out the oldest half-open one (headers not complete), then
  the longest idle one, of the address that holds the most connections (of its own address,
  for the per-address cap), never a connection with a request in progress nor one from the
  address of the client that holds the session; when none can go, or the newcomer's address
  would then hold the most, the new one is closed.

The handler subclass and the runner's server are aiohttp's documented ``web.RequestHandler``
and ``web.Server`` classes; the one private hook is ``AppRunner._make_server``, overridden to
hand out this handler (aiohttp offers no public one).
"""

# Over 500 lines on purpose: the guarded server is one mechanism: the runner, the connection guard,
# the lingering transport and the request handler each hook the others (aiohttp's server internals).

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from .codes import Code
from .errors import OnboardingError
from .ratelimit import LimitedLog

__all__ = [
    "ACCEPT_BURST",
    "RESERVED_FDS",
    "Answer",
    "ConnectionGuard",
    "GuardedRunner",
    "expect_handler",
    "handler_state",
    "listener_cap",
    "read_body",
]

LOG = logging.getLogger(__name__)
LINGER_S = 2.0  # a closed connection reads and drops what still arrives, this long at most
PER_ADDRESS = 8  # connections one client address may hold (a browser opens up to 6)
MAX_PER_LISTENER = 1024
RESERVED_FDS = 128  # the daemon's own descriptors: store, logs, D-Bus, control socket, dnsmasq
# asyncio accepts up to a listener's backlog of connections at each wake-up before the guard
# sees any of them: that many descriptors per listener are open but not yet counted.
ACCEPT_BURST = 128
GUARDED_LISTENERS = 3  # a device's guarded listeners at most: ap, lan, watch


def descriptor_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


def spare_descriptors() -> int:
    """Descriptors the guarded listeners may hold: the limit, less the daemon's own and each
    listener's accept burst (so that a flood of every listener leaves the reserve free)."""
    return descriptor_limit() - RESERVED_FDS - GUARDED_LISTENERS * ACCEPT_BURST


def listener_cap() -> int:
    """Connections one listener may hold: a quarter of the spare descriptors, 1,024 at most."""
    return max(16, min(MAX_PER_LISTENER, spare_descriptors() // 4))


class _ProcessBudget:
    """Connections held by all guarded listeners of the process (a fleet runs many devices in
    one): at most three quarters of the spare descriptors."""

    def __init__(self) -> None:
        self.held = 0

    @property
    def full(self) -> bool:
        return self.held >= max(16, spare_descriptors() * 3 // 4)


BUDGET = _ProcessBudget()


# What a guarded listener answers for a code and a detail: the HTTP status and the JSON body.
Answer = Callable[[Code, str], tuple[int, dict[str, Any]]]


def _json(status: int, body: dict[str, Any]) -> web.Response:
    response = web.json_response(body, status=status, headers={"Cache-Control": "no-store"})
    return response


class ConnectionGuard:
    """The connections of one listener, capped per client address and in all (see the
    module). ``protected(address)``: connections from that address are never pushed out (the
    address of the client that holds the session)."""

    def __init__(
        self,
        name: str,
        rejected: LimitedLog,
        *,
        per_address: int = PER_ADDRESS,
        cap: int | None = None,
        protected: Callable[[str | None], bool] = lambda address: False,
        budget: _ProcessBudget = BUDGET,
    ) -> None:
        self.name, self.rejected = name, rejected
        self.per_address = per_address
        self.cap = cap if cap is not None else listener_cap()
        self.protected = protected
        self.budget = budget
        self.refused = 0  # new connections closed at once: no room, and none could go
        self.evicted = 0  # half-open or idle connections pushed out for a new one
        self._all: dict[_GuardedHandler, None] = {}  # insertion order: oldest first
        self._by_address: dict[str | None, dict[_GuardedHandler, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def admit(self, handler: _GuardedHandler) -> bool:
        """Room for ``handler``'s new connection (others may be pushed out for it)."""
        same = self._by_address.get(handler.address, {})
        if len(same) >= self.per_address and not self._evict(same):
            return self._refuse(handler, f"{self.per_address} connections from its address")
        if len(self._all) >= self.cap and not self._evict_fairly(handler.address):
            return self._refuse(handler, f"the listener holds {self.cap} connections")
        if self.budget.full and not self._evict_fairly(handler.address):
            return self._refuse(handler, "the process's connections are at their limit")
        self._all[handler] = None
        self._by_address.setdefault(handler.address, {})[handler] = None
        self.budget.held += 1
        return True

    def forget(self, handler: _GuardedHandler) -> None:
        if handler in self._all:
            del self._all[handler]
            self.budget.held -= 1
            same = self._by_address.get(handler.address)
            if same is not None:
                same.pop(handler, None)
                if not same:
                    del self._by_address[handler.address]

    def _refuse(self, handler: _GuardedHandler, why: str) -> bool:
        self.refused += 1
        self.rejected.log(
            logging.WARNING, "%s: connection from %s closed: %s", self.name, handler.address, why
        )
        return False

    def _evict_fairly(self, newcomer: str | None) -> bool:
        """Room in the listener for a connection from ``newcomer``: taken from the address
        that holds the most connections, unless the newcomer's own would then hold the most
        (a flood from many addresses churns among its own, never through a phone's one)."""
        top: str | None = None
        top_held = 0
        for address, held in self._by_address.items():
            if len(held) > top_held and not self.protected(address):
                top, top_held = address, len(held)
        if top_held == 0 or len(self._by_address.get(newcomer, ())) + 1 > top_held:
            return False
        return self._evict(self._by_address[top])

    def _evict(self, among: dict[_GuardedHandler, None]) -> bool:
        """Push out the oldest half-open connection in ``among``, else the longest idle one."""
        half_open: _GuardedHandler | None = None
        idle: _GuardedHandler | None = None
        for handler in among:  # oldest first
            if handler.busy or self.protected(handler.address):
                continue
            if handler.half_open:
                half_open = handler
                break
            if idle is None or handler.last_active < idle.last_active:
                idle = handler
        victim = half_open or idle
        if victim is None:
            return False
        self.evicted += 1
        self.forget(victim)
        victim.evict()
        return True


class _LingeringTransport(asyncio.Transport):
    """A connection's transport that closes as web servers close one (a "lingering close"):
    the answer goes out, the write side is shut (FIN), and what the client still sends is read
    and dropped until it closes its side too, ``LINGER_S`` at most. Closed at once, a socket
    that then receives the rest of a request (a body after headers the parser refused) answers
    with a reset, and the client's kernel throws away the answer it had not read yet."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__(transport.get_extra_info("extra"))
        self._transport = transport
        self.lingering = False
        self._timer: asyncio.TimerHandle | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        if not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        try:
            self._transport.write_eof()  # after what is buffered: the answer goes first
        except OSError:
            self._transport.close()
            return
        self._timer = asyncio.get_running_loop().call_later(LINGER_S, self._transport.close)

    def closed_by_client(self) -> None:
        self.cancel()
        self._transport.close()

    def abort(self) -> None:
        self.cancel()
        self._transport.abort()

    def cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


class _GuardedHandler(web.RequestHandler):
    """aiohttp's request handler with coded JSON for parser errors, a header timer that starts
    at a request's first byte, and a place under its listener's :class:`ConnectionGuard`."""

    answer: Answer
    header_timeout_s: float
    rejected: LimitedLog
    guard: ConnectionGuard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        self.transport = _LingeringTransport(transport)
        self.busy = False  # a request's headers are in and its answer is not done
        self.served = 0
        self.opened = self.last_active = time.monotonic()
        self._request_bytes = False  # bytes of a request whose headers are not complete
        self._header_timer: asyncio.TimerHandle | None = None
        peer = transport.get_extra_info("peername")
        self.address: str | None = str(peer[0]) if peer else None
        if not self.guard.admit(self):
            transport.abort()
            return
        self.arm_header_timer()  # the first request: from the connection's opening

    def connection_lost(self, exc: BaseException | None) -> None:
        self.cancel_header_timer()
        self.guard.forget(self)
        if isinstance(self.transport, _LingeringTransport):
            self.transport.cancel()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if isinstance(self.transport, _LingeringTransport) and self.transport.lingering:
            self.transport.closed_by_client()

    def data_received(self, data: bytes) -> None:
        if isinstance(self.transport, _LingeringTransport) and self.transport.lingering:
            return  # the rest of what was sent before the answer: dropped
        if not self.busy and data:
            self._request_bytes = True
            if self._header_timer is None:  # the first byte of the next request
                self.arm_header_timer()
        super().data_received(data)

    @property
    def half_open(self) -> bool:
        """No request in progress, and the next one's headers are due (or none came yet)."""
        return not self.busy and (self.served == 0 or self._header_timer is not None)

    def evict(self) -> None:
        self.cancel_header_timer()
        if self.transport is not None:
            self.transport.abort()

    def request_state(self, busy: bool) -> None:
        self.busy, self.last_active = busy, time.monotonic()
        self._request_bytes = False
        if busy:
            self.cancel_header_timer()
        else:
            self.served += 1

    def arm_header_timer(self) -> None:
        self.cancel_header_timer()
        self._header_timer = asyncio.get_running_loop().call_later(
            self.header_timeout_s, self._headers_too_slow
        )

    def cancel_header_timer(self) -> None:
        timer, self._header_timer = getattr(self, "_header_timer", None), None
        if timer is not None:
            timer.cancel()

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or self.busy:
            return
        if not self._request_bytes:  # a connection opened and never used: closed quietly
            transport.close()
            return
        self.rejected.log(
            logging.INFO, "request headers not complete within %g s; closing", self.header_timeout_s
        )
        status, data = self.answer(
            Code.CLIENT_TIMEOUT,
            f"the request headers did not arrive within {self.header_timeout_s:g} s",
        )
        body = json.dumps(data).encode()
        transport.write(
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            b"Cache-Control: no-store\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        transport.close()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong) or status == 413:
            code = Code.MESSAGE_TOO_LARGE
        elif status >= 500 and not isinstance(exc, HttpProcessingError):
            code = Code.INTERNAL_ERROR
        else:
            code = Code.MALFORMED_REQUEST
        reason = (
            exc.message
            if isinstance(exc, HttpProcessingError) and exc.message
            else message or (type(exc).__name__ if exc else f"HTTP {status}")
        )
        reason = " ".join(str(reason).split())[:200]
        self.rejected.log(
            logging.INFO, "%s from %s: %s", code.name, getattr(request, "remote", None), reason
        )
        if code is Code.INTERNAL_ERROR and exc is not None:
            LOG.error(
                "softap: internal error while handling a request: %s: %s", type(exc).__name__, exc
            )
        if request.writer.output_size > 0:  # an answer is already under way: only close
            raise ConnectionError("the answer was sent already; closing the connection")
        response = _json(*self.answer(code, reason))
        response.force_close()
        return response


class _GuardedServer(web.Server):
    answer: Answer
    header_timeout_s: float
    rejected: LimitedLog
    guard: ConnectionGuard

    def __call__(self) -> web.RequestHandler:
        handler = _GuardedHandler(self, loop=self._loop, **self._kwargs)
        handler.answer = self.answer
        handler.header_timeout_s = self.header_timeout_s
        handler.rejected = self.rejected
        handler.guard = self.guard
        return handler


_CODED = web.AppKey("device_sim_coded_errors", bool)


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: _LingeringTransport, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._transport, name)(*args, **kwargs)

    method.__name__ = name
    return method


# Every other transport method is the wrapped transport's (asyncio.Transport's own raise).
for _name in (
    "get_extra_info",
    "set_protocol",
    "get_protocol",
    "is_reading",
    "pause_reading",
    "resume_reading",
    "set_write_buffer_limits",
    "get_write_buffer_size",
    "get_write_buffer_limits",
    "write",
    "writelines",
    "write_eof",
    "can_write_eof",
):
    setattr(_LingeringTransport, _name, _delegate(_name))


def _coded_errors(
    answer: Answer, rejected: LimitedLog
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """The last net: an error aiohttp answers itself, around the application (an ``Expect``
    on a CONNECT, which never reaches a route), becomes coded JSON with the same status."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if (
            response.status < 400
            or not isinstance(response, web.Response)
            or response.content_type != "text/plain"  # aiohttp's own; the app's are coded
        ):
            return
        code = Code.INTERNAL_ERROR if response.status >= 500 else Code.MALFORMED_REQUEST
        reason = f"{response.status} {response.reason}: {request.method[:16]} {request.path[:80]}"
        rejected.log(logging.INFO, "%s from %s", reason, request.remote)
        response.content_type = "application/json"
        body = json.dumps(answer(code, reason)[1]).encode()
        response.body = body
        response.headers["Content-Length"] = str(len(body))  # aiohttp's was the text's
        response.headers["Cache-Control"] = "no-store"

    return on_prepare


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` for untrusted clients (see the module). ``keepalive_s``: how long a
    kept-alive connection may stay idle between requests."""

    def __init__(
        self,
        app: web.Application,
        *,
        answer: Answer,
        header_timeout_s: float,
        rejected: LimitedLog,
        guard: ConnectionGuard,
        keepalive_s: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, keepalive_timeout=keepalive_s, **kwargs)
        if _CODED not in app:  # an application served again (a listener reopened) has it
            app[_CODED] = True
            app.on_response_prepare.append(_coded_errors(answer, rejected))
        self._answer = answer
        self._header_timeout_s = header_timeout_s
        self._rejected = rejected
        self.guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # same layout; only __call__ differs
        assert isinstance(server, _GuardedServer)
        server.answer = self._answer
        server.header_timeout_s = self._header_timeout_s
        server.rejected = self._rejected
        server.guard = self.guard
        return server


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, within ``timeout_s`` (a slow client times out).

    Raises OnboardingError: MESSAGE_TOO_LARGE, CLIENT_TIMEOUT, MALFORMED_REQUEST (empty).
    """
    if request.content_length is not None and request.content_length > limit:
        raise OnboardingError(
            Code.MESSAGE_TOO_LARGE, f"body of {request.content_length} bytes; the limit is {limit}"
        )
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.readany():
                total += len(chunk)
                if total > limit:
                    raise OnboardingError(
                        Code.MESSAGE_TOO_LARGE, f"body over {limit} bytes; the limit is {limit}"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise OnboardingError(
            Code.CLIENT_TIMEOUT, f"the request body did not arrive within {timeout_s:g} s"
        ) from None
    if not total:
        raise OnboardingError(Code.MALFORMED_REQUEST, "empty request body")
    return b"".join(chunks)


def handler_state(request: web.Request, busy: bool) -> None:
    """Called by the application's outermost middleware: a request's headers are in (its
    connection is busy: not pushed out, no header timer) or its answer is done (the connection
    is idle until the next request's first byte)."""
    protocol = request.protocol
    if isinstance(protocol, _GuardedHandler):
        protocol.request_state(busy)


def expect_handler(
    answer: Answer, rejected: LimitedLog
) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """An aiohttp ``expect_handler``: ``100-continue`` goes on, anything else is a JSON 417."""

    async def handle(request: web.Request) -> web.StreamResponse | None:
        expect = request.headers.get("Expect", "")
        if expect.lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        rejected.log(logging.INFO, "unsupported Expect header from %s", request.remote)
        return _json(417, answer(Code.MALFORMED_REQUEST, f"unsupported Expect: {expect[:60]}")[1])

    return handle
