"""The ESP personality, device side: protocomm endpoints over BLE and over the SoftAP listener.

:class:`EspEndpoints` answers one endpoint request of one protocomm session (bytes in, bytes
out), whatever carried it; :class:`EspPersonality` puts it on the BLE host (one read+write
characteristic per endpoint, its name in a 0x2901 user description; write the request, read the
answer) and on the SoftAP door (``POST /<endpoint>``, the session bound by a ``session`` cookie).
The protocol under the endpoints is described in :mod:`.endpoints`.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from typing import Any

from ...codes import Code
from ...errors import OnboardingError
from ...guarded_http import read_body
from ...session.port import DoorPort
from ..ble.gatt import Advertised, GattChar, GattHost, GattService
from ..personality import Handler, HttpRoute
from .endpoints import (
    COOKIE,
    MAX_HTTP_CLIENTS,
    MAX_REQUEST,
    USER_DESCRIPTION,
    CookiePeer,
    EndpointError,
    EspEndpoints,
)
from .profile import DIAG, ENDPOINTS, esp_def

LOG = logging.getLogger(__name__)


class EspPersonality:
    """The ESP personality on the BLE host and the SoftAP door."""

    name = "esp"

    def __init__(self, port: DoorPort, *, security: int | None, patch: int | None) -> None:
        self.port = port
        self.spec = esp_def(port.profile)
        self.endpoints = EspEndpoints(
            port,
            self.spec,
            security=self.spec.security if security is None else security,
            patch=self.spec.sec_patch_ver if patch is None else patch,
        )
        self.security = self.endpoints.version
        self._issued: OrderedDict[str, str | None] = OrderedDict()  # cookie -> client address

    # --- BLE ---------------------------------------------------------------------------------

    def gatt(self) -> list[GattService]:
        chars = [
            GattChar(
                uuid,
                ("read", "write"),
                b"",
                descriptors=((USER_DESCRIPTION, name.encode()),),
                respond=self._responder(name),
            )
            for name, uuid in self.spec.endpoints.items()
        ]
        return [GattService(self.spec.service_uuid, chars)]

    def _responder(self, endpoint: str) -> Any:
        async def respond(data: bytes, central: str | None) -> bytes:
            try:
                return await self.endpoints.call(endpoint, ("esp", central), data)
            except EndpointError as exc:
                LOG.info("esp: %s over BLE: %s", endpoint, exc)
                return b""
            except Exception:  # a bug must still answer
                LOG.exception("esp: %s failed", endpoint)
                return b""

        return respond

    def advertised(self) -> Advertised:
        return Advertised([self.spec.service_uuid], {}, {})

    def attach(self, host: GattHost) -> None:
        pass  # answers are read back; nothing is notified

    def on_write(self, char_uuid: str, value: bytes, central: str | None) -> None:
        pass  # every endpoint is a request/response characteristic

    def on_connections(self, connected: frozenset[str], gone: frozenset[str]) -> None:
        for central in gone:
            self.endpoints.drop(("esp", central))

    def commands(self) -> dict[str, Handler]:
        async def label(args: dict[str, object]) -> dict[str, object]:
            from .identity import qr_payload

            return {
                "qr": qr_payload(self.port, self.spec, transport=str(args.get("transport", "ble")))
            }

        return {"esp-label": label}

    def press_button(self, source: str) -> dict[str, object] | None:
        return None

    async def stop(self) -> None:
        self.endpoints.close()

    # --- SoftAP ------------------------------------------------------------------------------

    def _cookie(self, request: Any) -> tuple[str, bool]:
        """The client's session cookie: one this device issued, from the address it was issued
        to. A cookie the client made up is not one (a new one is issued); a cookie from
        another address is refused (SESSION_REQUIRED): another station on the AP that saw it
        can neither end the session with a CMD0 nor replay into it."""
        given = request.cookies.get(COOKIE)
        issued = self._issued.get(given) if given else None
        if issued is not None:
            if issued != request.remote:
                raise OnboardingError(
                    Code.SESSION_REQUIRED,
                    "the session cookie belongs to another client address; start a new session",
                )
            self._issued.move_to_end(given)
            return given, False
        while len(self._issued) >= MAX_HTTP_CLIENTS:
            unused = [
                t for t in self._issued if not self.endpoints.has_session(CookiePeer(t))
            ] or list(self._issued)
            del self._issued[unused[0]]
        token = secrets.token_urlsafe(24)
        self._issued[token] = request.remote
        return token, True

    def http_routes(self, host: object) -> list[HttpRoute]:
        return [HttpRoute("POST", f"/{name}", self._http(name)) for name in (*ENDPOINTS, DIAG)]

    def _http(self, endpoint: str) -> Any:
        from aiohttp import web

        http = self.port.profile.softap.http

        async def handle(request: web.Request) -> web.StreamResponse:
            """Errors are raised as OnboardingError: the SoftAP door answers them coded."""
            body = await read_body(request, MAX_REQUEST, http.body_timeout_ms / 1000)
            token, new = self._cookie(request)
            try:
                answer = await self.endpoints.call(endpoint, CookiePeer(token), body)
            except EndpointError as exc:
                LOG.info("esp: %s over HTTP: %s", endpoint, exc)
                raise OnboardingError(exc.code, str(exc)) from None
            response = web.Response(body=answer, content_type="application/octet-stream")
            if new:
                response.headers["Set-Cookie"] = f"{COOKIE}={token}; Path=/; HttpOnly"
            return response

        return handle
