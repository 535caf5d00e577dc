"""Scanning through the NetworkManager mock: mapping, order, and the fallbacks."""

from __future__ import annotations

import logging
import time

import pytest

from device_sim.codes import Code
from device_sim.errors import NetworkError
from device_sim.network.base import AccessPoint, AccessPointConfig, Band, Security
from device_sim.network.nm.backend import NetworkManagerBackend
from device_sim.network.nm.defs import WIRELESS_IFACE, ApFlags, ApSecurityFlags
from device_sim.testing.nm_mock import MOCK_IFACE, NMMock

from .conftest import MakeBackend


async def _request_scans(nm: NMMock, device: str) -> int:
    return len((await nm.call(device, MOCK_IFACE, "GetMethodCalls", "s", ["RequestScan"]))[0])


async def test_scan_maps_every_kind_of_bss_strongest_first(
    nm: NMMock, make_backend: MakeBackend
) -> None:
    dev = await nm.add_wifi_device("wlan0")
    rows = [  # name, ssid, bssid, MHz, strength, security
        ("wpa2", b"Home", "02:00:00:00:00:01", 2412, 90, Security.WPA2_PSK),
        ("sae", b"Modern", "02:00:00:00:00:02", 5180, 75, Security.WPA3_SAE),
        ("mixed", b"Both", "02:00:00:00:00:03", 5500, 60, Security.WPA2_WPA3),
        ("open", b"Cafe", "02:00:00:00:00:04", 2437, 50, Security.OPEN),
        ("wep", b"Old", "02:00:00:00:00:05", 2462, 40, Security.WEP),
        ("eap", b"Corp", "02:00:00:00:00:06", 5745, 30, Security.ENTERPRISE),
        ("bin", b"\xff\xfe\x00x", "02:00:00:00:00:07", 2484, 20, Security.WPA2_PSK),
        ("hidden", b"", "02:00:00:00:00:08", 5220, 10, Security.WPA2_PSK),
    ]
    for name, ssid, bssid, freq, strength, security in reversed(rows):  # added weakest first
        await nm.add_access_point(
            dev, name, ssid, bssid=bssid, frequency=freq, strength=strength, security=security
        )
    backend = await make_backend()
    assert backend.name == "networkmanager:wlan0"

    aps = await backend.scan()

    assert aps == [
        AccessPoint(b"Home", "02:00:00:00:00:01", Band.GHZ_2_4, 1, -46, Security.WPA2_PSK, False),
        AccessPoint(b"Modern", "02:00:00:00:00:02", Band.GHZ_5, 36, -55, Security.WPA3_SAE, False),
        AccessPoint(b"Both", "02:00:00:00:00:03", Band.GHZ_5, 100, -64, Security.WPA2_WPA3, False),
        AccessPoint(b"Cafe", "02:00:00:00:00:04", Band.GHZ_2_4, 6, -70, Security.OPEN, False),
        AccessPoint(b"Old", "02:00:00:00:00:05", Band.GHZ_2_4, 11, -76, Security.WEP, False),
        AccessPoint(b"Corp", "02:00:00:00:00:06", Band.GHZ_5, 149, -82, Security.ENTERPRISE, False),
        AccessPoint(
            b"\xff\xfe\x00x", "02:00:00:00:00:07", Band.GHZ_2_4, 14, -88, Security.WPA2_PSK, False
        ),
        AccessPoint(b"", "02:00:00:00:00:08", Band.GHZ_5, 44, -94, Security.WPA2_PSK, True),
    ]
    assert await _request_scans(nm, dev) == 1


async def test_scan_takes_raw_flags(nm: NMMock, make_backend: MakeBackend) -> None:
    dev = await nm.add_wifi_device("wlan0")
    await nm.add_access_point(
        dev,
        "raw",
        b"Raw",
        flags=int(ApFlags.PRIVACY),
        rsn_flags=int(ApSecurityFlags.KEY_MGMT_SAE | ApSecurityFlags.KEY_MGMT_PSK),
    )
    backend = await make_backend()
    assert [ap.security for ap in await backend.scan()] == [Security.WPA2_WPA3]


async def test_scan_falls_back_when_request_scan_is_refused(
    nm: NMMock, wifi: str, make_backend: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    await nm.set_scan("refuse")
    backend = await make_backend(scan_timeout=30.0)
    with caplog.at_level(logging.INFO, logger="device_sim.network.nm"):
        started = time.monotonic()
        aps = await backend.scan()
    assert time.monotonic() - started < 5  # no wait for results that will not come
    assert [ap.ssid for ap in aps] == [b"Home", b"Modern", b"Cafe"]
    assert "refused a new scan" in caplog.text and "Device.NotAllowed" in caplog.text


async def test_scan_falls_back_when_last_scan_does_not_change(
    nm: NMMock, wifi: str, make_backend: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    await nm.set_scan("stale")
    backend = await make_backend(scan_timeout=0.2)
    with caplog.at_level(logging.INFO, logger="device_sim.network.nm"):
        started = time.monotonic()
        aps = await backend.scan()
    assert 0.2 <= time.monotonic() - started < 5
    assert len(aps) == 3
    assert "no new results within 0.2 s" in caplog.text


async def test_scan_waits_for_last_scan(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, caplog: pytest.LogCaptureFixture
) -> None:
    before = await nm.client.get(wifi, WIRELESS_IFACE, "LastScan")
    with caplog.at_level(logging.INFO, logger="device_sim.network.nm"):
        assert len(await backend.scan()) == 3
    assert await nm.client.get(wifi, WIRELESS_IFACE, "LastScan") > before
    assert "using the access points" not in caplog.text


async def test_no_scan_while_the_radio_is_an_access_point(
    wifi: str, make_backend: MakeBackend
) -> None:
    backend = await make_backend()
    await backend.start_access_point(AccessPointConfig("DS-0001", None))
    with pytest.raises(NetworkError) as caught:
        await backend.scan()
    assert caught.value.code is Code.INTERNAL_ERROR and "access point" in caught.value.detail
