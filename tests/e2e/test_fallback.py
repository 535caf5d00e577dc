"""Fallback policy between the BLE door and the SoftAP, on real daemons over BlueZoo.

Each daemon is a subprocess; its decisions are read through the control socket
(``status`` waits for the fallback to be decided) and the SoftAP's public state.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from device_sim.codes import Code, MessageType
from device_sim.control import control_request
from device_sim.doors.native.client import BleLink
from device_sim.doors.native.flow import Provisioner, find_device, provision
from device_sim.errors import OnboardingError
from device_sim.security.secret import Secret

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]

ENGINEERING = (b"DeviceSim-Lab", Secret("lab-bench-passphrase"))


async def _status(device, wait_ms: int = 0) -> dict:
    return await control_request(device.state_dir, "status", {"wait_decided_ms": wait_ms})


async def _public_state(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(url + "/api/v1/state") as resp:
        assert resp.status == 200
        return dict(await resp.json())


async def test_no_usable_ble_adapter_opens_the_access_point(device, setup_code) -> None:
    ready = await device.start("engineering-wifi", doors="ble-then-softap", adapter="hci99")
    assert ready["local_name"] is None
    doors = ready["doors"]
    assert doors["doors"] == ["softap"]
    assert doors["ble_error"] and "no usable BLE" in doors["softap_reason"]
    state = await _public_state(doors["softap"]["ap_url"])
    assert state["doors"]["doors"] == ["softap"]
    # ... and a phone without Bluetooth onboards through it.
    result = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=ENGINEERING[0],
        passphrase=ENGINEERING[1],
    )
    assert (result["state"], result["transport"]) == ("online", "softap")


async def test_ble_only_without_an_adapter_fails_to_start(device) -> None:
    with pytest.raises(Exception, match="did not start"):
        await device.start("engineering-wifi", doors="ble-only", adapter="hci99")


async def test_ble_session_in_time_keeps_the_access_point_closed(device, setup_code) -> None:
    await device.start("engineering-wifi", "--softap-window", "30", doors="ble-then-softap")
    assert (await _status(device))["fallback_pending"] is True
    async with Provisioner(device.profile, device.target(), setup_code):
        status = await _status(device, wait_ms=10_000)
    assert status["fallback_pending"] is False
    assert status["decision"] == "ble session in time: no access point"
    assert status["doors"] == ["ble"] and status["softap"]["up"] is False


async def test_no_ble_session_within_the_window_opens_the_access_point(device) -> None:
    await device.start("engineering-wifi", "--softap-window", "0.5", doors="ble-then-softap")
    status = await _status(device, wait_ms=10_000)
    assert status["decision"] == "softap: no BLE session within 0.5 s"
    assert status["doors"] == ["ble", "softap"] and status["softap"]["up"] is True
    events = [
        json.loads(line)
        for line in (device.state_dir / "onboarding.jsonl").read_text().splitlines()
    ]
    door_events = [e for e in events if e["phase"] == "door"]
    assert door_events[-1]["data"]["softap_reason"] == "no BLE session within 0.5 s"


async def test_cli_request_opens_the_access_point(device) -> None:
    await device.start("engineering-wifi", "--softap-window", "600", doors="ble-then-softap")
    opened = await control_request(device.state_dir, "softap-start")
    assert opened["up"] is True and opened["ssid"].startswith("DS-")
    state = await _public_state(opened["ap_url"])
    assert state["doors"]["softap_reason"] == "requested by the CLI"
    assert "softap" in state["doors"]["doors"]


async def test_ble_request_opens_the_access_point(device, setup_code) -> None:
    await device.start("engineering-wifi", "--softap-window", "600", doors="ble-then-softap")
    async with Provisioner(device.profile, device.target(), setup_code) as prov:
        assert prov.session is not None
        kind, body = await prov.session.call(MessageType.START_SOFTAP, {})
    assert kind is MessageType.ACK and body["request"] == "START_SOFTAP"
    assert body["up"] is True
    state = await _public_state(body["ap_url"])
    assert state["doors"]["softap_reason"] == "requested over BLE"


async def test_ble_only_device_refuses_a_softap_request(device, setup_code) -> None:
    await device.start("engineering-wifi")
    async with Provisioner(device.profile, device.target(), setup_code) as prov:
        assert prov.session is not None
        with pytest.raises(OnboardingError) as err:
            await prov.session.call(MessageType.START_SOFTAP, {})
    assert err.value.code is Code.SOFTAP_UNAVAILABLE
    with pytest.raises(OnboardingError) as err:
        await control_request(device.state_dir, "softap-start")
    assert err.value.code is Code.SOFTAP_UNAVAILABLE


async def test_an_online_device_keeps_its_radio(device, setup_code) -> None:
    await device.start("engineering-wifi", "--softap-window", "600", doors="ble-then-softap")
    result = await provision(
        device.profile,
        device.target(),
        setup_code=setup_code,
        ssid=ENGINEERING[0],
        passphrase=ENGINEERING[1],
    )
    assert result["state"] == "online"
    with pytest.raises(OnboardingError) as err:
        await control_request(device.state_dir, "softap-start")
    assert err.value.code is Code.INVALID_STATE


async def test_a_factory_reset_reopens_the_access_point(device, setup_code) -> None:
    """An online softap-only device keeps its radio; reset, it waits for a new owner on the AP."""
    ready = await device.start("engineering-wifi", doors="softap-only")
    result = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=ENGINEERING[0],
        passphrase=ENGINEERING[1],
    )
    assert result["state"] == "online"
    assert (await _status(device))["softap"]["up"] is False  # one radio: the station has it
    await control_request(device.state_dir, "factory-reset")
    status = await _status(device, wait_ms=10_000)
    assert status["state"] == "unprovisioned" and status["softap"]["up"] is True
    assert (await _public_state(ready["doors"]["softap"]["ap_url"]))["state"] == "unprovisioned"


async def test_a_ble_central_leaving_does_not_end_a_softap_session(device, setup_code) -> None:
    """Sessions belong to their own door and connection: a phone that connects over BLE and
    leaves again (a scan, a curious neighbour) ends no HTTP session on the access point."""
    await device.start("engineering-wifi", "--softap-window", "0", doors="both")
    status = await _status(device, wait_ms=10_000)
    assert status["softap"]["up"] is True, status
    target = device.target_softap({"doors": {"softap": status["softap"]}})
    async with Provisioner(device.profile, target, setup_code) as http_phone:
        assert http_phone.session is not None
        found = await find_device(device.profile, device.target(2))
        async with BleLink(device.profile, found.device, adapter=device.vb.adapters[2]) as link:
            assert (await link.read_state()).state.wire_name == "session_open"
        # The daemon logs every change of its connected centrals; wait for the departure.
        async with asyncio.timeout(10):
            while "BLE centrals connected: 0" not in device.log.read_text():  # noqa: ASYNC110 (another process's log)
                await asyncio.sleep(0.05)
        kind, state = await http_phone.session.call(MessageType.STATUS_REQUEST, {})
        assert (kind, state["state"]) == (MessageType.STATUS, "session_open")
