"""device-sim's public Python API: a virtual BLE bus, emulated devices, fleets, and the
reference client as a library call.

Every name in ``__all__`` is public and follows the versioning and deprecation policy of
``docs/api.md``; nothing else in ``device_sim`` is (import paths, classes and functions outside
this module may change in any release).

Each device runs as ``device-sim run`` in its own process, as on a Raspberry Pi, and is reached
through its control socket; the bus is a private ``dbus-daemon`` with BlueZoo. Nothing heavy is
imported until it is used::

    async with VirtualBle() as bus, EmulatedDevice(bus, scenario="dns-failure") as device:
        result = await device.provision()
        assert result["code_name"] == "DNS_FAILURE"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from . import __version__
from .codes import Code, State
from .errors import ConfigError, DeviceSimError, OnboardingError, TransportError

__all__ = [
    "Activation",
    "Code",
    "ConfigError",
    "DeviceSimError",
    "EmulatedDevice",
    "EnterpriseSignIn",
    "Fleet",
    "FleetMember",
    "Label",
    "OnboardingError",
    "State",
    "TransportError",
    "VirtualBle",
    "__version__",
    "provision",
]

Transport = Literal["ble", "softap"]
DOORS = {"ble": "ble-only", "softap": "softap-only"}  # a transport's door policy
DEFAULT_SCENARIO = "engineering-wifi"
TIMELINE_LINES = 500  # the events :meth:`EmulatedDevice.timeline` reads at most


@dataclass(frozen=True)
class Label:
    """What the device's label says (``device-sim init --json``): shown once, the device keeps
    the setup code only as a verifier."""

    device_id: str
    setup_code: str  # 1234-5678
    softap_ssid: str
    softap_passphrase: str
    softap_wifi_qr: str  # WIFI:T:WPA;S:...;P:...;;
    extra: Mapping[str, str] = field(default_factory=dict)  # the personalities' own lines

    @classmethod
    def of(cls, fields: Mapping[str, str]) -> Label:
        own = ("device_id", "setup_code", "softap_ssid", "softap_passphrase", "softap_wifi_qr")
        return cls(
            **{k: fields[k] for k in own}, extra={k: v for k, v in fields.items() if k not in own}
        )

    def fields(self) -> dict[str, str]:
        """Every line, as ``init --json`` prints them."""
        return {
            "device_id": self.device_id,
            "setup_code": self.setup_code,
            "softap_ssid": self.softap_ssid,
            "softap_passphrase": self.softap_passphrase,
            "softap_wifi_qr": self.softap_wifi_qr,
            **self.extra,
        }


@dataclass(frozen=True)
class Activation:
    """The activation details a phone sends (``client provision --activate``); all empty for
    zero-touch activation."""

    account: str | None = None
    claim_token: str | None = None
    device_password: str | None = None


@dataclass(frozen=True)
class EnterpriseSignIn:
    """An enterprise (802.1X) network's sign-in, as a phone sends it (native personality,
    protocol revision 4). ``method``: ``peap``, ``ttls`` or ``tls``; PEAP and TTLS take a
    ``password`` (and ``phase2``: ``mschapv2``, or ``pap`` for TTLS), EAP-TLS a
    ``client_cert`` and its unencrypted ``private_key`` (PEM). The server is checked against
    ``ca_cert`` (PEM) and/or ``domain``. :meth:`simulated` gives the simulated world's
    certificates: its CAs ``world``, ``public`` and ``other``, and client certificates from
    ``world`` for any identity."""

    method: str
    identity: str
    password: str | None = field(default=None, repr=False)
    phase2: str | None = None
    anonymous_identity: str | None = None
    ca_cert: bytes | None = field(default=None, repr=False)
    domain: str | None = None
    client_cert: bytes | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)

    @staticmethod
    def simulated_ca(issuer: str = "world") -> bytes:
        """The simulated world's CA certificate ``issuer`` (PEM)."""
        from .network.radius import world_pki

        if issuer not in ("world", "public", "other"):
            raise ConfigError("issuer", f"world, public or other, not {issuer!r}")
        return world_pki().ca_pem(issuer)

    @staticmethod
    def simulated_client(identity: str, *, expired: bool = False) -> tuple[bytes, str]:
        """A client certificate for ``identity`` from the simulated world's CA, and its key."""
        from .network.radius import world_pki

        cert, key = world_pki().client(identity, expired=expired)
        return cert, key.decode("ascii")

    def _settings(self) -> Any:
        from .network.eap import EapMethod, EapSettings, Phase2
        from .security.secret import Secret

        try:
            method = EapMethod(self.method)
            phase2 = Phase2(self.phase2) if self.phase2 is not None else None
        except ValueError as exc:
            raise ConfigError("eap", str(exc)) from None
        return EapSettings(
            method=method,
            identity=self.identity,
            anonymous_identity=self.anonymous_identity,
            password=Secret(self.password) if self.password is not None else None,
            phase2=phase2,
            ca_cert=self.ca_cert,
            domain=self.domain,
            client_cert=self.client_cert,
            private_key=Secret(self.private_key) if self.private_key is not None else None,
        )


