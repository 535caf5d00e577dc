"""Scenario files: every shipped one loads; bad ones fail naming the place."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from device_sim.codes import Code
from device_sim.errors import ConfigError
from device_sim.network import Band, Security, list_scenarios, load_scenario, scenarios_dir
from device_sim.network.scenario import DEFAULT_MIN_RSSI_DBM

# Scenarios whose outcome the device's own timeouts decide (the world answers, too late):
# tests/core/test_engine.py plays them through the engine.
DECIDED_BY_THE_ENGINE = {"slow-dhcp"}
# Scenarios whose outcome the cloud decides at activation (the network part ends OK):
# tests/e2e/test_demo_expect.py plays them through demo and the cloud emulator.
DECIDED_BY_THE_CLOUD = {
    "cloud-claim-expired",
    "cloud-claimed-elsewhere",
    "cloud-down",
    "cloud-rejecting",
}
# Scenarios whose device starts from a history in a world that is not there yet at boot: their
# story decides (tests/e2e/test_stories.py plays them through demo).
DECIDED_BY_THE_STORY = {"late-router"}
SHIPPED = {
    "engineering-wifi": Code.OK,
    "typical-home": Code.OK,
    "difficult-network": Code.OK,  # on 2.4 GHz: the 5 GHz BSS is too weak
    "no-dhcp": Code.NO_DHCP_LEASE,
    "slow-dhcp": Code.NO_DHCP_LEASE,  # decided by the engine's DHCP phase timeout
    "dns-failure": Code.DNS_FAILURE,
    "captive-portal": Code.CAPTIVE_PORTAL,
    "weak-signal": Code.ASSOCIATION_TIMEOUT,
    "tls-failure": Code.TLS_VERIFICATION_FAILED,
    "no-internet": Code.NO_INTERNET,
    "edge-ssids": Code.OK,
    "hidden-wpa3": Code.OK,  # joined with SAE though the app sent no security
    "enterprise-peap": Code.OK,  # PEAP/MSCHAPv2 with the company's CA and domain
    "enterprise-tls": Code.OK,  # EAP-TLS with the device's client certificate
    "enterprise-peap-unknown-user": Code.EAP_IDENTITY_UNKNOWN,
    "enterprise-peap-untrusted": Code.EAP_SERVER_UNTRUSTED,
    "enterprise-tls-expired": Code.EAP_CLIENT_CERT_EXPIRED,
    "zero-delay": Code.OK,
    # the QA bench's world model
    "five-ghz-only": Code.NETWORK_5GHZ_ONLY,
    "mesh-failing-node": Code.OK,  # after the failing node, on the next best
    "wrong-clock": Code.TLS_CERTIFICATE_DATE,
    "no-rtc": Code.CLOCK_NOT_SET,
    "flaky-dhcp": Code.OK,  # seed 1: the router drops it, the extender answers
    "ipv6-only": Code.OK,  # over IPv6, through NAT64
    "ipv6-only-legacy": Code.IPV6_ONLY_NETWORK,
    "band-steering": Code.OK,  # after the router's hold-off
    "cloud-claim-expired": Code.CLAIM_TOKEN_EXPIRED,
    "cloud-claimed-elsewhere": Code.CLAIMED_BY_ANOTHER_ACCOUNT,
    "cloud-down": Code.CLOUD_UNREACHABLE,
    "cloud-rejecting": Code.CLOUD_ACTIVATION_REJECTED,
    # Stories: the world over time after the first onboarding (or from a history); each ends
    # online again, its losses in its story (tests/e2e/test_stories.py plays them).
    "router-reboot": Code.OK,
    "router-replaced": Code.OK,
    "late-router": Code.OK,
    "moved": Code.OK,
    "new-passphrase": Code.OK,
    "lease-not-renewed": Code.OK,
    "dns-outage": Code.OK,
    "internet-outage": Code.OK,
}

GOOD = """\
name: x
description: test scenario
default_credentials: {ssid: Home, passphrase: "secret-passphrase"}
access_points:
  - {ssid: Home, band: 2.4GHz, channel: 6, rssi: -50, security: wpa2-psk,
     passphrase: "secret-passphrase"}
  - {ssid: Home, band: 5GHz, channel: 36, rssi: -60, security: wpa2-psk,
     passphrase: "secret-passphrase"}
