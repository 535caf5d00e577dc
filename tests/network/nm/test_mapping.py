"""Pure mappings: AP properties, connection settings, failure reasons, D-Bus error translation."""

from __future__ import annotations

import pytest
from dbus_fast import Variant
from dbus_fast.errors import DBusError

from device_sim.codes import Code
from device_sim.errors import NetworkError, TransportError
from device_sim.network.base import AccessPointConfig, Band, Security
from device_sim.network.nm import mapping
from device_sim.network.nm.client import translate, unwrap
from device_sim.network.nm.defs import (
    ERR_ACCESS_DENIED,
    ERR_NAME_HAS_NO_OWNER,
    ERR_NM_PERMISSION_DENIED,
    ERR_NM_UNKNOWN_DEVICE,
    ERR_SERVICE_UNKNOWN,
    ApFlags,
    ApSecurityFlags,
)
from device_sim.network.nm.defs import DeviceState as S
from device_sim.network.nm.defs import DeviceStateReason as R
from device_sim.security.secret import Secret
from device_sim.testing.nm_mock import flags_for

PSK, SAE, X1 = (
    ApSecurityFlags.KEY_MGMT_PSK,
    ApSecurityFlags.KEY_MGMT_SAE,
    ApSecurityFlags.KEY_MGMT_802_1X,
)
CCMP = ApSecurityFlags.PAIR_CCMP | ApSecurityFlags.GROUP_CCMP
PRIVACY = ApFlags.PRIVACY


@pytest.mark.parametrize(
    ("strength", "rssi"), [(0, -100), (100, -40), (50, -70), (80, -52), (-5, -100), (150, -40)]
)
def test_rssi_from_strength_inverts_networkmanagers_linear_scale(strength: int, rssi: int) -> None:
    assert mapping.rssi_from_strength(strength) == rssi


@pytest.mark.parametrize(
    ("freq", "expected"),
    [
        (2412, (Band.GHZ_2_4, 1)),
        (2437, (Band.GHZ_2_4, 6)),
        (2472, (Band.GHZ_2_4, 13)),
        (2484, (Band.GHZ_2_4, 14)),
        (5180, (Band.GHZ_5, 36)),
        (5500, (Band.GHZ_5, 100)),
        (5825, (Band.GHZ_5, 165)),
        (5955, (Band.GHZ_5, 1)),
        (6415, (Band.GHZ_5, 93)),
        (0, None),
        (2300, None),
        (2413, None),
        (9000, None),
    ],
)
def test_band_and_channel(freq: int, expected: tuple[Band, int] | None) -> None:
    assert mapping.band_and_channel(freq) == expected


@pytest.mark.parametrize(
    ("flags", "wpa", "rsn", "security"),
    [
        (0, 0, 0, Security.OPEN),
        (PRIVACY, 0, 0, Security.WEP),
        (PRIVACY, 0, PSK | CCMP, Security.WPA2_PSK),
        (PRIVACY, PSK | ApSecurityFlags.PAIR_TKIP, 0, Security.WPA2_PSK),  # WPA1: still a PSK
        (PRIVACY, 0, SAE | CCMP, Security.WPA3_SAE),
        (PRIVACY, 0, SAE | PSK | CCMP, Security.WPA2_WPA3),
        (PRIVACY, PSK, SAE, Security.WPA2_WPA3),
        (PRIVACY, 0, X1 | CCMP, Security.ENTERPRISE),
        (PRIVACY, 0, X1 | PSK, Security.ENTERPRISE),
        (0, 0, ApSecurityFlags.KEY_MGMT_OWE | CCMP, Security.OWE),
        (0, 0, ApSecurityFlags.KEY_MGMT_OWE_TM | CCMP, Security.OPEN),
        (PRIVACY, 0, CCMP, Security.ENTERPRISE),  # ciphers without a key management we know
    ],
)
def test_security_from_flags(flags: int, wpa: int, rsn: int, security: Security) -> None:
    assert mapping.security_from_flags(flags, wpa, rsn) is security


