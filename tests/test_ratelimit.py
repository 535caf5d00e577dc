"""LimitedLog: a flood of client-caused log lines is cut to a burst per window."""

from __future__ import annotations

import logging

import pytest

from device_sim.ratelimit import LimitedFilter, LimitedLog


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
    assert lines == [
        "rejected: request 0",
        "rejected: request 1",
        "rejected: request 2",
        "rejected: 997 more not logged in the last 60 s",
        "rejected: request 1000",
    ]
    assert limited.total == 1001


def test_asyncio_accept_errors_pass_a_few_a_window_in_one_line_each() -> None:
    now = [0.0]
    flt = LimitedFilter(
        ("socket.accept() out of system resource",), burst=2, window_s=60, clock=lambda: now[0]
    )
    logger = logging.getLogger("test.limited.filter")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Keep())
    logger.addFilter(flt)
    logger.propagate = False
    try:
        for _ in range(1000):
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                logger.error("socket.accept() out of system resource", exc_info=True)
        logger.error("something else")
        now[0] = 61.0
        logger.error("socket.accept() out of system resource")
    finally:
        logger.removeFilter(flt)
    messages = [r.getMessage() for r in records]
    assert len(records) == 4 and flt.suppressed == 998
    assert all(r.exc_info is None for r in records)
    assert "Too many open files" in messages[0] and "at most 2" in messages[0]
    assert messages[2] == "something else"
