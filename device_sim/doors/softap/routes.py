"""The SoftAP door's HTTP routes, built from ``gatt_profile.yaml``'s ``softap`` section: its
own endpoints (the browser page and its API, the captive-portal API, the OS probes, the public
state), and the personalities' routes beside them (native's session API, ESP's endpoints).

Each of the door's own handlers is listed in the profile (an unlisted one is a ConfigError at
start); the profile's other endpoints are served by a personality's routes. Bodies are bounded
in size and time; errors are coded JSON (see :mod:`.http`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from ...codes import Code
from ...document import JsonTooDeep, loads_json
from ...errors import ConfigError, OnboardingError
from ...guarded_http import expect_handler, handler_state
from ...ratelimit import LimitedLog
from ...security.secret import Secret
from ...security.setup_code import normalize_setup_code
from ...session.port import AccessPoint, DiagnosticEvent, DoorPort
from ..personality import HttpRoute
from .http import (
    LISTENER,
    coded_answer,
    error_body,
    error_response,
    json_response,
    query_ms,
    read_body,
    require_content_type,
)
from .sessions import HttpClients

LOG = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PAGE = "portal.html"


class SoftApView(Protocol):
    """What the routes read of the SoftAP door that serves them (the door implements it)."""

    clients: HttpClients  # the HTTP sessions' outboxes, by cookie
    rejected: LimitedLog  # rejected requests, logged at a bounded rate
    networks: list[AccessPoint]  # the scan made before the AP took the radio
    scanned_at_ms: int
    closing: bool  # a listener is going down: long polls answer at once
    latest: DiagnosticEvent | None

    @property
    def captive_mode(self) -> str: ...  # app | portal

    @property
    def ap_url(self) -> str: ...

    @property
    def ap_host(self) -> str: ...

    @property
    def lan_url(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...

    def doors_status(self) -> dict[str, Any]: ...

    async def wait_event_after(self, seq: int, wait_s: float) -> None: ...

    def request_seen(self) -> None: ...  # a phone without a session asked the AP something


class Routes:
    def __init__(self, port: DoorPort, door: SoftApView, extra: Sequence[HttpRoute] = ()) -> None:
        self.port = port
        self.door = door
        self.profile = port.profile
        self.http = port.profile.softap.http
        self.extra = list(extra)  # the personalities' own endpoints
        handlers: dict[tuple[str, str], Handler] = {
            ("GET", "/api/v1/state"): self.state,
            ("GET", "/portal/v1/networks"): self.networks,
            ("POST", "/portal/v1/provision"): self.provision,
            ("GET", "/captive-portal/api"): self.captive_api,
            ("GET", "/"): self.page,
        }
        listed = {(e.method, e.path) for e in self.http.endpoints}
        if set(handlers) - listed:
            raise ConfigError(
                "gatt_profile.yaml: softap.http.endpoints",
                f"the door's endpoints are not listed: {sorted(set(handlers) - listed)}",
            )
        self._handlers = handlers
        own = set(handlers) | {("GET", p.path) for p in self.profile.softap.probes}
        seen: set[tuple[str, str]] = set()
        for route in self.extra:
            key = (route.method, route.path)
            if key in own or key in seen or not route.path.startswith("/"):
                raise ConfigError(
                    "SoftAP routes", f"{route.method} {route.path} is taken or not a path"
                )
            seen.add(key)
        self._page: bytes | None = None
        self._apps: dict[str, web.Application] = {}

    def app(self, listener: str) -> web.Application:
        """The application for the ``ap`` or ``lan`` listener, built once and served again at
        every opening. (A new one per opening would also be kept, handlers and all, by
        aiohttp's middleware cache, up to 1,024 entries: about 15 MB after 500 onboard/reset
        cycles, measured with scripts/soak.py.)"""
        if listener not in self._apps:
            self._apps[listener] = self._build(listener)
        return self._apps[listener]

    def _build(self, listener: str) -> web.Application:
        app = web.Application(
            middlewares=[self._errors], client_max_size=self.profile.framing.max_message_length
        )
        app[LISTENER] = listener
        expect = expect_handler(coded_answer(self.profile), self.door.rejected)
        for ep in self.http.endpoints:
            if listener in ep.listeners and (ep.method, ep.path) in self._handlers:
                app.router.add_route(
                    ep.method, ep.path, self._handlers[(ep.method, ep.path)], expect_handler=expect
                )
        if listener == "ap":
            for probe in self.profile.softap.probes:
                app.router.add_route(
                    "GET", probe.path, self._probe_handler(probe.path), expect_handler=expect
                )
        for route in self.extra:
            if listener in route.listeners:
                app.router.add_route(route.method, route.path, route.handler, expect_handler=expect)
        # A catch-all, so that unknown paths and methods (and their Expect headers) get the
        # coded JSON too, not aiohttp's own answers.
        app.router.add_route("*", "/{tail:.*}", self.fallback, expect_handler=expect)
        return app

    # --- middleware ------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every answer is coded JSON; a rejected request is logged briefly, at a bounded rate
        (anyone on the AP can send them as fast as they like)."""
        handler_state(request, busy=True)
        if request.app[LISTENER] == "ap" and not request.cookies.get(self.http.session_cookie):
            # A phone that has not started a session (a browser, an app looking first): one
            # with a session's cookie uses the AP while it holds the session (a stale poll of
            # an ended one, answered from the backlog when the AP is back, does not).
            self.door.request_seen()
        where = f"{request.method[:16]} {request.path[:80]}"
        try:
            return await handler(request)
        except OnboardingError as exc:
            self.door.rejected.log(logging.INFO, "%s: %s", where, exc)
            return error_response(self.profile, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            self.door.rejected.log(logging.INFO, "%s: %d %s", where, exc.status, exc.reason)
            code = Code.MALFORMED_REQUEST
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}  # 405
            return json_response(
                error_body(self.profile, code, f"{exc.reason}: {where}"), exc.status, allow
            )
        except Exception as exc:  # a bug must still answer with a code, and be logged
            LOG.exception("softap %s failed", where)
            return json_response(
                error_body(self.profile, Code.INTERNAL_ERROR, type(exc).__name__), 500
            )
        finally:
            handler_state(request, busy=False)

    # --- public, no secrets ------------------------------------------------------------------

    def public_state(self) -> dict[str, Any]:
        record = self.port.record
        latest = self.door.latest
        entry = self.profile.code(record.code)
        return {
            "seq": latest.seq if latest else 0,
            "state": record.state.wire_name,
            "code": entry.id,
            "code_name": entry.name,
            "message": entry.user_message,
            "next_step": entry.next_step,
            "phase": latest.phase if latest else record.phase,
            "attempt": record.attempt,
            "doors": self.door.doors_status(),
        }

    async def state(self, request: web.Request) -> web.StreamResponse:
        if "after" in request.query:
            after = query_ms(request, "after", 0, 1 << 62)
            wait_ms = query_ms(
                request, "wait_ms", self.http.long_poll_max_ms, self.http.long_poll_max_ms
            )
            await self.door.wait_event_after(after, wait_ms / 1000)
        return json_response(self.public_state(), headers={"Access-Control-Allow-Origin": "*"})

    # --- the browser page ---------------------------------------------------------------------

    async def networks(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "networks": [ap.to_wire() for ap in self.door.networks],
                "scanned_at_ms": self.door.scanned_at_ms,
            }
        )

    async def provision(self, request: web.Request) -> web.StreamResponse:
        require_content_type(request, "application/json")
        raw = await read_body(request, self.http.max_json_bytes, self.http.body_timeout_ms / 1000)
        ssid, passphrase, hidden, code = _parse_provision(raw)
        box, new = self.door.clients.of_request(request, create=True)
        assert box is not None
        try:
            self.port.portal_provision(box.peer, code, ssid, passphrase, hidden)
        except OnboardingError as exc:
            LOG.info("softap %s %s: %s", request.method, request.path, exc)
            if new and self.port.session_peer != box.peer:
                self.door.clients.drop(box.token)  # wrong codes must not fill the client table
                return error_response(self.profile, exc)
            # The page session is open even so (e.g. the passphrase was refused after the code
            # was proved): the cookie lets the same browser correct it instead of getting BUSY.
            return self.door.clients.with_cookie(error_response(self.profile, exc), box, new)
        response = json_response(
            {
                "accepted": True,
                "lan_url": self.door.lan_url,
                "ap_url": self.door.ap_url,
                "ap_returns_on_failure": True,
                "outcome_within_ms": int(self.port.outcome_within_s * 1000),
            },
            202,
        )
        return self.door.clients.with_cookie(response, box, new)

    async def page(self, request: web.Request) -> web.StreamResponse:
        if self._redirect_foreign_host(request):
            raise web.HTTPFound(self.door.ap_url + "/")
        if self._page is None:
            self._page = resources.files(__package__).joinpath(PAGE).read_bytes()
        return web.Response(
            body=self._page,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; img-src data:; "
                "connect-src *; form-action 'self'",
            },
        )

    # --- captive-portal behaviour -------------------------------------------------------------

    async def captive_api(self, request: web.Request) -> web.StreamResponse:
        body = {
            "captive": self.door.captive_mode == "portal",
            "user-portal-url": self.door.ap_url + "/",
        }
        return web.Response(
            text=json.dumps(body),
            content_type="application/captive+json",
            headers={"Cache-Control": "private"},
        )

    def _probe_handler(self, path: str) -> Handler:
        probe = next(p for p in self.profile.softap.probes if p.path == path)

        async def answer(request: web.Request) -> web.StreamResponse:
            if self.door.captive_mode == "portal":
                raise web.HTTPFound(self.door.ap_url + "/")
            return web.Response(
                status=probe.status,
                text=probe.body or None,
                content_type=probe.content_type,
                headers={"Cache-Control": "no-cache"},
            )

        return answer

    def _redirect_foreign_host(self, request: web.Request) -> bool:
        host = (request.host or "").rsplit(":", 1)[0].strip("[]")
        return self.door.captive_mode == "portal" and host != self.door.ap_host

    async def fallback(self, request: web.Request) -> web.StreamResponse:
        if (
            request.method == "GET"
            and self.door.captive_mode == "portal"
            and request.app[LISTENER] == "ap"
            and not request.path.startswith(("/api/", "/portal/"))
        ):
            raise web.HTTPFound(self.door.ap_url + "/")  # every page leads to the sign-in page
        # The catch-all route also shadows aiohttp's own 405 for known paths: answer it here.
        listener = request.app[LISTENER]
        allowed = sorted(
            {
                ep.method
                for ep in self.http.endpoints
                if ep.path == request.path
                and listener in ep.listeners
                and (ep.method, ep.path) in self._handlers
            }
            | {r.method for r in self.extra if r.path == request.path and listener in r.listeners}
        )
        self.door.rejected.log(
            logging.INFO,
            "%s %s: %s",
            request.method[:16],
            request.path[:80],
            "wrong method" if allowed else "no such endpoint",
        )
        if allowed:
            return json_response(
                error_body(
                    self.profile,
                    Code.MALFORMED_REQUEST,
                    f"{request.path} takes {', '.join(allowed)}, not {request.method}",
                ),
                405,
                {"Allow": ", ".join(allowed)},
            )
        return json_response(
            error_body(
                self.profile, Code.MALFORMED_REQUEST, f"no endpoint {request.method} {request.path}"
            ),
            404,
        )


