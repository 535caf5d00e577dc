"""The device as its doors see it: its public state, its events, its status (no secrets).

:class:`DeviceView` reads the engine and never changes it; the session layer's
:class:`~device_sim.session.port.DoorPort` is one, for every door and personality.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..codes import Code, State
from .engine import BUSY_STATES, OnboardingEngine
from .events import DiagnosticEvent, EventPhase
from .store import OnboardingRecord


class DeviceView:
    """Read-only queries of one device's engine."""

    def __init__(self, engine: OnboardingEngine) -> None:
        self._engine = engine

    @property
    def record(self) -> OnboardingRecord:
        return self._engine.record

    @property
    def state(self) -> State:
        return self._engine.state

    @property
    def busy(self) -> bool:
        """A join or its checks run (the radio is the station's)."""
        return self._engine.state in BUSY_STATES

    @property
    def provisioned(self) -> bool:
        """Joining, verifying or online: the device has its network (or is getting it)."""
        return self.busy or self._engine.state is State.ONLINE

    @property
    def associated(self) -> bool:
        """On its network: online, or checking it again after DNS or the internet went away
        (the link is still up)."""
        record = self._engine.record
        if record.state is State.ONLINE:
            return True
        if record.state is State.VERIFYING:
            return self._engine.life.rechecking
        return record.state is State.FAILED and record.code in (Code.DNS_LOST, Code.INTERNET_LOST)

    @property
    def reconnecting(self) -> bool:
        """The device's own retry of its saved networks (or check again) is in flight: a join
        no phone asked for."""
        return self._engine.life.retrying

    @property
    def retrying(self) -> bool:
        """Not online, the device retries its saved networks and its doors have not reopened
        yet (it may be back online before they do)."""
        life = self._engine.life
        return life.retrying and not life.reopened and self._engine.state is not State.ONLINE

    @property
    def last_event(self) -> DiagnosticEvent | None:
        return self._engine.events.last

    @property
    def outcome_within_s(self) -> float:
        """The longest a join and its checks may take (what a phone should wait for)."""
        t = self._engine.timeouts
        return t.joining + t.verifying

    def subscribe(self, listener: Callable[[DiagnosticEvent], None]) -> Callable[[], None]:
        """Every diagnostic event from now on; returns the unsubscribe function."""
        return self._engine.events.subscribe(listener)

    def note(
        self,
        phase: EventPhase,
        detail: str = "",
        data: dict[str, Any] | None = None,
        code: Code = Code.OK,
    ) -> None:
        """An event without a transition (a door opened, a refused request)."""
        self._engine.note(phase, detail, data, code)

    def status(self) -> dict[str, Any]:
        """State, code, phase, attempt, network and activation: what an app shows."""
        record = self._engine.record
        return {
            "state": record.state.wire_name,
            "code": int(record.code),
            "code_name": record.code.name,
            "phase": record.phase,
            "attempt": record.attempt,
            "detail": record.detail,
            "ssid_hex": record.ssid.hex() if record.ssid else None,
            "activation": self._engine.store.cloud().public(),
        }
