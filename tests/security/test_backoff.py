"""Backoff arithmetic after wrong setup codes."""

from __future__ import annotations

import pytest

from device_sim.codes import Code
from device_sim.errors import SessionError
from device_sim.security import SetupCodeBackoff

POLICY = SetupCodeBackoff()  # profile defaults: 3 free, 2 s base, 300 s cap


@pytest.mark.parametrize(
    ("failures", "delay"),
    [
        (0, 0),
        (1, 0),
        (2, 0),
        (3, 2000),
        (4, 4000),
        (5, 8000),
        (6, 16000),
        (9, 128000),
        (10, 256000),
        (11, 300000),
        (12, 300000),
        (64, 300000),
        (10**9, 300000),
    ],
)
def test_delay_table(failures: int, delay: int) -> None:
    assert POLICY.delay_ms(failures) == delay
    assert POLICY.retry_after_ms(failures, last_failure_ms=5000, now_ms=5000) == delay


@pytest.mark.parametrize(
    ("failures", "last", "now", "wait"),
    [
        (3, 1000, 1000, 2000),
        (3, 1000, 2500, 500),
        (3, 1000, 3000, 0),
        (3, 1000, 99999, 0),
        (5, 0, 7999, 1),
        (5, 0, 8000, 0),
        (11, 10_000, 10_000 + 299_000, 1000),
        (2, 1000, 1000, 0),
        (4, 5000, 1000, 4000),
    ],  # clock went backwards: counts as no time elapsed, never more
)
def test_retry_after_subtracts_elapsed_time(failures: int, last: int, now: int, wait: int) -> None:
    assert POLICY.retry_after_ms(failures, last, now) == wait


def test_custom_policy() -> None:
    policy = SetupCodeBackoff(free_attempts=0, base_ms=100, max_ms=250)
    assert [policy.delay_ms(n) for n in range(4)] == [100, 200, 250, 250]


def test_check_raises_too_many_attempts_with_retry_after() -> None:
    POLICY.check(2, last_failure_ms=0, now_ms=0)
    POLICY.check(3, last_failure_ms=0, now_ms=2000)
    with pytest.raises(SessionError) as info:
        POLICY.check(4, last_failure_ms=1000, now_ms=2000)
    assert info.value.code is Code.TOO_MANY_ATTEMPTS
    assert info.value.retry_after_ms == 3000


@pytest.mark.parametrize(
    "kwargs", [{"free_attempts": -1}, {"base_ms": 0}, {"base_ms": 10, "max_ms": 5}]
)
def test_invalid_policy(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        SetupCodeBackoff(**kwargs)


def test_negative_failures_rejected() -> None:
    with pytest.raises(ValueError):
        POLICY.retry_after_ms(-1, 0, 0)
