"""OnboardingEngine: the one owner of onboarding state.

States and their timeouts come from ``gatt_profile.yaml``. Allowed transitions are the table
``TRANSITIONS`` below; every transition is one SQLite transaction (``DeviceStore.transition``)
followed by a diagnostic event. On start the engine applies the profile's restart rule: a state
marked ``stable`` is kept, any other is brought to its ``recover_to`` state with its
``recover_code`` (e.g. a daemon killed while joining comes back ``failed``/``INTERRUPTED`` with
its credentials kept), so no device is ever left half-onboarded. After ``online`` the device's
connected life (:mod:`.life`) watches the connection, retries the saved networks and reopens the
doors; a boot with saved networks retries them whatever state was stored.

Doors never call the backend or the store themselves: they go through the session layer, which
calls the engine's request methods. Those raise OnboardingError with a code the client can show.
"""

# Over 500 lines on purpose: the engine is the only owner of the device's state: every transition,
# its SQLite transaction and its event are made here, in one place, on purpose. Its helpers live
# apart (life.py, deadlines.py, events.py, store.py, activation.py, view.py).

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..codes import Code, State
from ..errors import NetworkError, OnboardingError
from ..lifecycle import cancel_and_wait
from ..network.base import (
    AccessPoint,
    NetworkBackend,
    Phase,
    Security,
    cannot_join,
    validate_credentials,
)
from ..network.eap import EapSettings, check_eap
from ..profile import Profile
from ..security.secret import Secret
from .deadlines import Deadlines, Timeouts
from .events import DiagnosticEvent, EventBus, EventPhase, rfc3339
from .life import RECONNECT_CODE, ConnectedLife, LifeTimers
from .store import ActivationResult, Credentials, DeviceStore, OnboardingRecord, SavedNetwork

if TYPE_CHECKING:
    from .activation import CloudActivator

LOG = logging.getLogger(__name__)
OUTCOME_LOG = logging.getLogger("device_sim.outcome")
"""One INFO line per onboarding outcome (``run`` shows it without -v: the journal has it)."""

S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    S.UNPROVISIONED: frozenset({S.SESSION_OPEN, S.UNPROVISIONED}),
    S.SESSION_OPEN: frozenset({S.CREDENTIALS_RECEIVED, S.UNPROVISIONED}),
    S.CREDENTIALS_RECEIVED: frozenset(
        {S.CREDENTIALS_RECEIVED, S.JOINING, S.FAILED, S.UNPROVISIONED}
    ),
    # joining -> joining: a reconnect round moves on to the next saved network.
    S.JOINING: frozenset({S.JOINING, S.VERIFYING, S.FAILED, S.UNPROVISIONED}),
    S.VERIFYING: frozenset({S.ONLINE, S.FAILED, S.UNPROVISIONED}),
    # online -> failed: the connection was lost (link, lease, DNS, internet).
    S.ONLINE: frozenset({S.CREDENTIALS_RECEIVED, S.JOINING, S.FAILED, S.UNPROVISIONED}),
    # failed -> failed: a retry ends with another code; failed -> verifying: still associated
    # after DNS or the internet went away, the device checks again.
    S.FAILED: frozenset(
        {S.CREDENTIALS_RECEIVED, S.JOINING, S.VERIFYING, S.FAILED, S.UNPROVISIONED}
    ),
}
BUSY_STATES = frozenset({S.JOINING, S.VERIFYING})
SEQ_BLOCK = 1000  # event sequence numbers reserved in the store at a time


class RadioUser(Protocol):
    """Something else that needs the Wi-Fi radio (the SoftAP door). Most hardware has one radio:
    an access point and a station cannot be up at once, so every join asks the radio's other
    users to step aside first and tells them the outcome afterwards."""

    async def before_station(self) -> None:
        """Release the radio (take the access point down) before the join starts."""

    async def after_station(self, state: State) -> None:
        """The attempt ended ``online`` or ``failed`` (already committed)."""

    def in_use(self) -> bool:
        """A phone uses the access point right now: a retry of the saved networks, which
        would take the radio from it, waits."""


