"""The one interface a door talks to: requests in, events out.

A door (the BLE host and its personalities, the SoftAP door, the door supervisor) gets a
:class:`DoorPort` from the session layer and nothing else from below: not the engine, the store
or the network backend. Through it a door

* hands over whole messages of a peer and gets the answers (:meth:`handle`), or provisions
  directly after authorizing its user its own way (:meth:`direct_provision`,
  :meth:`portal_provision`);
* reads the device's public state (:attr:`record`, :attr:`state`, :attr:`busy`,
  :attr:`last_event`) and follows it (:meth:`subscribe` to events, :meth:`follow_sessions`);
* asks for what lies below: a scan, the radio (:meth:`claim_radio`, :meth:`start_access_point`),
  its own settings (:meth:`setting`, kept under the door's name), a note in the event stream.

The types a door needs to speak this interface are re-exported here, so a door imports this
module (and :mod:`device_sim.codes`, :mod:`device_sim.wire`, its own folder) and nothing of
:mod:`device_sim.core` or :mod:`device_sim.network`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ..codes import Code, State
from ..core.engine import BUSY_STATES, RadioUser
from ..core.events import STATE_PHASES, DiagnosticEvent, EventPhase
from ..core.store import Identity, OnboardingRecord
from ..errors import OnboardingError
from ..network.base import AccessPoint, AccessPointConfig
from ..security.secret import Secret
from .service import ProvisioningService, Sender, SoftApOpener

__all__ = [
    "STATE_PHASES",
    "AccessPoint",
    "AccessPointConfig",
    "DiagnosticEvent",
    "DoorPort",
    "EventPhase",
    "Identity",
    "OnboardingRecord",
    "RadioUser",
]

SessionOpened = Callable[[Hashable], None]
SessionClosed = Callable[[Hashable, Code], None]


class DoorPort:
    """The session layer as door ``door`` sees it (its settings are kept under that name)."""

    def __init__(self, service: ProvisioningService, door: str) -> None:
        self._service = service
        self._engine = service.engine
        self.door = door
        self.profile = service.profile
        self.identity: Identity = service.identity

    # --- sessions --------------------------------------------------------------------------------

    async def handle(self, peer: Hashable, message: bytes, send: Sender) -> list[bytes]:
        """One whole message of ``peer``; the answers to send back. Never raises for bad input."""
        return await self._service.handle(peer, message, send)

    def error_for(self, peer: Hashable, exc: OnboardingError) -> bytes:
        """The clear ERROR message for a framing-level error the door found."""
        return self._service.error_for(peer, exc)

    def peer_gone(self, peer: Hashable) -> None:
        """``peer`` disconnected: the session it held (if any) ends."""
        self._service.peer_gone(peer)

    @property
    def session_peer(self) -> Hashable | None:
        """The peer holding the one session, of any door (None: free)."""
        return self._service.session_peer

    def touch(self, peer: Hashable) -> bool:
        """``peer`` polled: extend its session's idle deadline. False if it holds none."""
        return self._service.touch(peer)

    def release(self, peer: Hashable) -> None:
        """``peer`` is done with its session."""
        self._service.release(peer)

    def direct_provision(
        self, peer: Hashable, ssid: bytes, passphrase: Secret | None, hidden: bool
    ) -> None:
        """Credentials from a door that authorized its user itself. Raises OnboardingError."""
        self._service.direct_provision(peer, ssid, passphrase, hidden)

    def portal_provision(
        self,
        peer: Hashable,
        setup_code: Secret,
        ssid: bytes,
        passphrase: Secret | None,
        hidden: bool,
    ) -> None:
        """A browser page's submit with the setup code. Raises OnboardingError."""
        self._service.portal_provision(peer, setup_code, ssid, passphrase, hidden)

    def serve_softap_requests(self, opener: SoftApOpener) -> Callable[[], None]:
        """START_SOFTAP (over an authenticated session) calls ``opener(reason)`` from now on;
        returns the function that ends it. One server at a time (the door supervisor)."""
        return self._service.serve_softap_requests(opener)

    def check_backoff(self) -> None:
        """Before a door checks a proof of its own (a PoP, an SRP password): raises
        SessionError(TOO_MANY_ATTEMPTS) while the persisted backoff on wrong proofs runs."""
        self._service.check_backoff()

    def proof_failed(self, what: str) -> None:
        """A door's own proof was wrong: one more failure for the shared backoff."""
        self._service.count_failure(what)

    def proof_succeeded(self) -> None:
        """A door's own proof was right: the failure count starts over."""
        self._service.store.reset_auth_failures()

    def follow_sessions(
        self, opened: SessionOpened | None = None, closed: SessionClosed | None = None
    ) -> Callable[[], None]:
        """Be told when any session opens or closes; returns the function that stops it."""
        return self._service.follow_sessions(opened, closed)

    # --- the device's public state ---------------------------------------------------------------

    @property
    def record(self) -> OnboardingRecord:
        return self._engine.record

    @property
    def state(self) -> State:
        return self._engine.state

    @property
    def busy(self) -> bool:
        """A join or its checks run (the radio is the station's)."""
        return self._engine.state in BUSY_STATES

    @property
    def provisioned(self) -> bool:
        """Joining, verifying or online: the device has its network (or is getting it)."""
        return self.busy or self._engine.state is State.ONLINE

    @property
    def associated(self) -> bool:
        """On its network: online, or checking it again after DNS or the internet went away
        (the link is still up)."""
        record = self._engine.record
        if record.state is State.ONLINE:
            return True
        if record.state is State.VERIFYING:
            return self._engine.life.rechecking
        return record.state is State.FAILED and record.code in (Code.DNS_LOST, Code.INTERNET_LOST)

    @property
    def reconnecting(self) -> bool:
        """The device's own retry of its saved networks (or check again) is in flight: a join
        no phone asked for."""
        return self._engine.life.retrying

    @property
    def retrying(self) -> bool:
        """Not online, the device retries its saved networks and its doors have not reopened
        yet (it may be back online before they do)."""
        life = self._engine.life
        return life.retrying and not life.reopened and self._engine.state is not State.ONLINE

    @property
    def last_event(self) -> DiagnosticEvent | None:
        return self._engine.events.last

    @property
    def outcome_within_s(self) -> float:
        """The longest a join and its checks may take (what a phone should wait for)."""
        t = self._engine.timeouts
        return t.joining + t.verifying

    def subscribe(self, listener: Callable[[DiagnosticEvent], None]) -> Callable[[], None]:
        """Every diagnostic event from now on; returns the unsubscribe function."""
        return self._engine.events.subscribe(listener)

    def note(
        self,
        phase: EventPhase,
        detail: str = "",
        data: dict[str, Any] | None = None,
        code: Code = Code.OK,
    ) -> None:
        """An event without a transition (a door opened, a refused request)."""
        self._engine.note(phase, detail, data, code)

    def note_own(
        self, detail: str, data: dict[str, Any] | None = None, code: Code = Code.OK
    ) -> None:
        """An event of this door's own, its phase the door's name (``improv``: authorized)."""
        self._engine.note(self.door, detail, data, code)

    async def wait_settled(self, timeout: float) -> OnboardingRecord:
        """Until no attempt runs. Raises TimeoutError."""
        return await self._engine.wait_settled(timeout)

    # --- what lies below -------------------------------------------------------------------------

    async def scan(self) -> list[AccessPoint]:
        """The networks around, strongest first. Raises OnboardingError."""
        return await self._engine.scan()

    def claim_radio(self, user: RadioUser) -> Callable[[], None]:
        """``user`` shares the Wi-Fi radio: it steps aside around every join. Returns the
        function that ends the claim."""
        return self._engine.add_radio_user(user)

    async def start_access_point(self, config: AccessPointConfig) -> None:
        """The radio in AP mode. Raises NetworkError (SOFTAP_UNAVAILABLE)."""
        await self._engine.backend.start_access_point(config)

    async def stop_access_point(self) -> None:
        await self._engine.backend.stop_access_point()

    def setting(self, key: str) -> str | None:
        """This door's own persisted setting ``key`` (kept under the door's name)."""
        return self._service.store.setting(f"{self.door}.{key}")

    def set_setting(self, key: str, value: str) -> None:
        self._service.store.set_setting(f"{self.door}.{key}", value)