@pytest.mark.parametrize("security", list(Security))
def test_mock_flags_round_trip(security: Security) -> None:
    assert mapping.security_from_flags(*flags_for(security)) is security


def test_access_point_from_properties() -> None:
    ap = mapping.access_point(
        {
            "Ssid": b"\xff\xfeCaf\xe9",
            "HwAddress": "AA:BB:CC:DD:EE:FF",
            "Frequency": 5180,
            "Strength": 80,
            "Flags": int(PRIVACY),
            "WpaFlags": 0,
            "RsnFlags": int(SAE | CCMP),
        }
    )
    assert ap is not None
    assert (ap.ssid, ap.bssid, ap.band, ap.channel, ap.rssi, ap.security, ap.hidden) == (
        b"\xff\xfeCaf\xe9",
        "aa:bb:cc:dd:ee:ff",
        Band.GHZ_5,
        36,
        -52,
        Security.WPA3_SAE,
        False,
    )
    assert ap.ssid_text is None


def test_access_point_hidden_and_vanishing() -> None:
    hidden = mapping.access_point(
        {"Ssid": b"", "HwAddress": "02:00:00:00:00:09", "Frequency": 2412, "Strength": 10}
    )
    assert hidden is not None and hidden.hidden and hidden.ssid == b""
    assert hidden.security is Security.OPEN
    assert mapping.access_point({"Ssid": b"x", "Frequency": 0}) is None


def _plain(settings: mapping.Settings) -> dict[str, dict[str, object]]:
    return unwrap({g: dict(v) for g, v in settings.items()})


@pytest.mark.parametrize("key_mgmt", ["wpa-psk", "sae"])
def test_station_settings_secured(key_mgmt: str) -> None:
    settings = mapping.station_settings(b"Home", "correct horse", key_mgmt, uuid="u-1")
    assert settings["802-11-wireless"]["ssid"] == Variant("ay", b"Home")
    plain = _plain(settings)
    assert plain["connection"] == {
        "id": "device-sim Home",
        "uuid": "u-1",
        "type": "802-11-wireless",
        "autoconnect": False,
    }  # the engine reconnects
    assert plain["802-11-wireless"] == {"ssid": b"Home", "mode": "infrastructure"}
    assert plain["802-11-wireless-security"] == {"key-mgmt": key_mgmt, "psk": "correct horse"}
    assert plain["ipv4"] == {"method": "auto"} and plain["ipv6"] == {"method": "auto"}


def test_station_settings_open_hidden_and_binary_ssid() -> None:
    settings = mapping.station_settings(b"\xff\x00", None, "none", hidden=True)
    plain = _plain(settings)
    assert "802-11-wireless-security" not in plain
    assert plain["802-11-wireless"]["hidden"] is True
    assert plain["connection"]["id"] == "device-sim 0xff00"
    assert len(str(plain["connection"]["uuid"])) == 36
    open_net = _plain(mapping.station_settings(b"Cafe", "", "none"))
    assert "802-11-wireless-security" not in open_net
    assert "hidden" not in open_net["802-11-wireless"]
    owe = _plain(mapping.station_settings(b"Guest", None, "owe", hidden=True))
    assert owe["802-11-wireless-security"] == {"key-mgmt": "owe"}  # Enhanced Open: no key
    with pytest.raises(ValueError, match="unknown key management"):
        mapping.station_settings(b"Home", "x" * 8, "ieee8021x")  # dynamic WEP: never written
    with pytest.raises(ValueError, match="needs the EAP settings"):
        mapping.station_settings(b"Corp", None, "wpa-eap")


