"""The device daemon: the device's stack (:mod:`device_sim.stack`) and its control socket.

Components are async context managers composed in one AsyncExitStack, so shutdown runs in
reverse order even after a failure. SIGTERM/SIGINT end the daemon cleanly; SIGKILL is survived
by the store's transactions and the engine's restart rule.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .codes import Code
from .config import DaemonOptions
from .control import ControlServer
from .core.deadlines import Timeouts
from .core.engine import OnboardingEngine
from .core.events import EventPhase
from .core.life import LifeTimers
from .core.store import DeviceStore, Identity
from .doors import registry
from .doors.personality import Handler
from .doors.supervisor import DoorSupervisor
from .errors import ConfigError, OnboardingError
from .lifecycle import raise_fd_limit
from .network import BackendArgs, NetworkManagerArgs, SimulatedArgs, create_backend
from .network.base import BackendKind, NetworkBackend
from .network.faults import crash_points
from .network.scenario import load_scenario
from .profile import Profile, load_profile
from .stack import DeviceStack, Doors, open_device, open_doors

if TYPE_CHECKING:
    from .core.activation import CloudActivator
    from .doors.personality import DeviceSide

LOG = logging.getLogger(__name__)
LONG_PRESS_S = 10  # holding the button this long factory-resets the device
WATCH_BACKLOG = 20  # events a watcher gets first (the last ones before it joined)
WATCH_QUEUE = 1000  # events held for a slow watcher before it is let go


Preflight = Callable[[DaemonOptions], Awaitable[list[dict[str, Any]]]]
"""The checks the daemon runs before it opens the device (``doctor``'s, by the command that
starts it): each result as ``doctor --json`` gives it, ``ok`` false for a finding with its
``code`` and ``fix``."""


async def run_daemon(
    opts: DaemonOptions, stop: asyncio.Event | None = None, *, preflight: Preflight | None = None
) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT). ``preflight``: checks run before the
    device opens (its advertisement not yet registered, so a leaked one is told from ours);
    each finding becomes a ``preflight`` event with its code once the device is open.

    Raises ConfigError, StoreError, TransportError.
    """
    # Everything the daemon creates in its state directory (the store, the event log, the
    # control socket, dnsmasq's files) is private, whatever umask it was started with.
    previous_umask = os.umask(0o077)
    # The soft descriptor limit up to the hard one (systemd's default soft limit is 1,024):
    # the guarded listeners derive their connection caps from it.
    before, after = raise_fd_limit()
    if after != before:
        LOG.debug("descriptor limit raised from %d to %d", before, after)
    try:
        return await _run_daemon(opts, stop, preflight)
    finally:
        os.umask(previous_umask)


@dataclass
class ServedDevice:
    """One device as the daemon serves it: its stack, its doors and its control socket."""

    options: DaemonOptions
    device: DeviceStack
    doors: Doors
    watch_url: str | None = None

    def ready(self) -> dict[str, object]:
        """The daemon's ready line: what it serves, nothing secret."""
        ble = self.doors.supervisor.ble
        return {
            "ready": True,
            "device_id": self.device.identity.device_id,
            "local_name": self.device.local_name if ble is not None else None,
            "adapter": self.options.ble.adapter,
            "state": self.device.engine.state.wire_name,
            "doors": self.doors.supervisor.status(),
            "personalities": list(self.doors.personalities) if ble is not None else [],
            # on bumble: the device's own address (bumble's virtual controller shows no name)
            **(
                {"address": getattr(ble, "address", None)}
                if getattr(ble, "transport", None)
                else {}
            ),
            "watch": self.watch_url,
        }


async def serve_device(
    stack: AsyncExitStack, opts: DaemonOptions, profile: Profile, *, durability: str = "full"
) -> ServedDevice:
    """Open the device in ``opts.state_dir`` inside ``stack``: its stack, its doors, its control
    socket (and watch page). ``device-sim run`` serves one; ``device-sim fleet`` many in one
    event loop. ``durability``: the store's (:class:`~device_sim.core.store.DeviceStore`).

    Raises ConfigError, StoreError, TransportError.
    """
    try:
        checkpoint = crash_points(os.environ.get("DEVICE_SIM_FAULT"))
    except ValueError as exc:
        raise ConfigError("DEVICE_SIM_FAULT", str(exc)) from None
    device = await open_device(
        stack,
        profile,
        opts.state_dir,
        lambda store: _backend(opts, store),
        timeouts=Timeouts.from_profile(profile, opts.timeouts.scale),
        idle_timeout_s=opts.timeouts.idle_s,
        activator=lambda identity: _activator(opts, identity),
        checkpoint=checkpoint,
        durability=durability,
        life=LifeTimers.from_options(opts.reconnect, opts.timeouts.scale),
    )
    doors = await open_doors(
        stack,
        device,
        ble=opts.ble,
        doors=opts.doors,
        softap=opts.softap,
        personality_options=opts.personality_options,
    )
    supervisor = doors.supervisor
    control = ControlServer(opts.state_dir)
    _register_commands(control, supervisor, device.engine, doors.sides, opts)
    _register_faults(control, device.engine, device.backend)
    device.service.serve_diagnostics(  # DIAGNOSTICS_REQUEST over a session: the same bundle
        lambda: _bundle_bytes(device.engine, supervisor, doors.sides, opts)
    )
    await stack.enter_async_context(control)
    served = ServedDevice(opts, device, doors)
    if opts.watch.enabled:
        from .watch.server import WatchServer

        watcher = WatchServer(
            opts.watch,
            device.events,
            lambda: _snapshot(device.engine, supervisor),
            opts.state_dir,
            profile,
        )
        await stack.enter_async_context(watcher)
        served.watch_url = watcher.url
    return served


