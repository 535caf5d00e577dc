"""The BLE host's guard on the hijack fix: a write that arrives without its central (bless's
fallback path) is counted and logged, so the BLE tests fail if it is ever taken."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from device_sim.doors.ble.host import BleHost

UUID = "0000ff01-0000-1000-8000-00805f9b34fb"


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.writes: list[tuple[str, bytes, str | None]] = []

    def on_write(self, char_uuid: str, value: bytes, central: str | None) -> None:
        self.writes.append((char_uuid, value, central))

    def __getattr__(self, name: str) -> Any:  # the rest of the personality interface
        raise AttributeError(name)


def test_unnamed_writes_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    owner = Recorder()
    host = BleHost("DS-test", [owner])
    host._char_owner[UUID] = owner
    caplog.set_level(logging.WARNING)
    host._writer_for(owner, UUID)(b"named", "/org/bluez/hci0/dev_11")
    assert host.anonymous_writes == 0 and not caplog.records
    host._writer_for(owner, UUID)(b"unnamed", None)
    host._on_write(SimpleNamespace(uuid=UUID), bytearray(b"fallback"))
    assert host.anonymous_writes == 2
    assert [
        r.getMessage().count("arrived without the writing central") for r in caplog.records
    ] == [1, 1]
    assert [w[2] for w in owner.writes] == ["/org/bluez/hci0/dev_11", None, None]
