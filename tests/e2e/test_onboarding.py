"""Onboarding over real bless (device, hci0) and bleak (phone, hci1) on BlueZoo, end to end."""

from __future__ import annotations

from typing import Any

import pytest

from device_sim.codes import MessageType
from device_sim.doors.native.flow import Provisioner, provision
from device_sim.network.scenario import load_scenario
from device_sim.security.secret import Secret

from .conftest import Device

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]


async def _provision(device: Device, profile, setup_code, scenario: str, **over):
    creds = load_scenario(scenario).default_credentials
    kwargs: dict[str, Any] = dict(
        ssid=creds.ssid,
        passphrase=Secret(creds.passphrase) if creds.passphrase else None,
        hidden=creds.hidden,
    )
    kwargs.update(over)
    return await provision(
        profile, device.target(), setup_code=setup_code, outcome_timeout=60, **kwargs
    )


@pytest.mark.parametrize("scenario", ["engineering-wifi", "typical-home", "difficult-network"])
async def test_success_on_each_environment(device: Device, profile, setup_code, scenario) -> None:
    # Real simulated delays, shortened 5x so the suite stays quick.
    await device.start(scenario, "--time-scale", "0.2", zero_delay=False)
    result = await _provision(device, profile, setup_code, scenario)
    assert result["state"] == "online", result
    assert result["code_name"] == "OK"
    phases = [e["phase"] for e in result["events"]]
    for expected in ("joining", "associating", "dhcp", "verifying", "dns", "tls", "online"):
        assert expected in phases
    assert phases.index("dhcp") < phases.index("dns") < phases.index("online")
    t = result["timings_ms"]
    assert all(
        t[k] is not None
        for k in ("discover", "connect", "session", "credentials", "join", "verify", "total")
    )
    assert result["gatt_round_trips"] == 2  # PAKE_START; PAKE_PROOF + SET_CREDENTIALS + CONNECT
    assert device.record().state.wire_name == "online"


@pytest.mark.parametrize(
    "scenario, code",
    [
        ("no-dhcp", "NO_DHCP_LEASE"),
        ("dns-failure", "DNS_FAILURE"),
        ("captive-portal", "CAPTIVE_PORTAL"),
        ("weak-signal", "ASSOCIATION_TIMEOUT"),
        ("tls-failure", "TLS_VERIFICATION_FAILED"),
        ("no-internet", "NO_INTERNET"),
    ],
)
async def test_each_network_failure_has_its_code(
    device: Device, profile, setup_code, scenario, code
) -> None:
    await device.start(scenario)
    result = await _provision(device, profile, setup_code, scenario)
    assert (result["state"], result["code_name"]) == ("failed", code), result
    entry = profile.codes[code]
    assert result["message"] == entry.user_message and result["next_step"] == entry.next_step
    assert device.record().code.name == code


async def test_wrong_passphrase_then_right_one_without_reboot(
    device: Device, profile, setup_code
) -> None:
    await device.start("engineering-wifi")
    creds = load_scenario("engineering-wifi").default_credentials
    result = await _provision(
        device,
        profile,
        setup_code,
        "engineering-wifi",
        passphrase=Secret("not-the-password"),
        retries=[(creds.ssid, Secret(creds.passphrase or ""), False)],
    )
    first, second = result["attempts"]
    assert (first["state"], first["code_name"]) == ("failed", "WRONG_CREDENTIALS")
    assert (second["state"], second["code_name"]) == ("online", "OK"), second.get("detail")
    assert device.record().attempt == 2


async def test_ssid_not_present(device: Device, profile, setup_code) -> None:
    await device.start("engineering-wifi")
    result = await _provision(
        device, profile, setup_code, "engineering-wifi", ssid=b"NoSuchNetwork"
    )
    assert (result["state"], result["code_name"]) == ("failed", "NETWORK_NOT_FOUND")


async def test_non_utf8_and_hidden_ssids(device: Device, profile, setup_code) -> None:
    scenario = load_scenario("edge-ssids")
    hidden_ap = next(ap for ap in scenario.access_points if ap.ap.hidden)
    odd_ap = next(
        ap for ap in scenario.access_points if ap.ap.ssid_text is None and not ap.ap.hidden
    )
    await device.start("edge-ssids")
    async with Provisioner(profile, device.target(), setup_code) as prov:
        assert prov.session is not None
        _, body = await prov.session.call(MessageType.SCAN_REQUEST, {})
        networks = body["networks"]
        odd = [n for n in networks if n["ssid_hex"] == odd_ap.ap.ssid.hex()]
        assert odd and odd[0]["ssid"] is None and not odd[0]["hidden"]
        assert any(n["hidden"] and n["ssid_hex"] == "" for n in networks)
        first = await prov.attempt(odd_ap.ap.ssid, Secret(odd_ap.passphrase or ""))
        assert first["state"] == "online", first
        unhinted = await prov.attempt(hidden_ap.ap.ssid, Secret(hidden_ap.passphrase or ""))
        assert unhinted["code_name"] == "NETWORK_NOT_FOUND"  # hidden needs an active probe
        hidden = await prov.attempt(
            hidden_ap.ap.ssid, Secret(hidden_ap.passphrase or ""), hidden=True
        )
        assert hidden["state"] == "online", hidden
    assert device.record().ssid == hidden_ap.ap.ssid


async def test_invalid_passphrase_format_is_refused_before_joining(
    device: Device, profile, setup_code
) -> None:
    await device.start("engineering-wifi")
    result = await _provision(
        device, profile, setup_code, "engineering-wifi", passphrase=Secret("short")
    )
    assert result["code_name"] == "INVALID_CREDENTIALS_FORMAT"
    assert device.record().attempt == 0
