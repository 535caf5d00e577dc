"""The Improv Wi-Fi personality on BlueZoo, driven by the real, unmodified py-improv-ble-client.

Phones: the harness's hci1 (the Improv client) and hci2 (fresh scans, the native client). The
``device`` fixture gives every test a new adapter and address for the device, so a phone meets
each device in one test only; within a test the client reconnects to the same device after an
error, which the BlueZoo launcher's disconnect fix (interop quirk 4) makes work. So no extra phone
adapters are needed.

Quirks of py-improv-ble-client 2.0.1 the tests work around (see ``_settle`` and ``_close``):

* after any error it schedules a disconnect as a background task and returns at once; a call
  made before that task ran races with it (the command may reach the device, then the link
  drops under it). The tests wait for that scheduled disconnect, as an app naturally does;
* it has no public ``disconnect()``: it drops the link itself 90 s after the last activity;
* hostname errors are not awaited: ``set_hostname`` with a bad name waits for a result that
  never comes, so the tests bound it and read the error characteristic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from improv_ble_client import SERVICE_DATA_UUID, Error, ImprovBLEClient, State, device_filter
from improv_ble_client.errors import ImprovError as ClientError
from improv_ble_client.errors import ProvisioningFailed
from improv_ble_client.models import DisconnectReason
from improv_ble_client.protocol import CHARACTERISTIC_UUID_ERROR, Capabilities

from device_sim.control import control_request
from device_sim.doors.native.client import discover
from device_sim.network.scenario import load_scenario

from .conftest import Device

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]

LAB = load_scenario("engineering-wifi").default_credentials
SSID, PASSPHRASE = LAB.ssid.decode(), LAB.passphrase or ""
URL = "http://device.local/setup"
STEP = 15.0  # seconds any one client call may take (a join at zero delay takes well under 1)
DISCOVER = 15.0  # seconds to see the device's advertisement
T = TypeVar("T")


async def _bounded(awaitable: Awaitable[T], timeout: float = STEP) -> T:
    async with asyncio.timeout(timeout):
        return await awaitable


async def _find(
    adapter: str,
    name: str,
    accept: Callable[[AdvertisementData], bool] = lambda adv: True,
) -> tuple[BLEDevice, AdvertisementData]:
    """The first advertisement of the device called ``name`` with Improv service data that
    ``accept``s, seen on ``adapter`` (``accept`` lets a caller skip reports of an older state)."""
    found: asyncio.Future[tuple[BLEDevice, AdvertisementData]] = (
        asyncio.get_running_loop().create_future()
    )

    def on_adv(ble_device: BLEDevice, adv: AdvertisementData) -> None:
        if (
            (adv.local_name or ble_device.name) == name
            and SERVICE_DATA_UUID in adv.service_data
            and accept(adv)
            and not found.done()
        ):
            found.set_result((ble_device, adv))

    async with BleakScanner(on_adv, bluez={"adapter": adapter}):
        return await _bounded(found, DISCOVER)


def _improv_state(adv: AdvertisementData) -> int:
    return adv.service_data[SERVICE_DATA_UUID][0]


async def _settle(client: ImprovBLEClient) -> None:
    """Wait for the disconnect the client schedules after an error (first quirk, module doc)."""
    tasks = list(client._background_tasks)
    if tasks:
        await _bounded(asyncio.gather(*tasks, return_exceptions=True))


async def _close(client: ImprovBLEClient) -> None:
    """Disconnect now, by the path the client's own idle timer takes (no public disconnect())."""
    await _bounded(client._execute_disconnect(DisconnectReason.TIMEOUT))
    await _settle(client)


@contextlib.asynccontextmanager
async def _improv(device: Device, phone: int = 1) -> AsyncIterator[ImprovBLEClient]:
    """Discover the device with ``device_filter`` and connect the client to it."""
    ble_device, adv = await _find(device.vb.adapters[phone], device.ready["local_name"])
    assert device_filter(adv) is True
    client = ImprovBLEClient(ble_device, adv)
    try:
        # capabilities are known only once connected; the capability-gated calls need them
        await _bounded(client.ensure_connected())
        yield client
    finally:
        await _close(client)


