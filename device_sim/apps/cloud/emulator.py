"""CloudEmulator: the local activation/claim service devices talk to, over HTTPS on loopback.

::

    async with CloudEmulator(state_dir, factory_chain=chain_pem) as cloud:
        cloud.url, cloud.ca_file, cloud.admin_token

The state directory holds the server CA and certificate (see :mod:`device_sim.apps.cloud.tls`), the
database (``cloud.sqlite3``) and the admin token (``admin-token``), all reused on the next start.
Every database call runs on one worker thread, so the event loop never waits on SQLite or scrypt
and calls never interleave. The API is described in ``API.md`` next to this module.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ...errors import ConfigError
from ...lifecycle import Component
from .activation import ActivationRequest, activate
from .db import DB_FILE, CloudDb
from .errors import CloudApiError, bad_request
from .tls import PeerCertificate, ensure_server_pki, server_context

__all__ = ["ADMIN_TOKEN_FILE", "CloudEmulator"]

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin-token"
ADMIN_HEADER = "X-Admin-Token"
MAX_BODY = 8 * 1024 * 1024
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CloudEmulator(Component):
    """The cloud emulator as a :class:`~device_sim.lifecycle.Component`.

    ``port=0`` picks a free port. ``factory_chain`` (the factory's issuing and root certificates,
    PEM) enables zero-touch and claim activations; ``clock`` returns the time in seconds since
    the epoch (tests inject one to expire claim tokens).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        factory_chain: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.factory_chain = factory_chain
        self.clock = clock
        self.ca_file = self.state_dir / "server-ca.pem"
        self.admin_token = ""
        self._db: CloudDb | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """``https://localhost:<port>`` (the listen host instead if it is not loopback)."""
        host = "localhost" if self.host in _LOOPBACK else self.host
        return f"https://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"CloudEmulator({str(self.state_dir)!r}, url={self.url!r})"

    async def start(self) -> None:
        """Create or reuse the state, then listen.

        Raises:
            ConfigError: unusable state dir, certificates or factory chain.
            StoreError: the database cannot be opened.
            OSError: the address cannot be bound.
        """
        try:
            try:
                self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cloud state dir {self.state_dir}", str(exc)) from exc
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cloud-db")
            pki = await self._call(
                ensure_server_pki, self.state_dir, ("localhost", "127.0.0.1", self.host)
            )
            context = server_context(pki, self.factory_chain)
            self.admin_token = await self._call(_load_admin_token, self.state_dir)
            self._db = await self._call(CloudDb.open, self.state_dir / DB_FILE)
            app = web.Application(middlewares=[_json_errors], client_max_size=MAX_BODY)
            app.add_routes(
                [
                    web.post("/v1/units/import", self._admin(self._import)),
                    web.post("/v1/accounts", self._admin(self._add_account)),
                    web.post("/v1/supply-chain", self._admin(self._supply_chain)),
                    web.post("/v1/activate", self._activate),
                    web.get("/v1/devices/self", self._device_self),
                    web.post("/v1/devices/self/release", self._release),
                    web.get("/v1/accounts/{name}/devices", self._account_devices),
                ]
            )
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, ssl_context=context)
            await site.start()
            self.port = int(self._runner.addresses[0][1])
        except BaseException:
            await self.stop()
            raise
        log.info("cloud emulator listening on %s (state %s)", self.url, self.state_dir)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        db, self._db = self._db, None
        executor, self._executor = self._executor, None
        if executor is not None:
            if db is not None:
                await asyncio.get_running_loop().run_in_executor(executor, db.close)
            executor.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the database thread."""
        if self._executor is None:
            raise CloudApiError(503, "unavailable", "the emulator is stopping")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def record_binding(self, device_id: str, account: str, mode: str) -> int:
        """Bind a unit to ``account`` as if it had been set up there before (QA)."""
        return await self._call(self.db.record_binding, device_id, account, mode, time.time())

    @property
    def db(self) -> CloudDb:
        if self._db is None:
            raise CloudApiError(503, "unavailable", "the emulator is not running")
        return self._db

    # -- admin ----------------------------------------------------------------------------------

    def _admin(self, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            given = request.headers.get(ADMIN_HEADER, "")
            if not hmac.compare_digest(given.encode(), self.admin_token.encode()):
                raise CloudApiError(
                    401, "admin_token_required", f"the {ADMIN_HEADER} header is missing or wrong"
                )
            return await handler(request)

        return checked

    async def _import(self, request: web.Request) -> web.Response:
        units, keys = await self._call(self.db.import_batch, await _body(request), self.clock())
        log.info("imported %d units and %d registration keys", units, keys)
        return web.json_response({"imported": units, "registration_keys": keys})

    async def _add_account(self, request: web.Request) -> web.Response:
        name = await self._call(self.db.add_account, await _body(request), self.clock())
        log.info("account %s created", name)
        return web.json_response({"name": name}, status=201)

    async def _supply_chain(self, request: web.Request) -> web.Response:
        serial, account = await self._call(
            self.db.set_supply_chain, await _body(request), self.clock()
        )
        log.info("supply chain: serial %s -> account %s", serial, account)
        return web.json_response({"serial": serial, "account": account}, status=201)

    # -- devices --------------------------------------------------------------------------------

    async def _activate(self, request: web.Request) -> web.Response:
        req = ActivationRequest.from_json(await _body(request))
        peer = _peer_certificate(request)
        try:
            response, replayed = await self._call(activate, self.db, req, peer, self.clock())
        except CloudApiError as exc:
            log.info(
                "activation %s of %s refused: %s %s", req.mode, req.device_id, exc.error, exc.detail
            )
            raise
        log.info(
            "activation %s of %s -> account %s, generation %d%s",
            req.mode,
            req.device_id,
            response["account"],
            response["generation"],
            " (replayed)" if replayed else "",
        )
        return web.json_response(response)

    async def _device_self(self, request: web.Request) -> web.Response:
        token, basic = _bearer(request), _basic(request)
        return web.json_response(await self._call(self.db.authenticate_device, token, basic))

    async def _release(self, request: web.Request) -> web.Response:
        token = _bearer(request)
        if token is None:
            raise CloudApiError(401, "invalid_token", "a bearer token is required")
        result = await self._call(self.db.release, token, self.clock())
        log.info("device %s released", result["device_id"])
        return web.json_response(result)

    async def _account_devices(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        basic = _basic(request)
        if basic is None or basic[0] != name:
            raise CloudApiError(
                401, "invalid_credentials", f"HTTP Basic authentication as {name} is required"
            )
        return web.json_response(await self._call(self.db.list_devices, name, basic[1]))


# -- request helpers ------------------------------------------------------------------------------


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as ``{"error", "detail"}``; unexpected exceptions as a logged 500."""
    try:
        return await handler(request)
    except CloudApiError as exc:
        headers = (
            {"WWW-Authenticate": 'Basic realm="device-sim cloud"'}
            if exc.error == "invalid_credentials"
            else None
        )
        return web.json_response(exc.to_json(), status=exc.status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        name = (exc.reason or "error").lower().replace(" ", "_")
        return web.json_response({"error": name, "detail": exc.reason}, status=exc.status)
    except Exception:
        log.exception("internal error in %s %s", request.method, request.path)
        return web.json_response(
            {"error": "internal_error", "detail": "see the emulator log"}, status=500
        )


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise bad_request("the body must be JSON") from None


def _peer_certificate(request: web.Request) -> PeerCertificate | None:
    """The client certificate the TLS layer verified, or None if none was presented."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    try:
        return PeerCertificate.from_der(der)
    except ValueError as exc:
        raise CloudApiError(
            403, "activation_rejected", f"unusable client certificate: {exc}"
        ) from None


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


def _basic(request: web.Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _load_admin_token(state_dir: Path) -> str:
    """The admin token in ``state_dir/admin-token``, made (0600) on first start.

    Raises:
        ConfigError: the file cannot be read or written.
    """
    path = state_dir / ADMIN_TOKEN_FILE
    try:
        token = path.read_text().strip() if path.exists() else ""
        if token:
            return token
        # Prefixed: a token_urlsafe value starts with "-" one time in 64, and a command line
        # (`--admin-token -xyz...`) would take it for an option.
        token = "adm_" + secrets.token_urlsafe(24)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cloud state dir {state_dir}", f"admin token: {exc}") from exc
    return token
