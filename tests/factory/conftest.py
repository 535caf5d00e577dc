"""Fixtures for the factory tests: a fresh factory CA per test, one unit made on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_sim import pki
from device_sim.factory.unit import UnitResult, provision_unit
from device_sim.profile import Profile


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    directory = tmp_path / "factory"
    pki.create_factory_ca(directory, "Test")
    return directory


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def unit(factory: Path, out: Path, profile: Profile) -> UnitResult:
    return provision_unit(factory, out, station="line-1", profile=profile)
