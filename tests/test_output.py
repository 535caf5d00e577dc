"""``--out FILE``: what a command writes for the user is private, whatever was there before."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from device_sim.apps.commands.output import write_out
from device_sim.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_file_is_0600(tmp_path: Path) -> None:
    out = tmp_path / "bundle.tar.gz"
    write_out(out, b"data")
    assert out.read_bytes() == b"data" and mode(out) == 0o600


def test_an_existing_world_readable_file_becomes_0600(tmp_path: Path) -> None:
    out = tmp_path / "f"
    out.write_bytes(b"old contents, longer than the new")
    out.chmod(0o644)
    write_out(out, b"new")
    assert out.read_bytes() == b"new" and mode(out) == 0o600


def test_a_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"not yours")
    target.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    write_out(link, b"bundle")
    assert not link.is_symlink() and link.read_bytes() == b"bundle" and mode(link) == 0o600
    assert target.read_bytes() == b"not yours" and mode(target) == 0o644


def test_unwritable_places_are_config_errors_and_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        write_out(tmp_path, b"x")
    with pytest.raises(ConfigError, match="cannot write"):
        write_out(tmp_path / "missing" / "f", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
