"""The serial registry: atomic allocation, reuse refused."""

from __future__ import annotations

import re
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from device_sim.apps.factory.registry import SerialRegistry
from device_sim.errors import ConfigError


def test_next_serial_format_and_sequence(tmp_path: Path) -> None:
    reg = SerialRegistry(tmp_path)
    first, second = reg.next_serial(), reg.next_serial()
    assert re.fullmatch(r"DS-[0-9]{2}-[0-9]{6}", first)
    assert int(second[-6:]) == int(first[-6:]) + 1
    assert reg.next_serial("DS", year=2031) == "DS-31-000001"
    assert reg.next_serial("XY", year=2031) == "XY-31-000001"  # counters are per prefix+year
    assert stat.S_IMODE((tmp_path / "registry.sqlite3").stat().st_mode) == 0o600


def test_allocated_serial_is_never_handed_out_again(tmp_path: Path) -> None:
    reg = SerialRegistry(tmp_path)
    a = reg.next_serial(year=2030)
    assert SerialRegistry(tmp_path).next_serial(year=2030) != a  # even if never registered


def test_concurrent_allocation_gives_unique_serials(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        serials = list(
            pool.map(lambda _: SerialRegistry(tmp_path).next_serial(year=2030), range(40))
        )
    assert len(set(serials)) == 40
    assert sorted(serials)[-1] == "DS-30-000040"


def test_register_refuses_reuse_naming_the_serial(tmp_path: Path) -> None:
    reg = SerialRegistry(tmp_path)
    reg.register("DS-30-000007", device_id="aa" * 8, cert_serial="01", station="s1")
    with pytest.raises(ConfigError, match=r"DS-30-000007.*never reused"):
        reg.register("DS-30-000007", device_id="bb" * 8, cert_serial="02", station="s2")
    with pytest.raises(ConfigError, match="DS-30-000007"):
        reg.check_unissued("DS-30-000007")
    unit = reg.lookup("DS-30-000007")
    assert unit is not None and unit.device_id == "aa" * 8 and unit.station == "s1"
    reg.set_result("DS-30-000007", "passed")
    assert reg.units()[0].result == "passed"


def test_manual_serials_are_skipped_by_allocation(tmp_path: Path) -> None:
    reg = SerialRegistry(tmp_path)
    reg.register("DS-30-000001", device_id="aa" * 8, cert_serial="01", station="s1")
    assert reg.next_serial(year=2030) == "DS-30-000002"


@pytest.mark.parametrize("bad", ["DS-2025-000001", "ds-25-000001", "DS-25-1", "DS25000001", ""])
def test_malformed_serials_are_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="must look like"):
        SerialRegistry(tmp_path).register(bad, device_id="aa" * 8, cert_serial="01", station="s1")


def test_duplicate_device_id_is_refused(tmp_path: Path) -> None:
    reg = SerialRegistry(tmp_path)
    reg.register("DS-30-000001", device_id="aa" * 8, cert_serial="01", station="s1")
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("DS-30-000002", device_id="aa" * 8, cert_serial="02", station="s1")
