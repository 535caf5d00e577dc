"""Diagnostic events: what the engine tells every door, the log and the CLI.

An event is emitted on every state transition and at the start of every phase of a join
("associating", "dhcp", "tls", ...). Events carry codes and phase names, never secrets. Subscribers
are plain callables invoked synchronously in emission order; a subscriber that raises is logged
and does not stop the others. :class:`JsonlLog` appends each event to the device's onboarding log.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .codes import Code, State

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiagnosticEvent:
    seq: int
    t_ms: int              # milliseconds since the current attempt (or the daemon) started
    state: State
    code: Code
    phase: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state.wire_name
        out["code"] = int(self.code)
        out["code_name"] = self.code.name
        return out

    def compact(self) -> dict[str, Any]:
        """The short form for the diagnostics characteristic (fits 128 bytes)."""
        return {"seq": self.seq, "state": int(self.state), "code": int(self.code),
                "phase": self.phase[:16], "t_ms": self.t_ms}


Subscriber = Callable[[DiagnosticEvent], None]


class EventBus:
    """Fan-out of diagnostic events to subscribers, in order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.last: DiagnosticEvent | None = None

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def emit(self, event: DiagnosticEvent) -> None:
        self.last = event
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:  # a broken subscriber must not stop onboarding
                LOG.exception("event subscriber %r failed", fn)


class JsonlLog:
    """Appends events as JSON lines to ``<state_dir>/onboarding.jsonl`` (flushed per line)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def __call__(self, event: DiagnosticEvent) -> None:
        self._file.write(json.dumps(event.to_json(), sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
