"""HTTP clients of the SoftAP door: cookie tokens bound to a client address, and their outboxes.

HTTP has no server push, so what the session layer pushes to a peer (sealed EVENTs, the
session-closed ERROR) waits in that peer's outbox until the client long-polls
``GET /api/v1/events``. A poll that says how many messages its client has (``?after=N``)
acknowledges those: the rest stay queued until a later poll acknowledges them, so an answer
lost on the way (a request left in a listener's backlog, a connection dropped as the AP goes
down) is sent again rather than lost. A poll without ``after`` takes what it is given. An
outbox is bounded: a client that stops reading loses its session (its counters could no longer
line up) instead of growing the daemon's memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

from aiohttp import web

from ...codes import Code
from ...errors import OnboardingError
from .http import LISTENER

MAX_QUEUED = 256  # messages per outbox; one onboarding attempt pushes about 15
MAX_CLIENTS = 16  # outboxes kept; the oldest ones not holding the session go first


@dataclass(frozen=True)
class HttpPeer:
    """The session layer's peer for an HTTP client: equal by its cookie token, shown (in logs,
    reprs) by a short digest of it, never the token itself (it is a bearer credential)."""

    token: str = field(repr=False)

    def __str__(self) -> str:
        return f"http client {hashlib.sha256(self.token.encode()).hexdigest()[:8]}"

    __repr__ = __str__


def peer_of(token: str) -> Hashable:
    """The session layer's peer key for an HTTP client (BLE peers are (central, channel))."""
    return HttpPeer(token)


@dataclass
class Outbox:
    token: str
    remote: str | None
    created: float = field(default_factory=time.monotonic)
    queue: deque[bytes] = field(default_factory=deque)
    overflowed: bool = False
    moved_to_lan: bool = False  # the one move of its address: from the AP to the home network
    acked: int = 0  # messages the client acknowledged (or took without ``after``)
    waiting: int = 0  # long polls waiting now
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def peer(self) -> Hashable:
        return peer_of(self.token)

    def push(self, message: bytes) -> None:
        if len(self.queue) >= MAX_QUEUED:
            self.overflowed = True
            return
        self.queue.append(message)
        self._ready.set()

    def wake(self) -> None:
        """End a waiting long poll early (the listener is closing)."""
        self._ready.set()

    def acknowledge(self, after: int) -> None:
        """The client has the first ``after`` messages: forget them. Raises ValueError when it
        claims more than were ever pushed."""
        if not self.acked <= after <= self.acked + len(self.queue):
            raise ValueError(
                f"after={after}: {self.acked} were acknowledged, "
                f"{self.acked + len(self.queue)} sent"
            )
        while self.acked < after:
            self.queue.popleft()
            self.acked += 1

    async def take(self, wait_s: float, *, keep: bool = False) -> list[bytes]:
        """What is queued, waiting up to ``wait_s`` for the first message; ``keep``: leave it
        queued until acknowledged (two polls waiting at once then both get it, and the phone
        keeps one answer: nothing is split between them)."""
        if not self.queue and wait_s > 0:
            self._ready.clear()
            self.waiting += 1
            try:
                async with asyncio.timeout(wait_s):
                    await self._ready.wait()
            except TimeoutError:
                pass
            finally:
                self.waiting -= 1
        out = list(self.queue)
        if not keep:
            self.acked += len(out)
            self.queue.clear()
        return out


class HttpClients:
    """Tokens handed out in the session cookie, with the client address each is bound to."""

    def __init__(self, holds_session: Callable[[Hashable], bool], cookie: str) -> None:
        self._outboxes: dict[str, Outbox] = {}
        self._holds_session = holds_session
        self.cookie = cookie  # the session cookie's name

    def of_request(self, request: web.Request, *, create: bool) -> tuple[Outbox | None, bool]:
        """The cookie's client (and whether it is new), bound to the address it began on. The
        one exception: the phone that holds the session comes back from the home network for
        the outcome (a new address on the lan listener), once; from then on the cookie is
        bound to that address too. Raises OnboardingError(SESSION_REQUIRED) for a cookie
        shown from another address."""
        box = self.get(request.cookies.get(self.cookie))
        if box is not None and box.remote != request.remote:
            if (
                request.app[LISTENER] == "lan"
                and not box.moved_to_lan
                and self._holds_session(box.peer)
            ):
                box.remote, box.moved_to_lan = request.remote, True
            else:
                raise OnboardingError(
                    Code.SESSION_REQUIRED,
                    "the session cookie belongs to another client address; start a new session",
                )
        if box is None and create:
            return self.new(request.remote), True
        return box, False

    def with_cookie(
        self, response: web.StreamResponse, box: Outbox, new: bool
    ) -> web.StreamResponse:
        """``response``, setting the new client's cookie."""
        if new:
            response.set_cookie(self.cookie, box.token, httponly=True, samesite="Strict", path="/")
        return response

    def get(self, token: str | None) -> Outbox | None:
        return self._outboxes.get(token) if token else None

    def new(self, remote: str | None) -> Outbox:
        if len(self._outboxes) >= MAX_CLIENTS:
            idle = sorted(
                (o for o in self._outboxes.values() if not self._holds_session(o.peer)),
                key=lambda o: o.created,
            )
            for old in idle[: len(self._outboxes) - MAX_CLIENTS + 1]:
                del self._outboxes[old.token]
        box = Outbox(secrets.token_urlsafe(24), remote)
        self._outboxes[box.token] = box
        return box

    def drop(self, token: str) -> None:
        self._outboxes.pop(token, None)

    def wake_all(self) -> None:
        for box in self._outboxes.values():
            box.wake()

    def __iter__(self) -> Iterator[Outbox]:
        return iter(list(self._outboxes.values()))
