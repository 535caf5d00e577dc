"""SoftAP fixtures: a whole device stack in the test's event loop (real store, engine, session
layer, simulated backend with its loopback servers, and the SoftAP door on real loopback HTTP
listeners on free ports)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest_asyncio

from device_sim.core.engine import OnboardingEngine
from device_sim.core.events import DiagnosticEvent
from device_sim.core.store import DeviceStore
from device_sim.doors.native.device import NativePersonality
from device_sim.doors.softap.door import SoftApDoor, SoftApOptions
from device_sim.network.simulated import SimulatedBackend
from device_sim.options import HostPort
from device_sim.profile import Profile
from device_sim.session.holder import SessionHolder
from device_sim.testing.stack import SETUP_CODE, build_stack


@dataclass
class Stack:
    profile: Profile
    state_dir: Path
    store: DeviceStore
    backend: SimulatedBackend
    engine: OnboardingEngine
    service: SessionHolder
    door: SoftApDoor
    events: list[DiagnosticEvent]

    @property
    def url(self) -> str:
        return self.door.ap.url


StackFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def make_stack(tmp_path: Path, profile: Profile) -> AsyncIterator[StackFactory]:
    """``await make_stack(scenario=..., captive_mode=..., **SoftApOptions fields)``: the
    daemon's wiring (device_sim.testing.build_stack) plus a SoftAP door on free loopback ports.

    ``profile=`` takes a modified profile (e.g. a short ``softap.http.body_timeout_ms``)."""
    async with AsyncExitStack() as stack:

        async def build(
            scenario: str = "typical-home",
            *,
            start: bool = True,
            idle_timeout_s: float | None = None,
            profile: Profile = profile,
            zero_delay: bool = True,
            **options: Any,
        ) -> Stack:
            state_dir = tmp_path / f"device{len(list(tmp_path.iterdir()))}"
            seen: list[DiagnosticEvent] = []
            device = await build_stack(
                stack,
                state_dir,
                scenario=scenario,
                profile=profile,
                setup_code=SETUP_CODE,
                idle_timeout_s=idle_timeout_s,
                zero_delay=zero_delay,
                seen=seen,
            )
            opts = replace(
                SoftApOptions(
                    listen=HostPort("127.0.0.1", 0),
                    lan=HostPort("127.0.0.1", 0),
                    state_dir=state_dir,
                ),
                **options,
            )
            native = NativePersonality(device.port("native"))  # native's HTTP API
            stack.callback(native.close)
            door = SoftApDoor(device.port("softap"), opts, routes=native.http_routes)
            stack.push_async_callback(door.stop)
            if start:
                await door.start()
            assert isinstance(device.backend, SimulatedBackend)
            return Stack(
                profile,
                state_dir,
                device.store,
                device.backend,
                device.engine,
                device.service,
                door,
                seen,
            )

        yield build


async def until(condition: Callable[[], object], what: str, wait_s: float = 10.0) -> None:
    """Bounded wait for a condition no event announces (yields to the loop between checks)."""
    try:
        async with asyncio.timeout(wait_s):
            while not condition():  # noqa: ASYNC110 (a condition no event announces)
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
