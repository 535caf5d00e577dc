"""A log line that any client can cause, at a bounded rate.

Anyone on the access point or within BLE range can send rejected requests as fast as the link
allows; logging each one (worse, with a traceback) lets them flood the journal and wear a small
flash. :class:`LimitedLog` logs at most ``burst`` lines per ``window_s`` seconds for one kind of
event, then one line saying how many were suppressed when the next window opens.

::

    rejected = LimitedLog(LOG, "softap: rejected request", burst=10, window_s=60)
    rejected.log(logging.INFO, "%s %s: %s", method, path, reason)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LimitedFilter", "LimitedLog"]


class LimitedLog:
    """At most ``burst`` lines per ``window_s`` for one kind of event (see the module)."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        burst: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._window_start = float("-inf")
        self._logged = 0
        self.suppressed = 0  # in the current window
        self.total = 0  # every event, logged or not

    def log(self, level: int, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` unless this window's budget is spent; True if it was logged."""
        self.total += 1
        now = self._clock()
        if now - self._window_start >= self.window_s:
            if self.suppressed:
                self.logger.log(
                    level,
                    "%s: %d more not logged in the last %.0f s",
                    self.what,
                    self.suppressed,
                    self.window_s,
                )
            self._window_start, self._logged, self.suppressed = now, 0, 0
        if self._logged >= self.burst:
            self.suppressed += 1
            return False
        self._logged += 1
        self.logger.log(level, f"{self.what}: {msg}", *args)
        return True


class LimitedFilter(logging.Filter):
    """A filter for a logger that is not ours (asyncio's): records whose message starts with
    one of ``prefixes`` pass at most ``burst`` per ``window_s``, without their traceback; the
    rest pass untouched. asyncio logs ``socket.accept() out of system resource`` with a
    traceback for every failed accept, about 1,000 a second when descriptors run out."""

    def __init__(
        self,
        prefixes: tuple[str, ...],
        *,
        burst: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.burst, self.window_s, self._clock = burst, window_s, clock
        self._window_start = float("-inf")
        self._passed = 0
        self.suppressed = 0  # in all

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefixes):
            return True
        now = self._clock()
        if now - self._window_start >= self.window_s:
            self._window_start, self._passed = now, 0
        if self._passed >= self.burst:
            self.suppressed += 1
            return False
        self._passed += 1
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc} (at most "
            record.msg += f"{self.burst} such lines per {self.window_s:.0f} s)"
            record.args = None
        record.exc_info, record.exc_text = None, None
        return True