class VirtualBle:
    """A private system D-Bus with BlueZoo's virtual adapters (``pip install
    'device-sim[virtual]'``), as an async context manager.

    ``phones`` adapters are made for phone-side clients (:attr:`phones`, ``hci1``...); every
    emulated device and every BLE onboarding gets a fresh adapter of its own
    (:meth:`new_adapter`), because BlueZoo links a phone adapter to a peripheral only once.

    Raises (on entry): ConfigError (bad arguments), DeviceSimError (``dbus-daemon`` or BlueZoo
    missing, or not ready within ``timeout``).
    """

    def __init__(self, *, phones: int = 2, timeout: float = 15.0) -> None:
        if isinstance(phones, bool) or not isinstance(phones, int) or not 1 <= phones <= 15:
            raise ConfigError("VirtualBle.phones", f"1 to 15 phone adapters, not {phones!r}")
        self._phones = phones
        self._timeout = timeout
        self._harness: Any = None

    async def __aenter__(self) -> Self:
        from .apps.virtual.harness import VirtualBle as Harness

        harness = Harness(adapters=1 + self._phones, timeout=self._timeout)
        await harness.start()
        self._harness = harness
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop BlueZoo and the bus (idempotent)."""
        harness, self._harness = self._harness, None
        if harness is not None:
            await harness.stop()

    @property
    def bus_address(self) -> str:
        """The bus's D-Bus address (``DBUS_SYSTEM_BUS_ADDRESS`` for bleak and bless)."""
        return str(self._started().bus_address)

    @property
    def phones(self) -> list[str]:
        """The phone-side adapters, ``["hci1", ...]``."""
        return list(self._started().adapters[1:])

    def env(self) -> dict[str, str]:
        """A copy of ``os.environ`` pointing D-Bus clients at this bus, for subprocesses."""
        return dict(self._started().env())

    def use(self) -> contextlib.AbstractContextManager[str]:
        """``with bus.use():`` points this process's bleak and bless at the bus (they read
        ``DBUS_SYSTEM_BUS_ADDRESS`` when they first connect); restored after."""
        from .apps.virtual.harness import use_bus

        return use_bus(self.bus_address)

    async def new_adapter(self) -> tuple[str, str]:
        """A fresh powered adapter (the lowest index the bus does not use): its name and its
        address. Raises DeviceSimError when BlueZoo refuses it or no index is left (255)."""
        from .apps.virtual.bluez_bus import add_free_adapters

        (name,) = await add_free_adapters(self.bus_address, 1, _address)
        return name, _address(int(name[3:]))

    def _started(self) -> Any:
        if self._harness is None:
            raise ConfigError("VirtualBle", "not started: use `async with VirtualBle() as bus`")
        return self._harness


