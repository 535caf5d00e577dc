"""Phone-side link to the SoftAP door over HTTP (the reference client's ``--softap URL``).

:class:`HttpLink` offers what :class:`~device_sim.doors.native.client.BleLink` offers to a
:class:`~device_sim.doors.native.client.ClientSession` (``send``, ``receive``, ``read_state``,
``read_info``), so the same SRP handshake, encrypted requests and events run over HTTP:
``send`` POSTs one message and queues the answers, ``receive`` long-polls for pushed ones.

One radio on the device: the AP disappears while the device joins. ``receive`` then keeps
trying, within its timeout, both the AP URL (it comes back after a failed join, with the failure
queued in this session) and the device's home-network URL announced in ``/api/v1/info`` (it
answers after a successful join while this session is open).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import Any

import aiohttp

from ...codes import Code, State
from ...dial import Resolver, describe_connect_error, http_connector
from ...errors import DeviceUnreachable, OnboardingError
from ...profile import Profile
from ...wire import PublicState, unpack_messages

LOG = logging.getLogger(__name__)
RETRY_INTERVAL_S = 0.25  # between attempts to reach a device whose AP is down (bounded by timeout)


class HttpLink:
    """One client of a device's SoftAP API. Use as an async context manager."""

    def __init__(
        self,
        profile: Profile,
        url: str,
        *,
        request_timeout: float = 10.0,
        resolver: Resolver | None = None,
    ) -> None:
        """``resolver``: how host names in the URLs resolve (default the system's); every
        address is tried (Happy Eyeballs)."""
        self.profile = profile
        self._resolver = resolver
        self.http = profile.softap.http
        self.ap_url = url.rstrip("/")
        self.lan_url: str | None = None
        self.base = self.ap_url
        self.request_timeout = request_timeout
        self.token: str | None = None
        self.inbox: collections.deque[bytes] = collections.deque()
        self.writes = 0
        self.round_trips = 0
        self.info: dict[str, Any] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpLink:
        self._session = aiohttp.ClientSession(
            connector=http_connector(self._resolver),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        try:
            self.info = await self.read_info()
        except BaseException:
            await self._session.close()
            raise
        self.lan_url = self.info.get("lan_url")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    # --- requests ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Cookie": f"{self.http.session_cookie}={self.token}"} if self.token else {}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None = None,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes, str]:
        """One request to the current base URL. Raises DeviceUnreachable when nothing answers."""
        assert self._session is not None, "use 'async with HttpLink(...)'"
        url = self.base + path
        headers = self._headers()
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            async with asyncio.timeout(timeout or self.request_timeout):
                async with self._session.request(
                    method, url, data=data, headers=headers, allow_redirects=False
                ) as resp:
                    body = await resp.read()
                    cookie = resp.cookies.get(self.http.session_cookie)
                    if cookie is not None:
                        self.token = cookie.value
                    return resp.status, body, resp.content_type
        except TimeoutError:
            raise DeviceUnreachable(
                f"{method} {url}: no answer within {timeout or self.request_timeout:g} s"
            ) from None
        except aiohttp.ClientConnectionError as exc:
            raise DeviceUnreachable(f"{method} {url}: {describe_connect_error(exc)}") from None

    def _raise_json_error(self, status: int, body: bytes, ctype: str) -> None:
        if ctype == "application/json" and status >= 400:
            try:
                err = json.loads(body)
                code = Code(err["code"])
            except (ValueError, KeyError, TypeError):
                raise DeviceUnreachable(
                    f"{self.base}: HTTP {status} with a JSON body that is "
                    "not a device-sim error: not a device-sim device?"
                ) from None
            raise OnboardingError(
                code,
                str(err.get("detail", "")),
                retry_after_ms=int(err.get("retry_after_ms", 0) or 0),
            )
        if status >= 400 and ctype != self.http.messages_content_type:
            raise DeviceUnreachable(
                f"{self.base}: HTTP {status} ({ctype or 'no body'}): no device-sim SoftAP API there"
            )

    def _json(self, path: str, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise DeviceUnreachable(
                f"{self.base}{path}: the answer is not a device-sim JSON "
                "document: not a device-sim device?"
            )
        return data

    async def read_info(self) -> dict[str, Any]:
        status, body, ctype = await self._request("GET", "/api/v1/info")
        self._raise_json_error(status, body, ctype)
        return self._json("/api/v1/info", body)

    async def read_state(self) -> PublicState:
        status, body, ctype = await self._request("GET", "/api/v1/state")
        self._raise_json_error(status, body, ctype)
        data = self._json("/api/v1/state", body)
        try:
            return PublicState(
                State[str(data["state"]).upper()], Code(data["code"]), int(data["attempt"])
            )
        except (KeyError, ValueError, TypeError):
            raise DeviceUnreachable(
                f"{self.base}/api/v1/state: not a device-sim state document"
            ) from None

    async def send(self, message: bytes) -> None:
        """POST one message; the answers (reply, then the events it caused) wait in the inbox."""
        status, body, ctype = await self._request(
            "POST", "/api/v1/message", data=message, content_type=self.http.message_content_type
        )
        self.writes += 1
        self._raise_json_error(status, body, ctype)
        self.inbox.extend(unpack_messages(body))

    async def receive(self, timeout: float) -> bytes:
        """The next message for this client, long-polling (and riding out the AP gap).

        Raises TimeoutError when nothing arrives within ``timeout``; OnboardingError when the
        device says the session is gone.
        """
        deadline = time.monotonic() + timeout
        while not self.inbox:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            wait_ms = int(min(remaining, self.http.long_poll_max_ms / 1000) * 1000)
            try:
                status, body, ctype = await self._request(
                    "GET", f"/api/v1/events?wait_ms={wait_ms}", timeout=wait_ms / 1000 + 5
                )
            except DeviceUnreachable as exc:
                LOG.debug("device not reachable at %s (%s)", self.base, exc)
                self._switch_base()
                await asyncio.sleep(min(RETRY_INTERVAL_S, max(0.0, deadline - time.monotonic())))
                continue
            self._raise_json_error(status, body, ctype)
            if status == 200:
                self.inbox.extend(unpack_messages(body))
        return self.inbox.popleft()

    def _switch_base(self) -> None:
        """AP gone: try the home-network URL next, and the other way round."""
        if self.lan_url and self.base == self.ap_url:
            self.base = self.lan_url
        else:
            self.base = self.ap_url