class OnboardingEngine:
    """Owns the onboarding state machine. Use ``async with`` to recover and run its tasks."""

    def __init__(
        self,
        profile: Profile,
        store: DeviceStore,
        backend: NetworkBackend,
        events: EventBus,
        *,
        timeouts: Timeouts | None = None,
        clock: Callable[[], float] = time.monotonic,
        activator: CloudActivator | None = None,
        checkpoint: Callable[[str], None] = lambda point: None,
        wall: Callable[[], float] = time.time,
        life: LifeTimers | None = None,
    ) -> None:
        self.profile = profile
        self.store = store
        self.backend = backend
        self.events = events
        self.timeouts = timeouts or Timeouts.from_profile(profile)
        self._clock = clock
        self._epoch = clock()
        self._phase: str = EventPhase.JOINING  # the attempt's current phase, for its outcome line
        self._wall = wall
        self._session_at: float | None = None  # monotonic time the current session opened
        self._connect_at: float | None = None  # monotonic time CONNECT started this attempt
        self._event_seq = store.reserve_event_seqs(SEQ_BLOCK) - 1
        self._seq_limit = self._event_seq + SEQ_BLOCK
        self._attempt_task: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._settled = asyncio.Condition()
        self._settling: asyncio.Task[None] | None = None  # the task waking wait_settled
        self._radio_users: list[RadioUser] = []
        self._deadlines = Deadlines(profile, self.timeouts)
        self.activator = activator
        # Called at the engine's crash points ("after-cloud-answer": between the cloud's answer
        # and the local commit; "after-cloud-release": between the cloud's release and the
        # local factory reset). QA's failure injection (network/faults.crash_points) ends the
        # process there, as a power cut would.
        self.checkpoint = checkpoint
        self.last_scan: list[AccessPoint] = []
        self.life = ConnectedLife(self, life or LifeTimers())
        backend.watch_world(lambda detail, data: self.note(EventPhase.WORLD, detail, data))

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> OnboardingEngine:
        record = self.recover()
        interrupted_reset = self.store.pending_reset()
        if interrupted_reset is not None:
            # Killed during a factory reset (perhaps after the cloud released the device): a
            # reset that was asked for is finished, never undone, so the device and the cloud
            # agree that it is unbound.
            LOG.warning(
                "a factory reset %s was interrupted by a restart: finishing it", interrupted_reset
            )
            await self.factory_reset(interrupted_reset)
            self.life.start(boot=False)
            return self
        # The backend keeps only the saved networks: a profile a killed run saved after its
        # checks but before `online` was committed (so never a saved network) goes now.
        await self._keep_networks()
        has_credentials = self.store.credentials() is not None
        saved = self.store.saved_networks()
        pending = self.activator is not None and self.store.cloud().status == "pending"
        if has_credentials and pending:
            # Killed between asking the cloud and committing its answer: ask again with the
            # same request id (the cloud answers it again), so both sides agree.
            LOG.warning("activation was pending at restart: reconciling with the cloud")
            self._start_attempt()
            self.life.start(boot=False)
        elif record.state is S.CREDENTIALS_RECEIVED and record.phase == EventPhase.FACTORY:
            # QR pre-provisioning: site credentials loaded at the factory are tried on first
            # boot; a failure leaves its code for the app, as any failed attempt does.
            LOG.info("first boot with factory-loaded Wi-Fi credentials: joining")
            self._start_attempt()
            self.life.start(boot=False)
        elif saved and record.state in (S.ONLINE, S.FAILED):
            # Whatever was stored (online before a power cut, failed after a loss or a
            # restart mid-join): a device with saved networks retries them now.
            LOG.info("boot with %d saved network(s): reconnecting", len(saved))
            self.life.start(boot=True)
        elif record.state is S.ONLINE and has_credentials:
            self._start_attempt()  # (no saved list: a store the migration did not fill)
            self.life.start(boot=False)
        else:
            self.life.start(boot=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.life.halt()
        for task in (self._timer, self._attempt_task):
            await cancel_and_wait(task)
        # A join cancelled by shutdown stays `joining` in the store on purpose: the next start
        # recovers it exactly like a crash would (failed / INTERRUPTED, credentials kept).

    def recover(self) -> OnboardingRecord:
        """Apply the profile's restart rule to the stored state and return the record."""
        record = self.store.record()
        definition = self.profile.state(record.state)
        if definition.stable:
            self._emit(record.state, record.code, EventPhase.BOOT, record.detail)
            self._arm_timer(record.state)
            return record
        target = State[definition.recover_to.upper()] if definition.recover_to else S.FAILED
        code = Code[definition.recover_code] if definition.recover_code else Code.OK
        LOG.warning(
            "restarted in %s: recovering to %s (%s)",
            record.state.wire_name,
            target.wire_name,
            code.name,
        )
        return self._transition(
            target,
            code,
            phase=EventPhase.RECOVERED,
            detail=f"daemon restarted during {record.state.wire_name}",
        )

    @property
    def record(self) -> OnboardingRecord:
        return self.store.record()

    @property
    def state(self) -> State:
        return self.store.record().state

    # --- requests from the session layer -----------------------------------------------------

    def add_radio_user(self, user: RadioUser) -> Callable[[], None]:
        """``user`` shares the radio from now on (asked to step aside around every join);
        returns the function that ends it."""
        self._radio_users.append(user)

        def remove() -> None:
            if user in self._radio_users:
                self._radio_users.remove(user)

        return remove

    def session_opened(self) -> None:
        self._epoch = self._clock()  # event times count from the session, then from the join
        self._session_at, self._connect_at = self._epoch, None
        self.life.session_opened()  # retries wait for the phone (one in flight stops)
        if self.state is S.UNPROVISIONED:
            self._transition(S.SESSION_OPEN, phase=EventPhase.SESSION)
        else:  # a provisioned device: a phone to re-onboard it, or to manage it
            self.note(EventPhase.SESSION, "a phone opened a session")

    def session_closed(self, code: Code = Code.OK) -> None:
        """The client's session ended (cleanly, timed out, or the client vanished)."""
        if self.state is S.SESSION_OPEN:
            self._transition(S.UNPROVISIONED, code, phase=EventPhase.SESSION_CLOSED)
        self.life.session_closed()

    def saved_networks(self) -> list[SavedNetwork]:
        """The networks that worked, most recent first."""
        return self.store.saved_networks()

    async def forget_network(self, ssid: bytes) -> None:
        """Drop one saved network (and the backend's profile of it).

        Raises OnboardingError(INVALID_STATE) for one that is not saved, or the network the
        device is online on (re-onboard it to another first, or factory-reset it).
        """
        record = self.record
        if record.state in (S.ONLINE, *BUSY_STATES) and record.ssid == bytes(ssid):
            raise OnboardingError(
                Code.INVALID_STATE,
                f"the device is {record.state.wire_name} on this network: set it up on another "
                "network first, or factory-reset it",
            )
        if not self.store.forget_network(ssid):
            raise OnboardingError(Code.INVALID_STATE, "no saved network with this SSID")
        left = self.store.saved_networks()
        self.note(
            EventPhase.NETWORKS,
            f"a saved network was forgotten; {len(left)} left",
            {"forgotten": bytes(ssid).hex(), "saved": len(left)},
        )
        await self._keep_networks()

    async def scan(self) -> list[AccessPoint]:
        """Scan, or, while the radio is an access point (one radio), the last scan's list."""
        if self.backend.access_point is not None:
            self._emit(
                self.state,
                Code.OK,
                Phase.SCANNING,
                "cached: the radio is the access point",
                data={"cached": True},
            )
            return list(self.last_scan)
        self._emit(self.state, Code.OK, Phase.SCANNING)
        self.last_scan = await self.backend.scan()
        return list(self.last_scan)

    def set_credentials(
        self,
        ssid: bytes,
        passphrase: Secret | None,
        hidden: bool,
        security: Security | None = None,
        eap: EapSettings | None = None,
    ) -> None:
        """Store new credentials (``security``: the mode the app sent, if it sent one; ``eap``:
        an enterprise network's sign-in, which makes the mode enterprise).

        Raises OnboardingError (INVALID_STATE, INVALID_CREDENTIALS_FORMAT,
        UNSUPPORTED_SECURITY, EAP_SETTINGS_INVALID).
        """
        self._stop_retry("new credentials arrived")
        self._require_idle("set credentials")
        if eap is not None:
            if security not in (None, Security.ENTERPRISE):
                raise OnboardingError(
                    Code.EAP_SETTINGS_INVALID, f"EAP settings are for enterprise, not {security}"
                )
            if passphrase is not None:
                raise OnboardingError(
                    Code.EAP_SETTINGS_INVALID,
                    "an enterprise network takes no passphrase (the password goes in eap)",
                )
            eap, security = check_eap(eap), Security.ENTERPRISE
        if security is not None and cannot_join(security, eap):
            raise OnboardingError(
                Code.UNSUPPORTED_SECURITY,
                f"{security} networks cannot be joined by the device"
                + (" without EAP settings" if security is Security.ENTERPRISE else ""),
            )
        validate_credentials(ssid, passphrase.reveal() if passphrase else None, security)
        self._transition(
            S.CREDENTIALS_RECEIVED,
            phase=EventPhase.CREDENTIALS,
            detail="enterprise" if eap is not None else "",
            data={"eap": eap.public()} if eap is not None else None,
            credentials=Credentials(ssid, passphrase, hidden, security, eap),
        )

    def connect(self) -> None:
        """Start joining with the stored credentials; progress arrives as events."""
        self._stop_retry("CONNECT arrived")
        self._require_idle("connect")
        if self.store.credentials() is None or self.state in (S.UNPROVISIONED, S.SESSION_OPEN):
            raise OnboardingError(Code.INVALID_STATE, "no credentials: send SET_CREDENTIALS first")
        self._start_attempt()

    async def factory_reset(self, source: str = "request") -> None:
        """Forget Wi-Fi credentials, saved networks, the cloud binding and its credentials;
        keep the factory identity (keys, certificate, setup-code verifier). Back to
        unprovisioned; the next activation tells the cloud it follows a reset."""
        await self.life.halt()  # a retry it cancels mid-join is reset from its state below
        await cancel_and_wait(self._attempt_task)
        # The intent is committed before the cloud hears of it: a device killed between the
        # release and the local reset finishes the reset on boot (see __aenter__).
        self.store.begin_factory_reset(source)
        cloud = self.store.cloud()
        if self.activator is not None and cloud.token is not None:
            try:  # an online device releases itself; an offline one is rebound after reset
                async with asyncio.timeout(5):
                    await self.activator.release(cloud.token)
            except (OnboardingError, TimeoutError) as exc:
                # Also the answer to a repeated release (its token is revoked already).
                LOG.info(
                    "cloud release at factory reset failed (%s); the next activation "
                    "says it follows a reset",
                    exc,
                )
            self.checkpoint("after-cloud-release")
        await self.backend.disconnect()
        await self.backend.forget_all()
        self.store.reset_auth_failures()
        self._transition(
            S.UNPROVISIONED,
            phase=EventPhase.FACTORY_RESET,
            detail=f"by {source}",
            credentials=None,
            forget_cloud=True,
            forget_networks=True,
        )
        self.store.forget_secrets()

    def note(
        self, phase: str, detail: str = "", data: dict[str, Any] | None = None, code: Code = Code.OK
    ) -> None:
        """Emit an event without a transition: which door is open and why, a refused request."""
        self._emit(self.state, code, phase, detail, data=data)

    async def wait_settled(self, timeout: float) -> OnboardingRecord:
        """Wait until no attempt runs (state online, failed or idle). Raises TimeoutError."""
        async with asyncio.timeout(timeout):
            async with self._settled:
                await self._settled.wait_for(lambda: self.state not in BUSY_STATES)
        return self.record

    # --- internals -----------------------------------------------------------------------------

    # --- for the connected life (core/life.py) ------------------------------------------------

    def life_transition(self, state: State, code: Code = Code.OK, **kwargs: Any) -> None:
        """A transition of the connected life (same rules as every other)."""
        self._transition(state, code, **kwargs)

    @property
    def verify_timeout_s(self) -> float:
        return self.timeouts.verifying

    def record_code(self) -> Code:
        return self.store.record().code

    def radio_in_use(self) -> bool:
        return any(getattr(user, "in_use", lambda: False)() for user in self._radio_users)

    async def radio_step_aside(self) -> None:
        """Ask the radio's other users (the SoftAP door) to release it before a join."""
        for user in self._radio_users:
            try:
                await user.before_station()
            except Exception:  # the join itself reports what the radio cannot do
                LOG.exception("%r could not release the radio", user)

    async def radio_back(self, final: State) -> None:
        """Tell the radio's other users how the attempt ended (the AP comes back on failure)."""
        for user in self._radio_users:
            try:
                await user.after_station(final)
            except Exception:
                LOG.exception("%r failed after the attempt ended %s", user, final.wire_name)

    def _stop_retry(self, why: str) -> None:
        """A phone's request while a retry of the saved networks runs: the phone wins."""
        self.life.stop_for_phone()

    def _saved_after_online(self, ssid: bytes) -> list[bytes]:
        """The saved networks once ``online`` on ``ssid`` is committed (the store's rule)."""
        others = [n.ssid for n in self.store.saved_networks() if n.ssid != ssid]
        return [ssid, *others][: max(1, self.life.timers.saved_networks)]

    async def _keep_networks(self, saved: list[bytes] | None = None) -> None:
        """The backend keeps the saved networks (NetworkManager: its profiles, in order);
        ``saved``: the list to keep (default: the store's)."""
        if saved is None:
            saved = [n.ssid for n in self.store.saved_networks()]
        try:
            await self.backend.keep_networks(saved)
        except OnboardingError as exc:
            LOG.warning("the backend could not keep the saved networks: %s", exc)

    def _require_idle(self, what: str) -> None:
        if self.state in BUSY_STATES:
            raise OnboardingError(
                Code.INVALID_STATE,
                f"cannot {what} while {self.state.wire_name}; wait for the result",
            )

    def _start_attempt(self) -> None:
        # `joining` is committed before CONNECT is acknowledged, so a client (or a crash) never
        # sees an accepted CONNECT with the device still waiting for one.
        self._epoch = self._clock()
        self._connect_at = self._epoch
        self._phase = EventPhase.JOINING
        self._transition(S.JOINING, phase=EventPhase.JOINING, new_attempt=True)
        self._attempt_task = asyncio.get_running_loop().create_task(
            self._attempt(), name="onboarding-attempt"
        )

    async def _attempt(self) -> None:
        await self.radio_step_aside()
        await self.join_and_verify()
        await self.radio_back(self.state)

    async def join_and_verify(self, *, reconnect: bool = False) -> None:
        """Join with the stored credentials, check, activate: ``online`` or ``failed``.
        ``reconnect``: a retry of a saved network (its failures get their own codes)."""
        creds = self.store.credentials()
        assert creds is not None
        failure: tuple[Code, str, dict[str, Any]] | None = None
        try:
            try:
                async with self._deadlines.running(self.timeouts.joining):
                    result = await self.backend.join(
                        creds.ssid,
                        creds.passphrase.reveal() if creds.passphrase else None,
                        hidden=creds.hidden,
                        security=creds.security,
                        eap=creds.eap,
                        on_phase=self._on_phase,
                    )
            except TimeoutError:
                raise self._deadlines.ran_out(S.JOINING, self.timeouts.joining) from None
            self._transition(
                S.VERIFYING, phase=EventPhase.VERIFYING, detail=f"{result.band} ip {result.ip}"
            )
            try:
                async with self._deadlines.running(self.timeouts.verifying):
                    await self.backend.verify(on_phase=self._on_phase)
            except TimeoutError:
                raise self._deadlines.ran_out(S.VERIFYING, self.timeouts.verifying) from None
            activation = await self._activate()
            # The backend keeps the saved networks as they are about to be, before `online`
            # commits them (NetworkManager: the new profile's priority): a kill between the
            # two leaves a profile the next start deletes, never one left without its place.
            await self._keep_networks(self._saved_after_online(creds.ssid))
            self._transition(
                S.ONLINE,
                phase=EventPhase.ONLINE,
                detail=f"{result.band} ip {result.ip}",
                activation=activation,
            )
        except OnboardingError as exc:
            failure = (exc.code, exc.detail, exc.raw)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a backend bug must still end in a coded, recoverable state
            LOG.exception("join attempt crashed")
            failure = (Code.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", {})
        if failure is not None:
            code, detail, raw = failure
            if reconnect:
                code = RECONNECT_CODE.get(code, code)
            try:
                await self.backend.disconnect()
            except Exception:
                LOG.exception("disconnect after a failed join failed")
            self._transition(S.FAILED, code, phase=EventPhase.FAILED, detail=detail, data=raw)

    async def _activate(self) -> ActivationResult | None:
        """Cloud activation after the checks; None when none is configured or still valid
        (a re-onboard keeps the claim). Raises OnboardingError with the cloud's code."""
        cloud = self.store.cloud()
        if self.activator is None or (cloud.status == "active" and not cloud.after_reset):
            if cloud.in_claim_token or cloud.in_device_password:
                # A re-onboard keeps the claim: what the app sent for activation is not needed
                # and is not kept (a claim token or password has no business at rest).
                self.store.set_activation_inputs(None, None, None)
            return None
        mode = self.activator.config.mode
        request_id = (
            cloud.request_id
            if cloud.status == "pending" and cloud.request_id
            else self.activator.new_request_id()
        )
        self.store.begin_activation(request_id)  # committed before the request leaves
        self._emit(self.state, Code.OK, EventPhase.ACTIVATION, mode, data={"mode": mode})
        try:
            async with asyncio.timeout(self.timeouts.verifying):
                result = await self.activator.activate(self.store.cloud(), request_id)
        except TimeoutError:
            raise NetworkError(
                Code.CLOUD_UNREACHABLE,
                f"no answer from the cloud within {self.timeouts.verifying:.0f} s",
            ) from None
        except OnboardingError as exc:
            if exc.code is not Code.CLOUD_UNREACHABLE:  # a definite answer: ask anew next time
                self.store.abandon_activation()
            raise
        self.checkpoint("after-cloud-answer")
        return result

    def _on_phase(self, phase: str, detail: dict[str, Any]) -> None:
        self._phase = phase
        self._deadlines.arm(phase)
        self._emit(self.state, Code.OK, phase, data=detail)

    def _transition(
        self,
        state: State,
        code: Code = Code.OK,
        *,
        phase: str,
        detail: str = "",
        credentials: Credentials | object | None = ...,
        new_attempt: bool = False,
        data: dict[str, Any] | None = None,
        activation: ActivationResult | None = None,
        forget_cloud: bool = False,
        forget_networks: bool = False,
    ) -> OnboardingRecord:
        current = self.store.record().state
        if state not in TRANSITIONS[current]:
            raise OnboardingError(
                Code.INVALID_STATE, f"{current.wire_name} -> {state.wire_name} is not allowed"
            )
        kwargs: dict[str, Any] = {
            "phase": phase,
            "detail": detail,
            "new_attempt": new_attempt,
            "activation": activation,
            "forget_cloud": forget_cloud,
        }
        if credentials is not ...:
            kwargs["credentials"] = credentials
        if state is S.ONLINE:  # online on a network makes it the first saved one
            kwargs["remember"] = self.life.timers.saved_networks
        if forget_networks:
            kwargs["forget_networks"] = True
        record = self.store.transition(state, code, **kwargs)
        LOG.info(
            "state %s -> %s (%s)%s",
            current.wire_name,
            state.wire_name,
            code.name,
            f": {detail}" if detail else "",
        )
        if state in (S.ONLINE, S.FAILED) and current in (S.JOINING, S.VERIFYING):
            self._log_outcome(state, code, detail)
        self._emit(state, code, phase, detail, data=data)
        self._arm_timer(state)
        self._settle()
        self.life.entered(state, current)
        return record

    def _log_outcome(self, state: State, code: Code, detail: str) -> None:
        """The attempt's outcome as one line: state, code, the phase it ended in, elapsed."""
        elapsed = self._clock() - self._epoch
        phase = EventPhase.ONLINE if state is S.ONLINE else self._phase
        if state is S.ONLINE:
            OUTCOME_LOG.info(
                "onboarding online: code OK (0), elapsed %.1f s%s",
                elapsed,
                f" ({detail})" if detail else "",
            )
        else:
            OUTCOME_LOG.info(
                "onboarding failed: code %s (%d) in phase %s after %.1f s: %s",
                code.name,
                int(code),
                phase,
                elapsed,
                detail or "no detail",
            )

    def _settle(self) -> None:
        """Wake :meth:`wait_settled`'s waiters (once per burst of transitions)."""
        if self._settling is None or self._settling.done():
            self._settling = asyncio.get_running_loop().create_task(self._notify_settled())

    async def _notify_settled(self) -> None:
        async with self._settled:
            self._settled.notify_all()

    def _emit(
        self,
        state: State,
        code: Code,
        phase: str,
        detail: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        self._event_seq += 1
        if self._event_seq > self._seq_limit:  # the next block, persisted before it is used
            self._event_seq = self.store.reserve_event_seqs(SEQ_BLOCK)
            self._seq_limit = self._event_seq + SEQ_BLOCK - 1
        now = self._clock()

        def since(start: float | None) -> int | None:
            return None if start is None else int((now - start) * 1000)

        self.events.emit(
            DiagnosticEvent(
                self._event_seq,
                int((now - self._epoch) * 1000),
                state,
                code,
                phase,
                detail,
                dict(data or {}),
                at=rfc3339(self._wall()),
                since_session_ms=since(self._session_at),
                since_connect_ms=since(self._connect_at),
            )
        )

    def _arm_timer(self, state: State) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer = None
        seconds = {
            S.SESSION_OPEN: self.timeouts.session_open,
            S.CREDENTIALS_RECEIVED: self.timeouts.credentials_received,
        }.get(state)
        if seconds is not None:
            self._timer = asyncio.get_running_loop().create_task(self._expire(state, seconds))

    async def _expire(self, state: State, seconds: float) -> None:
        await asyncio.sleep(seconds)  # a timeout, not synchronisation: the state waited too long
        if self.state is state:
            target = S.UNPROVISIONED if state is S.SESSION_OPEN else S.FAILED
            self._timer = None
            self._transition(
                target,
                self._deadlines.state_code(state),
                phase=EventPhase.TIMEOUT,
                detail=f"waited {seconds:.0f} s in {state.wire_name}",
            )
