"""A scenario's story: the device's life after its first onboarding, and what ``demo`` checks.

A scenario with a ``timeline`` (the world over time) or a ``history`` (a device that was set up
before) has a story. ``demo`` plays it: the device daemon lives in the changing world, the
phone comes back when the story's ``phone`` says (re-onboarding once the doors reopen), and
:func:`facts` reads what happened from the device's event stream:

* the sequence of phases (each with its code when it has one), matched in order against the
  story's ``sequence`` (other events may come between);
* whether the doors reopened (a ``reopen`` event);
* the time back online: world seconds from the last change of the world that brought the
  network back (a ``world`` event that restores) to the ``online`` that followed (from boot
  when the world never restored anything);
* the phone sessions opened after the first onboarding (0: no user acted);
* the network the device ends on, and how many associations it took.

:func:`check` compares them with the story's expectations: one line per mismatch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..control import control_request
from ..core.store import Credentials
from ..network.scenario import Scenario, Story
from ..security.secret import Secret

__all__ = [
    "StoryFacts",
    "StoryLog",
    "check",
    "facts",
    "has_story",
    "match_sequence",
    "play",
]

STORY_SLACK_S = 60.0  # real seconds on top of the story's own bound (phones, BlueZoo)
Reonboard = Callable[[Credentials], Awaitable[dict[str, Any]]]


def has_story(scenario: Scenario) -> bool:
    return bool(scenario.timeline or scenario.history or scenario.story)


class StoryLog:
    """Every event of one device's stream, in order, once each (the stream's backlog after a
    reconnection repeats some), with waiters for the one that matters next."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._seqs: set[int] = set()
        self._changed = asyncio.Event()

    def add(self, item: dict[str, Any]) -> None:
        if item.get("kind") != "event" or item.get("seq") in self._seqs:
            return
        self._seqs.add(int(item["seq"]))
        self.events.append(item)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self, match: Callable[[dict[str, Any]], bool], *, after: int = 0
    ) -> dict[str, Any]:
        """The first event after sequence number ``after`` that ``match``es (waits for it)."""
        while True:
            for event in self.events:
                if event["seq"] > after and match(event):
                    return event
            await self._changed.wait()

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0


@dataclass
class StoryFacts:
    sequence: list[str] = field(default_factory=list)  # "phase" or "phase:CODE" per event
    codes: list[str] = field(default_factory=list)  # every code seen, once, in order
    doors_reopened: bool = False
    back_online_s: float | None = None  # world seconds
    phone_sessions: int = 0
    online_ssid: bytes | None = None
    final_state: str = ""
    associations: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sequence": self.sequence,
            "codes": self.codes,
            "doors_reopened": self.doors_reopened,
            "back_online_s": None if self.back_online_s is None else round(self.back_online_s, 1),
            "phone_sessions": self.phone_sessions,
            "online_ssid": _text(self.online_ssid),
            "final_state": self.final_state,
            "associations": self.associations,
        }
        return out


def facts(
    events: list[dict[str, Any]],
    *,
    after_seq: int,
    time_scale: float,
    final: dict[str, Any],
) -> StoryFacts:
    """What the story did, from the events after ``after_seq`` (the first onboarding's end;
    0 when there was none) and the device's final status (``ctl status``)."""
    story = [e for e in events if e["seq"] > after_seq]
    out = StoryFacts(final_state=str(final.get("state", "")))
    for event in story:
        code = event.get("code_name") if event.get("code") else None
        out.sequence.append(f"{event['phase']}:{code}" if code else str(event["phase"]))
        if code and code not in out.codes:
            out.codes.append(code)
    out.doors_reopened = any(e["phase"] == "reopen" for e in story)
    out.phone_sessions = sum(1 for e in story if e["phase"] == "session")
    out.associations = sum(1 for e in story if e["phase"] == "associating")
    ssid_hex = final.get("ssid_hex")
    if final.get("state") == "online" and ssid_hex:
        out.online_ssid = bytes.fromhex(ssid_hex)
    onlines = [i for i, e in enumerate(story) if e["phase"] == "online"]
    if onlines:
        last = onlines[-1]
        restores = [
            e
            for e in story[:last]
            if e["phase"] == "world" and (e.get("data") or {}).get("restores")
        ]
        start = (
            restores[-1] if restores else next((e for e in events if e["phase"] == "boot"), None)
        )
        if start is not None:
            seconds = (_at(story[last]) - _at(start)).total_seconds()
            out.back_online_s = seconds / time_scale if time_scale > 0 else seconds
    return out


def match_sequence(expected: tuple[str, ...], seen: list[str]) -> int:
    """How many of ``expected`` were seen in order (``phase`` matches any code of it)."""
    i = 0
    for item in seen:
        if i == len(expected):
            break
        want = expected[i]
        if item == want or (":" not in want and item.partition(":")[0] == want):
            i += 1
    return i


