"""Diagnostic events: what the engine tells every door, the log and the CLI.

An event is emitted on every state transition and at the start of every phase of a join
("associating", "dhcp", "tls", ...). Events carry codes and phase names, never secrets. Subscribers
are plain callables invoked synchronously in emission order; a subscriber that raises is logged
and does not stop the others. :class:`JsonlLog` appends each event to the device's onboarding log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from ..codes import Code, State

LOG = logging.getLogger(__name__)


class EventPhase(StrEnum):
    """The phases of the engine, the doors and the daemon. The backend's join and check phases
    (scanning, associating, dhcp, ..., tls) are :class:`device_sim.network.base.Phase`; an event
    carries one or the other. Both are StrEnums: the JSON, the logs and the BLE characteristics
    carry the plain names, and comparisons with those names still hold."""

    # The engine's transitions and notes.
    BOOT = "boot"
    RECOVERED = "recovered"
    SESSION = "session"
    SESSION_CLOSED = "session_closed"
    CREDENTIALS = "credentials"
    FACTORY = "factory"  # credentials loaded at the factory (QR pre-provisioning)
    JOINING = "joining"
    VERIFYING = "verifying"
    ACTIVATION = "activation"
    ONLINE = "online"
    FAILED = "failed"
    TIMEOUT = "timeout"
    FACTORY_RESET = "factory_reset"
    # The connected life after `online` (core/life.py): a loss is a transition online -> failed
    # with its own phase and code; the rest are notes.
    LINK_LOST = "link_lost"  # the Wi-Fi link dropped (AP gone, deauthenticated)
    LEASE_LOST = "lease_lost"  # the DHCP lease was not renewed: the address is gone
    DNS_LOST = "dns_lost"  # still associated, name resolution stopped
    INTERNET_LOST = "internet_lost"  # still associated, the internet stopped answering
    RECONNECT = "reconnect"  # a retry of the saved networks: scheduled, postponed, its result
    REOPEN = "reopen"  # no connectivity for a while: the doors reopen by the door policy
    NETWORKS = "networks"  # the saved networks changed (forgotten by an app)
    WORLD = "world"  # the simulated world changed (a scenario's timeline, a link fault)
    # Notes of the doors and the daemon. (A personality's own notes carry its name as their
    # phase, e.g. "improv": see DoorPort.note_own.)
    DOOR = "door"
    IDENTIFY = "identify"
    BUTTON = "button"
    FAULT = "fault"  # a QA fault added to or removed from the simulated world
    PREFLIGHT = "preflight"  # a finding of the doctor's checks the daemon ran as it started


# Phases that change what the device advertises or its doors show (state, code, attempt).
STATE_PHASES = frozenset(
    {
        EventPhase.BOOT,
        EventPhase.RECOVERED,
        EventPhase.SESSION,
        EventPhase.SESSION_CLOSED,
        EventPhase.CREDENTIALS,
        EventPhase.JOINING,
        EventPhase.VERIFYING,
        EventPhase.ONLINE,
        EventPhase.FAILED,
        EventPhase.TIMEOUT,
        EventPhase.FACTORY_RESET,
        EventPhase.LINK_LOST,
        EventPhase.LEASE_LOST,
        EventPhase.DNS_LOST,
        EventPhase.INTERNET_LOST,
    }
)
# The connected life's losses: each the phase of a transition online -> failed, with its code.
LOSS_PHASES = frozenset(
    {EventPhase.LINK_LOST, EventPhase.LEASE_LOST, EventPhase.DNS_LOST, EventPhase.INTERNET_LOST}
)


@dataclass(frozen=True)
class DiagnosticEvent:
    seq: int  # per device, rising across restarts
    t_ms: int  # milliseconds since the current attempt (or the daemon) started
    state: State
    code: Code
    phase: str  # an EventPhase, or a backend's network.base.Phase (both str)
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    at: str = ""  # wall-clock time, RFC 3339 UTC with milliseconds
    since_session_ms: int | None = None  # since the session that led here opened
    since_connect_ms: int | None = None  # since CONNECT started the current attempt

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state.wire_name
        out["code"] = int(self.code)
        out["code_name"] = self.code.name
        return out

    def compact(self) -> dict[str, Any]:
        """The short form for the diagnostics characteristic (fits 128 bytes)."""
        return {
            "seq": self.seq,
            "state": int(self.state),
            "code": int(self.code),
            "phase": self.phase[:16],
            "t_ms": self.t_ms,
            "at": self.at,
        }


Subscriber = Callable[[DiagnosticEvent], None]


class EventBus:
    """Fan-out of diagnostic events to subscribers, in order."""

    def __init__(self, keep: int = 200) -> None:
        self._subscribers: list[Subscriber] = []
        self.last: DiagnosticEvent | None = None
        self.recent: deque[DiagnosticEvent] = deque(maxlen=keep)  # for late joiners

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    async def follow(
        self, backlog: int = 20, limit: int = 1000
    ) -> AsyncGenerator[tuple[DiagnosticEvent, bool], None]:
        """Each event from now on as ``(event, False)``, after the last ``backlog`` ones as
        ``(event, True)``; ends when more than ``limit`` wait unread (a watcher that cannot keep
        up is let go). Stops following when the iteration is closed."""
        queue: asyncio.Queue[DiagnosticEvent | None] = asyncio.Queue()

        def follow(event: DiagnosticEvent) -> None:
            if queue.qsize() < limit:
                queue.put_nowait(event)
            elif queue.qsize() == limit:
                queue.put_nowait(None)

        past = list(self.recent)[-backlog:] if backlog else []
        unsubscribe = self.subscribe(follow)
        try:
            for event in past:
                yield event, True
            while (new := await queue.get()) is not None:
                yield new, False
        finally:
            unsubscribe()

    def emit(self, event: DiagnosticEvent) -> None:
        self.last = event
        self.recent.append(event)
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:  # a broken subscriber must not stop onboarding
                LOG.exception("event subscriber %r failed", fn)


class JsonlLog:
    """Appends events as JSON lines to ``<state_dir>/onboarding.jsonl`` (flushed per line).

    The file is private (0600, whatever the umask) and bounded, as on a device with a small
    flash: past ``max_bytes`` it is renamed to ``onboarding.jsonl.1`` (replacing the previous
    one) and a new file starts, so the two never hold more than about ``2 * max_bytes``
    (256 KiB each by default: some 90 onboardings). A write that fails (a full disk) is logged
    once and dropped: the event log never stops onboarding.
    """

    DEFAULT_MAX_BYTES = 256 * 1024

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._failed = False
        self._file = self._open()

    def _open(self) -> TextIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # also a file made before, or under a permissive umask
        self._size = os.fstat(fd).st_size
        return os.fdopen(fd, "a", encoding="utf-8")

    def __call__(self, event: DiagnosticEvent) -> None:
        line = json.dumps(event.to_json(), sort_keys=True) + "\n"
        try:
            size = len(line.encode("utf-8"))
            if self._size + size > self.max_bytes and self._size > 0:
                self._rotate()
            self._file.write(line)
            self._file.flush()
            self._size += size
            self._failed = False
        except OSError as exc:
            if not self._failed:
                LOG.warning(
                    "cannot write the event log %s (%s); events are dropped until it works again",
                    self.path,
                    exc.strerror or exc,
                )
            self._failed = True

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._file = self._open()

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:  # the last lines could not be written (already reported)
            pass


def rfc3339(epoch_s: float) -> str:
    """``epoch_s`` as RFC 3339 UTC with milliseconds, e.g. ``2026-11-30T10:43:18.123Z``."""
    stamp = dt.datetime.fromtimestamp(epoch_s, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
