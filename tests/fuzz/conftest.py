"""The fuzz suite: seeded and bounded (``FUZZ_EXAMPLES`` inputs per target, default 300, so the
whole suite runs in well under a minute); ``scripts/fuzz.py`` runs the same targets with 100,000
inputs in all and reports the counts each target writes to ``$FUZZ_REPORT``.

A target fails on the first input that crashes (an exception that is not the target's coded
error) or gets an uncoded answer; hypothesis then shrinks it to a minimal example."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))

settings.register_profile(
    "fuzz",
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)
FUZZ = settings.get_profile("fuzz")


@pytest.fixture(scope="session")
def fuzz_counts() -> Iterator[Counter[str]]:
    """Inputs tried per target; written to $FUZZ_REPORT (JSON) at the end, if set."""
    counts: Counter[str] = Counter()
    yield counts
    report = os.environ.get("FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(counts), indent=2, sort_keys=True))
