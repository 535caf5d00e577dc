"""Phone-side reference client for the Improv Wi-Fi personality (our own, over bleak).

Interop with third parties is proven by the tests that drive ``py-improv-ble-client``; this
client lets ``device-sim client provision --personality improv`` and ``device-sim demo
--personality improv`` produce the same JSON result as the native flow. Improv itself reports
only "unable to connect"; the specific code comes from the device's public diagnostics
characteristic, which every device-sim device keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from ...client.ble import Radio
from ...client.target import Attempts, Credentials, Progress, ProvisionRequest, Target
from ...codes import Code, State
from ...errors import DeviceUnreachable, ble_setup_error
from ...profile import Profile
from ...security.secret import Secret
from .codec import (
    Command,
    ImprovError,
    ImprovState,
    PacketError,
    build_packet,
    parse_packet,
)
from .profile import improv_def


class ImprovFailed(Exception):
    def __init__(self, error: ImprovError) -> None:
        super().__init__(error.name)
        self.error = error


@dataclass(frozen=True)
class FoundImprov:
    device: BLEDevice
    name: str
    state: ImprovState | None


async def discover_improv(
    profile: Profile,
    *,
    adapter: str,
    timeout: float,
    name: str | None = None,
    radio: Radio | None = None,
) -> FoundImprov:
    """The first device advertising the Improv service (or the one named). Raises
    OnboardingError(CLIENT_TIMEOUT) when none is seen in time."""
    spec = improv_def(profile)
    found: asyncio.Future[FoundImprov] = asyncio.get_running_loop().create_future()

    def on_adv(device: BLEDevice, adv: AdvertisementData) -> None:
        if spec.service_uuid not in [u.lower() for u in adv.service_uuids] or found.done():
            return
        local = adv.local_name or device.name or ""
        if name is not None and name not in (local, device.address):  # bumble quirk 1: no name
            return
        raw = adv.service_data.get(spec.service_data_uuid)
        state = None
        if raw and len(raw) == 6:
            with contextlib.suppress(ValueError):
                state = ImprovState(raw[0])
        found.set_result(FoundImprov(device, local, state))

    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(
                (radio or Radio(adapter)).scanning(on_adv, [spec.service_uuid])
            )
        except Exception as exc:  # bleak/D-Bus: no bus, no BlueZ, no such adapter
            raise ble_setup_error(exc, adapter, doing="scanning") from exc
        try:
            async with asyncio.timeout(timeout):
                return await found
        except TimeoutError:
            raise DeviceUnreachable(
                f"no Improv device seen on {adapter} in {timeout:g} s", code=Code.DEVICE_NOT_FOUND
            ) from None


class ImprovLink:
    """One connection to a device's Improv service."""

    def __init__(
        self,
        profile: Profile,
        device: BLEDevice,
        *,
        adapter: str,
        connect_timeout: float = 20.0,
        radio: Radio | None = None,
    ) -> None:
        self.spec = improv_def(profile)
        self.diagnostics_uuid = profile.service.char("diagnostics").uuid
        self._client = (radio or Radio(adapter)).client(device, connect_timeout)
        self.states: asyncio.Queue[ImprovState] = asyncio.Queue()
        self.errors: asyncio.Queue[ImprovError] = asyncio.Queue()
        self.results: asyncio.Queue[tuple[int, tuple[bytes, ...]]] = asyncio.Queue()
        self.events: list[dict[str, Any]] = []
        self.writes = 0

    async def __aenter__(self) -> ImprovLink:
        try:
            await self._client.connect()
        except Exception as exc:
            raise DeviceUnreachable(
                f"cannot connect to the device over BLE: {exc or type(exc).__name__}"
            ) from exc
        c = self.spec.characteristics
        await self._client.start_notify(
            c["state"], lambda _, d: self._on_byte(self.states, ImprovState, d)
        )
        await self._client.start_notify(
            c["error"], lambda _, d: self._on_byte(self.errors, ImprovError, d)
        )
        await self._client.start_notify(c["rpc_result"], self._on_result)
        with contextlib.suppress(Exception):  # absent on devices that are not device-sim
            await self._client.start_notify(self.diagnostics_uuid, self._on_diagnostics)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self._client.disconnect()

    @staticmethod
    def _on_byte(queue: asyncio.Queue[Any], kind: Any, data: bytearray) -> None:
        with contextlib.suppress(ValueError, IndexError):
            queue.put_nowait(kind(data[0]))

    def _on_result(self, _: Any, data: bytearray) -> None:
        with contextlib.suppress(PacketError):
            packet = parse_packet(bytes(data))
            self.results.put_nowait((packet.command, packet.strings))

    def _on_diagnostics(self, _: Any, data: bytearray) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            event = _readable(json.loads(bytes(data)))
            if event:
                self.events.append(event)

    async def read_state(self) -> ImprovState:
        return ImprovState(
            (await self._client.read_gatt_char(self.spec.characteristics["state"]))[0]
        )

    async def read_diagnostics(self) -> dict[str, Any]:
        """The device's latest diagnostic event (state and code names added); {} if absent."""
        try:
            raw = await self._client.read_gatt_char(self.diagnostics_uuid)
            return _readable(json.loads(bytes(raw)))
        except Exception:
            return {}

    async def rpc(
        self, command: Command, strings: list[bytes], *, timeout: float = 15.0
    ) -> tuple[bytes, ...]:
        """Send one RPC and wait for its result; raises ImprovFailed for an error notification."""
        await self._client.write_gatt_char(
            self.spec.characteristics["rpc_command"], build_packet(command, strings), response=True
        )
        self.writes += 1
        async with asyncio.timeout(timeout):
            while True:
                result = asyncio.ensure_future(self.results.get())
                error = asyncio.ensure_future(self.errors.get())
                done, pending = await asyncio.wait(
                    {result, error}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
                if error in done and error.result() is not ImprovError.NONE:
                    raise ImprovFailed(error.result())
                if result in done and result.result()[0] == command:
                    return result.result()[1]


def _code_for(error: ImprovError, diag: dict[str, Any]) -> Code:
    """The specific code of an Improv outcome: the device's diagnostics for a failed join."""
    if error is ImprovError.NONE:
        return Code.OK
    if error is ImprovError.NOT_AUTHORIZED:
        return Code.NOT_AUTHORIZED
    if error in (
        ImprovError.INVALID_RPC_PACKET,
        ImprovError.UNKNOWN_RPC_COMMAND,
        ImprovError.BAD_HOSTNAME,
    ):
        return Code.MALFORMED_REQUEST
    code = Code(diag.get("code", 0))
    if code is not Code.OK:
        return code
    # A device that is not device-sim, or no diagnostics: Improv's own error only.
    return Code.JOIN_FAILED if error is ImprovError.UNABLE_TO_CONNECT else Code.INTERNAL_ERROR


def _readable(event: dict[str, Any]) -> dict[str, Any]:
    if not event:
        return {}
    return {
        **event,
        "state": State(event["state"]).wire_name,
        "code_name": Code(event["code"]).name,
    }


async def provision_improv(
    profile: Profile,
    *,
    adapter: str,
    name: str | None,
    discover_timeout: float,
    ssid: bytes,
    passphrase: Secret | None,
    outcome_timeout: float = 120.0,
    retries: list[tuple[bytes, Secret | None, bool]] | None = None,
    radio: Radio | None = None,
) -> dict[str, Any]:
    """Onboard over Improv; the JSON result has the native flow's shape (plus improv fields)."""
    t0 = time.monotonic()
    marks: dict[str, int | None] = {}
    found = await discover_improv(
        profile, adapter=adapter, timeout=discover_timeout, name=name, radio=radio
    )
    marks["discover"] = int((time.monotonic() - t0) * 1000)
    device = {
        "transport": "ble-improv",
        "address": found.device.address,
        "name": found.name,
        "improv_state": found.state.name.lower() if found.state else None,
    }
    attempts = Attempts((ssid, passphrase, False), retries or ())
    async with ImprovLink(profile, found.device, adapter=adapter, radio=radio) as link:
        marks["connect"] = int((time.monotonic() - t0) * 1000) - (marks["discover"] or 0)

        async def attempt(creds: Credentials) -> dict[str, Any]:
            start = time.monotonic()
            first_event = len(link.events)
            redirect: str | None = None
            improv_error = ImprovError.NONE
            password = creds[1].reveal().encode() if creds[1] else b""
            try:
                strings = await link.rpc(
                    Command.WIFI_SETTINGS, [creds[0], password], timeout=outcome_timeout
                )
                redirect = strings[0].decode() if strings and strings[0] else None
            except ImprovFailed as exc:
                improv_error = exc.error
            diag = await link.read_diagnostics()
            entry = profile.code(_code_for(improv_error, diag))
            online = improv_error is ImprovError.NONE
            return {
                "device": device,
                "state": "online" if online else diag.get("state", "failed"),
                "improv_state": (await link.read_state()).name.lower(),
                "code": entry.id,
                "code_name": entry.name,
                "message": entry.user_message,
                "next_step": entry.next_step,
                "detail": "",
                "improv_error": improv_error.name,
                "redirect_url": redirect,
                "events": link.events[first_event:],
                "transport": "ble-improv",
                "timings_ms": {
                    **marks,
                    "provision": int((time.monotonic() - start) * 1000),
                    "total": int((time.monotonic() - t0) * 1000),
                },
                "gatt_round_trips": link.writes,
                "gatt_writes": link.writes,
            }

        await attempts.run(attempt)
    return attempts.result()


async def provision_request(
    profile: Profile,
    target: Target,
    request: ProvisionRequest,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """:func:`provision_improv` for the door registry's uniform phone-side call (Improv has no
    setup code, no activation inputs and no progress events of its own)."""
    return await provision_improv(
        profile,
        adapter=target.adapter,
        radio=target.radio,
        name=target.name,
        discover_timeout=target.discover_timeout,
        ssid=request.ssid,
        passphrase=request.passphrase,
        outcome_timeout=request.outcome_timeout,
        retries=list(request.retries) or None,
    )