"""


def write(tmp_path: Path, text: str, name: str = "x") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return info.value


def test_shipped_set_is_complete() -> None:
    assert set(list_scenarios()) == set(SHIPPED)
    # The package ships the repo's scenarios: in a checkout its data/scenarios links to them.
    assert scenarios_dir().resolve() == Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.description and "\n" not in scenario.description.strip()
    assert scenario.default_credentials.expect is SHIPPED[name]
    assert scenario.access_points
    assert scenario.source.endswith(f"{name}.yaml")


def test_good_file_parses_with_defaults(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.min_rssi_dbm == DEFAULT_MIN_RSSI_DBM == -85
    assert scenario.scan_delay_ms == 0
    first, second = scenario.access_points
    assert first.ap.band is Band.GHZ_2_4 and second.ap.band is Band.GHZ_5
    assert first.ap.security is Security.WPA2_PSK
    assert first.ap.bssid != second.ap.bssid
    assert first.after_association.tls.result == "ok"
    assert scenario.default_credentials.expect is Code.OK


def test_passphrases_are_not_in_repr(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert "secret-passphrase" not in repr(scenario)


def test_path_and_name_load_the_same(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    monkeypatch.setenv("DEVICE_SIM_SCENARIOS", str(tmp_path))
    assert list_scenarios() == ["x"]
    assert load_scenario("x").access_points == load_scenario(tmp_path / "x.yaml").access_points


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario("no-such-scenario")
    assert "typical-home" in info.value.problem


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "absent.yaml")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD + "scan_dealy_ms: 5\n")
    assert err.where.endswith("x.yaml: scan_dealy_ms")
    assert "unknown key" in err.problem


def test_unknown_key_in_access_point(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD.replace("channel: 36,", "chanel: 36,"))
    assert err.where.endswith("x.yaml: access_points[1].chanel")


def test_unknown_key_in_step(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD + "after_association:\n  dhcp: {delay: 5}\n")
    assert err.where.endswith("x.yaml: after_association.dhcp.delay")


def test_unknown_step(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD + "after_association:\n  dhcpp: {delay_ms: 5}\n")
    assert err.where.endswith("x.yaml: after_association.dhcpp")


def test_bad_band(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD.replace("band: 5GHz", "band: 6GHz"))
    assert err.where.endswith("x.yaml: access_points[1].band")
    assert "2.4GHz" in err.problem and "6GHz" in err.problem
    assert str(err).endswith("x.yaml: access_points[1].band: " + err.problem)


def test_channel_must_fit_band(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD.replace("channel: 36", "channel: 6"))
    assert err.where.endswith("access_points[1].channel")


@pytest.mark.parametrize("value", ['"c328f"', '"zz"', '""', "4142", '"' + "41" * 33 + '"'])
def test_bad_ssid_hex(tmp_path: Path, value: str) -> None:
    err = error_for(
        tmp_path, GOOD.replace("ssid: Home, band: 5GHz", f"ssid_hex: {value}, band: 5GHz")
    )
    assert err.where.endswith("x.yaml: access_points[1].ssid_hex")


def test_ssid_and_ssid_hex_together(tmp_path: Path) -> None:
    err = error_for(
        tmp_path, GOOD.replace("ssid: Home, band: 5GHz", 'ssid: Home, ssid_hex: "41", band: 5GHz')
    )
    assert err.where.endswith("access_points[1].ssid")


def test_ssid_hex_keeps_raw_bytes(tmp_path: Path) -> None:
    scenario = load_scenario(
        write(tmp_path, GOOD.replace("ssid: Home, band: 5GHz", 'ssid_hex: "c328ff41", band: 5GHz'))
    )
    assert scenario.access_points[1].ap.ssid == b"\xc3\x28\xff\x41"


def test_missing_default_credentials(tmp_path: Path) -> None:
    text = "\n".join(
        line for line in GOOD.splitlines() if not line.startswith("default_credentials")
    )
    err = error_for(tmp_path, text)
    assert err.where.endswith("x.yaml: default_credentials")
    assert err.problem == "missing"


def test_bad_expected_code(tmp_path: Path) -> None:
    err = error_for(
        tmp_path,
        GOOD.replace(
            'passphrase: "secret-passphrase"}\naccess',
            'passphrase: "secret-passphrase", expect: SLOW}\naccess',
        ),
    )
    assert err.where.endswith("default_credentials.expect")


def test_name_must_match_file(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD.replace("name: x", "name: y"))
    assert err.where.endswith("x.yaml: name")


def test_bad_passphrase_in_file(tmp_path: Path) -> None:
    err = error_for(
        tmp_path,
        GOOD.replace(
            'rssi: -60, security: wpa2-psk,\n     passphrase: "secret-passphrase"',
            'rssi: -60, security: wpa2-psk,\n     passphrase: "short"',
        ),
    )
    assert err.where.endswith("access_points[1].passphrase")
    assert "short" not in err.problem


def test_unquoted_number_passphrase(tmp_path: Path) -> None:
    err = error_for(
        tmp_path,
        GOOD.replace(
            'passphrase: "secret-passphrase"}\n  - {ssid: Home, band: 5GHz',
            "passphrase: 12345678}\n  - {ssid: Home, band: 5GHz",
        ),
    )
    assert err.where.endswith("access_points[0].passphrase")
    assert "quote" in err.problem


def test_open_network_takes_no_passphrase(tmp_path: Path) -> None:
    err = error_for(
        tmp_path, GOOD.replace("rssi: -60, security: wpa2-psk", "rssi: -60, security: open")
    )
    assert err.where.endswith("access_points[1].passphrase")


def test_bad_result_and_delay(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD + "after_association:\n  tls: {result: broken}\n")
    assert err.where.endswith("after_association.tls.result")
    err = error_for(tmp_path, GOOD + "after_association:\n  dns: {delay_ms: -1}\n")
    assert err.where.endswith("after_association.dns.delay_ms")


def test_portal_needs_login_url(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD + "after_association:\n  captive_portal: {result: portal}\n")
    assert err.where.endswith("after_association.captive_portal.login_url")


def test_bad_dhcp_address(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD + "after_association:\n  dhcp: {dns: [1.2.3.4, 300.1.1.1]}\n")
    assert err.where.endswith("after_association.dhcp.dns[1]")


def test_duplicate_key(tmp_path: Path) -> None:
    err = error_for(tmp_path, GOOD + "min_rssi_dbm: -80\nmin_rssi_dbm: -70\n")
    assert "duplicate key 'min_rssi_dbm'" in err.problem
    assert err.where.endswith("x.yaml: line 10")  # the second one


def test_duplicate_bssid(tmp_path: Path) -> None:
    err = error_for(
        tmp_path,
        GOOD.replace("band: 2.4GHz,", 'bssid: "02:00:00:00:00:09", band: 2.4GHz,').replace(
            "band: 5GHz,", 'bssid: "02:00:00:00:00:09", band: 5GHz,'
        ),
    )
    assert err.where.endswith("access_points[1].bssid")


def test_not_a_mapping(tmp_path: Path) -> None:
    err = error_for(tmp_path, "- just\n- a list\n")
    assert err.problem == "must be a mapping"


def test_invalid_yaml(tmp_path: Path) -> None:
    err = error_for(tmp_path, "name: [unclosed\n")
    assert "not valid YAML" in err.problem


def test_ap_override_merges_field_by_field(tmp_path: Path) -> None:
    text = (
        GOOD.replace(
            'rssi: -60, security: wpa2-psk,\n     passphrase: "secret-passphrase"}',
            'rssi: -60, security: wpa2-psk,\n     passphrase: "secret-passphrase",\n'
            "     after_association: {tls: {result: expired}, dhcp: {result: timeout}}}",
        )
        + "after_association:\n  dhcp: {delay_ms: 700, ip: 10.0.0.9}\n  tls: {delay_ms: 40}\n"
    )
    scenario = load_scenario(write(tmp_path, text))
    plain, custom = scenario.access_points
    assert plain.after_association.dhcp.result == "ok"
    assert custom.after_association.dhcp.result == "timeout"
    assert custom.after_association.dhcp.delay_ms == 700  # inherited field
    assert custom.after_association.dhcp.ip == "10.0.0.9"
    assert (custom.after_association.tls.result, custom.after_association.tls.delay_ms) == (
        "expired",
        40,
    )
    assert plain.after_association.tls.result == "ok"


def test_typical_home_takes_two_to_four_seconds() -> None:
    """A full successful onboarding on typical-home is 2-4 s of simulated time."""
    scenario = load_scenario("typical-home")
    (sap,) = {sap.after_association for sap in scenario.bsses(scenario.default_credentials.ssid)}
    steps = sap
    total = scenario.scan_delay_ms + sum(
        getattr(steps, name).delay_ms
        for name in ("association", "dhcp", "dns", "captive_portal", "internet", "tls")
    )
    assert 2000 <= total <= 4000
    assert 300 <= steps.association.delay_ms <= 800
    assert 300 <= steps.dhcp.delay_ms <= 1500
    assert all(
        100 <= getattr(steps, n).delay_ms <= 400
        for n in ("dns", "captive_portal", "internet", "tls")
    )


def test_zero_delay_has_no_delays() -> None:
    scenario = load_scenario("zero-delay")
    assert scenario.scan_delay_ms == 0
    for sap in scenario.access_points:
        steps = sap.after_association
        assert all(
            getattr(steps, n).delay_ms == 0
            for n in ("association", "dhcp", "dns", "captive_portal", "internet", "tls")
        )


def test_a_file_loaded_again_is_parsed_again_only_when_it_changed(tmp_path: Path) -> None:
    """A fleet's devices share one parse of their world's file; a changed file (same size,
    same second) is read anew."""
    path = write(tmp_path, GOOD)
    first = load_scenario(path)
    assert load_scenario(path) is first
    write(tmp_path, GOOD.replace("channel: 6,", "channel: 7,"))
    changed = load_scenario(path)
    assert changed is not first
    assert changed.access_points[0].ap.channel == 7
