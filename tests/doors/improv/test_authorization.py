"""Improv authorization in-process (no BLE): it is consumed by the Wi-Fi settings it
authorized, lapses on time, and restarts only after a failed connect (the Improv spec)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio

from device_sim.codes import Code, State
from device_sim.core.engine import OnboardingEngine, Timeouts
from device_sim.core.events import DiagnosticEvent
from device_sim.doors.improv.codec import Command, ImprovError, build_packet
from device_sim.doors.improv.device import ImprovPersonality
from device_sim.network.scenario import load_scenario
from device_sim.network.simulated import SimulatedBackend
from device_sim.profile import load_profile
from device_sim.testing.stack import build_stack

PROFILE = load_profile()
LAB = load_scenario("engineering-wifi").default_credentials


class GatedBackend(SimulatedBackend):
    """A join that waits until the test opens the gate: it outlasts any authorization."""

    def __init__(self) -> None:
        super().__init__(load_scenario("engineering-wifi"), zero_delay=True)
        self.gate = asyncio.Event()
        self.joining = asyncio.Event()

    async def join(self, *args: Any, **kwargs: Any) -> Any:
        self.joining.set()
        await self.gate.wait()
        return await super().join(*args, **kwargs)


@dataclass
class Bench:
    improv: ImprovPersonality
    engine: OnboardingEngine
    backend: GatedBackend
    events: list[DiagnosticEvent]
    changed: asyncio.Condition

    def settings(self, ssid: bytes, password: str) -> None:
        """A phone writes WIFI_SETTINGS to the RPC characteristic."""
        packet = build_packet(Command.WIFI_SETTINGS, [ssid, password.encode()])
        self.improv.on_write(self.improv.chars["rpc_command"], packet)

    async def wait_event(self, what: str, timeout: float = 5.0) -> DiagnosticEvent:
        def found() -> DiagnosticEvent | None:
            return next((e for e in self.events if what in (e.detail, e.phase)), None)

        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: found() is not None)
        event = found()
        assert event is not None
        self.events.remove(event)
        return event


@pytest_asyncio.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    seen: list[DiagnosticEvent] = []
    changed = asyncio.Condition()

    def record(event: DiagnosticEvent) -> None:
        seen.append(event)

        async def wake() -> None:
            async with changed:
                changed.notify_all()

        asyncio.get_running_loop().create_task(wake())

    backend = GatedBackend()
    async with AsyncExitStack() as stack:
        device = await build_stack(
            stack, tmp_path, backend=lambda store: backend, timeouts=Timeouts(60, 60, 60, 60)
        )
        device.events.subscribe(record)
        improv = ImprovPersonality(
            device.port("improv"), authorization="required", authorization_timeout_s=0.2
        )
        try:
            yield Bench(improv, device.engine, backend, seen, changed)
        finally:
            await improv.stop()


async def test_settings_consume_the_authorization(bench: Bench) -> None:
    bench.improv.authorize("test")
    bench.settings(LAB.ssid, LAB.passphrase or "")
    await asyncio.wait_for(bench.backend.joining.wait(), 5)
    # The join outlasts the authorization; other settings, no button press: refused.
    bench.settings(b"Elsewhere", "another-passphrase")
    refused = await bench.wait_event("refused: waiting for the button")
    assert refused.code is Code.NOT_AUTHORIZED
    assert bench.improv.error is ImprovError.NOT_AUTHORIZED
    bench.backend.gate.set()
    record = await bench.engine.wait_settled(10)
    assert (record.state, record.ssid) == (State.ONLINE, LAB.ssid)
    # Online, and still no authorization: the device is not re-pointed to another network.
    bench.settings(b"Elsewhere", "another-passphrase")
    await bench.wait_event("refused: waiting for the button")
    assert bench.engine.record.ssid == LAB.ssid
    assert bench.improv.authorized is False


async def test_a_failed_connect_restarts_the_authorization_which_then_lapses(bench: Bench) -> None:
    bench.backend.gate.set()
    bench.improv.authorize("test")
    bench.settings(LAB.ssid, "not-the-lab-passphrase")
    failed = await bench.wait_event("failed")
    assert failed.code is Code.WRONG_CREDENTIALS
    # The authorization starts over after the failure and lapses on time without a press.
    await bench.wait_event("authorization lapsed")
    assert bench.improv.authorized is False
    bench.settings(LAB.ssid, LAB.passphrase or "")
    await bench.wait_event("refused: waiting for the button")
    assert bench.engine.record.state is State.FAILED
