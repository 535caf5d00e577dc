"""The device daemon: store, network backend, engine, session layer and doors in one stack.

Components are async context managers composed in one AsyncExitStack, so shutdown runs in
reverse order even after a failure. SIGTERM/SIGINT end the daemon cleanly; SIGKILL is survived
by the store's transactions and the engine's restart rule.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from .engine import OnboardingEngine, Timeouts
from .errors import ConfigError
from .events import EventBus, JsonlLog
from .network import create_backend
from .network.scenario import load_scenario
from .profile import load_profile
from .provisioning import ProvisioningService
from .store import DeviceStore
from .transports.ble import DEFAULT_NOTIFY_SIZE, BleDoor

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonOptions:
    state_dir: Path
    adapter: str = "hci0"
    backend: str = "simulated"
    scenario: str = "typical-home"
    zero_delay: bool = False
    time_scale: float = 1.0
    timeout_scale: float = 1.0
    idle_timeout_s: float | None = None
    notify_size: int = DEFAULT_NOTIFY_SIZE
    profile_path: Path | None = None


async def run_daemon(opts: DaemonOptions, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT). Raises ConfigError, StoreError, TransportError."""
    stop = stop or asyncio.Event()
    profile = load_profile(opts.profile_path)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        store = stack.enter_context(DeviceStore(opts.state_dir))
        identity = store.identity()
        if identity is None:
            raise ConfigError(str(opts.state_dir), "no device identity: run `device-sim init` first")
        events = EventBus()
        log = JsonlLog(opts.state_dir / "onboarding.jsonl")
        stack.callback(log.close)
        events.subscribe(log)
        backend = create_backend(opts.backend, scenario=load_scenario(opts.scenario),
                                 zero_delay=opts.zero_delay, time_scale=opts.time_scale)
        await stack.enter_async_context(backend)
        engine = OnboardingEngine(profile, store, backend, events,
                                  timeouts=Timeouts.from_profile(profile, opts.timeout_scale))
        await stack.enter_async_context(engine)
        service = ProvisioningService(profile, engine, store, identity,
                                      idle_timeout_s=opts.idle_timeout_s)
        stack.push_async_callback(service.aclose)
        door = BleDoor(profile, service, identity, adapter=opts.adapter,
                       notify_size=opts.notify_size)
        await stack.enter_async_context(door)
        # One machine-readable line on stdout says the daemon is serving (supervisors and the
        # tests wait for it instead of sleeping); everything else goes to the log on stderr.
        sys.stdout.write(json.dumps({"ready": True, "device_id": identity.device_id,
                                     "local_name": door.local_name, "adapter": opts.adapter,
                                     "state": engine.state.wire_name}) + "\n")
        sys.stdout.flush()
        await stop.wait()
        LOG.info("stopping")
    return 0
