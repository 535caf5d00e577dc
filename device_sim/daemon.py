"""The device daemon: store, network backend, engine, session layer, doors and control socket.

Components are async context managers composed in one AsyncExitStack, so shutdown runs in
reverse order even after a failure. SIGTERM/SIGINT end the daemon cleanly; SIGKILL is survived
by the store's transactions and the engine's restart rule.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from .codes import Code
from .control import ControlServer
from .core.activation import ActivationConfig, CloudActivator
from .core.engine import OnboardingEngine, Timeouts
from .core.events import EventBus, EventPhase, JsonlLog
from .core.store import DeviceStore
from .doors.ble.host import DEFAULT_NOTIFY_SIZE, BleDoor
from .doors.improv.button import GpioButton
from .doors.improv.device import ImprovPersonality
from .doors.softap.door import SoftApDoor, SoftApOptions
from .doors.supervisor import DoorSupervisor, Policy
from .errors import ConfigError, OnboardingError
from .network import create_backend
from .network.scenario import load_scenario
from .profile import load_profile
from .security.ap_credentials import generate_ap_passphrase
from .session.service import ProvisioningService

LOG = logging.getLogger(__name__)
LONG_PRESS_S = 10  # holding the button this long factory-resets the device


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
    doors: Policy = Policy.BLE_THEN_SOFTAP
    softap_window_s: float = 60.0
    softap: SoftApOptions = field(default_factory=SoftApOptions)
    personalities: tuple[str, ...] | None = None  # native, improv (default: the profile's)
    improv_authorization: str | None = None  # none | required (default: the profile's)
    improv_authorization_timeout_s: float | None = None
    improv_redirect_url: str | None = None
    improv_button: str | None = None  # CHIP:LINE of a GPIO button (Raspberry Pi)
    interface: str | None = None  # networkmanager: the Wi-Fi interface (None: first managed)
    scan_timeout_s: float = 10.0
    cloud_host: str | None = None  # None: the backend's default
    cloud_port: int = 443
    cloud_ca: Path | None = None  # PEM CA bundle; None: the system trust store
    activation: str | None = None  # zero-touch | claim | registration (None: no cloud)
    cloud_url: str | None = None  # https://host:port of the cloud for activation
    activation_password: str = "user"  # registration: the device user's password from user|cloud


async def run_daemon(opts: DaemonOptions, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT).

    Raises ConfigError, StoreError, TransportError.
    """
    # Everything the daemon creates in its state directory (the store, the event log, the
    # control socket, dnsmasq's files) is private, whatever umask it was started with.
    previous_umask = os.umask(0o077)
    try:
        return await _run_daemon(opts, stop)
    finally:
        os.umask(previous_umask)


