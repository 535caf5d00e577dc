"""The device's wiring, written once: store, event log, backend, engine, session layer, and the
doors on top. The daemon runs it; :func:`device_sim.testing.stack.build_stack` gives tests,
benchmarks and fuzzers the same stack in their own event loop.

Every component is entered into the caller's AsyncExitStack, so shutdown runs in reverse order
even after a failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.deadlines import Timeouts
from .core.engine import OnboardingEngine
from .core.events import DiagnosticEvent, EventBus, JsonlLog
from .core.life import LifeTimers
from .core.store import DeviceStore, Identity
from .doors import registry
from .doors.personality import DeviceContext
from .doors.softap.options import SoftApOptions
from .doors.supervisor import DoorOptions, DoorSupervisor
from .errors import ConfigError
from .network.base import NetworkBackend
from .profile import Profile
from .security.ap_credentials import generate_ap_passphrase
from .session.holder import SessionHolder
from .session.port import DoorPort

if TYPE_CHECKING:
    from .core.activation import CloudActivator
    from .doors.ble.options import BleOptions
    from .doors.personality import DeviceSide


@dataclass
class DeviceStack:
    """One emulated device below its doors."""

    profile: Profile
    state_dir: Path
    store: DeviceStore
    identity: Identity
    events: EventBus
    backend: NetworkBackend
    engine: OnboardingEngine
    service: SessionHolder

    def port(self, door: str) -> DoorPort:
        """The session layer as door ``door`` sees it."""
        return DoorPort(self.service, door)

    @property
    def local_name(self) -> str:
        return self.profile.advertising.local_name_pattern.format(short_id=self.identity.short_id)


async def open_device(
    stack: AsyncExitStack,
    profile: Profile,
    state_dir: Path,
    backend: Callable[[DeviceStore], NetworkBackend],
    *,
    timeouts: Timeouts,
    idle_timeout_s: float | None = None,
    activator: Callable[[Identity], CloudActivator | None] = lambda identity: None,
    checkpoint: Callable[[str], None] = lambda point: None,
    event_log: bool = True,
    subscribers: Sequence[Callable[[DiagnosticEvent], None]] = (),
    durability: str = "full",
    life: LifeTimers | None = None,
) -> DeviceStack:
    """Open the device in ``state_dir`` (its identity must exist). ``backend`` makes the network
    backend from the store (NetworkManager keeps a ledger in it); ``life``: the connected
    life's timers (reconnect backoff, doors reopening, checks, saved networks).

    Raises ConfigError (no identity), StoreError, and what the backend raises on entry.
    """
    store = stack.enter_context(DeviceStore(state_dir, durability=durability))
    store.harden()
    identity = store.identity()
    if identity is None:
        raise ConfigError(str(state_dir), "no device identity: run `device-sim init` first")
    if identity.softap_passphrase is None:  # made before the SoftAP door existed
        identity = store.set_softap_passphrase(
            generate_ap_passphrase(profile.softap.passphrase_length)
        )
    events = EventBus()
    if event_log:
        log = JsonlLog(state_dir / "onboarding.jsonl")
        stack.callback(log.close)
        events.subscribe(log)
    for subscriber in subscribers:  # before the engine starts: its first events included
        events.subscribe(subscriber)
    net = backend(store)
    await stack.enter_async_context(net)
    engine = OnboardingEngine(
        profile,
        store,
        net,
        events,
        timeouts=timeouts,
        activator=activator(identity),
        checkpoint=checkpoint,
        life=life,
    )
    await stack.enter_async_context(engine)
    service = SessionHolder(profile, engine, store, identity, idle_timeout_s=idle_timeout_s)
    stack.push_async_callback(service.aclose)
    return DeviceStack(profile, state_dir, store, identity, events, net, engine, service)


@dataclass
class Doors:
    supervisor: DoorSupervisor
    sides: list[DeviceSide]  # every personality's device side
    personalities: tuple[str, ...]


async def open_doors(
    stack: AsyncExitStack,
    device: DeviceStack,
    *,
    ble: BleOptions,
    doors: DoorOptions,
    softap: SoftApOptions,
    personality_options: Mapping[str, Any] | None = None,
) -> Doors:
    """Build the chosen personalities (``ble.personalities`` or the profile's default) and
    open the doors by the fallback policy.

    Raises ConfigError (an unknown personality), TransportError (a door that must open cannot).
    """
    entries = registry.resolve(ble.personalities, device.profile, "--personality")
    chosen = tuple(entry.name for entry in entries)
    options = personality_options or {}
    sides = [
        await entry.device(
            DeviceContext(
                device.port(entry.name),
                options.get(entry.name),
                chosen,
                stack,
                diagnostics_elsewhere=any(o.serves_diagnostics for o in entries if o is not entry),
            )
        )
        for entry in entries
    ]
    if softap.state_dir is None:
        softap = dataclasses.replace(softap, state_dir=device.state_dir)
    supervisor: DoorSupervisor | None = None

    def doors_status() -> dict[str, object]:
        return supervisor.status() if supervisor is not None else {}

    def make_ble() -> Any:
        if ble.stack == "bumble":
            from .doors.ble.bumble_host import BumbleHost  # bumble: neither bless nor D-Bus

            if not ble.bumble_transport:
                raise ConfigError("ble.bumble_transport", "required with ble.stack bumble")
            from .bumble_stack import static_address

            return BumbleHost(
                device.local_name,
                sides,
                transport=ble.bumble_transport,
                notify_size=ble.notify_size,
                # from the device id: a fleet's local names may repeat (4 hex digits), ids do not
                address=static_address(device.identity.device_id),
            )
        from .doors.ble.host import BleHost  # bless loads only when a BLE door opens

        return BleHost(device.local_name, sides, adapter=ble.adapter, notify_size=ble.notify_size)

    def make_softap() -> Any:
        from .doors.softap.door import SoftApDoor  # aiohttp loads only when a SoftAP door opens

        return SoftApDoor(
            device.port("softap"),
            softap,
            doors_status=doors_status,
            routes=lambda host: [route for side in sides for route in side.http_routes(host)],
        )

    supervisor = DoorSupervisor(
        doors.policy,
        device.port("supervisor"),
        ble=make_ble,
        softap=make_softap,
        window_s=doors.softap_window_s,
    )
    await stack.enter_async_context(supervisor)
    return Doors(supervisor, sides, chosen)
