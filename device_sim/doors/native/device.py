"""The native personality, device side: the provisioning service of ``gatt_profile.yaml``.

Characteristics (UUIDs and limits from the profile's ``service`` section):

* ``request``  (write): client -> device fragments (see :mod:`.wire`);
* ``response`` (notify): device -> client fragments of responses and encrypted events;
* ``state`` (read, notify) and ``diagnostics`` (read, notify): public, secret-free status,
  pushed on every event so a phone never has to poll;
* ``info`` (read): protocol version, device id and limits.

The advertisement carries the service UUID and the public state as manufacturer data.

A session belongs to the connection that opened it: writes to ``request`` carry the central's
BlueZ object path, and the session layer's peer is a :class:`NativePeer` (central, channel).
Another central is another peer: it gets BUSY and cannot end, answer or break into the holder's
handshake, session or partial messages. A frame on a channel id that another central is using
(the session holder's, or one with a partial message) is dropped unanswered: a notification
reaches every subscriber, so an answer to the intruder would land in the holder's inbox on that
channel. When the holder's central disconnects, its session ends at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ...codes import Code
from ...errors import OnboardingError, ProtocolError
from ...ratelimit import LimitedLog
from ...session.port import STATE_PHASES, DiagnosticEvent, DoorPort
from ..ble.gatt import Advertised, GattChar, GattHost, GattService
from ..personality import Handler, HttpRoute
from .session import NativeSession
from .wire import AdvertisedInfo, PublicState, Reassembler, fragment, peek_channel

if TYPE_CHECKING:
    from ..softap.api import SoftApHost

LOG = logging.getLogger(__name__)
CAPABILITIES = ["scan", "wpa2", "wpa3", "hidden", "saved_networks"]


class NativePeer(NamedTuple):
    """One native client: the central that wrote (None: the stack did not say) and its channel."""

    central: str | None
    channel: int


class NativePersonality:
    name = "native"

    def __init__(self, port: DoorPort) -> None:
        self.port = port
        self.profile = port.profile
        self.service = port.profile.service
        framing = self.profile.framing
        self.reassembler = Reassembler(
            framing.max_message_length,
            framing.reassembly_timeout_ms / 1000,
            keep=self._holds_session,  # a neighbour's partial messages never push out the owner's
        )
        self.response_uuid = self.service.char("response").uuid
        self.notify_size = self.service.char("response").max_length
        self._host: GattHost | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] = lambda: None
        self._intrusions = LimitedLog(LOG, "ble: frame dropped", burst=5, window_s=60)
        self.session = NativeSession(port)  # its session protocol, over BLE and HTTP alike

    # --- what the BLE host asks ------------------------------------------------------------------

    def gatt(self) -> list[GattService]:
        return [
            GattService(
                self.service.uuid,
                [
                    GattChar(char.uuid, char.properties, self._initial_value(char.key))
                    for char in self.service.characteristics.values()
                ],
            )
        ]

    def advertised(self) -> Advertised:
        record = self.port.record
        payload = AdvertisedInfo(
            self.profile.protocol_revision,  # the phone sees here that it may bundle
            record.state,
            record.code,
            self.port.identity.id_low_bytes,
        ).to_bytes()
        return Advertised(
            [self.service.uuid], {}, {self.profile.advertising.manufacturer_id: payload}
        )

    def attach(self, host: GattHost) -> None:
        self._host = host
        self.notify_size = min(host.notify_size, self.service.char("response").max_length)
        self._unsubscribe = self.port.subscribe(self._on_event)

    def commands(self) -> dict[str, Handler]:
        return {}

    def press_button(self, source: str) -> dict[str, object] | None:
        return None  # the native service has no use for a button

    def close(self) -> None:
        """The device shuts down: its session protocol stops following events."""
        self.session.close()

    def http_routes(self, host: SoftApHost) -> list[HttpRoute]:
        """The same session messages over the SoftAP door (:mod:`.http_api`)."""
        from .http_api import NativeHttpApi  # aiohttp loads only with a SoftAP door

        return NativeHttpApi(self.port, self.session, host).routes()

    async def stop(self) -> None:
        """The BLE host stopped serving it (its HTTP API may still be served: the session
        stays until :meth:`close`)."""
        self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        self._host = None

    def _initial_value(self, key: str) -> bytes:
        record = self.port.record
        if key == "state":
            return PublicState(record.state, record.code, record.attempt).to_bytes()
        if key == "info":
            return json.dumps(
                {
                    "v": self.profile.protocol_version,
                    "rev": self.profile.protocol_revision,
                    "id": self.port.identity.device_id,
                    "max_msg": self.profile.framing.max_message_length,
                    "caps": CAPABILITIES,
                },
                separators=(",", ":"),
            ).encode()
        if key == "diagnostics":
            last = self.port.last_event
            return json.dumps(last.compact() if last else {}, separators=(",", ":")).encode()
        return b""

    # --- requests --------------------------------------------------------------------------------

    def on_write(self, char_uuid: str, frame: bytes, central: str | None) -> None:
        """A fragment written to ``request`` by ``central``."""
        if char_uuid != self.service.char("request").uuid:
            return
        if len(frame) >= 3 and self._taken_by_another(frame[1] << 8 | frame[2], central):
            self._intrusions.log(
                logging.WARNING,
                "a central wrote on channel %d, which another central is using",
                frame[1] << 8 | frame[2],
            )
            return
        try:
            channel = peek_channel(frame)
            complete = self.reassembler.feed(frame, source=central)
        except ProtocolError as exc:
            channel = frame[1] << 8 | frame[2] if len(frame) >= 3 else 0
            self._send(channel, self.session.error_for(NativePeer(central, channel), exc))
            return
        if complete is not None:
            task = asyncio.get_running_loop().create_task(self._handle(central, *complete))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _holds_session(self, central: object) -> bool:
        holder = self.port.session_peer
        return isinstance(holder, NativePeer) and holder.central == central

    def _taken_by_another(self, channel: int, central: str | None) -> bool:
        holder = self.port.session_peer
        if (
            isinstance(holder, NativePeer)
            and holder.channel == channel
            and holder.central != central
        ):
            return True
        return bool(self.reassembler.sources(channel) - {central})

    async def _handle(self, central: str | None, channel: int, message: bytes) -> None:
        peer = NativePeer(central, channel)
        try:
            replies = await self.session.handle(peer, message, lambda m: self._send(channel, m))
        except Exception as exc:  # the session layer answers bad input itself; a bug path
            LOG.exception("handling a message from channel %d failed", channel)
            replies = [
                self.session.error_for(
                    peer, OnboardingError(Code.INTERNAL_ERROR, type(exc).__name__)
                )
            ]
        for reply in replies:
            self._send(channel, reply)

    def on_connections(self, connected: frozenset[str], gone: frozenset[str]) -> None:
        holder = self.port.session_peer
        # The holder's own central left: its session ends now. A session whose central the
        # stack did not name ends when the last central is gone; with several centrals, the
        # idle timeout frees it. Other personalities' and doors' sessions are not ours to end.
        if isinstance(holder, NativePeer) and (
            holder.central in gone or (holder.central is None and not connected)
        ):
            self.port.peer_gone(holder)
        for central in gone:
            self.reassembler.drop_source(central)
        if not connected:
            self.reassembler.drop_source(None)

    # --- notifications ---------------------------------------------------------------------------

    def _send(self, channel: int, message: bytes) -> None:
        if self._host is None:
            return
        for frame in fragment(message, channel, self.notify_size):
            self._host.notify(self.response_uuid, frame)

    def _on_event(self, event: DiagnosticEvent) -> None:
        if self._host is None:
            return
        state = PublicState(event.state, event.code, self.port.record.attempt).to_bytes()
        self._host.notify(self.service.char("state").uuid, state)
        self._host.notify(
            self.service.char("diagnostics").uuid,
            json.dumps(event.compact(), separators=(",", ":")).encode(),
        )
        if event.phase in STATE_PHASES:
            self._host.advertisement_changed()
