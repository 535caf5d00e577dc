"""How long the device makes a client wait after wrong setup codes (``session.backoff``).

Pure policy: the caller persists the failure count and the time of the last failure (the daemon
keeps them in SQLite, so a reboot does not reset the wait) and passes them in. Times are in
milliseconds on any monotonic-ish clock the caller chooses, as long as it uses the same one for
``last_failure_ms`` and ``now_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codes import Code
from ..errors import SessionError


@dataclass(frozen=True)
class SetupCodeBackoff:
    """``free_attempts`` wrong codes cost nothing; then ``base_ms``, doubling, capped at ``max_ms``.

    With the profile's defaults (3, 2000, 300000): failures 0-2 -> 0 ms, 3 -> 2 s, 4 -> 4 s,
    5 -> 8 s ... 10 -> 256 s, 11 and later -> 300 s, each counted from the last failure.

    Raises (on construction):
        ValueError: negative ``free_attempts``, ``base_ms`` < 1 or ``max_ms`` < ``base_ms``.
    """

    free_attempts: int = 3
    base_ms: int = 2000
    max_ms: int = 300_000

    def __post_init__(self) -> None:
        if self.free_attempts < 0:
            raise ValueError("free_attempts must be >= 0")
        if self.base_ms < 1:
            raise ValueError("base_ms must be >= 1")
        if self.max_ms < self.base_ms:
            raise ValueError("max_ms must be >= base_ms")

    def delay_ms(self, failures: int) -> int:
        """The full wait after ``failures`` consecutive wrong codes (0 while attempts are free)."""
        if failures < 0:
            raise ValueError("failures must be >= 0")
        if failures < self.free_attempts:
            return 0
        doublings = failures - self.free_attempts
        if doublings >= self.max_ms.bit_length():  # base << doublings > max_ms for sure
            return self.max_ms
        return min(self.base_ms << doublings, self.max_ms)

    def retry_after_ms(self, failures: int, last_failure_ms: int, now_ms: int) -> int:
        """Milliseconds until the next attempt is allowed (0 = now).

        A clock that went backwards (``now_ms < last_failure_ms``) counts as no time elapsed.

        Raises:
            ValueError: ``failures`` < 0.
        """
        delay = self.delay_ms(failures)
        if delay == 0:
            return 0
        elapsed = max(0, now_ms - last_failure_ms)
        return max(0, delay - elapsed)

    def check(self, failures: int, last_failure_ms: int, now_ms: int) -> None:
        """Return if an attempt is allowed now.

        Raises:
            SessionError: ``TOO_MANY_ATTEMPTS`` with ``retry_after_ms`` set.
            ValueError: ``failures`` < 0.
        """
        wait = self.retry_after_ms(failures, last_failure_ms, now_ms)
        if wait > 0:
            raise SessionError(
                Code.TOO_MANY_ATTEMPTS,
                f"{failures} wrong setup codes; retry in {wait} ms",
                retry_after_ms=wait,
            )
