"""The one interface a door talks to: requests in, events out.

A door (the BLE host and its personalities, the SoftAP door, the door supervisor) gets a
:class:`DoorPort` from the session layer and nothing else from below: not the engine, the store
or the network backend. Through it a door

* holds the device's one session for a peer while its protocol proves and serves it
  (:meth:`begin_session`, :meth:`establish_session`, :meth:`release`), or provisions directly
  after authorizing its user its own way (:meth:`direct_provision`, :meth:`portal_provision`);
* makes the device's requests (:meth:`set_credentials`, :meth:`connect`, :meth:`status`, the
  saved networks, a factory reset, the access point, the diagnostics bundle);
* reads the device's public state (:attr:`record`, :attr:`state`, :attr:`busy`,
  :attr:`last_event`) and follows it (:meth:`subscribe` to events, :meth:`follow_sessions`);
* asks for what lies below: a scan, the radio (:meth:`claim_radio`, :meth:`start_access_point`),
  its own settings (:meth:`setting`, kept under the door's name), a note in the event stream.

The types a door needs to speak this interface are re-exported here, so a door imports this
module (and :mod:`device_sim.codes`, its own folder) and nothing of :mod:`device_sim.core` or
:mod:`device_sim.network`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ..codes import Code
from ..core.engine import RadioUser
from ..core.events import STATE_PHASES, DiagnosticEvent, EventPhase
from ..core.store import Identity, OnboardingRecord
from ..core.view import DeviceView
from ..errors import OnboardingError
from ..network.base import AccessPoint, AccessPointConfig, Security
from ..network.eap import MAX_FILE_BYTES as EAP_FILE_MAX_BYTES
from ..network.eap import EapMethod, EapSettings, Phase2
from ..security.secret import Secret
from .holder import Closer, SessionHolder, SoftApOpener

SECURITY_MODES = tuple(str(mode) for mode in Security)
"""The security modes an app may send with credentials (``wep`` and ``enterprise`` are refused
with UNSUPPORTED_SECURITY)."""

__all__ = [
    "EAP_FILE_MAX_BYTES",
    "STATE_PHASES",
    "AccessPoint",
    "AccessPointConfig",
    "DiagnosticEvent",
    "DoorPort",
    "EapMethod",
    "EapSettings",
    "EventPhase",
    "Identity",
    "OnboardingRecord",
    "Phase2",
    "RadioUser",
]

SessionOpened = Callable[[Hashable], None]
SessionClosed = Callable[[Hashable, Code], None]


class DoorPort(DeviceView):
    """The session layer as door ``door`` sees it (its settings are kept under that name), and
    the device's public state (:class:`~device_sim.core.view.DeviceView`)."""

    def __init__(self, service: SessionHolder, door: str) -> None:
        super().__init__(service.engine)
        self._service = service
        self.door = door
        self.profile = service.profile
        self.identity: Identity = service.identity

    # --- sessions --------------------------------------------------------------------------------

    def begin_session(self, peer: Hashable, on_close: Closer | None = None) -> None:
        """``peer`` starts a session whose proof is due within the handshake timeout;
        ``on_close(code, notify)`` when it ends. Raises SessionError (BUSY,
        TOO_MANY_ATTEMPTS)."""
        self._service.begin(peer, on_close)

    def establish_session(self, peer: Hashable) -> None:
        """``peer``'s proof was right: its session is open."""
        self._service.establish(peer)

    def session_proof_failed(self, peer: Hashable, code: Code) -> int:
        """``peer``'s proof was wrong: its session ends. Returns the backoff (ms) to report."""
        return self._service.proof_failed(peer, code, "wrong setup code")

    def end_session(self, code: Code) -> None:
        """End the session quietly (its protocol already answered its peer)."""
        self._service.close(code, notify=False)

    def session_activity(self, peer: Hashable) -> None:
        """The holder sent a request: its idle deadline starts over."""
        self._service.activity(peer)

    def check_free(self, peer: Hashable) -> None:
        """Raises SessionError(BUSY) if another peer holds the session."""
        self._service.check_free(peer)

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
        """:meth:`open_softap` (a session's request) calls ``opener(reason)`` from now on;
        returns the function that ends it. One server at a time (the door supervisor)."""
        return self._service.serve_softap_requests(opener)

    # --- the device's requests -------------------------------------------------------------------

    def set_credentials(
        self,
        ssid: bytes,
        passphrase: Secret | None,
        hidden: bool,
        security: str | None = None,
        eap: EapSettings | None = None,
    ) -> None:
        """Store the network to join; ``security`` is the mode the app sent, if any (one of
        :data:`SECURITY_MODES`); ``eap`` an enterprise network's sign-in. Raises
        OnboardingError (INVALID_STATE, BUSY, format, MALFORMED_REQUEST for an unknown mode,
        UNSUPPORTED_SECURITY, EAP_SETTINGS_INVALID)."""
        mode = None
        if security is not None:
            try:
                mode = Security(security)
            except ValueError:
                raise OnboardingError(
                    Code.MALFORMED_REQUEST,
                    f"security: one of {', '.join(SECURITY_MODES)}, not {security!r}",
                ) from None
        self._engine.set_credentials(ssid, passphrase, hidden, mode, eap)

    def connect(self) -> None:
        """Join the stored network. Raises OnboardingError."""
        self._engine.connect()

    def set_activation_inputs(
        self, account: str | None, claim_token: Secret | None, password: Secret | None
    ) -> None:
        self._service.store.set_activation_inputs(account, claim_token, password)

    def factory_reset_soon(self, reason: str) -> None:
        """After the current answer: end the session and reset the device."""
        self._service.factory_reset_soon(reason)

    def saved_networks(self) -> tuple[list[dict[str, Any]], int]:
        """The saved networks as phones see them, and how many the device keeps."""
        current = self._engine.record.ssid
        saved = [n.public(current) for n in self._engine.saved_networks()]
        return saved, self._engine.life.timers.saved_networks

    async def forget_network(self, ssid: bytes) -> None:
        """Raises OnboardingError."""
        await self._engine.forget_network(ssid)

    async def open_softap(self, reason: str) -> dict[str, Any]:
        """Open the access point. Raises OnboardingError(SOFTAP_UNAVAILABLE) without one."""
        return await self._service.open_softap(reason)

    async def diagnostics(self) -> bytes:
        """A new diagnostics bundle. Raises OnboardingError(INVALID_STATE) without a maker."""
        return await self._service.diagnostics()

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
