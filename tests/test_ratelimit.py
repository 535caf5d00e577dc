"""LimitedLog: a flood of client-caused log lines is cut to a burst per window."""

from __future__ import annotations

import logging

import pytest

from device_sim.ratelimit import LimitedLog


def test_a_burst_per_window_then_one_summary(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    logger = logging.getLogger("test.ratelimit")
    limited = LimitedLog(logger, "rejected", burst=3, window_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.ratelimit"):
        logged = [limited.log(logging.INFO, "request %d", i) for i in range(1000)]
        assert logged.count(True) == 3 and limited.suppressed == 997
        now[0] = 61.0
        assert limited.log(logging.INFO, "request %d", 1000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["rejected: request 0", "rejected: request 1", "rejected: request 2",
                     "rejected: 997 more not logged in the last 60 s", "rejected: request 1000"]
    assert limited.total == 1001
