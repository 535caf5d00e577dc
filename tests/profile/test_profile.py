"""gatt_profile.yaml: validation, and that the code's enums never drift from it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from device_sim.codes import Code, MessageType, State
from device_sim.errors import ConfigError
from device_sim.profile import DEFAULT_PROFILE_PATH, enum_drift, load_profile, parse_profile

SRC = Path("gatt_profile.yaml")


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_PROFILE_PATH.read_text())


def test_shipped_profile_loads_and_matches_the_enums() -> None:
    profile = load_profile()
    assert enum_drift(profile) == []
    assert profile.advertising.service_uuid == profile.service.uuid
    assert set(profile.service.characteristics) >= {"request", "response", "state", "info"}


def test_every_code_has_the_texts_a_user_and_support_need() -> None:
    profile = load_profile()
    required = {
        "WRONG_CREDENTIALS",
        "NETWORK_NOT_FOUND",
        "ASSOCIATION_TIMEOUT",
        "NO_DHCP_LEASE",
        "DNS_FAILURE",
        "CAPTIVE_PORTAL",
        "NO_INTERNET",
        "TLS_VERIFICATION_FAILED",
        "CLOUD_ACTIVATION_REJECTED",
        "WRONG_SETUP_CODE",
        "TOO_MANY_ATTEMPTS",
        "MALFORMED_REQUEST",
        "MESSAGE_TOO_LARGE",
        "REPLAYED_MESSAGE",
        "CLIENT_TIMEOUT",
        "BUSY",
        "INTERNAL_ERROR",
    }
    assert required <= set(profile.codes)
    for entry in profile.codes.values():
        assert entry.user_message and entry.next_step and entry.support_question
        assert "something went wrong" not in entry.user_message.lower()


def test_drift_is_detected_in_each_direction(raw: dict) -> None:
    data = copy.deepcopy(raw)
    data["codes"]["BUSY"]["id"] = 399
    del data["codes"]["UNSUPPORTED_VERSION"]
    data["codes"]["NEW_THING"] = dict(raw["codes"]["OK"], id=4242)
    data["messages"]["ACK"]["id"] = 0x77
    problems = enum_drift(parse_profile(data, SRC))
    assert "codes.BUSY: profile says 399, codes.py says 307" in problems
    assert "codes.UNSUPPORTED_VERSION is in codes.py but not in the profile" in problems
    assert "codes.NEW_THING is in the profile but not in codes.py" in problems
    assert any(p.startswith("messages.ACK") for p in problems)


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda d: d["codes"]["BUSY"].update(idd=3), "codes.BUSY.idd"),
        (lambda d: d["codes"]["BUSY"].update(id="x"), "codes.BUSY.id"),
        (lambda d: d["codes"]["BUSY"].update(id=101), "codes.BUSY.id"),
        (lambda d: d["codes"]["BUSY"].pop("next_step"), "codes.BUSY.next_step"),
        (
            lambda d: d["service"]["characteristics"]["state"].update(uuid="nope"),
            "service.characteristics.state.uuid",
        ),
        (
            lambda d: d["service"]["characteristics"]["state"].update(properties=["read", "shout"]),
            "service.characteristics.state.properties[1]",
        ),
        (
            lambda d: d["service"]["characteristics"]["request"].update(max_length=600),
            "service.characteristics.request.max_length",
        ),
        (
            lambda d: d["states"]["joining"].update(timeout_code="NOPE"),
            "states.joining.timeout_code",
        ),
        (
            lambda d: d["softap"]["http"]["status_for_code"].update(NOPE=400),
            "softap.http.status_for_code.NOPE",
        ),
        (
            lambda d: d["softap"]["http"]["status_for_code"].update(BUSY=200),
            "softap.http.status_for_code.BUSY",
        ),
        (
            lambda d: d["softap"]["http"]["endpoints"][0].update(listeners=["moon"]),
            "softap.http.endpoints[0].listeners",
        ),
        (lambda d: d["softap"]["probes"][0].update(colour="red"), "softap.probes[0].colour"),
        (lambda d: d["softap"].update(passphrase_length=7), "softap.passphrase_length"),
        (lambda d: d["softap"].update(ssid_pattern="DS"), "softap.ssid_pattern"),
        (
            lambda d: d["states"]["joining"].update(recover_to="nowhere"),
            "states.joining.recover_to",
        ),
        (lambda d: d["framing"].update(max_message_length=70000), "framing.max_message_length"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_bad_profiles_name_the_place(raw: dict, mutate, where: str) -> None:
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_profile(data, SRC)
    assert info.value.where == f"gatt_profile.yaml: {where}"


def test_lookup_by_number_name_and_enum() -> None:
    profile = load_profile()
    assert profile.code(Code.BUSY).name == "BUSY"
    assert profile.code(307).name == "BUSY"
    assert profile.state(State.JOINING).timeout_code == "ASSOCIATION_TIMEOUT"
    assert profile.messages["SECURE"].id == MessageType.SECURE
    with pytest.raises(KeyError):
        profile.code(4242)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("codes: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_profile(bad)