@pytest.mark.parametrize(
    ("security", "passphrase", "scanned", "tries"),
    [
        (None, "pw-12345", None, ("sae", "wpa-psk")),  # hidden, unknown: WPA3 first
        (None, None, None, ("owe", "none")),  # hidden, no passphrase: Enhanced Open first
        (None, "pw-12345", Security.WPA2_WPA3, ("sae", "wpa-psk")),  # transition: SAE first
        (None, "pw-12345", Security.WPA2_PSK, ("wpa-psk",)),
        (Security.WPA2_PSK, "pw-12345", None, ("wpa-psk",)),  # what the app sent
        (Security.OWE, None, Security.OWE, ("owe",)),
    ],
)
def test_key_managements_a_join_tries(
    security: Security | None,
    passphrase: str | None,
    scanned: Security | None,
    tries: tuple[str, ...],
) -> None:
    from device_sim.network.base import key_mgmts_to_try

    assert key_mgmts_to_try(security, passphrase, scanned) == tries


def test_hotspot_settings_wpa2() -> None:
    config = AccessPointConfig(
        "DS-1234", Secret("ap-passphrase-1"), band=Band.GHZ_2_4, channel=6, address="192.168.4.1"
    )
    settings = mapping.hotspot_settings(config, uuid="u-2", interface="wlan0")
    assert settings["802-11-wireless"]["channel"].signature == "u"
    assert settings["ipv4"]["address-data"].signature == "aa{sv}"
    plain = _plain(settings)
    assert plain["connection"] == {
        "id": "device-sim hotspot DS-1234",
        "uuid": "u-2",
        "type": "802-11-wireless",
        "autoconnect": False,
        "interface-name": "wlan0",
    }
    assert plain["802-11-wireless"] == {
        "ssid": b"DS-1234",
        "mode": "ap",
        "band": "bg",
        "channel": 6,
    }
    assert plain["ipv4"] == {
        "method": "shared",
        "address-data": [{"address": "192.168.4.1", "prefix": 24}],
    }
    assert plain["802-11-wireless-security"] == {
        "key-mgmt": "wpa-psk",
        "psk": "ap-passphrase-1",
        "proto": ["rsn"],
        "pairwise": ["ccmp"],
        "group": ["ccmp"],
    }


def test_hotspot_settings_open_5ghz() -> None:
    plain = _plain(
        mapping.hotspot_settings(AccessPointConfig("DS-open", None, band=Band.GHZ_5, channel=36))
    )
    assert plain["802-11-wireless"]["band"] == "a" and plain["802-11-wireless"]["channel"] == 36
    assert "802-11-wireless-security" not in plain


def test_redacted_hides_secrets() -> None:
    shown = mapping.redacted(mapping.station_settings(b"Home", "s3cret-pass", "wpa-psk"))
    assert shown["802-11-wireless-security"]["psk"] == "<redacted>"
    assert "s3cret-pass" not in repr(shown)


WPA2 = Security.WPA2_PSK


