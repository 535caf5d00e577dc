"""A PhaseCallback that keeps every call: shared by the simulated and NetworkManager tests."""

from __future__ import annotations

from typing import Any


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, phase: str, detail: dict[str, Any]) -> None:
        self.calls.append((phase, detail))

    @property
    def phases(self) -> list[str]:
        return [phase for phase, _ in self.calls]
