"""Timeouts: the waiting states' and the join and check phases' (from ``gatt_profile.yaml``).

A join (or its checks) runs under its state's timeout, tightened by each phase's own as the
phase starts (:meth:`Deadlines.arm`); a phase that runs out ends the attempt with its own code
(a DHCP server that never answers is NO_DHCP_LEASE, not the joining state's
ASSOCIATION_TIMEOUT), else the state's code (:meth:`Deadlines.ran_out`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from ..codes import Code, State
from ..errors import NetworkError
from ..profile import Profile

__all__ = ["Deadlines", "Timeouts"]


@dataclass(frozen=True)
class Timeouts:
    """Waiting-state timeouts in seconds (defaults from the profile, overridable per daemon)."""

    session_open: float
    credentials_received: float
    joining: float
    verifying: float
    # Per join/check phase: (seconds, the code a phase that runs out ends with).
    phases: Mapping[str, tuple[float, Code]] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: Profile, scale: float = 1.0, **override: float) -> Timeouts:
        def ms(name: str) -> float:
            value = profile.states[name].timeout_ms
            assert value is not None, f"state {name} has no timeout in the profile"
            return value / 1000 * scale

        values = {
            name: ms(name)
            for name in ("session_open", "credentials_received", "joining", "verifying")
        }
        values.update({k: v for k, v in override.items() if v is not None})
        phases = {
            name: (p.timeout_ms / 1000 * scale, Code[p.timeout_code])
            for name, p in profile.phases.items()
        }
        return cls(**values, phases=phases)


class Deadlines:
    """The deadline of the join or check running now (one at a time, the engine's)."""

    def __init__(self, profile: Profile, timeouts: Timeouts) -> None:
        self.profile, self.timeouts = profile, timeouts
        self._deadline: tuple[asyncio.Timeout, float] | None = None
        self._timed_phase: str | None = None

    def state_code(self, state: State) -> Code:
        """The code a waiting state that runs out ends with."""
        name = self.profile.state(state).timeout_code
        return Code[name] if name else Code.INTERNAL_ERROR

    @contextlib.asynccontextmanager
    async def running(self, state_s: float) -> AsyncIterator[None]:
        """The state's timeout for a join or a check, tightened by each phase's own as it
        starts (:meth:`arm`). Raises TimeoutError when either runs out."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(state_s) as timeout:
            self._deadline = (timeout, loop.time() + state_s)
            self._timed_phase = None
            try:
                yield
            finally:
                self._deadline = None

    def arm(self, phase: str) -> None:
        """``phase`` starts: its own timeout applies if it ends before the state's."""
        if self._deadline is None:
            return
        timeout, state_end = self._deadline
        limit = self.timeouts.phases.get(phase)
        if limit is None:  # a phase without its own timeout: the state's bounds it
            self._timed_phase = None
            timeout.reschedule(state_end)
            return
        phase_end = asyncio.get_running_loop().time() + limit[0]
        self._timed_phase = phase if phase_end < state_end else None
        timeout.reschedule(min(phase_end, state_end))

    def ran_out(self, state: State, state_s: float) -> NetworkError:
        """The error of a join or check that ran out of time: the phase's own code when the
        phase's timeout fired, else the state's."""
        phase = self._timed_phase
        if phase is not None:
            seconds, code = self.timeouts.phases[phase]
            return NetworkError(code, f"{phase} took over {seconds:g} s", raw={"phase": phase})
        what = "no result" if state is State.JOINING else "checks took over"
        return NetworkError(self.state_code(state), f"{what} within {state_s:.0f} s")