@pytest.mark.parametrize(
    ("state", "reason", "need_auth", "scan", "code"),
    [
        (S.NEED_AUTH, R.NO_SECRETS, True, WPA2, Code.WRONG_CREDENTIALS),
        (S.NEED_AUTH, R.SUPPLICANT_DISCONNECT, True, WPA2, Code.WRONG_CREDENTIALS),
        (S.CONFIG, R.SUPPLICANT_DISCONNECT, True, WPA2, Code.WRONG_CREDENTIALS),  # after NEED_AUTH
        (S.CONFIG, R.SUPPLICANT_DISCONNECT, False, WPA2, Code.JOIN_FAILED),
        (S.CONFIG, R.NO_SECRETS, False, WPA2, Code.JOIN_FAILED),
        (S.CONFIG, R.SSID_NOT_FOUND, False, WPA2, Code.NETWORK_NOT_FOUND),
        (S.CONFIG, R.SSID_NOT_FOUND, False, None, Code.NETWORK_NOT_FOUND),
        (S.CONFIG, R.SSID_NOT_FOUND, False, Security.WPA3_SAE, Code.WRONG_CREDENTIALS),
        (S.CONFIG, R.SSID_NOT_FOUND, False, Security.WPA2_WPA3, Code.NETWORK_NOT_FOUND),
        (S.CONFIG, R.SUPPLICANT_TIMEOUT, False, WPA2, Code.ASSOCIATION_TIMEOUT),
        (S.IP_CONFIG, R.IP_CONFIG_UNAVAILABLE, False, WPA2, Code.NO_DHCP_LEASE),
        (S.IP_CONFIG, R.DHCP_START_FAILED, False, WPA2, Code.NO_DHCP_LEASE),
        (S.IP_CONFIG, R.DHCP_ERROR, False, WPA2, Code.NO_DHCP_LEASE),
        (S.IP_CONFIG, R.DHCP_FAILED, False, WPA2, Code.NO_DHCP_LEASE),
        (S.CONFIG, R.CONFIG_FAILED, False, WPA2, Code.JOIN_FAILED),
        (S.CONFIG, 999, False, WPA2, Code.JOIN_FAILED),
    ],
)
def test_failure_for(
    state: int, reason: int, need_auth: bool, scan: Security | None, code: Code
) -> None:
    got, detail = mapping.failure_for(
        state, reason, ssid=b"Home", scan_security=scan, need_auth_seen=need_auth
    )
    assert got is code
    assert f"({int(state)})" in detail and f"({int(reason)})" in detail
    assert mapping.describe(state, reason) in detail


def test_failure_for_sae_names_wpa3_and_unknown_reason_is_numbered() -> None:
    _, detail = mapping.failure_for(
        S.CONFIG, R.SSID_NOT_FOUND, ssid=b"Modern", scan_security=Security.WPA3_SAE
    )
    assert "WPA3" in detail and "network not found" in detail
    assert mapping.nm_raw(S.CONFIG, 999) == {
        "nm_state": "CONFIG",
        "nm_state_value": 50,
        "nm_reason": "UNKNOWN_999",
        "nm_reason_value": 999,
    }


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (S.IP_CONFIG, Code.NO_DHCP_LEASE),
        (S.CONFIG, Code.ASSOCIATION_TIMEOUT),
        (S.UNKNOWN, Code.JOIN_FAILED),
    ],
)
def test_timeout_failure(state: int, code: Code) -> None:
    got, detail = mapping.timeout_failure(state, ssid=b"Home", timeout=1.5)
    assert got is code and "1.5 s" in detail and S(state).name in detail


@pytest.mark.parametrize("name", [ERR_ACCESS_DENIED, ERR_NM_PERMISSION_DENIED])
def test_translate_permission(name: str) -> None:
    err = translate(DBusError(name, "Not authorized"), doing="starting")
    assert isinstance(err, TransportError)
    assert "org.freedesktop.NetworkManager.network-control" in err.detail and "root" in err.detail
    joined = translate(DBusError(name, "no"), doing="joining", code=Code.JOIN_FAILED)
    assert isinstance(joined, NetworkError) and joined.code is Code.JOIN_FAILED
    assert joined.raw["dbus_error"] == name


@pytest.mark.parametrize("name", [ERR_SERVICE_UNKNOWN, ERR_NAME_HAS_NO_OWNER])
def test_translate_not_running(name: str) -> None:
    err = translate(DBusError(name, "gone"), doing="starting")
    assert "systemctl start NetworkManager" in err.detail


def test_translate_unknown_device_and_others() -> None:
    err = translate(DBusError(ERR_NM_UNKNOWN_DEVICE, "x"), doing="starting", interface="wlan7")
    assert "wlan7 does not exist or is not managed" in err.detail and "nmcli device" in err.detail
    other = translate(
        DBusError("org.example.Weird", "boom"), doing="joining", code=Code.JOIN_FAILED
    )
    assert "org.example.Weird" in other.detail and "boom" in other.detail
    bus = translate(FileNotFoundError(2, "No such file"), doing="starting")
    assert isinstance(bus, TransportError) and "system D-Bus" in bus.detail


