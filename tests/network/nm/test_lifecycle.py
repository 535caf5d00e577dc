"""Start-up errors (NetworkManager missing, permission, device), forget_all, and options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_sim.codes import Code
from device_sim.core.store import DeviceStore
from device_sim.errors import ConfigError, NetworkError, TransportError
from device_sim.network.base import AccessPointConfig
from device_sim.network.nm.backend import STORE_KEY, NetworkManagerBackend
from device_sim.network.nm.defs import (
    ERR_ACCESS_DENIED,
    ERR_NM_PERMISSION_DENIED,
    MANAGER_IFACE,
    MANAGER_PATH,
)
from device_sim.testing.nm_mock import NMMock

from .conftest import MakeBackend

PASS = "correct-horse-battery"


async def test_networkmanager_not_running(system_bus: str, make_backend: MakeBackend) -> None:
    with pytest.raises(TransportError) as caught:
        await make_backend()
    assert "systemctl start NetworkManager" in caught.value.detail


async def test_no_system_bus(tmp_path: Path) -> None:
    backend = NetworkManagerBackend(bus_address=f"unix:path={tmp_path}/nothing.sock")
    with pytest.raises(TransportError) as caught:
        await backend.start()
    assert "system D-Bus" in caught.value.detail
    await backend.stop()


@pytest.mark.parametrize("error", [ERR_ACCESS_DENIED, ERR_NM_PERMISSION_DENIED])
async def test_permission_denied_at_start(
    nm: NMMock, wifi: str, make_backend: MakeBackend, error: str
) -> None:
    await nm.raise_on(
        MANAGER_PATH,
        MANAGER_IFACE,
        "GetDevices",
        "",
        "ao",
        error,
        "Not authorized to control networking.",
    )
    with pytest.raises(TransportError) as caught:
        await make_backend()
    assert "polkit action org.freedesktop.NetworkManager.network-control" in caught.value.detail
    assert "run device-sim as root" in caught.value.detail


async def test_device_selection(nm: NMMock, make_backend: MakeBackend) -> None:
    await nm.add_ethernet_device("eth0")
    await nm.add_wifi_device("wlan0")
    await nm.add_wifi_device("wlan1")
    assert (await make_backend()).name == "networkmanager:wlan0"
    chosen = await make_backend(interface="wlan1")
    assert chosen.name == "networkmanager:wlan1" and chosen.device_path.endswith("/wlan1")
    assert chosen.version == "1.42.4"
    with pytest.raises(TransportError) as caught:
        await make_backend(interface="wlan9")
    assert "wlan9 does not exist or is not managed" in caught.value.detail
    assert "nmcli device" in caught.value.detail
    with pytest.raises(TransportError) as caught:
        await make_backend(interface="eth0")
    assert "eth0 is not a Wi-Fi device" in caught.value.detail


async def test_no_wifi_device(nm: NMMock, make_backend: MakeBackend) -> None:
    await nm.add_ethernet_device("eth0")
    with pytest.raises(TransportError) as caught:
        await make_backend()
    assert "no Wi-Fi device" in caught.value.detail


async def test_forget_all_deletes_exactly_our_connections(
    nm: NMMock, wifi: str, make_backend: MakeBackend, store: DeviceStore, tmp_path: Path
) -> None:
    users = await nm.add_user_connection(b"Home", psk="the-users-own-key")
    backend = await make_backend()
    await backend.join(b"Home", PASS)
    await backend.verify()
    await backend.join(b"Cafe", None)  # joined, not verified
    assert len(await nm.connections()) == 3
    await backend.stop()

    restarted = await make_backend()  # a new process: the store says what is ours
    # The unsaved profile a stopped (or killed) run left in NetworkManager's memory is gone.
    assert len(await nm.connections()) == 2
    await restarted.start_access_point(AccessPointConfig("DS-1234", None))
    assert len(await nm.connections()) == 3
    await restarted.forget_all()

    assert await nm.connections() == [users]
    assert json.loads(store.setting(STORE_KEY) or "[]") == []
    assert restarted.access_point is None
    assert not (tmp_path / "dnsmasq-shared.d" / "device-sim-captive.conf").exists()


async def test_forget_all_without_a_store(nm: NMMock, wifi: str, make_backend: MakeBackend) -> None:
    users = await nm.add_user_connection(b"Office")
    backend = await make_backend(store=None)
    await backend.join(b"Home", PASS)
    await backend.verify()
    await backend.forget_all()
    assert await nm.connections() == [users]


async def test_forget_all_survives_profiles_deleted_by_someone_else(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, store: DeviceStore
) -> None:
    await backend.join(b"Home", PASS)
    await backend.verify()
    [path] = await nm.connections()
    await nm.call(path, "org.freedesktop.NetworkManager.Settings.Connection", "Delete")
    await backend.forget_all()
    assert json.loads(store.setting(STORE_KEY) or "[]") == []


async def test_not_started(wifi: str) -> None:
    backend = NetworkManagerBackend()
    with pytest.raises(NetworkError) as caught:
        await backend.scan()
    assert caught.value.code is Code.INTERNAL_ERROR and "not started" in caught.value.detail


@pytest.mark.parametrize(
    "options",
    [
        {"scan_timeout": 0},
        {"join_timeout": -1},
        {"check_timeout": True},
        {"cloud_port": 0},
        {"cloud_host": ""},
        {"captive_api_url": "http://portal/"},
        {"captive_api_url": 'http://{address}/"x'},
    ],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        NetworkManagerBackend(**options)  # type: ignore[arg-type]


async def test_unreadable_cloud_ca(tmp_path: Path) -> None:
    backend = NetworkManagerBackend(cloud_ca=tmp_path / "missing.pem")
    with pytest.raises(ConfigError):
        await backend.start()


async def test_a_profile_gone_from_networkmanager_is_forgotten(
    nm: NMMock, wifi: str, make_backend: MakeBackend, store: DeviceStore
) -> None:
    """A run killed between deleting a profile and forgetting it (or a user's `nmcli con
    delete`): the next start forgets the name, and keeping the saved networks does too."""
    from device_sim.network.nm.defs import CONNECTION_IFACE

    backend = await make_backend()
    await backend.join(b"Home", PASS)
    await backend.verify()
    await backend.join(b"Cafe", None)
    await backend.verify()
    home, cafe = (e for e in json.loads(store.setting(STORE_KEY) or "[]"))
    await nm.call(home["path"], CONNECTION_IFACE, "Delete")
    await backend.keep_networks([b"Cafe", b"Home"])  # no error: Home's profile is gone
    assert [e["uuid"] for e in json.loads(store.setting(STORE_KEY) or "[]")] == [cafe["uuid"]]
    await nm.call(cafe["path"], CONNECTION_IFACE, "Delete")
    await backend.stop()
    await make_backend()  # a new process
    assert json.loads(store.setting(STORE_KEY) or "[]") == []