class EmulatedDevice:
    """One emulated device: a new identity and ``device-sim run`` in its own process, as an
    async context manager that stops it (and removes what it made) on exit.

    Args:
        bus: the virtual bus (needed when a BLE door opens); ``None`` for a SoftAP-only device.
        scenario: the simulated world, a shipped scenario's name or a YAML path.
        personality: the personalities the device presents (``"a"`` or ``["a", "b"]``; default:
            the profile's); the first is the one :meth:`provision` speaks.
        transport: ``"ble"`` or ``"softap"``: the door the device opens and the phone uses.
        doors: a door policy that overrides the transport's (``ble-then-softap``, ``both``...).
        setup_code: the label's code (8 digits; default: a random one).
        state_dir: where the device keeps its state (default: a temporary directory, removed on
            exit); it must not hold an identity yet.
        options: more ``device-sim run`` flags, e.g. ``["--timeout-scale", "0.2"]``.
        zero_delay: the simulated world answers at once (default) or at its scenario's pace.

    Raises (on entry): ConfigError (bad arguments, an unknown scenario or personality),
    DeviceSimError (the daemon did not start: its log's tail is in the message).
    """

    def __init__(
        self,
        bus: VirtualBle | None = None,
        *,
        scenario: str = DEFAULT_SCENARIO,
        personality: str | Sequence[str] | None = None,
        transport: Transport = "ble",
        doors: str | None = None,
        setup_code: str | None = None,
        state_dir: str | Path | None = None,
        options: Sequence[str] = (),
        zero_delay: bool = True,
        start_timeout: float = 30.0,
    ) -> None:
        from .doors import registry

        if transport not in DOORS:
            raise ConfigError("transport", f"ble or softap, not {transport!r}")
        names = [personality] if isinstance(personality, str) else list(personality or ())
        self._entry = registry.get(names[0] if names else registry.default(), "personality")
        for name in names[1:]:
            registry.get(name, "personality")
        if transport not in self._entry.transports:
            raise ConfigError(
                "transport", f"the {self._entry.name} personality does not run over {transport}"
            )
        self.doors = doors or DOORS[transport]
        if self.doors != "softap-only" and bus is None:
            raise ConfigError("bus", f"doors {self.doors} open BLE: give a VirtualBle")
        if setup_code is not None:
            from .security.setup_code import format_setup_code

            try:
                setup_code = format_setup_code(setup_code)
            except ValueError as exc:
                raise ConfigError("setup_code", str(exc)) from None
        self.bus, self.scenario, self.transport = bus, scenario, transport
        self._personalities = names
        self._code = setup_code
        self._given_state = Path(state_dir) if state_dir is not None else None
        self._options = [str(o) for o in options]
        self._zero_delay = zero_delay
        self._start_timeout = start_timeout
        self._work: Path | None = None
        self._daemon: Any = None
        self.label: Label | None = None
        self.adapter: str | None = None
        self.address: str | None = None  # the device's BLE address (its adapter's)
        self.ready: dict[str, Any] = {}  # the daemon's ready line (docs/contracts.md)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- what the device is -----------------------------------------------------------------

    @property
    def setup_code(self) -> str:
        """The label's setup code, ``1234-5678``."""
        return self._label().setup_code

    @property
    def name(self) -> str:
        """The BLE name it advertises (its SoftAP SSID when it has no BLE door)."""
        return str(self.ready.get("local_name") or self._label().softap_ssid)

    @property
    def state_dir(self) -> Path:
        if self._given_state is not None:
            return self._given_state
        if self._work is None:
            raise ConfigError("EmulatedDevice", "not started")
        return self._work / "state"

    @property
    def log_path(self) -> Path | None:
        """The daemon's log (stderr, verbose)."""
        return self._work / "daemon.log" if self._work is not None else None

    @property
    def softap_url(self) -> str | None:
        """The SoftAP provisioning API's URL while the access point is open."""
        softap = (self.ready.get("doors") or {}).get("softap") or {}
        return softap.get("ap_url")

    @property
    def running(self) -> bool:
        return self._daemon is not None and self._daemon.proc is not None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        """Make the identity (first time only), start the daemon, return its ready line."""
        from .apps.commands.device import new_identity
        from .apps.daemon_process import DaemonProcess, daemon_argv
        from .network.scenario import load_scenario
        from .security.secret import Secret

        if self.running:
            raise ConfigError("EmulatedDevice", "already running")
        if self._work is None:
            self._work = Path(tempfile.mkdtemp(prefix="device-sim-device-"))
        if self.label is None:
            world = await asyncio.to_thread(load_scenario, self.scenario)  # ConfigError
            history = self.scenario if world.history is not None else None
            code = Secret(self._code) if self._code else None
            fields = await asyncio.to_thread(new_identity, self.state_dir, code, history)
            self.label = Label.of(fields)
        if self.doors != "softap-only" and self.adapter is None:
            assert self.bus is not None
            self.adapter, self.address = await self.bus.new_adapter()
        extra = list(self._options)
        if self._personalities:
            extra += ["--personality", ",".join(self._personalities)]
        argv = daemon_argv(
            self.state_dir,
            adapter=self.adapter or "hci0",
            scenario=self.scenario,
            zero_delay=self._zero_delay,
            extra=extra,
            doors=self.doors,
        )
        env = self.bus.env() if self.bus is not None else dict(os.environ)
        assert self.log_path is not None
        self._daemon = DaemonProcess(["-v", *argv], env, self.log_path)
        self.ready = await self._daemon.start(self._start_timeout)
        return self.ready

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the daemon's exit status."""
        daemon, self._daemon = self._daemon, None
        return await daemon.stop() if daemon is not None else None

    async def kill(self) -> None:
        """SIGKILL, as a power cut does (the next :meth:`start` recovers the state)."""
        daemon, self._daemon = self._daemon, None
        if daemon is not None:
            daemon.kill()
            await daemon.stop()

    async def close(self) -> None:
        """Stop the daemon and remove the temporary directory (a given state_dir stays)."""
        await self.stop()
        work, self._work = self._work, None
        if work is not None:
            await asyncio.to_thread(shutil.rmtree, work, True)

    # -- the running device -----------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """State, code, saved networks, activation and doors (``ctl status``)."""
        return await self._control("status")

    async def events(self, last: int = 0) -> AsyncGenerator[dict[str, Any], None]:
        """The device's events (``watch --json``), the ``last`` recorded ones first, then each
        as it happens, until the daemon stops."""
        from .control import control_stream

        async for item in control_stream(self.state_dir, "watch", {"last": last}):
            if item.get("kind") == "event":
                yield item

    async def wait_for(
        self,
        state: str | State | None = None,
        *,
        code: str | Code | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """The device's current state, or its first event after, with this state and/or code.

        Raises TimeoutError (naming what it last saw), TransportError (the daemon stopped)."""
        from .control import control_stream

        want_state = state.wire_name if isinstance(state, State) else state
        want_code = code.name if isinstance(code, Code) else code
        if want_state is None and want_code is None:
            raise ConfigError("wait_for", "give a state, a code or both")
        seen: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout):
                async for item in control_stream(self.state_dir, "watch", {"last": 0}):
                    seen = item
                    if want_state not in (None, item.get("state")):
                        continue
                    if want_code in (None, item.get("code_name")):
                        return item
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: no state={want_state} code={want_code} within {timeout:g} s "
                f"(last: {seen.get('state')} {seen.get('code_name')})"
            ) from None
        raise TransportError(f"{self.name}: the daemon stopped before state={want_state}")

    async def add_fault(
        self,
        name: str,
        step: str,
        *,
        result: str | None = None,
        probability: float = 1.0,
        delay_ms: int = 0,
        jitter_ms: int = 0,
        ssid: str | None = None,
    ) -> dict[str, Any]:
        """A runtime fault in the simulated world from the next attempt (``ctl fault add``):
        ``step`` fails with ``result`` (default: its failure), or is slow by ``delay_ms``."""
        args: dict[str, Any] = {"action": "add", "name": name, "step": step}
        args.update(probability=probability, delay_ms=delay_ms, jitter_ms=jitter_ms)
        if result is not None:
            args["result"] = result
        if ssid is not None:
            args["ssid"] = ssid
        return await self._control("fault", args)

    async def remove_fault(self, name: str) -> dict[str, Any]:
        return await self._control("fault", {"action": "remove", "name": name})

    async def faults(self) -> list[dict[str, Any]]:
        return list((await self._control("fault", {"action": "list"}))["faults"])

    async def factory_reset(self) -> str:
        """Forget networks, credentials and activation (the identity stays); the new state."""
        return str((await self._control("factory-reset"))["state"])

    async def press_button(self, hold_s: float = 0.2) -> dict[str, Any]:
        """The device's button (a press authorizes where a personality asks; 10 s resets)."""
        return await self._control("button", {"hold_s": hold_s})

    def timeline(self) -> list[dict[str, Any]]:
        """The events recorded in the state directory (``onboarding.jsonl``), oldest first:
        readable after the daemon stopped or crashed."""
        events: list[dict[str, Any]] = []
        for name in ("onboarding.jsonl.1", "onboarding.jsonl"):
            with contextlib.suppress(OSError):
                for line in (self.state_dir / name).read_text(errors="replace").splitlines():
                    with contextlib.suppress(ValueError):
                        item = json.loads(line)
                        if isinstance(item, dict):
                            events.append(item)
        return events[-TIMELINE_LINES:]

    async def provision(
        self,
        ssid: str | bytes | None = None,
        passphrase: str | None = None,
        *,
        hidden: bool | None = None,
        security: str | None = None,
        eap: EnterpriseSignIn | None = None,
        transport: Transport | None = None,
        timeout: float = 60.0,
        activation: Activation | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Onboard this device with the reference client (:func:`provision`), on the scenario's
        own network (with its enterprise sign-in, if it has one) unless ``ssid`` is given; over
        a fresh phone adapter for BLE."""
        from .network.scenario import load_scenario

        scenario_eap = None
        if ssid is None:
            creds = (await asyncio.to_thread(load_scenario, self.scenario)).default_credentials
            ssid, passphrase = creds.ssid, creds.passphrase if passphrase is None else passphrase
            hidden = creds.hidden if hidden is None else hidden
            if eap is None and creds.eap is not None:
                from .network.radius import eap_settings

                made = await asyncio.to_thread(eap_settings, creds.eap)
                scenario_eap = EnterpriseSignIn(
                    method=str(made.method),
                    identity=made.identity,
                    password=made.password.reveal() if made.password else None,
                    phase2=str(made.phase2) if made.phase2 else None,
                    anonymous_identity=made.anonymous_identity,
                    ca_cert=made.ca_cert,
                    domain=made.domain,
                    client_cert=made.client_cert,
                    private_key=made.private_key.reveal() if made.private_key else None,
                )
        transport = transport or self.transport
        adapter = None
        if transport == "ble":
            if self.bus is None:
                raise ConfigError("transport", "BLE onboarding needs the device's VirtualBle")
            adapter, _ = await self.bus.new_adapter()
        label = self._label().fields()
        softap_url = None
        if transport == "softap":  # where the access point is now (it may have reopened)
            softap_url = ((await self.status()).get("softap") or {}).get("ap_url")
            softap_url = softap_url or self.softap_url
            if softap_url is None:
                raise ConfigError("transport", "the device opened no SoftAP (see its doors)")
        return await provision(
            ssid=ssid,
            passphrase=passphrase,
            hidden=bool(hidden),
            security=security,
            eap=eap or scenario_eap,
            setup_code=self.setup_code,
            personality=self._entry.name,
            adapter=adapter,
            name=self.ready.get("local_name") if transport == "ble" else None,
            softap_url=softap_url,
            timeout=timeout,
            activation=activation,
            options={**(self._entry.phone_label(label) if self._entry.phone_label else {}),
                     **(options or {})},
            bus=self.bus if transport == "ble" else None,
            device_state_dir=self.state_dir,
        )  # fmt: skip

    async def _control(self, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        from .control import control_request

        return await control_request(self.state_dir, command, args)

    @property
    def pid(self) -> int | None:
        """The daemon's process id while it runs."""
        return self._daemon.pid if self._daemon is not None else None

    def _label(self) -> Label:
        if self.label is None:
            raise ConfigError("EmulatedDevice", "not started")
        return self.label


async def provision(
    *,
    ssid: str | bytes,
    passphrase: str | None = None,
    hidden: bool = False,
    security: str | None = None,
    eap: EnterpriseSignIn | None = None,
    setup_code: str | None = None,
    personality: str | None = None,
    adapter: str | None = None,
    name: str | None = None,
    softap_url: str | None = None,
    discover_timeout: float = 20.0,
    fragment_size: int | None = None,
    timeout: float = 120.0,
    activation: Activation | None = None,
    options: Mapping[str, Any] | None = None,
    bus: VirtualBle | str | None = None,
    device_state_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The reference client's onboarding, as ``device-sim client provision --json``: over BLE
    (``adapter``, the device's ``name`` or the first found) or the SoftAP API (``softap_url``).

    ``security`` (``wpa3-sae``, ``owe``...: the mode the user chose, a revision-3 device of the
    reference personality) is sent with the credentials; ``eap``, an enterprise network's
    sign-in, instead of a passphrase (a revision-4 device). ``options`` are a personality's phone
    options by key (the ``client provision`` flags such
    as ``pop`` and ``sec``); ``bus`` points bleak at a virtual bus; ``device_state_dir`` (a
    device on this machine) lets the client press the button a personality asks for.

    Returns the result (``provision-result`` contract): ``state`` is ``online`` on success,
    ``failed`` when the device's onboarding failed, ``None`` when none began (a wrong setup
    code, a device not found); ``code_name``, ``message`` and ``next_step`` say which.

    Raises ConfigError (bad arguments), DeviceSimError (this machine cannot act, e.g. a
    missing adapter).
    """
    from .client.target import ProvisionRequest, Target
    from .control import control_request
    from .doors import registry
    from .profile import load_profile
    from .security.secret import Secret
    from .security.setup_code import normalize_setup_code

    entry = registry.get(personality or registry.default(), "personality")
    registry.check_security(entry, security, "security")
    settings = eap._settings() if eap is not None else None
    registry.check_eap(entry, settings, "eap")
    code = None
    if setup_code is not None:
        try:
            code = Secret(normalize_setup_code(setup_code))
        except ValueError as exc:
            raise ConfigError("setup_code", str(exc)) from None
    elif entry.setup_code:
        raise ConfigError("setup_code", "required (the code on the device label)")
    known = registry.phone_options()
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise ConfigError("options", f"unknown {unknown[0]!r} (known: {', '.join(sorted(known))})")
    extra = {
        key: Secret(str(value)) if known[key].secret and not isinstance(value, Secret) else value
        for key, value in (options or {}).items()
    }
    wanted = None
    if activation is not None:
        if not entry.activation:
            raise ConfigError("activation", f"the {entry.name} personality sends no activation")
        wanted = {
            "account": activation.account,
            "claim_token": Secret(activation.claim_token) if activation.claim_token else None,
            "device_password": (
                Secret(activation.device_password) if activation.device_password else None
            ),
        }
    request = ProvisionRequest(
        ssid=ssid.encode() if isinstance(ssid, str) else bytes(ssid),
        passphrase=Secret(passphrase) if passphrase is not None else None,
        hidden=hidden,
        security=security,
        eap=settings,
        setup_code=code,
        activation=wanted,
        outcome_timeout=timeout,
        extra=extra,
    )
    target = Target(
        adapter=adapter or "hci1",
        name=name,
        discover_timeout=discover_timeout,
        fragment_size=fragment_size,
        softap_url=softap_url,
    )
    if device_state_dir is not None:  # the button a personality asks for (a person's press)
        for command in entry.bench_commands:
            await control_request(Path(device_state_dir), command)
    with contextlib.ExitStack() as scope:
        if bus is not None:
            from .apps.virtual.harness import use_bus

            scope.enter_context(use_bus(bus if isinstance(bus, str) else bus.bus_address))
        result = await entry.phone(load_profile(), target, request, None)
    return dict(result)


@dataclass(frozen=True)
class FleetMember:
    """One device of a :class:`Fleet` (its index entry and its label)."""

    name: str  # dev-0001
    device_id: str
    state_dir: Path
    setup_code: str | None
    local_name: str | None
    softap_url: str | None


class Fleet:
    """N emulated devices in one ``device-sim fleet`` process, as an async context manager.

    Args:
        count: how many devices (1 to 1000).
        transport: ``"softap"`` (each on its own loopback address) or ``"ble"`` (each on its
            own adapter of ``bus``, or of a bus the fleet starts).
        scenario, personality, seed: every device's world and protocol.
        root: the fleet's directory (default: a temporary one, removed on exit).

    Raises (on entry): ConfigError, DeviceSimError (a device did not start).
    """

    def __init__(
        self,
        count: int,
        *,
        transport: Transport = "softap",
        scenario: str = DEFAULT_SCENARIO,
        personality: str | None = None,
        seed: int = 0,
        bus: VirtualBle | None = None,
        root: str | Path | None = None,
        zero_delay: bool = True,
        start_timeout: float = 120.0,
    ) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise ConfigError("Fleet.count", f"1 to 1000 devices, not {count!r}")
        if transport not in DOORS:
            raise ConfigError("transport", f"ble or softap, not {transport!r}")
        self.count, self.transport, self.scenario = count, transport, scenario
        self._personality, self._seed, self.bus = personality, seed, bus
        self._given_root = Path(root) if root is not None else None
        self._zero_delay, self._start_timeout = zero_delay, start_timeout
        self._work: Path | None = None
        self._process: Any = None
        self.members: list[FleetMember] = []
        self.ready: dict[str, Any] = {}

    @property
    def root(self) -> Path:
        if self._given_root is not None:
            return self._given_root
        if self._work is None:
            raise ConfigError("Fleet", "not started")
        return self._work / "fleet"

    async def __aenter__(self) -> Self:
        from .apps.daemon_process import DaemonProcess
        from .apps.fleet.host import read_index, read_labels

        self._work = Path(tempfile.mkdtemp(prefix="device-sim-fleet-"))
        argv = ["fleet", "--root", str(self.root), "--count", str(self.count)]
        argv += ["--transport", self.transport, "--scenario", self.scenario]
        argv += ["--seed", str(self._seed), "--phones", "4"]
        if self._personality:
            argv += ["--personality", self._personality]
        if self._zero_delay:
            argv.append("--zero-delay")
        if self.bus is not None:
            argv += ["--bus", self.bus.bus_address]
        env = self.bus.env() if self.bus is not None else dict(os.environ)
        self._process = DaemonProcess(argv, env, self._work / "fleet.log")
        try:
            self.ready = await self._process.start(self._start_timeout)
            index, labels = read_index(self.root), read_labels(self.root)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        self.members = [
            FleetMember(
                name=d["name"],
                device_id=d["device_id"],
                state_dir=Path(d["state_dir"]),
                setup_code=(labels.get(d["name"]) or {}).get("setup_code"),
                local_name=d.get("local_name"),
                softap_url=d.get("ap_url"),
            )
            for d in index["devices"]
        ]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        process, self._process = self._process, None
        if process is not None:
            await process.stop()
        work, self._work = self._work, None
        if work is not None:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def provision_all(
        self, *, concurrency: int = 32, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Onboard every device with its world's credentials (``client provision --fleet``):
        ``{"devices": [...], "summary": {...}}``; one device's failure is its result."""
        from .apps.fleet.phones import provision_fleet
        from .profile import load_profile

        return await provision_fleet(
            load_profile(), self.root, concurrency=concurrency, timeout=timeout
        )


def _address(index: int) -> str:
    """The address of the API's adapter ``hci<index>`` (distinct from the harness's and the
    fleet's)."""
    return f"00:11:22:33:66:{index:02X}"
