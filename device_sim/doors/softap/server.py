"""The SoftAP door's HTTP server: every answer is the documented JSON error, whatever arrives.

aiohttp answers some requests before the application sees them: a request its parser refuses
(a bad request line, method or header, an oversized line, a broken chunked body) gets a
``text/plain`` 400 and an ERROR log line with a traceback, and an ``Expect`` header other than
``100-continue`` gets a ``text/plain`` 417. On an access point anyone can send those, as fast as
they like. Here:

* :class:`JsonErrorRunner` serves an application with a request handler whose parser errors are
  the profile's coded JSON (MALFORMED_REQUEST, or MESSAGE_TOO_LARGE for an oversized line or
  header), logged once, briefly, at a bounded rate (:class:`~device_sim.ratelimit.LimitedLog`);
* request headers must be complete within ``header_timeout_s`` of the connection opening (or
  of the previous answer on a kept-alive connection), as bodies must be within the body
  timeout: a client that trickles header bytes gets a JSON 408 (CLIENT_TIMEOUT) and is closed;
* :func:`expect_handler` lets ``Expect: 100-continue`` through and answers any other
  expectation with a JSON 417.

The handler subclass and the runner's server are aiohttp's documented ``web.RequestHandler`` and
``web.Server`` classes; the one private hook is ``AppRunner._make_server``, overridden to hand
out this handler (aiohttp offers no public one).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from ...codes import Code
from ...profile import Profile
from ...ratelimit import LimitedLog
from .http import error_body, json_response

__all__ = ["JsonErrorRunner", "expect_handler", "handler_state"]

LOG = logging.getLogger(__name__)


class _JsonRequestHandler(web.RequestHandler):
    """aiohttp's request handler with coded JSON for parser errors and a header timeout."""

    profile: Profile
    header_timeout_s: float
    rejected: LimitedLog

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.device_sim_busy = False
        self._header_timer: asyncio.TimerHandle | None = None
        self.arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.cancel_header_timer()
        super().connection_lost(exc)

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
        if transport is None or transport.is_closing() or self.device_sim_busy:
            return
        self.rejected.log(
            logging.INFO, "request headers not complete within %g s; closing", self.header_timeout_s
        )
        body = json.dumps(
            error_body(
                self.profile,
                Code.CLIENT_TIMEOUT,
                f"the request headers did not arrive within {self.header_timeout_s:g} s",
            )
        ).encode()
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
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
        response = json_response(
            error_body(self.profile, code, reason), self.profile.softap.http.status(code)
        )
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    profile: Profile
    header_timeout_s: float
    rejected: LimitedLog

    def __call__(self) -> web.RequestHandler:
        handler = _JsonRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.profile = self.profile
        handler.header_timeout_s = self.header_timeout_s
        handler.rejected = self.rejected
        return handler


class JsonErrorRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer in the profile's JSON (see the module)."""

    def __init__(
        self,
        app: web.Application,
        *,
        profile: Profile,
        header_timeout_s: float,
        rejected: LimitedLog,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._profile = profile
        self._header_timeout_s = header_timeout_s
        self._rejected = rejected

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # same layout; only __call__ differs
        assert isinstance(server, _JsonErrorServer)
        server.profile = self._profile
        server.header_timeout_s = self._header_timeout_s
        server.rejected = self._rejected
        return server


def handler_state(request: web.Request, busy: bool) -> None:
    """Called by the application's outermost middleware: a request's headers are in (stop the
    header timer) or its answer is done (start it for the next request on the connection)."""
    protocol = request.protocol
    if isinstance(protocol, _JsonRequestHandler):
        protocol.device_sim_busy = busy
        if busy:
            protocol.cancel_header_timer()
        else:
            protocol.arm_header_timer()


def expect_handler(
    profile: Profile, rejected: LimitedLog
) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """An aiohttp ``expect_handler``: ``100-continue`` goes on, anything else is a JSON 417."""

    async def handle(request: web.Request) -> web.StreamResponse | None:
        expect = request.headers.get("Expect", "")
        if expect.lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        rejected.log(logging.INFO, "unsupported Expect header from %s", request.remote)
        return json_response(
            error_body(profile, Code.MALFORMED_REQUEST, f"unsupported Expect: {expect[:60]}"), 417
        )

    return handle
