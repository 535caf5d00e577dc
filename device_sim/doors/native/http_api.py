"""Native's HTTP API on the SoftAP door: the same session messages as its BLE service.

``POST /api/v1/message`` carries one session message (PAKE_START sets the session cookie,
bound to the client's address), ``GET /api/v1/events`` long-polls the messages the session
pushed (sealed EVENTs, the session-closed ERROR), ``GET /api/v1/info`` says what a client needs
before CONNECT. Paths and listeners come from ``gatt_profile.yaml``'s ``softap.http.endpoints``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ...codes import Code, MessageType
from ...errors import ConfigError, OnboardingError
from ...session.port import DoorPort
from ..personality import HttpRoute
from ..softap.api import SoftApHost
from ..softap.http import json_response, query_ms, read_body, require_content_type, retry_headers
from .session import NativeSession
from .wire import ErrorBody, pack_messages

CAPABILITIES = ["pake-srp6a", "aes-256-gcm", "scan", "hidden-ssid", "portal"]


class NativeHttpApi:
    def __init__(self, port: DoorPort, session: NativeSession, host: SoftApHost) -> None:
        self.port, self.session, self.host = port, session, host
        self.profile = port.profile
        self.http = port.profile.softap.http

    def routes(self) -> list[HttpRoute]:
        handlers: dict[tuple[str, str], Callable[[web.Request], Awaitable[Any]]] = {
            ("POST", "/api/v1/message"): self.message,
            ("GET", "/api/v1/events"): self.events,
            ("GET", "/api/v1/info"): self.info,
        }
        listed = {(e.method, e.path): e for e in self.http.endpoints}
        missing = sorted(set(handlers) - set(listed))
        if missing:
            raise ConfigError(
                "gatt_profile.yaml: softap.http.endpoints", f"native's {missing} are not listed"
            )
        return [
            HttpRoute(method, path, handler, tuple(listed[(method, path)].listeners))
            for (method, path), handler in handlers.items()
        ]

    async def message(self, request: web.Request) -> web.StreamResponse:
        require_content_type(request, self.http.message_content_type)
        body = await read_body(
            request, self.profile.framing.max_message_length, self.http.body_timeout_ms / 1000
        )
        clients = self.host.clients
        box, new = clients.of_request(request, create=body[0] == MessageType.PAKE_START)
        if box is not None:
            replies = await self.session.handle(box.peer, body, box.push)
        elif body[0] in (MessageType.PAKE_PROOF, MessageType.SECURE):
            raise OnboardingError(Code.SESSION_REQUIRED, "no session cookie: start with PAKE_START")
        else:  # not a session request at all: the clear ERROR a BLE peer gets for it
            replies = [
                ErrorBody(
                    Code.MALFORMED_REQUEST,
                    0,
                    f"message type 0x{body[0]:02x} is not a request a client may send",
                ).to_message()
            ]
        status, headers = 200, {"Cache-Control": "no-store"}
        if replies and replies[0][:1] == bytes([MessageType.ERROR]):
            err = ErrorBody.from_body(replies[0][1:])
            status = self.http.status(err.code)
            headers.update(retry_headers(err.retry_after_ms))
        response = web.Response(
            status=status,
            body=pack_messages(replies),
            headers=headers,
            content_type=self.http.messages_content_type,
        )
        return response if box is None else clients.with_cookie(response, box, new)

    async def events(self, request: web.Request) -> web.StreamResponse:
        wait_ms = query_ms(
            request, "wait_ms", self.http.long_poll_max_ms, self.http.long_poll_max_ms
        )
        clients = self.host.clients
        box, _ = clients.of_request(request, create=False)
        if box is None:
            raise OnboardingError(Code.SESSION_REQUIRED, "no session cookie: start with PAKE_START")
        holds = self.port.touch(box.peer)
        if box.overflowed:
            clients.drop(box.token)
            self.port.peer_gone(box.peer)
            raise OnboardingError(Code.CLIENT_TIMEOUT, "events were not collected; session closed")
        after = request.query.get("after")
        if after is not None:
            try:
                box.acknowledge(int(after))
            except ValueError as exc:
                raise OnboardingError(
                    Code.MALFORMED_REQUEST, f"after: a count of messages received ({exc})"
                ) from None
        messages = await box.take(
            wait_ms / 1000 if holds and not self.host.closing else 0, keep=after is not None
        )
        if not messages:
            if not holds:
                clients.drop(box.token)
                raise OnboardingError(Code.SESSION_REQUIRED, "the session has ended")
            return web.Response(status=204, headers={"Cache-Control": "no-store"})
        return web.Response(
            body=pack_messages(messages),
            headers={"Cache-Control": "no-store"},
            content_type=self.http.messages_content_type,
        )

    async def info(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "v": self.profile.protocol_version,
                "rev": self.profile.protocol_revision,
                "id": self.port.identity.device_id,
                "max_msg": self.profile.framing.max_message_length,
                "caps": CAPABILITIES,
                **self.host.describe(),
                "outcome_within_ms": int(self.port.outcome_within_s * 1000),
            },
            headers={"Access-Control-Allow-Origin": "*"},
        )