async def _preflight(preflight: Preflight | None, opts: DaemonOptions) -> list[dict[str, Any]]:
    """The preflight's results; never raises (a check that cannot run is not a start that
    cannot)."""
    if preflight is None:
        return []
    try:
        results = await preflight(opts)
    except Exception as exc:  # the doctor's own failure: logged, the daemon starts anyway
        LOG.warning("preflight could not run: %s: %s", type(exc).__name__, exc)
        return []
    found = [r for r in results if not r.get("ok")]
    LOG.info(
        "preflight: %d checks, %s",
        len(results),
        ", ".join(f"{r['name']} {r.get('code_name')}" for r in found) or "no finding",
    )
    return found


def _report_preflight(engine: OnboardingEngine, found: list[dict[str, Any]]) -> None:
    """Each finding an event: its check, its detail and its fix, with its code."""
    for r in found:
        code = Code.__members__.get(str(r.get("code_name")), Code.INTERNAL_ERROR)
        engine.note(
            EventPhase.PREFLIGHT,
            f"{r['name']}: {r['detail']}",
            {"check": r["name"], "fix": r.get("fix")},
            code,
        )


async def _run_daemon(
    opts: DaemonOptions, stop: asyncio.Event | None, preflight: Preflight | None = None
) -> int:
    stop = stop or asyncio.Event()
    profile = load_profile(opts.profile)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        if opts.state_dir.is_dir():  # a device's own: its identity is made by `init`
            from .support.collect import keep_log

            ring = keep_log(opts.state_dir)
            stack.callback(logging.getLogger().removeHandler, ring)
            stack.callback(ring.close)
        found = await _preflight(preflight, opts)
        served = await serve_device(stack, opts, profile)
        _report_preflight(served.device.engine, found)
        # One machine-readable line on stdout says the daemon is serving (supervisors and the
        # tests wait for it instead of sleeping); everything else goes to the log on stderr.
        sys.stdout.write(json.dumps(served.ready()) + "\n")
        sys.stdout.flush()
        await stop.wait()
        LOG.info("stopping")
    return 0


def _backend(opts: DaemonOptions, store: DeviceStore) -> NetworkBackend:
    return create_backend(backend_args(opts), store)


def backend_args(opts: DaemonOptions) -> BackendArgs:
    """The chosen backend's typed arguments, from the ``[network]``, ``[cloud]`` and
    ``[softap]`` options."""
    net, cloud = opts.network, opts.cloud
    if net.backend is BackendKind.SIMULATED:
        return SimulatedArgs(
            load_scenario(net.scenario),
            zero_delay=net.zero_delay,
            time_scale=net.time_scale,
            seed=net.seed,
        )
    port = opts.softap.listen.port  # DHCP option 114 must name the door's port
    return NetworkManagerArgs(
        interface=net.interface,
        scan_timeout=net.scan_timeout_s,
        cloud_host=cloud.host or NetworkManagerArgs.cloud_host,
        cloud_port=cloud.port,
        cloud_ca=cloud.ca,
        dnsmasq_shared_dir=net.dnsmasq_shared_dir or NetworkManagerArgs.dnsmasq_shared_dir,
        captive_api_url="http://{address}"
        + ("" if port == 80 else f":{port}")
        + "/captive-portal/api",
        cert_dir=opts.state_dir / "nm-certs",
    )


def _activator(opts: DaemonOptions, identity: Identity) -> CloudActivator | None:
    cloud = opts.cloud
    if not cloud.activation:
        return None
    from .core.activation import ActivationConfig, CloudActivator  # its HTTP client: aiohttp

    if not cloud.url:
        raise ConfigError("--cloud-url", "activation needs the cloud's URL")
    return CloudActivator(
        ActivationConfig(
            cloud.activation, cloud.url, cloud.ca, password_mode=cloud.activation_password
        ),
        opts.state_dir,
        identity.device_id,
    )


