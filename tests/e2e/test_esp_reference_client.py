"""Espressif's own provisioning client, unmodified (esp-rainmaker-cli's rmaker_tools: its BLE and
HTTP transports, security 0/1/2 and wifi_prov/wifi_scan messages), onboards the ESP personality:
over BLE on BlueZoo and over the SoftAP on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from device_sim.core.store import DeviceStore
from device_sim.doors import registry
from device_sim.doors.esp.profile import esp_def
from device_sim.network.scenario import load_scenario
from device_sim.profile import load_profile

from .conftest import Device, fresh_adapter

pytestmark = [
    pytest.mark.ble,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.requires_tools(modules=("rmaker_tools", "google.protobuf")),
    # rmaker_tools loads its generated protobuf modules with SourceFileLoader's
    # deprecated load_module(); a third-party tool used unmodified, so not our warning.
    pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning"),
]
LAB = load_scenario("engineering-wifi").default_credentials
SSID, PASSPHRASE = LAB.ssid.decode(), LAB.passphrase or ""
SPEC = esp_def(load_profile())
NU_LOOKUP = {
    "prov-session": "ff51",
    "prov-config": "ff52",
    "proto-ver": "ff53",
    "prov-scan": "ff50",
    "prov-ctrl": "ff4f",
}


def labels(device: Device) -> dict[str, str]:
    """What `device-sim init` prints on the label (the PoP in Espressif's QR JSON)."""
    with DeviceStore(device.state_dir) as store:
        return registry.make_labels(store, device.profile, "unused")


class Phone:
    """Espressif's client pieces, driven as esp_prov drives them (sync parts in a thread)."""

    def __init__(
        self, transport: Any, security: Any, is_async: bool, reconnect: Any = None
    ) -> None:
        self.tp, self.sec, self.is_async = transport, security, is_async
        self.reconnect = reconnect  # a new transport, for a phone that re-joins the AP

    async def send(self, endpoint: str, data: str) -> str:
        if self.is_async:
            return str(await self.tp.send_data(endpoint, data))
        return str(await asyncio.to_thread(self.tp.send_data, endpoint, data))

    async def handshake(self) -> None:
        response = None
        while True:
            request = self.sec.security_session(response)
            if request is None:
                return
            response = await self.send("prov-session", request)

    async def set_and_apply(self, ssid: str, passphrase: str) -> None:
        from rmaker_tools.common import prov

        answer = await self.send(
            "prov-config", prov.config_set_config_request(self.sec, ssid, passphrase)
        )
        assert prov.config_set_config_response(self.sec, answer) == 0
        answer = await self.send("prov-config", prov.config_apply_config_request(self.sec))
        assert prov.config_apply_config_response(self.sec, answer) == 0

    async def outcome(self, timeout: float = 30.0) -> str:
        """Poll GetStatus (a phone on the SoftAP loses it during the join: retry)."""
        from rmaker_tools.common import prov

        async with asyncio.timeout(timeout):
            while True:
                try:
                    answer = await self.send(
                        "prov-config", prov.config_get_status_request(self.sec)
                    )
                except (OSError, RuntimeError):
                    await asyncio.sleep(0.1)
                    if self.reconnect is not None:
                        await self.reconnect(self)
                    continue
                state = prov.config_get_status_response(self.sec, answer)
                if state in ("connected", "failed"):
                    return str(state)
                await asyncio.sleep(0.1)

    async def scan(self) -> list[dict[str, Any]]:
        from rmaker_tools.common import prov

        prov.scan_start_response(
            self.sec, await self.send("prov-scan", prov.scan_start_request(self.sec, blocking=True))
        )
        count = prov.scan_status_response(
            self.sec, await self.send("prov-scan", prov.scan_status_request(self.sec))
        )
        entries: list[dict[str, Any]] = []
        while len(entries) < count["count"]:
            n = min(4, count["count"] - len(entries))
            answer = await self.send(
                "prov-scan", prov.scan_result_request(self.sec, len(entries), n)
            )
            entries += prov.scan_result_response(self.sec, answer)
        return entries


def security(version: int, pop: str, patch: int = 1) -> Any:
    from rmaker_tools.common import security as sec

    if version == 0:
        return sec.Security0(False)
    if version == 1:
        return sec.Security1(pop, False)
    return sec.Security2(patch, SPEC.username, pop, False)


@pytest_asyncio.fixture(loop_scope="session")
async def ble_phone(device: Device, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    from bleak.backends.bluezdbus.manager import BlueZManager
    from rmaker_tools.common import transport

    # Espressif's client scans and connects on bleak's default adapter: on a phone or a laptop,
    # its only one. This machine has several virtual adapters on one bus (the device's among
    # them), and bleak's default is the first powered one in a set: point it at a phone's own,
    # fresh adapter.
    phone = f"/org/bluez/{await fresh_adapter(device.vb)}"
    monkeypatch.setattr(BlueZManager, "get_default_adapter", lambda self: phone)
    transports: list[Any] = []

    async def connect() -> Any:
        tp = transport.Transport_BLE(service_uuid=SPEC.service_uuid, nu_lookup=NU_LOOKUP)
        await tp.connect(devname=device.ready["local_name"])
        transports.append(tp)
        return tp

    yield connect
    for tp in transports:
        await tp.disconnect()


@pytest.mark.parametrize(("version", "patch"), [(0, 1), (1, 1), (2, 0), (2, 1)])
async def test_ble_onboarding_each_security(
    device: Device, ble_phone: Any, version: int, patch: int, capsys: pytest.CaptureFixture[str]
) -> None:
    pop = json.loads(labels(device)["esp_qr"])["pop"]
    await device.start(
        "engineering-wifi",
        "--personality",
        "esp",
        "--esp-sec",
        str(version),
        "--esp-sec-patch",
        str(patch),
    )
    tp = await ble_phone()
    info = json.loads(await tp.send_data("proto-ver", "---"))
    assert info["prov"]["ver"] == "v1.1" and info["prov"]["sec_ver"] == version
    phone = Phone(tp, security(version, pop, patch), is_async=True)
    await phone.handshake()
    assert [e["ssid"] for e in await phone.scan()] == [SSID]
    await phone.set_and_apply(SSID, PASSPHRASE)
    assert await phone.outcome() == "connected"
    assert device.record().state.wire_name == "online"
    assert pop not in device.log.read_text()


async def test_ble_wrong_password_then_success_in_the_same_session(
    device: Device, ble_phone: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pop = json.loads(labels(device)["esp_qr"])["pop"]
    await device.start("engineering-wifi", "--personality", "esp")
    phone = Phone(await ble_phone(), security(2, pop), is_async=True)
    await phone.handshake()
    await phone.set_and_apply(SSID, "not-the-passphrase")
    capsys.readouterr()
    assert await phone.outcome() == "failed"
    assert "Failure reason: Incorrect Password" in capsys.readouterr().out  # AuthError
    await phone.set_and_apply("No Such Network", PASSPHRASE)
    assert await phone.outcome() == "failed"
    assert "Failure reason: Incorrect SSID" in capsys.readouterr().out  # NetworkNotFound
    await phone.set_and_apply(SSID, PASSPHRASE)  # no reboot
    assert await phone.outcome() == "connected"


@pytest.mark.parametrize("version", [1, 2])
async def test_ble_wrong_proof_is_refused(device: Device, ble_phone: Any, version: int) -> None:
    await device.start("engineering-wifi", "--personality", "esp", "--esp-sec", str(version))
    phone = Phone(await ble_phone(), security(version, "not-the-pop"), is_async=True)
    with pytest.raises(RuntimeError, match="verify device"):
        await phone.handshake()
    assert device.record().state.wire_name == "unprovisioned"


# --- over the SoftAP -----------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def softap_phone(device: Device) -> AsyncIterator[Any]:
    """Espressif's HTTP transport on the device's access point (its address from the daemon)."""
    from rmaker_tools.common import transport

    made: list[Any] = []

    async def connect() -> Any:
        url = device.ready["doors"]["softap"]["ap_url"].removeprefix("http://")
        tp = await asyncio.to_thread(transport.Transport_HTTP, url)
        made.append(tp)
        return tp

    async def phone(version: int, pop: str, patch: int = 1) -> Phone:
        async def reconnect(phone: Phone) -> None:
            """The phone lost the AP during the join (one radio) and joins it again: a new
            connection with the same session cookie (Transport_HTTP's get/set_cookie) and a
            new protocomm session, since requests lost with the AP moved the old cipher on."""
            phone.tp.conn.close()
            try:
                tp = await connect()
            except OSError:  # the AP is still down
                return
            tp.set_cookie(phone.tp.get_cookie())
            phone.tp, phone.sec = tp, security(version, pop, patch)
            try:
                await phone.handshake()
            except (OSError, RuntimeError):
                return

        return Phone(
            await connect(), security(version, pop, patch), is_async=False, reconnect=reconnect
        )

    yield phone
    for tp in made:  # its HTTPConnection stays open until closed
        tp.conn.close()


@pytest.mark.parametrize(("version", "patch"), [(0, 1), (1, 1), (2, 0), (2, 1)])
async def test_softap_onboarding_each_security(
    device: Device, softap_phone: Any, version: int, patch: int
) -> None:
    pop = json.loads(labels(device)["esp_qr"])["pop"]
    await device.start(
        "engineering-wifi",
        "--personality",
        "esp",
        "--esp-sec",
        str(version),
        "--esp-sec-patch",
        str(patch),
        "--softap-concurrent",
        doors="softap-only",
    )
    phone = await softap_phone(version, pop, patch)
    info = json.loads(await phone.send("proto-ver", "---"))
    assert info["prov"]["sec_ver"] == version
    await phone.handshake()
    assert SSID in [e["ssid"] for e in await phone.scan()]
    await phone.set_and_apply(SSID, PASSPHRASE)
    assert await phone.outcome() == "connected"  # read on the AP, still up (concurrent)
    assert device.record().state.wire_name == "online"
    cookie = phone.tp.get_cookie().split("=", 1)[1]
    log = device.log.read_text()
    assert cookie not in log and pop not in log  # bearer cookie and PoP never logged


async def test_softap_wrong_password_then_success(
    device: Device, softap_phone: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a concurrent AP (one radio) the phone loses the AP during the join, joins it
    again and reads the outcome the device kept; then it retries (the device ends online)."""
    pop = json.loads(labels(device)["esp_qr"])["pop"]
    await device.start("engineering-wifi", "--personality", "esp", doors="softap-only")
    phone = await softap_phone(2, pop)
    await phone.handshake()
    await phone.set_and_apply(SSID, "not-the-passphrase")
    capsys.readouterr()
    assert await phone.outcome() == "failed"
    assert "Failure reason: Incorrect Password" in capsys.readouterr().out  # AuthError
    await phone.set_and_apply(SSID, PASSPHRASE)
    await asyncio.sleep(0)
    assert await device_online(device)


async def device_online(device: Device, timeout: float = 30.0) -> bool:
    """The device's own state (the phone lost the AP for good: one radio, joined)."""
    from device_sim.control import control_request

    async with asyncio.timeout(timeout):
        while (await control_request(device.state_dir, "status"))["state"] != "online":  # noqa: ASYNC110 (another process's state, over its socket)
            await asyncio.sleep(0.1)
    return True


async def test_softap_concurrent_wrong_password_then_success_in_the_same_session(
    device: Device, softap_phone: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pop = json.loads(labels(device)["esp_qr"])["pop"]
    await device.start(
        "engineering-wifi", "--personality", "esp", "--softap-concurrent", doors="softap-only"
    )
    phone = await softap_phone(2, pop)
    await phone.handshake()
    await phone.set_and_apply(SSID, "not-the-passphrase")
    capsys.readouterr()
    assert await phone.outcome() == "failed"
    assert "Failure reason: Incorrect Password" in capsys.readouterr().out  # AuthError
    await phone.set_and_apply(SSID, PASSPHRASE)
    assert await phone.outcome() == "connected"


async def test_every_pop_the_device_makes_works_with_espressifs_srp(
    profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 PoP in 256 has SHA-512(username:pop) starting with a zero byte; Espressif's client
    drops that byte (int and back) and its proof never matches. The device never makes one."""
    import itertools
    import secrets as secrets_mod

    import srp
    from rmaker_tools.common.security.srp6a import Srp6a
    from rmaker_tools.common.utils.convenience import long_to_bytes

    from device_sim.doors.esp import identity
    from device_sim.doors.esp.profile import esp_def
    from device_sim.doors.esp.security import (
        _padded,
        _srp_kwargs,
        make_verifier,
        password_interoperates,
    )

    spec = esp_def(profile)
    bad = next(
        p
        for p in (f"pop{i:07d}" for i in itertools.count())
        if not password_interoperates(spec.username, p)
    )
    good = "pop0000000"
    assert password_interoperates(spec.username, good)

    def espressif_accepted(pop: str) -> bool:
        salt, verifier = make_verifier(spec.username, pop)
        user = Srp6a(spec.username, pop)
        with _padded():
            device = srp.Verifier(
                spec.username, salt, verifier, long_to_bytes(user.A), **_srp_kwargs()
            )
            s, b = device.get_challenge()
        proof = user.process_challenge(s, b)
        with _padded():
            return device.verify_session(proof) is not None

    assert espressif_accepted(good) and not espressif_accepted(bad)  # the quirk, shown
    # The device draws the bad PoP first, then another: it keeps the one that works.
    letters = iter(bad + good)
    monkeypatch.setattr(secrets_mod, "choice", lambda alphabet: next(letters))
    settings: dict[str, str] = {}
    pop, _, _ = identity.make_credentials(settings.get, settings.__setitem__, spec)
    assert pop.reveal() == good