def check(story: Story | None, got: StoryFacts) -> list[str]:
    """One line per expectation the story did not meet."""
    if story is None:
        return []
    problems = []
    matched = match_sequence(story.sequence, got.sequence)
    if matched < len(story.sequence):
        problems.append(
            f"the events did not go {' > '.join(story.sequence)}: "
            f"{story.sequence[matched]!r} never came after {' > '.join(story.sequence[:matched])}"
            if matched
            else f"the events did not go {' > '.join(story.sequence)}: no "
            f"{story.sequence[0]!r} at all"
        )
    if story.doors_reopened is not None and story.doors_reopened != got.doors_reopened:
        problems.append(
            f"the doors {'did not reopen' if story.doors_reopened else 'reopened'} "
            f"(expected {'reopening' if story.doors_reopened else 'none'})"
        )
    if story.back_online_within_s is not None:
        if got.back_online_s is None:
            problems.append("the device was never back online")
        elif got.back_online_s > story.back_online_within_s:
            problems.append(
                f"back online {got.back_online_s:.1f} s after the network came back "
                f"(expected within {story.back_online_within_s:g} s)"
            )
    if story.phone_sessions is not None and story.phone_sessions != got.phone_sessions:
        problems.append(
            f"{got.phone_sessions} phone session(s) after the first onboarding "
            f"(expected {story.phone_sessions})"
        )
    if story.associations is not None and story.associations != got.associations:
        problems.append(
            f"{got.associations} association attempt(s) (expected {story.associations})"
        )
    if story.online_ssid is not None and story.online_ssid != got.online_ssid:
        problems.append(
            f"online on {_text(got.online_ssid)!r} (expected {_text(story.online_ssid)!r})"
            if got.online_ssid
            else f"not online at the end (expected online on {_text(story.online_ssid)!r})"
        )
    return problems


def _at(event: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00"))


def _text(ssid: bytes | None) -> str | None:
    if ssid is None:
        return None
    try:
        return ssid.decode("utf-8")
    except UnicodeDecodeError:
        return f"0x{ssid.hex()}"


# Over 80 lines on purpose: a story's steps in the order they happen (waits on the world, the
# phone's sessions, the checks at the end).
async def play(
    scenario: Scenario,
    log: StoryLog,
    state_dir: Path,
    after_seq: int,
    reonboard: Reonboard | None,
    scale: float,
    transport: str,
    say: Callable[[str], None] = lambda text: None,
) -> dict[str, Any]:
    """The story after the first onboarding (``after_seq``: its outcome's event; 0 when there
    was none), to its end or its bound: the phone (``reonboard``) comes back when the story
    says, every change of the world happens, and the device ends as the scenario expects.
    What it did: :class:`StoryFacts`, ``ended``, ``mismatches``, the re-onboarding's result,
    ``reonboard_s`` (world seconds from the trigger to the phone's result) and the device's
    ``final`` status (``ctl status``)."""
    story = scenario.story or Story()
    world_steps = sum(1 + (step.for_s is not None) for step in scenario.timeline)
    bound = story.within_s * scale + STORY_SLACK_S
    ended = True
    reonboarded: dict[str, Any] | None = None
    reonboard_s: float | None = None
    say("\nthe story goes on" + (f" (world time x{1 / scale:g})" if scale != 1 else ""))
    try:
        async with asyncio.timeout(bound):
            last = after_seq
            if story.phone is not None and reonboard is not None:
                wanted = {"reopen": {"reopen"}, "loss": {"link_lost", "lease_lost"}}[
                    story.phone.when
                ]
                trigger = await log.wait_for(lambda e: e["phase"] in wanted, after=after_seq)
                seen_at = asyncio.get_running_loop().time()
                if transport == "softap":  # the phone joins the AP once it is on the air
                    await log.wait_for(
                        lambda e: (
                            e["phase"] == "door"
                            and str(e.get("detail", "")).startswith("softap opened")
                        ),
                        after=after_seq,
                    )
                creds = Credentials(
                    story.phone.ssid,
                    Secret(story.phone.passphrase) if story.phone.passphrase else None,
                    story.phone.hidden,
                )
                say(
                    f"\nphone: the device shows {trigger['phase']}: the user sets it up again "
                    f"on {_text(creds.ssid)!r} ..."
                )
                reonboarded = await reonboard(creds)
                took = asyncio.get_running_loop().time() - seen_at
                reonboard_s = took / scale if scale > 0 else took
                last = int(trigger["seq"])
            seen_world = after_seq
            for _ in range(world_steps):  # every change of the world has happened
                event = await log.wait_for(lambda e: e["phase"] == "world", after=seen_world)
                seen_world = int(event["seq"])
            outcome = "online" if scenario.default_credentials.expect.name == "OK" else "failed"
            await log.wait_for(lambda e: e["phase"] == outcome, after=max(last, seen_world))
    except TimeoutError:
        ended = False
    final = await control_request(state_dir, "status")
    got = facts(log.events, after_seq=after_seq, time_scale=scale, final=final)
    mismatches = check(story, got)
    if not ended:
        mismatches.insert(0, f"the story did not end within {story.within_s:g} s (world time)")
    say(
        f"story: {' > '.join(got.sequence[-12:]) if got.sequence else 'no events'}"
        f"\n  codes seen: {', '.join(got.codes) or 'none'}; doors reopened: "
        f"{'yes' if got.doors_reopened else 'no'}; phone sessions: {got.phone_sessions}; "
        + (
            f"back online {got.back_online_s:.1f} s after the network came back"
            if got.back_online_s is not None
            else "not back online"
        )
        + f"; ends {final['state']} ({final['code_name']})"
        + (f" on {_text(got.online_ssid)!r}" if got.online_ssid else "")
    )
    return {
        **got.to_json(),
        "ended": ended,
        "mismatches": mismatches,
        "reonboarding": reonboarded,
        "reonboard_s": None if reonboard_s is None else round(reonboard_s, 1),
        "final": final,
    }
