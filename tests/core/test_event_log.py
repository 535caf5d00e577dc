"""The event log at rest: private whatever the umask, bounded by rotation, and never a reason
for onboarding to stop."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from device_sim.codes import Code, State
from device_sim.core.events import DiagnosticEvent, JsonlLog


def _event(seq: int) -> DiagnosticEvent:
    return DiagnosticEvent(
        seq=seq,
        t_ms=seq,
        state=State.JOINING,
        code=Code.OK,
        phase="dhcp",
        detail="x" * 200,
        data={},
    )


def test_private_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "onboarding.jsonl"
    path.write_text("")
    os.chmod(path, 0o644)  # made by an older version, or under a permissive umask
    previous = os.umask(0o022)
    try:
        log = JsonlLog(path, max_bytes=4096)
    finally:
        os.umask(previous)
    for seq in range(1000):  # ~250 KB of events
        log(_event(seq))
    log.close()
    rotated = path.with_name("onboarding.jsonl.1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(rotated.stat().st_mode) == 0o600
    assert path.stat().st_size <= 4096 and rotated.stat().st_size <= 4096
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onboarding.jsonl", "onboarding.jsonl.1"]
    # The newest events are kept, whole lines, in order.
    lines = rotated.read_text().splitlines() + path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1000 - len(lines), 1000))


def test_a_failing_write_does_not_stop_onboarding(tmp_path: Path, caplog) -> None:
    log = JsonlLog(tmp_path / "onboarding.jsonl")
    log._file.close()
    full = open("/dev/full", "a", encoding="utf-8")  # noqa: SIM115 - every write fails ENOSPC
    log._file = full
    for seq in range(3):
        log(_event(seq))
    log.close()  # the unwritten lines are dropped quietly
    warnings = [r for r in caplog.records if "cannot write the event log" in r.getMessage()]
    assert len(warnings) == 1