def _events(device: Device) -> list[dict[str, Any]]:
    lines = (device.state_dir / "onboarding.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


async def _status(device: Device) -> dict[str, Any]:
    return await control_request(device.state_dir, "status")


async def test_discover_inspect_and_provision(device: Device) -> None:
    ready = await device.start(
        "engineering-wifi",
        "--personality",
        "improv",
        "--improv-auth",
        "none",
        "--improv-redirect-url",
        URL,
    )
    assert ready["personalities"] == ["improv"]
    async with _improv(device) as client:
        wanted = (
            Capabilities.IDENTIFY
            | Capabilities.DEVICE_INFO
            | Capabilities.SCAN_WIFI
            | Capabilities.HOSTNAME
        )
        assert client.capabilities & wanted == wanted
        assert await _bounded(client.need_authorization()) is False

        info = await _bounded(client.get_device_info())
        assert info.firmware_name == b"device-sim"
        assert info.device_name.decode() == ready["local_name"]

        # the client hands over the notification's bytearrays as they came
        networks = {
            bytes(ssid): (bytes(rssi), bytes(auth))
            for ssid, rssi, auth in (await _bounded(client.scan_wifi())).networks
        }
        rssi, auth = networks[LAB.ssid]
        assert -100 < int(rssi.decode()) < 0
        assert auth == b"WPA2"

        assert await _bounded(client.provision(SSID, PASSPHRASE, None)) == URL

    # a phone that never saw the device: its advertisement now says provisioned
    _, adv = await _find(
        device.vb.adapters[2],
        ready["local_name"],
        lambda adv: _improv_state(adv) == State.PROVISIONED,
    )
    assert device_filter(adv) is False
    assert (await _status(device))["state"] == "online"
    assert device.record().state.wire_name == "online"


async def test_wrong_passphrase_then_right_one(device: Device) -> None:
    await device.start("engineering-wifi", "--personality", "improv", "--improv-auth", "none")
    async with _improv(device) as client:
        with pytest.raises(ProvisioningFailed) as failed:
            await _bounded(client.provision(SSID, "not-the-password", None))
        assert failed.value.error is Error.UNABLE_TO_CONNECT  # Improv's generic error ...
        status = await _status(device)  # ... the specific code stays on the device
        assert (status["state"], status["code_name"]) == ("failed", "WRONG_CREDENTIALS")
        assert any(
            e["code_name"] == "WRONG_CREDENTIALS" and e["state"] == "failed"
            for e in _events(device)
        )

        await _settle(client)
        # no redirect URL configured (the profile's is ""): provision returns None
        assert await _bounded(client.provision(SSID, PASSPHRASE, None)) is None
    status = await _status(device)
    assert (status["state"], status["code_name"], status["attempt"]) == ("online", "OK", 2)


async def test_authorization_by_the_button(device: Device) -> None:
    await device.start(
        "engineering-wifi",
        "--personality",
        "improv",
        "--improv-auth",
        "required",
        "--improv-auth-timeout",
        "30",
    )
    async with _improv(device) as client:
        assert await _bounded(client.need_authorization()) is True
        with pytest.raises(ProvisioningFailed) as failed:
            await _bounded(client.provision(SSID, PASSPHRASE, None))
        assert failed.value.error is Error.NOT_AUTHORIZED
        assert (await _status(device))["state"] == "unprovisioned"  # refused, not attempted
        assert any(e["code_name"] == "NOT_AUTHORIZED" for e in _events(device))
        await _settle(client)

        answer = await control_request(device.state_dir, "improv-authorize")
        assert answer == {"authorized": True, "timeout_s": 30}
        assert await _bounded(client.need_authorization()) is False
        assert await _bounded(client.provision(SSID, PASSPHRASE, None)) is None
    assert (await _status(device))["state"] == "online"


async def test_authorization_lapses(device: Device) -> None:
    await device.start(
        "engineering-wifi",
        "--personality",
        "improv",
        "--improv-auth",
        "required",
        "--improv-auth-timeout",
        "1",
    )
    loop = asyncio.get_running_loop()
    seen: list[State] = []
    authorized, lapsed = asyncio.Event(), asyncio.Event()
    at: dict[str, float] = {}

    def on_state(state: State) -> None:
        seen.append(state)
        if state is State.AUTHORIZED and not authorized.is_set():
            at["authorized"] = loop.time()
            authorized.set()
        elif state is State.AUTHORIZATION_REQUIRED and authorized.is_set():
            at["lapsed"] = loop.time()
            lapsed.set()

    async with _improv(device) as client:
        unsubscribe = await _bounded(client.subscribe_state_updates(on_state))
        assert seen == [State.AUTHORIZATION_REQUIRED]  # called at once with the current state
        await control_request(device.state_dir, "improv-authorize")
        await _bounded(authorized.wait(), 5)
        await _bounded(lapsed.wait(), 5)
        unsubscribe()
        assert at["lapsed"] - at["authorized"] > 0.5, seen
        assert await _bounded(client.need_authorization()) is True


async def test_identify_needs_no_authorization(device: Device) -> None:
    await device.start("engineering-wifi", "--personality", "improv", "--improv-auth", "required")
    async with _improv(device) as client:
        assert await _bounded(client.need_authorization()) is True
        await _bounded(client.identify())  # a write without an answer
        # RPCs are handled in order: once device info answers, identify has been handled
        await _bounded(client.get_device_info())
        assert await _bounded(client.need_authorization()) is True
    identify = [e for e in _events(device) if e["phase"] == "identify"]
    assert len(identify) == 1 and identify[0]["data"] == {"count": 1}


async def test_hostname(device: Device) -> None:
    await device.start("engineering-wifi", "--personality", "improv", "--improv-auth", "none")
    async with _improv(device) as client:
        assert await _bounded(client.set_hostname("kitchen-sensor")) == "kitchen-sensor"
        assert await _bounded(client.get_hostname()) == "kitchen-sensor"

        # The client awaits only a hostname result, never the error notification, so a refused
        # hostname leaves it waiting: bound the wait. When the bound cancels it, the client turns
        # the cancellation into its own ImprovError (TimeoutError should a later version not).
        with pytest.raises((ClientError, TimeoutError)):
            await _bounded(client.set_hostname("bad_host!"), 2)
        assert (
            await _bounded(client.read_characteristic(CHARACTERISTIC_UUID_ERROR))
            == Error.BAD_HOSTNAME
        )
        await _settle(client)
        assert await _bounded(client.get_hostname()) == "kitchen-sensor"  # unchanged
        assert (
            await _bounded(client.read_characteristic(CHARACTERISTIC_UUID_ERROR)) == Error.NO_ERROR
        )  # a good RPC clears the error


async def test_both_personalities(device: Device, profile) -> None:
    ready = await device.start(
        "engineering-wifi", "--personality", "native,improv", "--improv-auth", "none"
    )
    assert ready["personalities"] == ["native", "improv"]
    native = await discover(
        profile, adapter=device.vb.adapters[2], timeout=DISCOVER, name=ready["local_name"]
    )
    assert [d.name for d in native] == [ready["local_name"]]
    assert native[0].info is not None and native[0].info.state.wire_name == "unprovisioned"
    async with _improv(device) as client:
        assert await _bounded(client.provision(SSID, PASSPHRASE, None)) is None
    assert (await _status(device))["state"] == "online"
