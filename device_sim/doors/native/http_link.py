"""Phone-side link to the SoftAP door over HTTP (the reference client's ``--softap URL``).

:class:`HttpLink` offers what :class:`~device_sim.doors.native.client.BleLink` offers to a
:class:`~device_sim.doors.native.client.ClientSession` (``send``, ``receive``, ``read_state``,
``read_info``), so the same SRP handshake, encrypted requests and events run over HTTP:
``send`` POSTs one message and queues the answers, ``receive`` long-polls for pushed ones.

One radio on the device: the AP disappears while the device joins. The device keeps the
sockets of both its listeners bound and listening meanwhile (a request waits in the kernel's
backlog until its listener opens), so ``receive`` long-polls the AP URL and the device's
home-network URL announced in ``/api/v1/info`` at once and takes the answer of whichever
listener serves: the AP again after a failed join (the failure is queued in this session), the
home network after a successful one (while this session is open). Each poll acknowledges the
messages received so far (``after``): the device keeps the rest until then, so an answer lost
with a dropped request is sent again. Only a device that refuses outright (it is gone) is
retried after ``RETRY_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import Any, NamedTuple

import aiohttp

from ...codes import Code, State
from ...dial import Resolver, describe_connect_error, http_connector
from ...errors import DeviceUnreachable, OnboardingError
from ...profile import Profile
from .wire import PublicState, unpack_messages

LOG = logging.getLogger(__name__)
RETRY_INTERVAL_S = 0.25  # between attempts to reach a device that refuses (bounded by timeout)
RESENDS = 8  # per poll, of a request to one URL that failed while the other one waits


class _Answer(NamedTuple):
    status: int
    body: bytes
    ctype: str


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
        self.received = 0  # messages polled so far: each poll acknowledges them (``after``)
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
        base: str | None = None,
    ) -> _Answer:
        """One request to ``base`` (default the current base URL). Raises DeviceUnreachable
        when nothing answers."""
        assert self._session is not None, "use 'async with HttpLink(...)'"
        url = (base or self.base) + path
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
                    return _Answer(resp.status, body, resp.content_type)
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
                async with asyncio.timeout(remaining):
                    base, answer = await self._poll(
                        f"/api/v1/events?wait_ms={wait_ms}&after={self.received}",
                        wait_ms / 1000 + 5,
                    )
            except DeviceUnreachable as exc:  # refused: nothing listens there (a device gone)
                LOG.debug("device not reachable (%s)", exc)
                await asyncio.sleep(min(RETRY_INTERVAL_S, max(0.0, deadline - time.monotonic())))
                continue
            self.base = base
            self._raise_json_error(answer.status, answer.body, answer.ctype)
            if answer.status == 200:
                messages = unpack_messages(answer.body)
                self.received += len(messages)
                self.inbox.extend(messages)
        return self.inbox.popleft()

    async def _poll(self, path: str, timeout: float) -> tuple[str, _Answer]:
        """GET ``path`` from the AP and the home-network URL at once: the first answer with
        messages (or an error) wins, the other request is dropped. A URL that answers empty
        (its listener going down) or fails (a kept-alive connection it closed) while the other
        still waits is asked again, at most ``RESENDS`` times: the request then waits in that
        listener's backlog until it is back. Only empty answers give an empty one."""
        bases = [self.ap_url]
        if self.lan_url and self.lan_url != self.ap_url:
            bases.append(self.lan_url)

        async def get(base: str, delay: float) -> _Answer:
            if delay:
                await asyncio.sleep(delay)
            return await self._request("GET", path, timeout=timeout, base=base)

        tasks = {asyncio.ensure_future(get(b, 0)): b for b in bases}
        resends = dict.fromkeys(bases, 0)
        pending = set(tasks)
        empty: tuple[str, _Answer] | None = None
        failure: BaseException | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    base, exc = tasks[task], task.exception()
                    if exc is None and task.result().status != 204:
                        return base, task.result()
                    if exc is None:
                        empty = base, task.result()
                    else:
                        failure = exc
                    if pending and resends[base] < RESENDS:  # the other still waits: again
                        resends[base] += 1
                        delay = 0 if resends[base] == 1 else RETRY_INTERVAL_S
                        again = asyncio.ensure_future(get(base, delay))
                        tasks[again] = base
                        pending.add(again)
            if empty is not None:
                return empty
            assert failure is not None
            raise failure
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
