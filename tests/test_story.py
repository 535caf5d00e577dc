"""A scenario's story read from a device's events (device_sim/apps/story.py): the sequence
matched in order, the facts (doors, time back online, phone sessions, the network it ends on)
and the mismatches named one per line."""

from __future__ import annotations

from typing import Any

from device_sim.apps.story import check, facts, match_sequence
from device_sim.network.scenario import Story


def ev(seq: int, phase: str, at_s: float, code: str | None = None, **data: Any) -> dict[str, Any]:
    return {
        "kind": "event",
        "seq": seq,
        "phase": phase,
        "code": 1 if code else 0,
        "code_name": code or "OK",
        "data": data,
        "at": f"2026-12-05T10:00:{at_s:06.3f}Z",
    }


EVENTS = [
    ev(1, "boot", 0.0),
    ev(2, "online", 3.0),  # the first onboarding's end
    ev(3, "world", 8.0, restores=False),
    ev(4, "link_lost", 8.0, "LINK_LOST"),
    ev(5, "reconnect", 8.1),
    ev(6, "failed", 10.0, "SAVED_NETWORKS_NOT_FOUND"),
    ev(7, "reopen", 38.0),
    ev(8, "world", 53.0, restores=True),
    ev(9, "associating", 55.0),
    ev(10, "online", 57.5),
]
FINAL = {"state": "online", "ssid_hex": b"Home".hex()}


def test_a_sequence_matches_in_order_with_others_between() -> None:
    seen = [
        "world",
        "link_lost:LINK_LOST",
        "reconnect",
        "failed:SAVED_NETWORKS_NOT_FOUND",
        "reopen",
        "online",
    ]
    assert match_sequence(("link_lost:LINK_LOST", "reopen", "online"), seen) == 3
    assert match_sequence(("link_lost", "online"), seen) == 2  # a bare phase takes any code
    assert match_sequence(("reopen", "link_lost"), seen) == 1  # out of order
    assert match_sequence(("link_lost:LEASE_LOST",), seen) == 0  # the code must match


def test_the_facts_of_a_router_reboot() -> None:
    got = facts(EVENTS, after_seq=2, time_scale=1.0, final=FINAL)
    assert got.codes == ["LINK_LOST", "SAVED_NETWORKS_NOT_FOUND"]
    assert got.doors_reopened and got.phone_sessions == 0 and got.associations == 1
    assert got.back_online_s == 4.5  # from the world's restoring change to online
    assert got.online_ssid == b"Home"
    assert facts(EVENTS, after_seq=2, time_scale=0.1, final=FINAL).back_online_s == 45.0
    assert (
        check(
            Story(
                sequence=("link_lost:LINK_LOST", "reopen", "online"),
                doors_reopened=True,
                back_online_within_s=5,
                phone_sessions=0,
                online_ssid=b"Home",
                associations=1,
            ),
            got,
        )
        == []
    )


def test_each_unmet_expectation_is_one_line() -> None:
    got = facts(EVENTS, after_seq=2, time_scale=1.0, final={"state": "failed"})
    problems = check(
        Story(
            sequence=("reopen", "link_lost"),
            doors_reopened=False,
            back_online_within_s=2,
            phone_sessions=1,
            online_ssid=b"Home",
            associations=2,
        ),
        got,
    )
    assert len(problems) == 6
    assert problems[0].startswith("the events did not go reopen > link_lost: 'link_lost'")
    assert "the doors reopened" in problems[1]
    assert "back online 4.5 s after the network came back (expected within 2 s)" in problems[2]
    assert "0 phone session(s)" in problems[3]
    assert "1 association attempt(s) (expected 2)" in problems[4]
    assert "not online at the end" in problems[5]
    assert check(None, got) == []


def test_without_a_restoring_change_the_time_counts_from_boot() -> None:
    events = [ev(1, "boot", 0.0), ev(2, "joining", 0.1), ev(3, "online", 2.0)]
    assert facts(events, after_seq=0, time_scale=1.0, final=FINAL).back_online_s == 2.0
