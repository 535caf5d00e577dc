"""The dummy personality's options (``[dummy]``, ``--dummy-*``, ``DEVICE_SIM_DUMMY_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from device_sim.options import opt


@dataclass(frozen=True)
class DummyOptions:
    greeting: str = opt("hello", "dummy: what its status says before any onboarding")