def _feed(activation: mapping.Activation, *events: tuple[int, int, int]) -> list[bool]:
    return [activation.feed(*event) for event in events]


def test_activation_ignores_the_previous_connection_going_down() -> None:
    act = mapping.Activation()
    assert _feed(
        act,
        (S.DEACTIVATING, S.ACTIVATED, R.NEW_ACTIVATION),
        (S.DISCONNECTED, S.DEACTIVATING, R.NEW_ACTIVATION),
        (S.PREPARE, S.DISCONNECTED, R.NONE),
        (S.CONFIG, S.PREPARE, R.NONE),
        (S.IP_CONFIG, S.CONFIG, R.NONE),
    ) == [False, False, True, True, True]
    assert act.outcome is None
    assert act.feed(S.ACTIVATED, S.SECONDARIES, R.NONE)
    assert act.outcome == mapping.Outcome(True)
    assert not act.feed(S.DISCONNECTED, S.ACTIVATED, R.USER_REQUESTED)  # after the end


def test_activation_failure_and_timeout() -> None:
    act = mapping.Activation()
    _feed(
        act,
        (S.PREPARE, S.DISCONNECTED, R.NONE),
        (S.CONFIG, S.PREPARE, R.NONE),
        (S.NEED_AUTH, S.CONFIG, R.SUPPLICANT_DISCONNECT),
        (S.FAILED, S.NEED_AUTH, R.NO_SECRETS),
    )
    assert act.outcome == mapping.Outcome(False, S.NEED_AUTH, R.NO_SECRETS, need_auth=True)
    dropped = mapping.Activation()
    _feed(
        dropped, (S.PREPARE, S.DISCONNECTED, R.NONE), (S.DISCONNECTED, S.PREPARE, R.USER_REQUESTED)
    )
    assert dropped.outcome == mapping.Outcome(False, S.PREPARE, R.USER_REQUESTED)
    slow = mapping.Activation()
    _feed(slow, (S.PREPARE, S.DISCONNECTED, R.NONE), (S.IP_CONFIG, S.PREPARE, R.NONE))
    assert slow.timed_out() == mapping.Outcome(False, S.IP_CONFIG, 0, timed_out=True)


def test_join_error_carries_the_raw_numbers() -> None:
    err = mapping.join_error(
        mapping.Outcome(False, S.NEED_AUTH, R.NO_SECRETS, True),
        ssid=b"Home",
        scan_security=WPA2,
        timeout=9,
    )
    assert err.code is Code.WRONG_CREDENTIALS
    assert err.raw == {
        "ssid_hex": "486f6d65",
        "nm_state": "NEED_AUTH",
        "nm_state_value": 60,
        "nm_reason": "NO_SECRETS",
        "nm_reason_value": 7,
    }
    late = mapping.join_error(
        mapping.Outcome(False, S.CONFIG, timed_out=True),
        ssid=b"Home",
        scan_security=WPA2,
        timeout=9,
    )
    assert late.code is Code.ASSOCIATION_TIMEOUT and "9 s" in late.detail


def test_lease_from_both_property_generations() -> None:
    assert mapping.lease(
        {
            "AddressData": [{"address": "10.0.0.5", "prefix": 24}],
            "Gateway": "10.0.0.1",
            "NameserverData": [{"address": "10.0.0.1"}, {"address": "1.1.1.1"}],
        }
    ) == ("10.0.0.5", "10.0.0.1", ("10.0.0.1", "1.1.1.1"))
    legacy = {"Addresses": [[0x0500000A, 24, 0x0100000A]], "Nameservers": [0x08080808]}
    assert mapping.lease(legacy) == ("10.0.0.5", "", ("8.8.8.8",))
    assert mapping.lease({}) == ("", "", ())


def test_captive_conf() -> None:
    assert mapping.captive_conf("192.168.4.1", "http://192.168.4.1/api").splitlines()[1:] == [
        "address=/#/192.168.4.1",
        'dhcp-option=114,"http://192.168.4.1/api"',
    ]
