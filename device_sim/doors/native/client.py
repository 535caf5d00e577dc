"""Phone-side BLE link and secure session over bleak (the reference client).

:class:`BleLink` knows GATT: it writes request fragments and reassembles notification fragments
on its own channel. :class:`ClientSession` runs the SRP handshake and the encrypted request /
response exchange over a link, and collects the device's pushed events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from ...client.ble import Radio
from ...codes import Code, MessageType
from ...errors import (
    DeviceUnreachable,
    OnboardingError,
    ProtocolError,
    SessionError,
    ble_setup_error,
)
from ...profile import Profile
from ...security.secret import Secret
from ...security.session import ClientHandshake, SecureChannel
from .wire import (
    AdvertisedInfo,
    ErrorBody,
    PublicState,
    Reassembler,
    decode_json,
    encode_json,
    fragment,
    pack_messages,
    split_type,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundDevice:
    device: BLEDevice
    name: str
    rssi: int
    info: AdvertisedInfo | None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.device.address,
            "name": self.name,
            "rssi": self.rssi,
            "state": self.info.state.wire_name if self.info else None,
            "code": int(self.info.code) if self.info else None,
            "code_name": self.info.code.name if self.info else None,
            "device_id_low": self.info.device_id_low.hex() if self.info else None,
        }


async def discover(
    profile: Profile,
    *,
    adapter: str,
    timeout: float,
    name: str | None = None,
    first: bool = False,
    on_found: Callable[[FoundDevice], None] | None = None,
    radio: Radio | None = None,
) -> list[FoundDevice]:
    """Scan for provisioning devices (by the profile's service UUID) for up to ``timeout`` s.

    With ``first`` (or a ``name``), returns as soon as a matching device is seen.
    ``on_found`` hears each device the first time it is seen (matching ``name``, if given).
    ``radio``: the phone's BLE stack (default: bleak on ``adapter``). A ``name`` matches the
    advertised name or the address (bumble's virtual controller shows no scan response).
    """
    radio = radio or Radio(adapter)
    found: dict[str, FoundDevice] = {}
    done = asyncio.Event()
    service_uuid = profile.service.uuid

    def on_adv(device: BLEDevice, adv: AdvertisementData) -> None:
        if service_uuid not in [u.lower() for u in adv.service_uuids]:
            return
        raw = adv.manufacturer_data.get(profile.advertising.manufacturer_id)
        if raw is None:  # BlueZoo carries it as service data (quirk 3, doors/ble/host.py)
            raw = adv.service_data.get(service_uuid)
        info = None
        if raw is not None:
            with contextlib.suppress(ProtocolError):
                info = AdvertisedInfo.from_bytes(bytes(raw))
        local = adv.local_name or device.name or ""
        new = device.address not in found
        found[device.address] = FoundDevice(device, local, adv.rssi, info)
        named = name in (local, device.address)
        if new and on_found is not None and (name is None or named):
            on_found(found[device.address])
        if (name is not None and named) or (first and name is None):
            done.set()

    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(radio.scanning(on_adv, [service_uuid]))
        except Exception as exc:  # bleak/D-Bus: no bus, no BlueZ, no such adapter
            raise ble_setup_error(exc, adapter, doing="scanning") from exc
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await done.wait()
    return [d for d in found.values() if name is None or name in (d.name, d.device.address)]


class BleLink:
    """One GATT connection to a device: fragments out, reassembled messages in."""

    def __init__(
        self,
        profile: Profile,
        device: BLEDevice | str,
        *,
        adapter: str,
        fragment_size: int | None = None,
        connect_timeout: float = 20.0,
        radio: Radio | None = None,
    ) -> None:
        self.profile = profile
        self.channel = secrets.randbelow(0xFFFE) + 1
        self._client = (radio or Radio(adapter)).client(device, connect_timeout)
        self._fragment_size = fragment_size
        framing = profile.framing
        self._reassembler = Reassembler(
            framing.max_message_length, framing.reassembly_timeout_ms / 1000
        )
        self.inbox: asyncio.Queue[bytes | OnboardingError] = asyncio.Queue()
        self.writes = 0
        self.round_trips = 0

    @property
    def fragment_size(self) -> int:
        """Bytes per write: the profile's attribute limit unless told otherwise.

        BlueZ turns a write-with-response longer than the ATT MTU into a long (prepared) write,
        so 512 works on any MTU; ``--fragment-size`` exercises smaller fragments.
        """
        if self._fragment_size is not None:
            return self._fragment_size
        return self.profile.service.char("request").max_length

    async def __aenter__(self) -> BleLink:
        try:
            await self._client.connect()
            svc = self.profile.service
            await self._client.start_notify(svc.char("response").uuid, self._on_response)
        except Exception as exc:  # bleak/D-Bus errors, timeouts
            with contextlib.suppress(Exception):
                await self._client.disconnect()
            raise DeviceUnreachable(
                f"cannot connect to the device over BLE: {exc or type(exc).__name__}"
            ) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self._client.disconnect()

    async def read_state(self) -> PublicState:
        raw = await self._client.read_gatt_char(self.profile.service.char("state").uuid)
        return PublicState.from_bytes(bytes(raw))

    async def read_info(self) -> dict[str, Any]:
        raw = await self._client.read_gatt_char(self.profile.service.char("info").uuid)
        return decode_json(bytes(raw))

    async def send(self, message: bytes) -> None:
        uuid = self.profile.service.char("request").uuid
        for frame in fragment(message, self.channel, self.fragment_size):
            await self.send_raw(frame, uuid)

    async def send_raw(self, frame: bytes, uuid: str | None = None) -> None:
        """Write one raw frame (tests use it to send malformed ones)."""
        await self._client.write_gatt_char(
            uuid or self.profile.service.char("request").uuid, frame, response=True
        )
        self.writes += 1

    async def receive(self, timeout: float) -> bytes:
        """The next message on this channel. Raises TimeoutError, or a reassembly error."""
        async with asyncio.timeout(timeout):
            item = await self.inbox.get()
        if isinstance(item, OnboardingError):
            raise item
        return item

    def _on_response(self, _: Any, data: bytearray) -> None:
        frame = bytes(data)
        if len(frame) >= 3 and (frame[1] << 8 | frame[2]) not in (self.channel, 0):
            return  # another client's frames: notifications reach every subscriber
        try:
            complete = self._reassembler.feed(frame)
        except ProtocolError as exc:
            self.inbox.put_nowait(exc)
            return
        if complete is not None:
            self.inbox.put_nowait(complete[1])


def raise_for_error(message: bytes) -> None:
    """Raise the device's clear ERROR as OnboardingError; return for anything else."""
    msg_type, body = split_type(message)
    if msg_type is MessageType.ERROR:
        err = ErrorBody.from_body(body)
        raise SessionError(err.code, err.detail, retry_after_ms=err.retry_after_ms)


class MessageLink(Protocol):
    """What a session needs of a link: whole messages out and in, and counters for the report.
    :class:`BleLink` (GATT) and :class:`~device_sim.doors.native.http_link.HttpLink` (SoftAP)
    are both."""

    round_trips: int
    writes: int

    async def send(self, message: bytes) -> None: ...

    async def receive(self, timeout: float) -> bytes: ...


class ClientSession:
    """SRP handshake + encrypted requests over a link. Events land in ``events``."""

    def __init__(self, link: MessageLink, *, timeout: float = 15.0) -> None:
        self.link = link
        self.timeout = timeout
        self.channel: SecureChannel | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def _exchange(self, message: bytes) -> bytes:
        await self.link.send(message)
        self.link.round_trips += 1
        reply = await self.link.receive(self.timeout)
        raise_for_error(reply)
        return reply

    async def open(
        self,
        setup_code: Secret,
        bundle: Sequence[tuple[MessageType, dict[str, Any]]] = (),
    ) -> list[tuple[MessageType, dict[str, Any]]]:
        """Prove the setup code; with ``bundle`` (a revision-2 device), send those requests
        sealed in the same message as the proof: two round trips in all. Returns the bundle's
        answers. Raises SessionError (WRONG_SETUP_CODE, TOO_MANY_ATTEMPTS, BUSY) and
        OnboardingError (the first bundled request the device refused)."""
        hs = ClientHandshake(setup_code)
        challenge = await self._exchange(bytes([MessageType.PAKE_START]) + hs.start())
        kind, body = split_type(challenge)
        if kind is not MessageType.PAKE_CHALLENGE:
            raise ProtocolError(Code.MALFORMED_REQUEST, f"expected PAKE_CHALLENGE, got {kind.name}")
        proof = hs.process_challenge(body)
        sealed = b""
        if bundle:
            early = hs.bundle_channel()
            sealed = pack_messages([early.seal(r, encode_json(b)) for r, b in bundle])
        confirm = await self._exchange(bytes([MessageType.PAKE_PROOF]) + proof + sealed)
        kind, body = split_type(confirm)
        if kind is not MessageType.PAKE_CONFIRM:
            raise ProtocolError(Code.MALFORMED_REQUEST, f"expected PAKE_CONFIRM, got {kind.name}")
        self.channel = hs.confirm(body)
        answers = []
        for _ in bundle:
            answer = await self._answer()
            answers.append(answer)
            if answer[0] is MessageType.ACK and answer[1].get("request") == "END_SESSION":
                break
        return answers

    async def call(
        self, request: MessageType, body: dict[str, Any]
    ) -> tuple[MessageType, dict[str, Any]]:
        """One encrypted request; returns the response. Raises OnboardingError for errors."""
        if self.channel is None:
            raise SessionError(Code.SESSION_REQUIRED, "open() first")
        await self.link.send(self.channel.seal(request, encode_json(body)))
        self.link.round_trips += 1
        return await self._answer()

    async def _answer(self) -> tuple[MessageType, dict[str, Any]]:
        """The next answer (events that come first are queued). Raises OnboardingError."""
        assert self.channel is not None
        while True:
            reply = await self.link.receive(self.timeout)
            raise_for_error(reply)
            kind, payload = self.channel.open(reply)
            data = decode_json(payload)
            if kind is MessageType.EVENT:
                self.events.put_nowait(data)
                continue
            if kind is MessageType.SECURE_ERROR:
                raise OnboardingError(
                    Code(data["code"]),
                    data.get("detail", ""),
                    retry_after_ms=data.get("retry_after_ms", 0),
                )
            return kind, data

    async def next_event(self, timeout: float) -> dict[str, Any]:
        """The next pushed event (reading the link while none is queued)."""
        async with asyncio.timeout(timeout):
            while self.events.empty():
                reply = await self.link.receive(timeout)
                raise_for_error(reply)
                assert self.channel is not None
                kind, payload = self.channel.open(reply)
                if kind is MessageType.EVENT:
                    self.events.put_nowait(decode_json(payload))
            return self.events.get_nowait()
