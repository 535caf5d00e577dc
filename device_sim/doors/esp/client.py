"""The ESP personality, phone side: our own ESP-IDF provisioning client over BLE (bleak) or the
SoftAP (HTTP), with security 0, 1 and 2.

The flow is an Espressif app's: ``proto-ver`` (security version and patch), the ``prov-session``
handshake, SetConfig + ApplyConfig on ``prov-config``, then GetStatus polls until Connected or
ConnectionFailed. Over the SoftAP the access point goes away while the device joins (one radio),
so polls that cannot reach it are retried until the outcome is read. When the device is a
device-sim (``proto-ver`` names ``device_sim``), the ``device-sim-diag`` endpoint adds the
specific code, message and next step to the result. Interop with Espressif's own client is proven
by the tests that drive ``esp-rainmaker-cli``'s provisioning modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, Protocol

import aiohttp
from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from ...client.target import (
    Attempts,
    Clock,
    Credentials,
    Progress,
    ProvisionRequest,
    Target,
    describe,
)
from ...codes import Code
from ...errors import ConfigError, DeviceUnreachable, OnboardingError, ble_setup_error
from ...profile import Profile
from ...security.secret import Secret
from . import proto
from .profile import DIAG, EspDef, esp_def
from .security import ClientSecurity, EspSessionError

POLL_S = 0.2  # GetStatus polling period (Espressif's apps poll every few seconds)
USER_DESCRIPTION = "2901"


class EspLink(Protocol):
    round_trips: int

    async def call(self, endpoint: str, data: bytes) -> bytes: ...

    async def close(self) -> None: ...


class BleLink:
    """Endpoints as GATT characteristics: write with response, then read the answer back."""

    def __init__(self, client: BleakClient, uuids: dict[str, str]) -> None:
        self.client, self.uuids, self.round_trips = client, uuids, 0

    @classmethod
    async def open(cls, spec: EspDef, target: Target) -> tuple[BleLink, dict[str, Any]]:
        """Find the device (its name, else the first ESP service seen) and connect. Raises
        DeviceUnreachable(DEVICE_NOT_FOUND) when none is seen in time."""
        found: asyncio.Future[tuple[BLEDevice, str]] = asyncio.get_running_loop().create_future()

        def on_adv(device: BLEDevice, adv: AdvertisementData) -> None:
            local = adv.local_name or device.name or ""
            uuids = [u.lower() for u in adv.service_uuids]
            if found.done() or spec.service_uuid not in uuids:
                return
            if target.name is None or target.name in (local, device.address):  # bumble quirk 1
                found.set_result((device, local))

        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(target.radio.scanning(on_adv, [spec.service_uuid]))
            except Exception as exc:
                raise ble_setup_error(exc, target.adapter, doing="scanning") from exc
            try:
                async with asyncio.timeout(target.discover_timeout):
                    device, local = await found
            except TimeoutError:
                raise DeviceUnreachable(
                    f"no ESP provisioning device seen on {target.adapter} in "
                    f"{target.discover_timeout:g} s",
                    code=Code.DEVICE_NOT_FOUND,
                ) from None
        client = target.radio.client(device, 20.0)
        try:
            await client.connect()
        except Exception as exc:
            raise DeviceUnreachable(
                f"cannot connect over BLE: {exc or type(exc).__name__}"
            ) from exc
        uuids = dict(spec.endpoints)  # ESP-IDF's fallback: derived from the service UUID
        service = client.services.get_service(spec.service_uuid)
        if service is not None:
            for char in service.characteristics:  # the endpoints name themselves (0x2901)
                for desc in char.descriptors:
                    if desc.uuid[4:8] == USER_DESCRIPTION:
                        with contextlib.suppress(Exception):
                            name = bytes(await client.read_gatt_descriptor(desc.handle)).decode()
                            uuids[name.lower()] = char.uuid
        return cls(client, uuids), {"transport": "ble", "address": device.address, "name": local}

    async def call(self, endpoint: str, data: bytes) -> bytes:
        if endpoint not in self.uuids:
            raise DeviceUnreachable(f"the device has no {endpoint} endpoint")
        try:
            await self.client.write_gatt_char(self.uuids[endpoint], data, response=True)
            answer = bytes(await self.client.read_gatt_char(self.uuids[endpoint]))
        except Exception as exc:
            raise DeviceUnreachable(f"{endpoint} over BLE: {exc or type(exc).__name__}") from exc
        self.round_trips += 1
        return answer

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.client.disconnect()


class HttpLink:
    """Endpoints as ``POST /<endpoint>`` on the device's access point, one cookie session."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.round_trips = 0

    async def call(self, endpoint: str, data: bytes) -> bytes:
        try:
            async with self.http.post(
                f"{self.url}/{endpoint}", data=data, timeout=aiohttp.ClientTimeout(total=30)
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise DeviceUnreachable(f"{endpoint}: HTTP {resp.status} {body[:80]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeviceUnreachable(f"{endpoint} over HTTP: {exc or type(exc).__name__}") from exc
        self.round_trips += 1
        return body

    async def close(self) -> None:
        await self.http.close()


class EspSession:
    """One protocomm session on a link: the handshake, then encrypted endpoint calls."""

    def __init__(self, link: EspLink, security: ClientSecurity) -> None:
        self.link, self.security = link, security
        self._params = (security.version, security.pop, security.username, security.password)

    async def reopen(self) -> bool:
        """A new session on the same link (a phone that lost the AP and joined it again: the
        requests lost with it moved the old cipher on). False while the device is unreachable."""
        version, pop, username, password = self._params
        self.security = ClientSecurity(
            version, pop=pop, username=username, password=password, patch=self.security.patch
        )
        try:
            await self.open()
        except DeviceUnreachable:
            return False
        return True

    async def open(self) -> None:
        """Raises OnboardingError(WRONG_SETUP_CODE) when the device refuses the proof."""
        answer = None
        while True:
            try:
                request = self.security.request(answer)
            except EspSessionError as exc:
                raise OnboardingError(
                    Code.WRONG_SETUP_CODE, f"the ESP session failed: {exc.detail}"
                ) from None
            if request is None:
                return
            raw = await self.link.call("prov-session", proto.encode(proto.SESSION, request))
            try:
                answer = proto.decode(proto.SESSION, raw)
            except proto.DecodeError as exc:
                raise DeviceUnreachable(f"prov-session: {exc}") from None

    async def call(self, endpoint: str, schema: proto.Schema | None, message: Any) -> Any:
        cipher = self.security.cipher
        assert cipher is not None
        data = message if schema is None else proto.encode(schema, message)
        raw = cipher.decrypt(await self.link.call(endpoint, cipher.encrypt(data)))
        try:
            return raw if schema is None else proto.decode(schema, raw)
        except proto.DecodeError as exc:
            raise DeviceUnreachable(f"{endpoint}: {exc}") from None


# Over 80 lines on purpose: an ESP app's flow in order (the link, proto-ver, the proof of
# possession, the session, each attempt), as Espressif's esp_prov runs it.
async def provision_request(
    profile: Profile,
    target: Target,
    request: ProvisionRequest,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Onboard through the ESP personality; the JSON result of the other personalities' shape.

    ``request.extra``: ``pop`` (Secret: the label's proof of possession, also the security 2
    password; or ``esp_qr``, the label's QR JSON), ``sec`` (0/1/2; default: what proto-ver
    says), ``username`` (security 2).
    Never raises for device-reported failures (they are the result)."""
    spec = esp_def(profile)
    progress = on_progress or (lambda phase, info: None)
    clock = Clock()
    link: EspLink | None = None
    device: dict[str, Any] = {}
    attempts = Attempts((request.ssid, request.passphrase, request.hidden), request.retries)
    try:
        if target.softap_url:
            link = HttpLink(target.softap_url)
            device = {"transport": "softap", "url": target.softap_url}
            clock.mark("discover")
        else:
            progress("discover", {"adapter": target.adapter})
            link, device = await BleLink.open(spec, target)
            clock.mark("discover")
        clock.mark("connect")
        info = json.loads(await link.call("proto-ver", b"---"))
        prov = info.get("prov", {})
        version = int(request.extra.get("sec", prov.get("sec_ver", 1)))
        pop = request.extra.get("pop")
        if pop is None and "esp_qr" in request.extra:  # the label's QR, as an app scans it
            pop = Secret(json.loads(request.extra["esp_qr"])["pop"])
        if version in (1, 2) and pop is None and "no_pop" not in prov.get("cap", []):
            raise ConfigError("--pop", "the device asks for its proof of possession (label)")
        secret = pop.reveal() if isinstance(pop, Secret) else str(pop or "")
        security = ClientSecurity(
            version,
            pop=secret.encode() if secret else None,
            username=str(request.extra.get("username", spec.username)),
            password=secret,
            patch=int(prov.get("sec_patch_ver", 0)),
        )
        session = EspSession(link, security)
        progress("session", {"sec": version})
        await session.open()
        clock.mark("session")
        diag = "device_sim" in info
        opened = link

        async def attempt(creds: Credentials) -> dict[str, Any]:
            nonlocal clock
            outcome = await _attempt(
                session, clock, creds[0], creds[1], request.outcome_timeout, target, progress
            )
            if diag:
                outcome["diagnostics"] = json.loads(await session.call(DIAG, None, b"{}"))
            result = _result(profile, outcome, clock, opened, device, version)
            clock = Clock()  # the next attempt's phases
            return result

        await attempts.run(attempt)
    except (OnboardingError, ConfigError) as exc:
        if isinstance(exc, ConfigError):
            raise
        entry = describe(profile, exc.code)
        attempts.add(
            {
                "device": device,
                "state": None,
                **entry,
                "detail": exc.detail,
                "transport": "softap-esp" if target.softap_url else "ble-esp",
                "timings_ms": {"total": clock.total()},
                "gatt_round_trips": link.round_trips if link else 0,
            }
        )
    finally:
        if link is not None:
            await link.close()
    return attempts.result()


async def _attempt(
    session: EspSession,
    clock: Clock,
    ssid: bytes,
    passphrase: Secret | None,
    timeout: float,
    target: Target,
    progress: Progress,
) -> dict[str, Any]:
    progress("credentials", {})
    set_config = {
        "ssid": ssid,
        "passphrase": passphrase.reveal().encode() if passphrase else b"",
    }
    answer = await session.call(
        "prov-config", proto.CONFIG, {"msg": proto.CMD_SET_CONFIG, "cmd_set_config": set_config}
    )
    if answer.get("resp_set_config", {}).get("status", 0):
        return {"state": "failed", "esp_status": "SetConfig refused"}
    answer = await session.call(
        "prov-config", proto.CONFIG, {"msg": proto.CMD_APPLY_CONFIG, "cmd_apply_config": {}}
    )
    if answer.get("resp_apply_config", {}).get("status", 0):
        return {"state": "failed", "esp_status": "ApplyConfig refused"}
    clock.mark("credentials")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = await session.call(
                "prov-config", proto.CONFIG, {"msg": proto.CMD_GET_STATUS, "cmd_get_status": {}}
            )
        except DeviceUnreachable:
            if not target.softap_url:
                raise
            # The AP is down while the device joins (one radio): join it again, new session.
            await asyncio.sleep(POLL_S)
            await session.reopen()
            continue
        status = answer.get("resp_get_status", {})
        state = status.get("sta_state", proto.STA_CONNECTED)
        if state == proto.STA_CONNECTED:
            clock.mark("join")
            return {"state": "online", "esp_state": "Connected", **status.get("connected", {})}
        if state == proto.STA_FAILED:
            clock.mark("join")
            reason = status.get("fail_reason", 0)
            name = "AuthError" if reason == proto.FAIL_AUTH_ERROR else "NetworkNotFound"
            return {"state": "failed", "esp_state": "ConnectionFailed", "fail_reason": name}
        await asyncio.sleep(POLL_S)  # polling a device that answers Connecting
    raise DeviceUnreachable(f"no outcome from the device within {timeout:g} s")


def _result(
    profile: Profile,
    outcome: dict[str, Any],
    clock: Clock,
    link: EspLink,
    device: dict[str, Any],
    version: int,
) -> dict[str, Any]:
    diag = outcome.get("diagnostics") or {}
    if "code" in diag:
        code = int(diag["code"])
    elif outcome["state"] == "online":
        code = int(Code.OK)
    elif outcome.get("fail_reason") == "AuthError":
        code = int(Code.WRONG_CREDENTIALS)
    else:
        code = int(Code.NETWORK_NOT_FOUND)
    outcome = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in outcome.items()}
    return {
        "device": device,
        **outcome,
        **describe(profile, code),
        "detail": "",
        "esp_sec": version,
        "transport": f"{device.get('transport', 'ble')}-esp",
        "timings_ms": {**clock.marks, "total": clock.total()},
        "gatt_round_trips": link.round_trips,
    }
