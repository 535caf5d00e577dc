"""Joining through the NetworkManager mock: results, phases, every failure mapping, cleanup."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from device_sim.codes import Code
from device_sim.core.store import DeviceStore
from device_sim.errors import NetworkError
from device_sim.network.base import Band, Security
from device_sim.network.nm.backend import STORE_KEY, NetworkManagerBackend
from device_sim.network.nm.client import unwrap
from device_sim.network.nm.defs import ERR_ACCESS_DENIED, MANAGER_IFACE, MANAGER_PATH
from device_sim.network.nm.defs import DeviceState as S
from device_sim.network.nm.defs import DeviceStateReason as R
from device_sim.testing.nm_mock import MOCK_IFACE, NMMock

from ..recorder import Recorder
from .conftest import WAIT, MakeBackend

PASS = "correct-horse-battery"


async def _activations(nm: NMMock) -> list[list[Any]]:
    calls = (
        await nm.call(
            MANAGER_PATH, MOCK_IFACE, "GetMethodCalls", "s", ["AddAndActivateConnection2"]
        )
    )[0]
    return [unwrap(list(args)) for _, args in calls]


def _ledger(store: DeviceStore) -> list[dict[str, Any]]:
    return list(json.loads(store.setting(STORE_KEY) or "[]"))


async def test_join_success(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, store: DeviceStore
) -> None:
    await nm.on_activate(
        "activated", ip="10.0.0.23", gateway="10.0.0.1", dns=("10.0.0.1", "9.9.9.9")
    )
    seen = Recorder()

    result = await backend.join(b"Home", PASS, on_phase=seen)

    assert (result.ssid, result.bssid, result.band) == (b"Home", "02:00:00:00:00:01", Band.GHZ_2_4)
    assert (result.ip, result.gateway, result.dns) == (
        "10.0.0.23",
        "10.0.0.1",
        ("10.0.0.1", "9.9.9.9"),
    )
    assert seen.phases == ["scanning", "associating", "dhcp"]
    [args] = await _activations(nm)
    assert args[1] == wifi and args[2] == "/" and args[3] == {"persist": "memory"}
    [path] = await nm.connections()
    conn = await nm.connection(path)
    assert conn["unsaved"] is True
    assert conn["settings"]["802-11-wireless"]["ssid"] == b"Home"
    assert conn["settings"]["802-11-wireless-security"]["key-mgmt"] == "wpa-psk"
    assert conn["secrets"]["psk"] == PASS
    [entry] = _ledger(store)
    assert entry["path"] == path and entry["purpose"] == "station" and entry["saved"] is False
    assert entry["ssid_hex"] == b"Home".hex()


async def test_join_reports_authenticating_and_wpa3_key_management(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await nm.on_activate("activated", need_auth=True)
    seen = Recorder()
    result = await backend.join(b"Modern", PASS, on_phase=seen)
    assert seen.phases == ["scanning", "associating", "authenticating", "dhcp"]
    assert result.band is Band.GHZ_5
    [path] = await nm.connections()
    assert (await nm.connection(path))["settings"]["802-11-wireless-security"]["key-mgmt"] == "sae"


async def test_join_when_signals_follow_the_reply(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await nm.on_activate("activated", after_reply=True, ip="192.168.7.9")
    assert (await backend.join(b"Home", PASS)).ip == "192.168.7.9"
    await nm.on_activate(("failed", R.NO_SECRETS), after_reply=True)
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Home", "wrong-passphrase")
    assert caught.value.code is Code.WRONG_CREDENTIALS


async def test_join_driven_by_the_test(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await nm.on_activate("manual")
    called = await nm.expect_call("AddAndActivateConnection2")
    join = asyncio.ensure_future(backend.join(b"Cafe", None))
    async with asyncio.timeout(WAIT):
        await called
    assert not join.done()
    await nm.script_join(wifi, "activated", ip="172.16.0.5")
    async with asyncio.timeout(WAIT):
        assert (await join).ip == "172.16.0.5"


async def test_cancelled_join_leaves_no_profile(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, store: DeviceStore
) -> None:
    await nm.on_activate("manual")
    called = await nm.expect_call("AddAndActivateConnection2")
    join = asyncio.ensure_future(backend.join(b"Home", PASS))
    async with asyncio.timeout(WAIT):
        await called
        assert len(await nm.connections()) == 1
        join.cancel()
        with pytest.raises(asyncio.CancelledError):
            await join
    assert await nm.connections() == []
    assert _ledger(store) == []


FAILURES = [
    (R.NO_SECRETS, Code.WRONG_CREDENTIALS),
    (R.SUPPLICANT_DISCONNECT, Code.WRONG_CREDENTIALS),
    (R.SSID_NOT_FOUND, Code.NETWORK_NOT_FOUND),
    (R.SUPPLICANT_TIMEOUT, Code.ASSOCIATION_TIMEOUT),
    (R.IP_CONFIG_UNAVAILABLE, Code.NO_DHCP_LEASE),
    (R.DHCP_START_FAILED, Code.NO_DHCP_LEASE),
    (R.DHCP_ERROR, Code.NO_DHCP_LEASE),
    (R.DHCP_FAILED, Code.NO_DHCP_LEASE),
    (R.SUPPLICANT_FAILED, Code.JOIN_FAILED),
]


@pytest.mark.parametrize(("reason", "code"), FAILURES, ids=[r.name for r, _ in FAILURES])
async def test_join_failure_mapping_leaves_no_profile(
    nm: NMMock,
    wifi: str,
    backend: NetworkManagerBackend,
    store: DeviceStore,
    reason: R,
    code: Code,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await nm.on_activate(("failed", reason))
    with caplog.at_level(logging.DEBUG), pytest.raises(NetworkError) as caught:
        await backend.join(b"Home", PASS)
    err = caught.value
    assert err.code is code
    assert err.raw["nm_reason"] == reason.name and err.raw["nm_reason_value"] == int(reason)
    assert err.raw["nm_state_value"] in {int(s) for s in S}
    assert reason.name in err.detail
    assert await nm.connections() == []  # the unsaved profile was deleted
    assert _ledger(store) == []
    assert PASS not in caplog.text and PASS not in repr(err.raw) and PASS not in err.detail


async def test_unmapped_reason_keeps_the_raw_state_and_reason(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await nm.on_activate(("failed", 4242), fail_in=S.IP_CHECK)
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Home", PASS)
    assert caught.value.code is Code.JOIN_FAILED
    assert caught.value.raw == {
        "ssid_hex": b"Home".hex(),
        "nm_state": "IP_CHECK",
        "nm_state_value": 80,
        "nm_reason": "UNKNOWN_4242",
        "nm_reason_value": 4242,
    }
    assert "IP_CHECK (80)" in caught.value.detail and "UNKNOWN_4242 (4242)" in caught.value.detail


async def test_wpa3_reports_a_wrong_password_as_ssid_not_found(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await nm.on_activate(("failed", R.SSID_NOT_FOUND))
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Modern", "wrong-password")
    assert caught.value.code is Code.WRONG_CREDENTIALS
    assert "WPA3" in caught.value.detail and "SSID_NOT_FOUND" in caught.value.detail
    assert await nm.connections() == []


async def test_unseen_network_is_not_found_without_activation(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Elsewhere", PASS)
    assert caught.value.code is Code.NETWORK_NOT_FOUND and "hidden=true" in caught.value.detail
    assert await _activations(nm) == []


async def _key_mgmts(nm: NMMock) -> list[str]:
    """The key management of each activation, in order ("none": no security section)."""
    return [
        args[0].get("802-11-wireless-security", {}).get("key-mgmt", "none")
        for args in await _activations(nm)
    ]


async def test_hidden_network_of_unknown_security_is_tried_as_sae_first(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    result = await backend.join(b"Secret", PASS, hidden=True)
    assert result.ssid == b"Secret" and result.bssid == ""
    [path] = await nm.connections()
    settings = (await nm.connection(path))["settings"]
    assert settings["802-11-wireless"]["hidden"] is True
    assert settings["802-11-wireless-security"]["key-mgmt"] == "sae"  # never WPA2 by default
    assert await _key_mgmts(nm) == ["sae"]


async def test_a_hidden_wpa2_network_is_joined_after_sae_is_refused(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    # wpa_supplicant finds no BSS of the hidden SSID that takes SAE: NetworkManager says
    # "SSID not found"; the backend tries PSK next and keeps only that profile.
    await nm.refuse_key_mgmt({"sae": R.SSID_NOT_FOUND})
    seen = Recorder()
    await backend.join(b"Secret", PASS, hidden=True, on_phase=seen)
    assert await _key_mgmts(nm) == ["sae", "wpa-psk"]
    assert [d.get("key_mgmt") for p, d in seen.calls if p == "associating"] == ["sae", "wpa-psk"]
    [path] = await nm.connections()
    assert (await nm.connection(path))["settings"]["802-11-wireless-security"]["key-mgmt"] == (
        "wpa-psk"
    )


async def test_a_hidden_network_refusing_both_says_what_was_tried(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await nm.refuse_key_mgmt({"sae": R.SSID_NOT_FOUND})
    await nm.on_activate(("failed", R.NO_SECRETS), need_auth=True)
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Secret", PASS, hidden=True)
    assert caught.value.code is Code.WRONG_CREDENTIALS
    assert "tried sae, then wpa-psk" in caught.value.detail and PASS not in caught.value.detail
    assert await nm.connections() == []  # no profile of a failed try is left behind


async def test_the_security_the_app_sent_is_the_only_one_tried(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await backend.join(b"Secret", PASS, hidden=True, security=Security.WPA2_PSK)
    assert await _key_mgmts(nm) == ["wpa-psk"]


async def test_a_security_the_scan_contradicts_is_refused_before_any_activation(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Modern", PASS, security=Security.WPA2_PSK)  # a WPA3-only AP
    assert caught.value.code is Code.SECURITY_MISMATCH
    assert "wpa3-sae" in caught.value.detail and await _activations(nm) == []


async def test_enhanced_open_is_joined_with_key_mgmt_owe(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await nm.add_access_point(
        wifi, "guest", b"Guest", bssid="02:00:00:00:00:09", strength=70, security=Security.OWE
    )
    assert Security.OWE in [ap.security for ap in await backend.scan()]
    await backend.join(b"Guest", None)
    [path] = await nm.connections()
    security = (await nm.connection(path))["settings"]["802-11-wireless-security"]
    assert security == {"key-mgmt": "owe"}
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Guest", PASS)
    assert caught.value.code is Code.INVALID_CREDENTIALS_FORMAT


@pytest.mark.parametrize(
    ("ssid", "passphrase", "code"),
    [
        (b"Home", "short", Code.INVALID_CREDENTIALS_FORMAT),
        (b"Cafe", "not-needed", Code.INVALID_CREDENTIALS_FORMAT),
    ],
)
async def test_credentials_checked_before_activation(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, ssid: bytes, passphrase: str, code: Code
) -> None:
    with pytest.raises(NetworkError) as caught:
        await backend.join(ssid, passphrase)
    assert caught.value.code is code and passphrase not in caught.value.detail
    assert await _activations(nm) == []


async def test_enterprise_network_is_unsupported(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    from device_sim.network.base import Security

    await nm.add_access_point(wifi, "corp", b"Corp", security=Security.ENTERPRISE)
    await backend.scan()
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Corp", PASS)
    assert caught.value.code is Code.UNSUPPORTED_SECURITY


async def test_join_timeout_deletes_the_profile(
    nm: NMMock, wifi: str, make_backend: MakeBackend
) -> None:
    backend = await make_backend(join_timeout=0.3)
    await nm.on_activate("manual")
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Home", PASS)
    assert caught.value.code is Code.JOIN_FAILED and "0.3 s" in caught.value.detail
    assert await nm.connections() == []


async def test_rejoin_replaces_an_unverified_profile(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, store: DeviceStore
) -> None:
    await backend.join(b"Home", PASS)
    seen = Recorder()
    await backend.join(b"Home", PASS + "2", on_phase=seen)
    [path] = await nm.connections()
    assert (await nm.connection(path))["secrets"]["psk"] == PASS + "2"
    assert [e["path"] for e in _ledger(store)] == [path]
    assert seen.phases == ["scanning", "associating", "dhcp"]


async def test_permission_denied_names_polkit(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    await nm.raise_on(
        MANAGER_PATH,
        MANAGER_IFACE,
        "AddAndActivateConnection2",
        "a{sa{sv}}ooa{sv}",
        "ooa{sv}",
        ERR_ACCESS_DENIED,
        "Not authorized",
    )
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Home", PASS)
    assert caught.value.code is Code.JOIN_FAILED
    assert "org.freedesktop.NetworkManager.network-control" in caught.value.detail
    assert "root" in caught.value.detail and PASS not in caught.value.detail


async def test_passphrase_never_logged(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await backend.join(b"Home", PASS)
        await backend.verify()
        await backend.disconnect()
    assert "joined Home" in caplog.text
    assert PASS not in caplog.text