def _parse_provision(raw: bytes) -> tuple[bytes, Secret | None, bool, Secret]:
    """Raises OnboardingError (MALFORMED_REQUEST, WRONG_SETUP_CODE for a malformed code)."""
    try:
        data = loads_json(raw)
    except JsonTooDeep as exc:
        raise OnboardingError(Code.MALFORMED_REQUEST, f"the body is {exc}") from None
    except ValueError:  # not UTF-8 or not JSON
        raise OnboardingError(Code.MALFORMED_REQUEST, "the body is not JSON") from None
    fields = {"setup_code", "ssid", "ssid_hex", "hidden", "passphrase"}
    if not isinstance(data, dict) or set(data) - fields:
        raise OnboardingError(
            Code.MALFORMED_REQUEST, f"expected an object with some of {sorted(fields)}"
        )
    code, passphrase, hidden = (
        data.get("setup_code"),
        data.get("passphrase"),
        data.get("hidden", False),
    )
    if (
        not isinstance(code, str)
        or not isinstance(hidden, bool)
        or not (passphrase is None or isinstance(passphrase, str))
    ):
        raise OnboardingError(
            Code.MALFORMED_REQUEST, "setup_code: str, hidden: bool, passphrase: str or null"
        )
    if ("ssid" in data) == ("ssid_hex" in data):
        raise OnboardingError(Code.MALFORMED_REQUEST, "give exactly one of ssid and ssid_hex")
    try:
        ssid = data["ssid"].encode("utf-8") if "ssid" in data else bytes.fromhex(data["ssid_hex"])
    except (AttributeError, TypeError, ValueError):
        raise OnboardingError(
            Code.MALFORMED_REQUEST, "ssid must be text, ssid_hex hexadecimal"
        ) from None
    try:
        digits = normalize_setup_code(code)
    except ValueError as exc:
        raise OnboardingError(Code.WRONG_SETUP_CODE, str(exc)) from None
    return ssid, Secret(passphrase) if passphrase else None, hidden, Secret(digits)
