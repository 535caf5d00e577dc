"""The SoftAP radio: NetworkManager hotspot settings and the captive dnsmasq-shared file."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_sim.codes import Code
from device_sim.errors import NetworkError
from device_sim.network.base import AccessPointConfig, Band
from device_sim.network.nm.backend import CAPTIVE_CONF_NAME, NetworkManagerBackend
from device_sim.network.nm.defs import DeviceStateReason as R
from device_sim.network.nm.defs import WifiCapabilities
from device_sim.security.secret import Secret
from device_sim.testing.nm_mock import DEFAULT_CAPS, NMMock

from .conftest import MakeBackend

AP = AccessPointConfig(
    "DS-1234", Secret("ap-passphrase-1"), band=Band.GHZ_2_4, channel=6, address="192.168.4.1"
)


async def test_hotspot_up_and_down(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, tmp_path: Path
) -> None:
    conf = tmp_path / "dnsmasq-shared.d" / CAPTIVE_CONF_NAME
    await backend.start_access_point(AP)

    assert backend.access_point == AP
    [path] = await nm.connections()
    conn = await nm.connection(path)
    assert conn["unsaved"] is True
    settings = conn["settings"]
    assert settings["802-11-wireless"] == {
        "ssid": b"DS-1234",
        "mode": "ap",
        "band": "bg",
        "channel": 6,
    }
    assert settings["ipv4"] == {
        "method": "shared",
        "address-data": [{"address": "192.168.4.1", "prefix": 24}],
    }
    assert settings["connection"]["interface-name"] == "wlan0"
    assert settings["802-11-wireless-security"] == {
        "key-mgmt": "wpa-psk",
        "proto": ["rsn"],
        "pairwise": ["ccmp"],
        "group": ["ccmp"],
    }
    assert conn["secrets"] == {"psk": "ap-passphrase-1"}
    assert conf.read_text().splitlines()[1:] == [
        "address=/#/192.168.4.1",
        'dhcp-option=114,"http://192.168.4.1/captive-portal/api"',
    ]

    await backend.stop_access_point()
    assert backend.access_point is None
    assert await nm.connections() == []
    assert not conf.exists()
    await backend.stop_access_point()  # no-op when down


async def test_open_hotspot_and_custom_portal_url(
    nm: NMMock, wifi: str, tmp_path: Path, make_backend: MakeBackend
) -> None:
    backend = await make_backend(captive_api_url="http://{address}:8080/captive-portal/api")
    await backend.start_access_point(AccessPointConfig("DS-open", None, address="10.42.0.1"))
    [path] = await nm.connections()
    assert "802-11-wireless-security" not in (await nm.connection(path))["settings"]
    assert (
        'dhcp-option=114,"http://10.42.0.1:8080/captive-portal/api"'
        in (tmp_path / "dnsmasq-shared.d" / CAPTIVE_CONF_NAME).read_text()
    )


async def test_no_ap_capability(nm: NMMock, make_backend: MakeBackend, tmp_path: Path) -> None:
    await nm.add_wifi_device("wlan0", caps=DEFAULT_CAPS & ~WifiCapabilities.AP)
    backend = await make_backend()
    with pytest.raises(NetworkError) as caught:
        await backend.start_access_point(AP)
    assert caught.value.code is Code.SOFTAP_UNAVAILABLE
    assert caught.value.detail == "this Wi-Fi device cannot be an access point"
    assert not (tmp_path / "dnsmasq-shared.d" / CAPTIVE_CONF_NAME).exists()
    assert await nm.connections() == []


async def test_hotspot_activation_failure(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, tmp_path: Path
) -> None:
    await nm.on_activate(("failed", R.SHARED_START_FAILED), fail_in=50)
    with pytest.raises(NetworkError) as caught:
        await backend.start_access_point(AP)
    assert caught.value.code is Code.SOFTAP_UNAVAILABLE
    assert "SHARED_START_FAILED" in caught.value.detail
    assert "ap-passphrase-1" not in caught.value.detail
    assert backend.access_point is None
    assert await nm.connections() == []
    assert not (tmp_path / "dnsmasq-shared.d" / CAPTIVE_CONF_NAME).exists()


async def test_unwritable_dnsmasq_dir(
    nm: NMMock, wifi: str, tmp_path: Path, make_backend: MakeBackend
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    backend = await make_backend(dnsmasq_shared_dir=blocker)
    with pytest.raises(NetworkError) as caught:
        await backend.start_access_point(AP)
    assert caught.value.code is Code.SOFTAP_UNAVAILABLE
    assert "dnsmasq_shared_dir" in caught.value.detail
    assert await nm.connections() == []


async def test_hotspot_replaces_the_station_and_blocks_joins(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await backend.join(b"Home", "correct-horse-battery")  # unverified: dropped for the AP
    await backend.start_access_point(AP)
    [path] = await nm.connections()
    assert (await nm.connection(path))["settings"]["802-11-wireless"]["mode"] == "ap"
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Home", "correct-horse-battery")
    assert caught.value.code is Code.INTERNAL_ERROR
    await backend.stop()  # takes the AP down too
    assert await nm.connections() == []
