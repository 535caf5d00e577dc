"""Fixtures for the factory tests: a fresh factory CA per test, one unit made on it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from device_sim import pki
from device_sim.apps.factory.unit import UnitResult, provision_unit
from device_sim.profile import Profile
from device_sim.security.secret import Secret


@dataclasses.dataclass(frozen=True, repr=False)
class LabelledUnit(UnitResult):
    """A unit made in this process: its label's secrets are here (a worker's stay there)."""

    setup_code: Secret
    claim_token: Secret
    payload: Secret


def labelled(unit: UnitResult) -> LabelledUnit:
    assert unit.setup_code and unit.claim_token and unit.payload, "made in a worker process"
    return LabelledUnit(**{f.name: getattr(unit, f.name) for f in dataclasses.fields(unit)})


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    directory = tmp_path / "factory"
    pki.create_factory_ca(directory, "Test")
    return directory


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def unit(factory: Path, out: Path, profile: Profile) -> LabelledUnit:
    return labelled(provision_unit(factory, out, station="line-1", profile=profile))
