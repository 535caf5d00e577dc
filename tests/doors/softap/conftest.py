"""SoftAP fixtures: a whole device stack in the test's event loop (real store, engine, session
layer, simulated backend with its loopback servers, and the SoftAP door on real loopback HTTP
listeners on free ports)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest_asyncio

from device_sim.core.engine import OnboardingEngine, Timeouts
from device_sim.core.events import DiagnosticEvent, EventBus
from device_sim.core.identity import create_identity
from device_sim.core.store import DeviceStore
from device_sim.doors.softap.door import SoftApDoor, SoftApOptions
from device_sim.network.simulated import SimulatedBackend
from device_sim.profile import Profile
from device_sim.security.secret import Secret
from device_sim.session.service import ProvisioningService

SETUP_CODE = "2468-1357"


@dataclass
class Stack:
    profile: Profile
    state_dir: Path
    store: DeviceStore
    backend: SimulatedBackend
    engine: OnboardingEngine
    service: ProvisioningService
    door: SoftApDoor
    events: list[DiagnosticEvent]

    @property
    def url(self) -> str:
        return self.door.ap.url


StackFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def make_stack(tmp_path: Path, profile: Profile) -> AsyncIterator[StackFactory]:
    """``await make_stack(scenario=..., captive_mode=..., **SoftApOptions fields)``.

    ``profile=`` takes a modified profile (e.g. a short ``softap.http.body_timeout_ms``)."""
    async with AsyncExitStack() as stack:
        async def build(scenario: str = "typical-home", *, start: bool = True,
                        idle_timeout_s: float | None = None, profile: Profile = profile,
                        zero_delay: bool = True, **options: Any) -> Stack:
            state_dir = tmp_path / f"device{len(list(tmp_path.iterdir()))}"
            store = stack.enter_context(DeviceStore(state_dir))
            identity, _ = create_identity(store, Secret(SETUP_CODE))
            backend = SimulatedBackend(scenario, zero_delay=zero_delay)
            await stack.enter_async_context(backend)
            bus = EventBus()
            seen: list[DiagnosticEvent] = []
            bus.subscribe(seen.append)
            engine = OnboardingEngine(profile, store, backend, bus,
                                      timeouts=Timeouts.from_profile(profile))
            await stack.enter_async_context(engine)
            service = ProvisioningService(profile, engine, store, identity,
                                          idle_timeout_s=idle_timeout_s)
            stack.push_async_callback(service.aclose)
            opts = replace(SoftApOptions(listen_port=0, lan_port=0, state_dir=state_dir),
                           **options)
            door = SoftApDoor(profile, service, engine, backend, identity, opts)
            stack.push_async_callback(door.stop)
            if start:
                await door.start()
            return Stack(profile, state_dir, store, backend, engine, service, door, seen)

        yield build
