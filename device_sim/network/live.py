"""The simulated world over time: a scenario's ``timeline`` played against the clock.

:class:`LiveWorld` holds what changes while the device lives in the world: which BSSes are on
the air (a router restarting, replaced, or one that boots late), the key each one takes (a new
passphrase), and the outages in force (a DHCP server that stops renewing leases, DNS or the
internet down), each on some networks or on all. The simulated backend asks it at every scan,
join and check, and hears of every change (:attr:`LiveWorld.changed`) so that it can tell a
connection it established that the link or the lease is gone.

Steps run in world time: ``at_s`` and ``for_s`` are multiplied by the backend's time scale (the
scenario's steps' own delays are what ``zero_delay`` drops; the timeline is not).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .scenario import Scenario, ScenarioAccessPoint, TimelineStep

__all__ = ["Change", "LiveWorld"]

log = logging.getLogger(__name__)
OUTAGES = {"lease": "lease", "dns_down": "dns", "internet_down": "internet"}
# Changes that bring connectivity back: an access point on the air, an outage over.
_RESTORING = {("ap_on", False), ("ap_off", True), ("lease", True), ("dns_down", True),
              ("internet_down", True)}  # fmt: skip


@dataclass(frozen=True)
class Change:
    """One timeline step applied (``undone``: its ``for_s`` ran out and it was reverted)."""

    index: int
    step: TimelineStep
    undone: bool

    @property
    def restores(self) -> bool:
        return (self.step.action, self.undone) in _RESTORING

    def describe(self) -> str:
        step = self.step
        what = {
            "ap_off": ("off the air", "back on the air"),
            "ap_on": ("on the air", "off the air again"),
            "passphrase": ("has a new passphrase", "has its old passphrase again"),
            "lease": ("does not renew DHCP leases", "renews DHCP leases again"),
            "dns_down": ("has no DNS", "has DNS again"),
            "internet_down": ("has no internet", "has internet again"),
        }[step.action][1 if self.undone else 0]
        span = f" for {step.for_s:g} s" if step.for_s is not None and not self.undone else ""
        return f"{step.target} {what}{span}"

    def data(self) -> dict[str, object]:
        return {
            "step": self.index,
            "action": self.step.action,
            "target": self.step.target,
            "bssids": list(self.step.bssids),
            "undone": self.undone,
            "restores": self.restores,
        }


class LiveWorld:
    """What a scenario's world is now. ``changed`` hears every change after it is applied."""

    def __init__(self, scenario: Scenario, time_scale: float = 1.0) -> None:
        self.scenario = scenario
        self.time_scale = time_scale
        self.off: set[str] = {s.ap.bssid for s in scenario.access_points if not s.present}
        self.keys: dict[str, str | None] = {}  # bssid -> the key a passphrase step gave it
        self._outages: dict[int, tuple[str, frozenset[str]]] = {}
        self._saved_keys: dict[int, dict[str, str | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._played: set[str] = set()
        self.changed: Callable[[Change], None] = lambda change: None

    # -- what the backend asks
    def on_air(self, sap: ScenarioAccessPoint) -> bool:
        return sap.ap.bssid not in self.off

    def key(self, sap: ScenarioAccessPoint) -> str | None:
        return self.keys.get(sap.ap.bssid, sap.passphrase)

    def out(self, kind: str, bssid: str | None) -> bool:
        """An outage of ``kind`` (lease, dns, internet) is in force on ``bssid``'s network."""
        return any(
            k == kind and (not bssids or bssid in bssids) for k, bssids in self._outages.values()
        )

    # -- playing the timeline
    def play(self, after: str) -> None:
        """Start the steps that count from ``after`` (boot, online), once."""
        if after in self._played:
            return
        self._played.add(after)
        loop = asyncio.get_running_loop()
        for index, step in enumerate(self.scenario.timeline):
            if step.after == after:
                task = loop.create_task(self._run(index, step), name=f"world-step-{index}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _run(self, index: int, step: TimelineStep) -> None:
        # The world's own time passing (a router rebooting takes this long), not a sync.
        await asyncio.sleep(step.at_s * self.time_scale)
        self.apply(index, step)
        if step.for_s is not None:
            await asyncio.sleep(step.for_s * self.time_scale)
            self.undo(index, step)

    def apply(self, index: int, step: TimelineStep) -> None:
        targets = set(step.bssids)
        if step.action == "ap_off":
            self.off |= targets
        elif step.action == "ap_on":
            self.off -= targets
        elif step.action == "passphrase":
            self._saved_keys[index] = {b: self.keys.get(b) for b in targets if b in self.keys}
            for bssid in targets:
                self.keys[bssid] = step.passphrase
        else:
            self._outages[index] = (OUTAGES[step.action], frozenset(targets))
        self._tell(Change(index, step, undone=False))

    def undo(self, index: int, step: TimelineStep) -> None:
        targets = set(step.bssids)
        if step.action == "ap_off":
            self.off -= targets
        elif step.action == "ap_on":
            self.off |= targets
        elif step.action == "passphrase":
            before = self._saved_keys.pop(index, {})
            for bssid in targets:
                if bssid in before:
                    self.keys[bssid] = before[bssid]
                else:
                    self.keys.pop(bssid, None)
        else:
            self._outages.pop(index, None)
        self._tell(Change(index, step, undone=True))

    def _tell(self, change: Change) -> None:
        log.info("world: %s", change.describe())
        try:
            self.changed(change)
        except Exception:  # the world goes on; the backend logs its own trouble
            log.exception("a world change could not be applied to the connection")