async def _run_daemon(opts: DaemonOptions, stop: asyncio.Event | None) -> int:
    stop = stop or asyncio.Event()
    profile = load_profile(opts.profile_path)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        store = stack.enter_context(DeviceStore(opts.state_dir))
        store.harden()
        identity = store.identity()
        if identity is None:
            raise ConfigError(
                str(opts.state_dir), "no device identity: run `device-sim init` first"
            )
        if identity.softap_passphrase is None:  # made before the SoftAP door existed
            identity = store.set_softap_passphrase(
                generate_ap_passphrase(profile.softap.passphrase_length)
            )
        events = EventBus()
        log = JsonlLog(opts.state_dir / "onboarding.jsonl")
        stack.callback(log.close)
        events.subscribe(log)
        if opts.backend == "networkmanager":
            nm: dict[str, object] = {
                "interface": opts.interface,
                "scan_timeout": opts.scan_timeout_s,
                "cloud_port": opts.cloud_port,
                "cloud_ca": opts.cloud_ca,
            }
            if opts.cloud_host:
                nm["cloud_host"] = opts.cloud_host
            port = opts.softap.listen_port  # DHCP option 114 must name the door's port
            nm["captive_api_url"] = (
                "http://{address}" + ("" if port == 80 else f":{port}") + "/captive-portal/api"
            )
            backend = create_backend(opts.backend, store=store, **nm)
        else:
            backend = create_backend(
                opts.backend,
                scenario=load_scenario(opts.scenario),
                zero_delay=opts.zero_delay,
                time_scale=opts.time_scale,
            )
        await stack.enter_async_context(backend)
        activator = None
        if opts.activation:
            if not opts.cloud_url:
                raise ConfigError("--cloud-url", "activation needs the cloud's URL")
            activator = CloudActivator(
                ActivationConfig(
                    opts.activation,
                    opts.cloud_url,
                    opts.cloud_ca,
                    password_mode=opts.activation_password,
                ),
                opts.state_dir,
                identity.device_id,
            )
        engine = OnboardingEngine(
            profile,
            store,
            backend,
            events,
            timeouts=Timeouts.from_profile(profile, opts.timeout_scale),
            activator=activator,
            fault=os.environ.get("DEVICE_SIM_FAULT"),
        )
        await stack.enter_async_context(engine)
        service = ProvisioningService(
            profile, engine, store, identity, idle_timeout_s=opts.idle_timeout_s
        )
        stack.push_async_callback(service.aclose)
        softap_opts = (
            opts.softap
            if opts.softap.state_dir
            else dataclasses.replace(opts.softap, state_dir=opts.state_dir)
        )
        supervisor: DoorSupervisor | None = None

        def doors_status() -> dict[str, object]:
            return supervisor.status() if supervisor is not None else {}

        personalities = opts.personalities or profile.personalities
        improv: ImprovPersonality | None = None
        if "improv" in personalities:
            improv = ImprovPersonality(
                profile,
                service,
                engine,
                store,
                identity,
                authorization=opts.improv_authorization,
                authorization_timeout_s=opts.improv_authorization_timeout_s,
                redirect_url=opts.improv_redirect_url,
                with_diagnostics="native" not in personalities,
            )
        supervisor = DoorSupervisor(
            opts.doors,
            engine,
            service,
            ble=lambda: BleDoor(
                profile,
                service,
                identity,
                adapter=opts.adapter,
                notify_size=opts.notify_size,
                native="native" in personalities,
                personalities=[improv] if improv else [],
            ),
            softap=lambda: SoftApDoor(
                profile, service, engine, backend, identity, softap_opts, doors_status=doors_status
            ),
            window_s=opts.softap_window_s,
        )
        await stack.enter_async_context(supervisor)
        control = ControlServer(opts.state_dir)
        _register_commands(control, supervisor, engine, improv)
        await stack.enter_async_context(control)
        if improv is not None and opts.improv_button:
            await stack.enter_async_context(GpioButton(opts.improv_button, improv.authorize))
        ble = supervisor.ble
        # One machine-readable line on stdout says the daemon is serving (supervisors and the
        # tests wait for it instead of sleeping); everything else goes to the log on stderr.
        sys.stdout.write(
            json.dumps(
                {
                    "ready": True,
                    "device_id": identity.device_id,
                    "local_name": ble.local_name if isinstance(ble, BleDoor) else None,
                    "adapter": opts.adapter,
                    "state": engine.state.wire_name,
                    "doors": supervisor.status(),
                    "personalities": ble.personality_names if isinstance(ble, BleDoor) else [],
                }
            )
            + "\n"
        )
        sys.stdout.flush()
        await stop.wait()
        LOG.info("stopping")
    return 0


def _register_commands(
    control: ControlServer,
    supervisor: DoorSupervisor,
    engine: OnboardingEngine,
    improv: ImprovPersonality | None,
) -> None:
    """The daemon's ``device-sim ctl`` commands."""

    async def status(args: dict[str, object]) -> dict[str, object]:
        wait_ms = args.get("wait_decided_ms", 0)
        if not isinstance(wait_ms, int) or not 0 <= wait_ms <= 600_000:
            raise OnboardingError(Code.MALFORMED_REQUEST, "wait_decided_ms: 0 to 600000")
        if wait_ms:  # until the fallback window is resolved (tests and scripts await this)
            try:
                async with asyncio.timeout(wait_ms / 1000):
                    await supervisor.decided.wait()
            except TimeoutError:
                pass
        record = engine.record
        return {
            "state": record.state.wire_name,
            "code": int(record.code),
            "code_name": record.code.name,
            "attempt": record.attempt,
            "activation": engine.store.cloud().public(),
            **supervisor.status(),
        }

    async def softap_start(args: dict[str, object]) -> dict[str, object]:
        return await supervisor.open_softap("requested by the CLI")

    async def improv_authorize(args: dict[str, object]) -> dict[str, object]:
        if improv is None:
            raise OnboardingError(
                Code.INVALID_STATE,
                "this device presents no Improv service (run --personality improv or both)",
            )
        return improv.authorize("the CLI (simulated button press)")

    async def factory_reset(args: dict[str, object]) -> dict[str, object]:
        await engine.factory_reset("the CLI")
        return {"state": engine.state.wire_name}

    async def button(args: dict[str, object]) -> dict[str, object]:
        """The device's one button: a press authorizes Improv; held 10 s it factory-resets."""
        hold = args.get("hold_s", 0.2)
        if not isinstance(hold, int | float) or not 0 <= hold <= 60:
            raise OnboardingError(Code.MALFORMED_REQUEST, "hold_s: 0 to 60 seconds")
        if hold >= LONG_PRESS_S:
            await engine.factory_reset(f"a {hold:g} s long press")
            return {"action": "factory-reset", "state": engine.state.wire_name}
        if improv is not None:
            return {"action": "improv-authorize", **improv.authorize("the button")}
        engine.note(
            EventPhase.BUTTON,
            f"pressed {hold:g} s: nothing to do (hold {LONG_PRESS_S} s to factory-reset)",
        )
        return {"action": "none"}

    control.register("status", status)
    control.register("softap-start", softap_start)
    control.register("improv-authorize", improv_authorize)
    control.register("factory-reset", factory_reset)
    control.register("button", button)