def _register_commands(
    control: ControlServer,
    supervisor: DoorSupervisor,
    engine: OnboardingEngine,
    sides: list[DeviceSide],
    options: DaemonOptions,
) -> None:
    """The daemon's ``device-sim ctl`` commands, and each personality's own."""
    commands = _Commands(supervisor, engine, sides, options)
    control.register("diagnostics", commands.diagnostics)
    control.register_stream("watch", commands.watch)
    control.register("status", commands.status)
    control.register("softap-start", commands.softap_start)
    control.register("factory-reset", commands.factory_reset)
    control.register("button", commands.button)
    served: set[str] = set()
    for side in sides:
        for name, handler in side.commands().items():
            control.register(name, handler)
            served.add(name)
    for name in registry.names():  # another personality's command: say which one serves it
        for command in set(registry.get(name).commands) - served:
            control.register(command, _not_presented(name))


@dataclass
class _Commands:
    supervisor: DoorSupervisor
    engine: OnboardingEngine
    sides: list[DeviceSide]
    options: DaemonOptions

    async def status(self, args: dict[str, object]) -> dict[str, object]:
        wait_ms = args.get("wait_decided_ms", 0)
        if not isinstance(wait_ms, int) or not 0 <= wait_ms <= 600_000:
            raise OnboardingError(Code.MALFORMED_REQUEST, "wait_decided_ms: 0 to 600000")
        if wait_ms:  # until the fallback window is resolved (tests and scripts await this)
            try:
                async with asyncio.timeout(wait_ms / 1000):
                    await self.supervisor.decided.wait()
            except TimeoutError:
                pass
        engine, record = self.engine, self.engine.record
        return {
            "state": record.state.wire_name,
            "code": int(record.code),
            "code_name": record.code.name,
            "attempt": record.attempt,
            "ssid_hex": record.ssid.hex() if record.ssid else None,
            "saved_networks": [n.public(record.ssid) for n in engine.saved_networks()],
            "reconnecting": engine.life.retrying,
            "activation": engine.store.cloud().public(),
            **self.supervisor.status(),
        }

    async def softap_start(self, args: dict[str, object]) -> dict[str, object]:
        return await self.supervisor.open_softap("requested by the CLI")

    async def factory_reset(self, args: dict[str, object]) -> dict[str, object]:
        await self.engine.factory_reset("the CLI")
        return {"state": self.engine.state.wire_name}

    async def button(self, args: dict[str, object]) -> dict[str, object]:
        """The device's one button: a press authorizes Improv; held 10 s it factory-resets."""
        hold = args.get("hold_s", 0.2)
        if not isinstance(hold, int | float) or not 0 <= hold <= 60:
            raise OnboardingError(Code.MALFORMED_REQUEST, "hold_s: 0 to 60 seconds")
        if hold >= LONG_PRESS_S:
            await self.engine.factory_reset(f"a {hold:g} s long press")
            return {"action": "factory-reset", "state": self.engine.state.wire_name}
        for side in self.sides:
            done = side.press_button("the button")
            if done is not None:
                return done
        self.engine.note(
            EventPhase.BUTTON,
            f"pressed {hold:g} s: nothing to do (hold {LONG_PRESS_S} s to factory-reset)",
        )
        return {"action": "none"}

    async def watch(self, args: dict[str, object]) -> AsyncIterator[dict[str, object]]:
        """The device's event stream: its current state, the last ``last`` events, then every
        event as it happens (``device-sim watch``)."""
        last = args.get("last", WATCH_BACKLOG)
        if not isinstance(last, int) or not 0 <= last <= 200:
            raise OnboardingError(Code.MALFORMED_REQUEST, "last: 0 to 200 events")
        yield _snapshot(self.engine, self.supervisor)
        async for event, past in self.engine.events.follow(last, WATCH_QUEUE):
            yield {"kind": "event", **({"backlog": True} if past else {}), **event.to_json()}

    async def diagnostics(self, args: dict[str, object]) -> dict[str, object]:
        """The diagnostics bundle (``ctl diagnostics --out FILE``): a gzip'd tar, base64."""
        from .support import bundle

        files, redacted, archive = _bundle(self.engine, self.supervisor, self.sides, self.options)
        out = {"files": files, "bytes": len(archive), "archive": bundle.encode(archive)}
        if redacted:
            out["redacted"] = redacted  # secrets found in free text, replaced: file -> count
        return out


