"""The watch listener: a device's event stream over HTTP, read-only, separate from the SoftAP API.

``GET /events`` is a Server-Sent Events stream: the device's current state (``event: state``),
the last events before the watcher joined, then every event as it happens (``event: onboarding``,
its ``id`` the event's sequence number; a comment every 15 s keeps idle connections open).
``GET /state`` is the current state as JSON. Nothing can be changed through it.

Bound to loopback (the default) it is open to local processes, unless ``require_token`` is
set (``--watch-require-token``); bound elsewhere it always requires the token in
``<state_dir>/watch.token`` (0600, made at start) as ``Authorization: Bearer <token>`` or
``?token=``. The token is never logged.

It is a guarded listener (:mod:`device_sim.guarded_http`), as the SoftAP's are: headers due
within 5 s of a request's first byte, connections capped per address and in all, coded JSON
for whatever its parser refuses. A flood of connections cannot take the descriptors the
device needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ..codes import Code
from ..core.events import DiagnosticEvent, EventBus
from ..doors.softap.http import coded_answer
from ..errors import TransportError
from ..guarded_http import (
    ACCEPT_BURST,
    ConnectionGuard,
    GuardedRunner,
    expect_handler,
    handler_state,
)
from ..lifecycle import Component
from ..profile import Profile
from ..ratelimit import LimitedLog
from .options import WatchOptions

LOG = logging.getLogger(__name__)
TOKEN_FILE = "watch.token"
BACKLOG = 20
QUEUE = 1000  # events held for a slow watcher before it is let go
KEEPALIVE_S = 15.0
HEADER_TIMEOUT_S = 5.0


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class WatchServer(Component):
    def __init__(
        self,
        options: WatchOptions,
        events: EventBus,
        snapshot: Callable[[], dict[str, Any]],
        state_dir: Path,
        profile: Profile,
    ) -> None:
        self.options, self.events, self.snapshot = options, events, snapshot
        self.state_dir = state_dir
        self.profile = profile
        self._page_bytes: bytes | None = None
        self.token: str | None = None
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self.rejected = LimitedLog(LOG, "watch: rejected request", burst=10, window_s=60)
        self.guard = ConnectionGuard("watch", self.rejected)

    async def start(self) -> None:
        """Raises TransportError when the address cannot be bound."""
        host, port = self.options.listen
        if self.options.require_token or not is_loopback(host):
            self.token = secrets.token_urlsafe(24)
            path = self.state_dir / TOKEN_FILE
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(self.token + "\n")
        app = web.Application(middlewares=[self._guard])
        answer = coded_answer(self.profile)
        expect = expect_handler(answer, self.rejected)
        for route, handler in (
            ("/", self._page),
            ("/events", self._events),
            ("/state", self._state),
            ("/history", self._history),
        ):
            app.router.add_route("GET", route, handler, expect_handler=expect)
        runner = GuardedRunner(
            app,
            answer=answer,
            header_timeout_s=HEADER_TIMEOUT_S,
            rejected=self.rejected,
            guard=self.guard,
            access_log=None,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, backlog=ACCEPT_BURST)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise TransportError(
                f"cannot listen on {host}:{port} (--watch-listen): {exc.strerror or exc}; "
                "another process holds it, or give another address or port with --watch-listen"
            ) from exc
        self._runner = runner
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        LOG.info(
            "watch listener on %s%s", self.url, "" if self.token is None else " (token required)"
        )

    async def stop(self) -> None:
        for task in list(self._streams):
            task.cancel()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        handler_state(request, busy=True)
        try:
            if self.token is not None:
                given = request.query.get("token", "")
                auth = request.headers.get("Authorization", "")
                if auth.startswith("Bearer "):
                    given = auth.removeprefix("Bearer ")
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    self.rejected.log(logging.INFO, "no valid token from %s", request.remote)
                    return web.json_response(
                        {
                            "error": "a token is required",
                            "code_name": Code.SESSION_REQUIRED.name,
                            "next_step": f"give the token in {self.state_dir / TOKEN_FILE} as "
                            "'Authorization: Bearer <token>' or ?token=",
                        },
                        status=401,
                    )
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            self.rejected.log(logging.INFO, "%s %s: %d", request.method, request.path, exc.status)
            return web.json_response(
                {"error": exc.reason, "code_name": Code.MALFORMED_REQUEST.name}, status=exc.status
            )
        finally:
            handler_state(request, busy=False)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        """The watch page: one self-contained file (inline style and script, no assets) with
        the codes' documentation inside, following /events live."""
        if self._page_bytes is None:
            self._page_bytes = page(self.profile)
        return web.Response(
            body=self._page_bytes,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'",
            },
        )

    async def _history(self, request: web.Request) -> web.StreamResponse:
        """The device's past onboardings (their outcomes), newest first, from its event log."""
        return web.json_response(
            {"onboardings": history(self.state_dir)}, headers={"Cache-Control": "no-store"}
        )

    async def _state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.snapshot(), headers={"Cache-Control": "no-store"})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        try:
            await response.prepare(request)
            await response.write(_sse("state", self.snapshot()))
            events = self.events.follow(BACKLOG, QUEUE)
            pending = asyncio.ensure_future(anext(events))
            try:
                while True:
                    done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                    if not done:
                        await response.write(b": keepalive\n\n")
                        continue
                    try:
                        event, past = pending.result()
                    except StopAsyncIteration:
                        break
                    await response.write(_sse("onboarding", _item(event, backlog=past), event.seq))
                    pending = asyncio.ensure_future(anext(events))
            finally:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending  # the generator must be idle before it is closed
                await events.aclose()
        except ConnectionResetError:  # the watcher went away
            pass
        finally:
            self._streams.discard(task)
        return response


def history(state_dir: Path, keep: int = 50) -> list[dict[str, Any]]:
    """The outcomes (online or failed) in the device's event log, newest first."""
    out: list[dict[str, Any]] = []
    for name in ("onboarding.jsonl.1", "onboarding.jsonl"):
        path = state_dir / name
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(event, dict) and event.get("phase") in ("online", "failed"):
                out.append(
                    {
                        key: event.get(key)
                        for key in ("at", "seq", "state", "code", "code_name", "since_connect_ms")
                    }
                )
    return out[::-1][:keep]


def page(profile: Profile) -> bytes:
    """The watch page with every code's documentation inlined (JSON, safe inside a script)."""
    from ..support.docs import code_docs

    codes = {str(d.entry.id): d.to_json() for d in code_docs(profile)}
    data = json.dumps(codes, separators=(",", ":")).replace("<", "\\u003c")
    template = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    return template.replace("/*CODES*/{}", data).encode("utf-8")


def _item(event: DiagnosticEvent, *, backlog: bool = False) -> dict[str, Any]:
    out = {"kind": "event", **event.to_json()}
    if backlog:
        out["backlog"] = True
    return out


def _sse(kind: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    lines = [f"event: {kind}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()
