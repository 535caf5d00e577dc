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

__all__ = ["LimitedLog"]


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