def _register_faults(
    control: ControlServer, engine: OnboardingEngine, backend: NetworkBackend
) -> None:
    """``device-sim ctl fault add|remove|list``: faults in the simulated world, effective from
    the next attempt, each change an event in the watch stream."""
    from .network.faults import parse_fault

    async def fault(args: dict[str, object]) -> dict[str, object]:
        add = getattr(backend, "add_fault", None)
        remove = getattr(backend, "remove_fault", None)
        if add is None or remove is None:
            raise OnboardingError(
                Code.INVALID_STATE,
                f"faults belong to the simulated world; this daemon runs {backend.name}",
            )
        action = args.get("action", "list")
        done = None
        if action == "add":
            new = parse_fault({k: v for k, v in args.items() if k != "action"})
            replaced = add(new)
            done = f"{'replaced' if replaced else 'added'} {new.describe()}"
            engine.note(EventPhase.FAULT, done, data={"fault": new.to_json(), "action": "add"})
        elif action == "remove":
            name = args.get("name")
            if not isinstance(name, str):
                raise OnboardingError(Code.MALFORMED_REQUEST, "fault remove needs a name")
            old = remove(name)
            if old is None:
                raise OnboardingError(Code.INVALID_STATE, f"no fault named {name!r}")
            done = f"removed {old.describe()}"
            engine.note(EventPhase.FAULT, done, data={"fault": old.to_json(), "action": "remove"})
        elif action != "list":
            raise OnboardingError(
                Code.MALFORMED_REQUEST, f"fault: add, remove or list, not {action!r}"
            )
        faults = [f.to_json() for f in getattr(backend, "faults", [])]
        return {"done": done, "faults": faults} if done else {"faults": faults}

    control.register("fault", fault)


def _bundle(
    engine: OnboardingEngine,
    supervisor: DoorSupervisor,
    sides: list[DeviceSide],
    options: DaemonOptions,
) -> tuple[list[str], dict[str, int], bytes]:
    """The diagnostics bundle (:mod:`device_sim.support.bundle`): its file names, the secrets
    redacted from its free text (per file) and its bytes. Raises OnboardingError
    (INTERNAL_ERROR) if a file would carry a private key."""
    from .support import bundle, collect

    store, record = engine.store, engine.record
    secrets = collect.device_secrets(store)
    files: dict[str, Any] = {
        **collect.device_files(store),
        "options.json": bundle.jsonable(options),
        "state.json": {
            "record": collect.record_json(record),
            "activation": store.cloud().public(),
            "doors": supervisor.status(),
            "personalities": [side.name for side in sides],
        },
        "scan.json": [ap.to_wire() for ap in engine.last_scan],
    }
    files["summary.txt"] = collect.summary(
        engine.profile,
        store,
        daemon=f"running (pid {os.getpid()})",
        events=bundle.events_of(str(files["timeline.jsonl"])),
    )
    archive, redacted = bundle.build_with_report(files, secrets)
    if redacted:
        LOG.info("diagnostics: secrets redacted from free text in %s", ", ".join(redacted))
    return sorted(files) + (["redacted.json"] if redacted else []), redacted, archive


async def _bundle_bytes(
    engine: OnboardingEngine,
    supervisor: DoorSupervisor,
    sides: list[DeviceSide],
    options: DaemonOptions,
) -> bytes:
    return _bundle(engine, supervisor, sides, options)[2]


def _snapshot(engine: OnboardingEngine, supervisor: DoorSupervisor) -> dict[str, object]:
    """The device's current state, first thing a watcher gets."""
    record = engine.record
    last = engine.events.last
    identity = engine.store.identity()
    timeouts = engine.timeouts
    return {
        "kind": "state",
        "device_id": identity.device_id if identity else None,
        "name": engine.profile.advertising.local_name_pattern.format(short_id=identity.short_id)
        if identity
        else None,
        # What each running phase may take (after --timeout-scale): the view shows the time
        # spent against it.
        "timeouts_ms": {
            **{
                state: round(getattr(timeouts, state) * 1000)
                for state in ("session_open", "credentials_received", "joining", "verifying")
            },
            **{phase: round(s * 1000) for phase, (s, _) in timeouts.phases.items()},
        },
        "state": record.state.wire_name,
        "code": int(record.code),
        "code_name": record.code.name,
        "phase": record.phase,
        "attempt": record.attempt,
        "seq": last.seq if last else 0,
        "doors": supervisor.status()["doors"],
    }


def _not_presented(personality: str) -> Handler:
    async def refuse(args: dict[str, object]) -> dict[str, object]:
        raise OnboardingError(
            Code.INVALID_STATE,
            f"this device does not present the {personality} personality "
            f"(run --personality {personality} or a list with it)",
        )

    return refuse
