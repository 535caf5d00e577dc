"""The Improv Wi-Fi personality, device side: a GATT service of the BLE host over the session.

State (characteristic ``...8001``, and the service data under ``4677``):

* ``provisioned`` when the engine is online (or still on its network after DNS or the internet
  went away); after a lost link it is back to waiting for settings, as the first time;
* ``provisioning`` while a join runs;
* otherwise ``authorized`` or ``authorization_required``: with authorization ``required`` the
  device waits for a physical action (:meth:`ImprovPersonality.authorize`: ``device-sim ctl
  improv-authorize`` or a GPIO button); the authorization lapses after a timeout, which starts
  over after a failed join (spec: "the authorization reset timeout should start over").

RPCs (``...8003``; split over several writes, joined by the announced length): Wi-Fi settings,
identify, device info, Wi-Fi scan, hostname and device name. Bad packets get the spec's errors
(``...8002``). A failed join is reported as Improv's ``unable to connect`` (or ``unknown``); the
specific code goes to the diagnostics characteristic and the logs as for any door.

Improv has no session of its own: its credentials travel as the BLE link carries them. The
native personality remains the SRP-protected way in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ...codes import Code, State
from ...errors import OnboardingError
from ...security.secret import Secret
from ...session.port import STATE_PHASES, DiagnosticEvent, DoorPort, EventPhase
from ..ble.gatt import Advertised, GattChar, GattHost, GattService
from ..personality import Handler, HttpRoute
from .codec import (
    Capability,
    Command,
    ImprovError,
    ImprovState,
    Packet,
    PacketError,
    RpcAssembler,
    build_packet,
    parse_packet,
    service_data,
)
from .profile import improv_def

LOG = logging.getLogger(__name__)
PEER = ("improv", 0)
MAX_RESULT = 244  # one notification at the door's fragment size (ATT MTU 247)
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_AUTH_NAMES = {
    "open": "NO",
    "wep": "WEP",
    "wpa2-psk": "WPA2",
    "wpa3-sae": "WPA3",
    "wpa2-wpa3": "WPA2/WPA3",
    "enterprise": "WPA2 EAP",
}
CAPABILITIES = (
    Capability.IDENTIFY
    | Capability.DEVICE_INFO
    | Capability.SCAN_WIFI
    | Capability.HOSTNAME
    | Capability.DEVICE_NAME
)


def valid_hostname(name: bytes) -> bool:
    """RFC 1123: dot-separated labels of letters, digits and hyphens, 255 bytes at most."""
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        return False
    return 0 < len(text) <= 255 and all(_HOST_LABEL.match(label) for label in text.split("."))


class ImprovPersonality:
    name = "improv"
    session_peer = PEER  # the session-layer peer of Improv's (direct) sessions

    def __init__(
        self,
        port: DoorPort,
        *,
        authorization: str | None = None,
        authorization_timeout_s: float | None = None,
        redirect_url: str | None = None,
        with_diagnostics: bool = False,
        on_identify: Callable[[], None] | None = None,
    ) -> None:
        profile = port.profile
        spec = improv_def(profile)
        self.spec, self.port, self.identity = spec, port, port.identity
        self.authorization = authorization or spec.authorization
        self.authorization_timeout_s = (
            authorization_timeout_s or spec.authorization_timeout_ms / 1000
        )
        self.redirect_url = spec.redirect_url if redirect_url is None else redirect_url
        self.with_diagnostics = with_diagnostics
        self.on_identify = on_identify
        self.chars = spec.characteristics
        self.diagnostics_uuid = profile.service.char("diagnostics").uuid
        self.local_name = profile.advertising.local_name_pattern.format(
            short_id=self.identity.short_id
        )
        self.authorized = self.authorization == "none"
        self.error = ImprovError.NONE
        self.identify_count = 0
        self._provisioning = False
        self._assembler = RpcAssembler(spec.reassembly_timeout_ms / 1000)
        self._door: GattHost | None = None
        self._published: ImprovState | None = None
        self._lapse: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] = lambda: None

    # --- what the BLE door asks ------------------------------------------------------------------

    @property
    def state(self) -> ImprovState:
        if self.port.associated:
            return ImprovState.PROVISIONED
        if self._provisioning or (self.port.busy and not self.port.reconnecting):
            # (the device's own retries of its saved networks: still waiting for settings)
            return ImprovState.PROVISIONING
        return ImprovState.AUTHORIZED if self.authorized else ImprovState.AUTHORIZATION_REQUIRED

    def gatt(self) -> list[GattService]:
        c = self.chars
        services = [
            GattService(
                self.spec.service_uuid,
                [
                    GattChar(c["state"], ("read", "notify"), bytes([self.state])),
                    GattChar(c["error"], ("read", "notify"), bytes([self.error])),
                    GattChar(c["rpc_command"], ("write", "write-without-response"), b""),
                    GattChar(c["rpc_result"], ("read", "notify"), b""),
                    GattChar(c["capabilities"], ("read",), bytes([CAPABILITIES])),
                ],
            )
        ]
        if self.with_diagnostics:  # an improv-only device keeps its specific codes readable
            services.append(
                GattService(
                    self.spec.diagnostics_service_uuid,
                    [
                        GattChar(
                            self.diagnostics_uuid,
                            ("read", "notify"),
                            _compact(self.port.last_event),
                        )
                    ],
                )
            )
        return services

    def advertised(self) -> Advertised:
        return Advertised(
            [self.spec.service_uuid],
            {self.spec.service_data_uuid: service_data(self.state, CAPABILITIES)},
            {},
        )

    def attach(self, host: GattHost) -> None:
        self._door = host
        self._published = self.state  # the value gatt() registered
        self._unsubscribe = self.port.subscribe(self._on_event)
        if self.authorized and self.authorization == "required":
            self._arm_lapse()

    def on_connections(self, connected: frozenset[str], gone: frozenset[str]) -> None:
        if connected:
            return
        # Improv's session is the link's: it ends when the last central is gone.
        if self.port.session_peer == PEER:
            self.port.peer_gone(PEER)
        self._assembler.reset()

    def commands(self) -> dict[str, Handler]:
        async def authorize(args: dict[str, object]) -> dict[str, object]:
            return self.authorize("the CLI (simulated button press)")

        return {"improv-authorize": authorize}

    def press_button(self, source: str) -> dict[str, object] | None:
        return {"action": "improv-authorize", **self.authorize(source)}

    def http_routes(self, host: object) -> list[HttpRoute]:
        return []  # Improv is a BLE-only protocol

    async def stop(self) -> None:
        self._unsubscribe()
        for timer in (self._lapse, self._expiry):
            if timer is not None:
                timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._door = None

    # --- authorization ---------------------------------------------------------------------------

    def authorize(self, source: str = "button") -> dict[str, Any]:
        """The physical action: authorize for ``authorization_timeout_s`` seconds."""
        if self.authorization == "none":
            return {"authorized": True, "timeout_s": None}
        self.authorized = True
        self._arm_lapse()
        LOG.info("improv: authorized by %s for %g s", source, self.authorization_timeout_s)
        self.port.note_own(f"authorized by {source}", {"authorized": True})
        self._publish_state()
        return {"authorized": True, "timeout_s": self.authorization_timeout_s}

    def _arm_lapse(self) -> None:
        if self._lapse is not None:
            self._lapse.cancel()
        self._lapse = asyncio.get_running_loop().call_later(
            self.authorization_timeout_s, self._lapsed
        )

    def _lapsed(self) -> None:
        self._lapse = None
        if not self.authorized:
            return
        self.authorized = False
        LOG.info("improv: authorization lapsed")
        self.port.note_own("authorization lapsed", {"authorized": False})
        self._publish_state()

    def _consume_authorization(self) -> None:
        if self.authorization != "required":
            return
        self.authorized = False
        if self._lapse is not None:
            self._lapse.cancel()
            self._lapse = None

    def _restore_authorization(self) -> None:
        if self.authorization != "required":
            return
        self.authorized = True
        self._arm_lapse()

    # --- notifications ---------------------------------------------------------------------------

    def _notify(self, key: str, value: bytes) -> None:
        if self._door is not None:
            self._door.notify(self.chars[key], value)

    def _publish_state(self) -> None:
        state = self.state
        if state == self._published:
            return
        self._published = state
        self._notify("state", bytes([state]))
        if self._door is not None:
            self._door.advertisement_changed()

    def _set_error(self, error: ImprovError) -> None:
        self.error = error
        self._notify("error", bytes([error]))

    def _on_event(self, event: DiagnosticEvent) -> None:
        if self.with_diagnostics and self._door is not None:
            self._door.notify(self.diagnostics_uuid, _compact(event))
        if event.phase in STATE_PHASES:
            self._publish_state()

    # --- RPCs ------------------------------------------------------------------------------------

    def on_write(self, char_uuid: str, value: bytes, central: str | None = None) -> None:
        if char_uuid != self.chars["rpc_command"]:
            return
        try:
            packet = self._assembler.feed(value)
        except PacketError as exc:
            LOG.info("improv: %s", exc.detail)
            self._set_error(exc.error)
            return
        if packet is None:
            self._arm_expiry()
            return
        task = asyncio.get_running_loop().create_task(self._dispatch(packet))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(
            self._assembler.timeout_s, self._expire_partial
        )

    def _expire_partial(self) -> None:
        self._expiry = None
        dropped = self._assembler.expire()
        if dropped:
            LOG.info("improv: an RPC of %d bytes was never completed", dropped)
            self._set_error(ImprovError.INVALID_RPC_PACKET)

    async def _dispatch(self, raw: bytes) -> None:
        try:
            packet = parse_packet(raw)
            try:
                command = Command(packet.command)
            except ValueError:
                raise PacketError(
                    ImprovError.UNKNOWN_RPC_COMMAND, f"unknown command {packet.command:#04x}"
                ) from None
            if self.error is not ImprovError.NONE:
                self._set_error(ImprovError.NONE)
            handler = {
                Command.WIFI_SETTINGS: self._wifi_settings,
                Command.IDENTIFY: self._identify,
                Command.DEVICE_INFO: self._device_info,
                Command.SCAN_WIFI: self._scan,
                Command.HOSTNAME: self._hostname,
                Command.DEVICE_NAME: self._device_name,
            }[command]
            await handler(packet)
        except PacketError as exc:
            LOG.info("improv: %s", exc.detail)
            self._set_error(exc.error)
        except Exception:  # a bug must still answer
            LOG.exception("improv: RPC failed")
            self._set_error(ImprovError.UNKNOWN)

    def _result(self, command: Command, strings: list[bytes]) -> None:
        self._notify("rpc_result", build_packet(command, strings))

    def _need(self, packet: Packet, counts: tuple[int, ...]) -> None:
        if len(packet.strings) not in counts:
            raise PacketError(
                ImprovError.INVALID_RPC_PACKET,
                f"command {packet.command} takes {counts} strings, not {len(packet.strings)}",
            )

    def _need_authorized(self) -> None:
        if not self.authorized:
            self.port.note_own("refused: waiting for the button", code=Code.NOT_AUTHORIZED)
            raise PacketError(ImprovError.NOT_AUTHORIZED, "not authorized: press the button")

    async def _wifi_settings(self, packet: Packet) -> None:
        self._need(packet, (2,))
        self._need_authorized()
        ssid, password = packet.strings
        try:
            passphrase = Secret(password.decode("utf-8")) if password else None
        except UnicodeDecodeError:
            raise PacketError(ImprovError.INVALID_RPC_PACKET, "the password is not UTF-8") from None
        # The settings consume the authorization they used (Improv: it restarts only after a
        # failed connect): without a new button press, no further settings are taken while
        # this join runs or after it succeeded.
        self._consume_authorization()
        self._provisioning = True
        self._publish_state()
        try:
            try:
                self.port.direct_provision(PEER, ssid, passphrase, hidden=False)
            except OnboardingError as exc:
                LOG.info("improv: Wi-Fi settings refused: %s", exc)
                self._set_error(ImprovError(self.spec.error_for(exc.code)))
                self._restore_authorization()  # nothing was tried with it
                return
            try:
                record = await self.port.wait_settled(self.port.outcome_within_s + 10)
            except TimeoutError:
                record = self.port.record
            if record.state is State.ONLINE:
                self._provisioning = False
                self._publish_state()
                self._result(
                    Command.WIFI_SETTINGS, [self.redirect_url.encode()] if self.redirect_url else []
                )
                LOG.info("improv: provisioned")
                return
            code = record.code if record.code is not Code.OK else Code.JOIN_FAILED
            LOG.info("improv: unable to connect (%s)", code.name)
            self._set_error(ImprovError(self.spec.error_for(code)))
            self._restore_authorization()  # the timeout starts over after a failed connect
        finally:
            self._provisioning = False
            self.port.release(PEER)
            self._publish_state()

    async def _identify(self, packet: Packet) -> None:
        self._need(packet, (0,))
        self.identify_count += 1
        LOG.info("improv: identify (simulated: the status LED blinks)")
        self.port.note(
            EventPhase.IDENTIFY, "status LED blinks (simulated)", {"count": self.identify_count}
        )
        if self.on_identify is not None:
            self.on_identify()

    async def _device_info(self, packet: Packet) -> None:
        self._need(packet, (0,))
        try:
            release = version("device-sim")
        except PackageNotFoundError:
            release = "0"
        chip = f"{platform.machine() or 'unknown'} (simulated)"
        self._result(
            Command.DEVICE_INFO,
            [b"device-sim", release.encode(), chip.encode(), self._get_name().encode("utf-8")],
        )

    async def _scan(self, packet: Packet) -> None:
        self._need(packet, (0,))
        try:
            networks = await self.port.scan()
        except OnboardingError as exc:
            raise PacketError(ImprovError.UNKNOWN, f"scan failed: {exc}") from None
        strings: list[bytes] = []
        size = 3
        seen: set[bytes] = set()
        for ap in networks:  # strongest first; hidden ones have no name to offer
            if not ap.ssid or ap.ssid in seen:
                continue
            entry = [ap.ssid, str(ap.rssi).encode(), _AUTH_NAMES[str(ap.security)].encode()]
            grow = sum(1 + len(s) for s in entry)
            if size + grow > MAX_RESULT:  # one notification; the weakest are left out
                break
            strings += entry
            size += grow
            seen.add(ap.ssid)
        self._result(Command.SCAN_WIFI, strings)

    def _get_name(self) -> str:
        return self.port.setting("device_name") or self.local_name

    async def _hostname(self, packet: Packet) -> None:
        self._need(packet, (0, 1))
        self._need_authorized()
        if packet.strings:
            if not valid_hostname(packet.strings[0]):
                raise PacketError(ImprovError.BAD_HOSTNAME, "not an RFC 1123 hostname")
            self.port.set_setting("hostname", packet.strings[0].decode("ascii"))
        name = self.port.setting("hostname") or f"device-sim-{self.identity.short_id.lower()}"
        self._result(Command.HOSTNAME, [name.encode("ascii")])

    async def _device_name(self, packet: Packet) -> None:
        self._need(packet, (0, 1))
        self._need_authorized()
        if packet.strings:
            new = packet.strings[0]
            try:
                text = new.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            if not 0 < len(new) <= 64 or not text.isprintable():
                raise PacketError(
                    ImprovError.BAD_HOSTNAME, "a device name is 1-64 bytes of printable UTF-8"
                )
            self.port.set_setting("device_name", text)
        self._result(Command.DEVICE_NAME, [self._get_name().encode("utf-8")])


def _compact(event: DiagnosticEvent | None) -> bytes:
    return json.dumps(event.compact() if event else {}, separators=(",", ":")).encode()
