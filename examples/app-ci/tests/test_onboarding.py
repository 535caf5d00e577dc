"""ACME's onboarding tests, run in CI with no radio: each test gets an emulated device (in its
own process, on a virtual BLE bus) from device-sim's pytest plugin. Plain synchronous tests."""

from __future__ import annotations

import asyncio

import pytest
from acme_app.discovery import find_devices, provisioning_characteristics

pytestmark = pytest.mark.device_sim_requires("bluezoo", "dbus")


def test_our_scanner_finds_the_device_and_its_service(emulated_device, virtual_ble):
    device = emulated_device(scenario="typical-home")
    phone = virtual_ble.phones[0]
    found = asyncio.run(find_devices(phone))
    assert device.name in [f.name for f in found]
    (mine,) = [f for f in found if f.name == device.name]
    assert mine.address == device.address
    characteristics = asyncio.run(provisioning_characteristics(phone, mine.address))
    assert "d5e10001-7b0c-4a36-9f3e-6c1d2b8a4e50" in characteristics  # the protocol's first


def test_onboarding_reaches_online(emulated_device):
    device = emulated_device(scenario="typical-home")
    result = device.provision()
    assert result["state"] == "online", result
    assert device.status()["state"] == "online"


def test_no_dhcp_lease_is_reported_with_a_next_step(emulated_device):
    device = emulated_device(scenario="no-dhcp")
    result = device.provision()
    assert (result["state"], result["code_name"]) == ("failed", "NO_DHCP_LEASE")
    assert result["next_step"]  # what the app shows the user


def test_a_runtime_fault_then_recovery(emulated_device):
    device = emulated_device(scenario="typical-home")
    device.add_fault("dns-down", "dns")
    assert device.provision()["code_name"] == "DNS_FAILURE"
    device.remove_fault("dns-down")
    assert device.provision()["state"] == "online"  # the doors stayed open after the failure


def test_a_phone_without_bluetooth_uses_the_access_point(emulated_device):
    device = emulated_device(scenario="typical-home", transport="softap")
    assert device.softap_url
    assert device.provision()["state"] == "online"
