"""One device stack in the test's own event loop: the daemon's wiring (:mod:`device_sim.stack`)
on a fresh identity with a known setup code, the simulated world (or a backend the caller
brings) and short timeouts. Tests, fuzzers and benchmarks build on it instead of wiring the
store, engine and session layer by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from ..core.deadlines import Timeouts
from ..core.events import DiagnosticEvent
from ..core.identity import create_identity
from ..core.life import LifeTimers
from ..core.store import DeviceStore
from ..network.base import NetworkBackend
from ..network.simulated import SimulatedBackend
from ..profile import Profile, load_profile
from ..security.secret import Secret
from ..stack import DeviceStack, open_device

SETUP_CODE = "2468-1357"


async def build_stack(
    stack: AsyncExitStack,
    state_dir: Path,
    *,
    scenario: str = "typical-home",
    backend: Callable[[DeviceStore], NetworkBackend] | None = None,
    profile: Profile | None = None,
    setup_code: str = SETUP_CODE,
    timeouts: Timeouts | None = None,
    idle_timeout_s: float | None = None,
    zero_delay: bool = True,
    seen: list[DiagnosticEvent] | None = None,
    life: LifeTimers | None = None,
) -> DeviceStack:
    """A device with a new identity in ``state_dir`` (its label code ``setup_code``), opened
    in ``stack``. ``seen`` collects every event from the first one on."""
    profile = profile or load_profile()
    with DeviceStore(state_dir) as store:
        create_identity(
            store, Secret(setup_code), ap_passphrase_length=profile.softap.passphrase_length
        )

    def simulated(store: DeviceStore) -> NetworkBackend:
        return SimulatedBackend(scenario, zero_delay=zero_delay)

    device = await open_device(
        stack,
        profile,
        state_dir,
        backend or simulated,
        timeouts=timeouts or Timeouts.from_profile(profile),
        idle_timeout_s=idle_timeout_s,
        event_log=False,
        subscribers=[seen.append] if seen is not None else [],
        life=life,
    )
    return device
