"""Enterprise sign-ins: what the device refuses before a join (EAP_SETTINGS_INVALID), and the
simulated world's RADIUS answers, each its own code, played on the shipped enterprise world."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from device_sim.codes import Code
from device_sim.errors import NetworkError
from device_sim.network.eap import EapMethod, EapSettings, Phase2, check_eap, eap_from_json
from device_sim.network.radius import eap_settings, world_pki
from device_sim.network.scenario import load_scenario, parse_scenario
from device_sim.network.simulated import SimulatedBackend
from device_sim.security.secret import Secret

from .recorder import Recorder

PASSWORD = "hunter2-enterprise"
PKI = world_pki()


def peap(**changes: Any) -> EapSettings:
    return replace(
        EapSettings(
            EapMethod.PEAP,
            "alice@corp.example",
            password=Secret(PASSWORD),
            ca_cert=PKI.ca_pem("world"),
            domain="corp.example",
        ),
        **changes,
    )


def tls(identity: str = "sensor-0042@devices.corp.example", **changes: Any) -> EapSettings:
    cert, key = PKI.client(identity)
    return replace(
        EapSettings(
            EapMethod.TLS,
            identity,
            ca_cert=PKI.ca_pem("world"),
            client_cert=cert,
            private_key=Secret(key.decode()),
        ),
        **changes,
    )


def _other_key() -> Secret:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Secret(pem.decode())


def _encrypted_key() -> Secret:
    key = serialization.load_pem_private_key(PKI.client("x")[1], None)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-password"),
    )
    return Secret(pem.decode())


@pytest.mark.parametrize(
    ("eap", "says"),
    [
        (peap(password=None), "needs the account's password"),
        (peap(phase2=Phase2.PAP), "PEAP takes phase 2 mschapv2"),
        (peap(ca_cert=None, domain=None), "neither a CA certificate nor a server domain"),
        (peap(ca_cert=b"-----BEGIN CERTIFICATE-----\nnot base64\n"), "ca_cert: not a PEM"),
        (peap(identity=""), "identity: 1 to 253"),
        (peap(domain=".corp.example"), "no leading dot"),
        (peap(client_cert=PKI.client("x")[0]), "with a password, not a client certificate"),
        (tls(password=Secret(PASSWORD)), "no password, no phase 2"),
        (tls(private_key=None), "needs a client certificate and its private key"),
        (tls(private_key=_other_key()), "not the client certificate's key"),
        (tls(private_key=_encrypted_key()), "it is encrypted"),
        (tls(private_key=Secret("-----BEGIN PRIVATE KEY-----\nAAAA\n")), "not a PEM private key"),
        (tls(ca_cert=b"x" * 20_000), "more than 16384"),
    ],
)
def test_settings_no_server_could_accept(eap: EapSettings, says: str) -> None:
    with pytest.raises(NetworkError) as caught:
        check_eap(eap)
    assert caught.value.code is Code.EAP_SETTINGS_INVALID
    assert says in caught.value.detail
    assert PASSWORD not in caught.value.detail


def test_phase2_defaults_and_what_may_be_shown() -> None:
    checked = check_eap(peap())
    assert checked.phase2 is Phase2.MSCHAPV2  # PEAP's only inner method
    assert check_eap(peap(method=EapMethod.TTLS)).phase2 is Phase2.PAP
    shown = repr(checked) + str(checked.public())
    assert PASSWORD not in shown and "alice" not in str(checked.public())
    assert checked.public()["ca_sha256"] and checked.public()["method"] == "peap"
    device = tls()
    assert device.private_key is not None
    assert device.private_key.reveal() not in repr(device) + str(device.public())
    assert eap_from_json(device.to_json()) == device  # the store's record, round trip
    assert eap_from_json(checked.to_json()) == checked


CORP = load_scenario("enterprise-peap")
FLOOR = load_scenario("enterprise-tls")


@pytest.mark.parametrize(
    ("scenario", "ssid", "eap", "code"),
    [
        (CORP, b"Corp", peap(), Code.OK),
        (CORP, b"Corp", peap(method=EapMethod.TTLS, phase2=Phase2.MSCHAPV2), Code.OK),
        (CORP, b"Corp", peap(password=Secret("not-the-password")), Code.EAP_CREDENTIALS_REJECTED),
        (CORP, b"Corp", peap(identity="mallory@corp.example"), Code.EAP_IDENTITY_UNKNOWN),
        (CORP, b"Corp", peap(ca_cert=PKI.ca_pem("other")), Code.EAP_SERVER_UNTRUSTED),
        (CORP, b"Corp", peap(domain="other.example"), Code.EAP_SERVER_NAME_MISMATCH),
        (CORP, b"Corp", peap(domain="example"), Code.OK),  # a whole-label suffix
        (CORP, b"Corp", peap(domain="rp.example"), Code.EAP_SERVER_NAME_MISMATCH),  # not one
        (CORP, b"Corp", peap(ca_cert=None), Code.EAP_SERVER_UNTRUSTED),  # a private CA
        (CORP, b"Corp-Public", peap(ca_cert=None), Code.OK),  # a public CA: a domain checks it
        (CORP, b"Corp-Legacy", peap(), Code.EAP_SERVER_UNTRUSTED),
        (CORP, b"Corp", tls("alice@corp.example"), Code.EAP_METHOD_REFUSED),
        (FLOOR, b"Floor-Devices", tls(), Code.OK),
        (FLOOR, b"Floor-Devices", peap(), Code.EAP_METHOD_REFUSED),
        (
            FLOOR,
            b"Floor-Devices",
            tls("sensor-9999@devices.corp.example"),
            Code.EAP_IDENTITY_UNKNOWN,
        ),
        (
            FLOOR,
            b"Floor-Devices",
            tls(client_cert=PKI.client("sensor-0042@devices.corp.example", expired=True)[0]),
            Code.EAP_CLIENT_CERT_EXPIRED,
        ),
    ],
)
async def test_the_worlds_radius_answers(
    scenario: Any, ssid: bytes, eap: EapSettings, code: Code
) -> None:
    seen = Recorder()
    async with SimulatedBackend(scenario, zero_delay=True) as backend:
        try:
            await backend.join(ssid, None, eap=check_eap(eap), on_phase=seen)
            got = Code.OK
        except NetworkError as exc:
            got = exc.code
            assert PASSWORD not in exc.detail + repr(exc.raw)
    assert got is code
    [auth] = [d for phase, d in seen.calls if phase == "authenticating"]
    assert auth["key_mgmt"] == "wpa-eap" and auth["eap"]["method"] == str(eap.method)
    assert PASSWORD not in repr(seen.calls)


async def test_a_client_certificate_from_another_ca_is_rejected() -> None:
    """A certificate the server's CA did not issue (with its own key, so the device's check
    that the key is the certificate's passes): the server rejects it."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-0042@devices.corp.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    eap = tls(
        client_cert=cert.public_bytes(serialization.Encoding.PEM),
        private_key=Secret(pem_key.decode()),
    )
    async with SimulatedBackend(FLOOR, zero_delay=True) as backend:
        with pytest.raises(NetworkError) as caught:
            await backend.join(b"Floor-Devices", None, eap=check_eap(eap))
    assert caught.value.code is Code.EAP_CREDENTIALS_REJECTED


async def test_enterprise_needs_its_settings_and_they_fit_only_enterprise() -> None:
    async with SimulatedBackend(CORP, zero_delay=True) as backend:
        with pytest.raises(NetworkError) as caught:
            await backend.join(b"Corp", PASSWORD)  # as through Improv or ESP
        assert caught.value.code is Code.UNSUPPORTED_SECURITY
        with pytest.raises(NetworkError) as caught:
            await backend.join(b"Corp-Guest", None, eap=check_eap(peap()))
        assert caught.value.code is Code.SECURITY_MISMATCH


async def test_a_hidden_enterprise_network_is_joined_with_its_settings() -> None:
    world = parse_scenario(
        {
            "name": "hidden-corp",
            "description": "x",
            "default_credentials": {"ssid": "Hidden-Corp", "hidden": True},
            "access_points": [
                {
                    "ssid": "Hidden-Corp",
                    "hidden": True,
                    "security": "enterprise",
                    "eap": {
                        "methods": ["peap"],
                        "accounts": [{"identity": "alice@corp.example", "password": PASSWORD}],
                    },
                }
            ],
        },
        "inline",
    )
    async with SimulatedBackend(world, zero_delay=True) as backend:
        scanned = await backend.scan()
        assert [(ap.ssid, ap.security) for ap in scanned] == [(b"", "enterprise")]
        result = await backend.join(b"Hidden-Corp", None, hidden=True, eap=check_eap(peap()))
    assert result.ssid == b"Hidden-Corp"


@pytest.mark.parametrize(
    ("ap", "creds", "problem"),
    [
        (
            {"security": "wpa2-psk", "passphrase": "pass-1234", "eap": {"methods": ["peap"]}},
            {},
            "only an enterprise BSS has an authentication server",
        ),
        (
            {"security": "enterprise"},
            {"eap": {"method": "tls", "identity": "a"}},
            "EAP-TLS, and only EAP-TLS, has one",
        ),
        (
            {"security": "enterprise"},
            {
                "passphrase": "pass-1234",
                "eap": {"method": "peap", "identity": "a", "password": "p"},
            },
            "an enterprise sign-in takes none",
        ),
        ({"security": "enterprise", "eap": {"methods": ["leap"]}}, {}, "not 'leap'"),
        ({"security": "enterprise", "eap": {"methods": ["peap"], "issuer": "me"}}, {}, "issuer"),
    ],
)
def test_scenario_files_with_enterprise_mistakes(
    ap: dict[str, Any], creds: dict[str, Any], problem: str
) -> None:
    from device_sim.errors import ConfigErrors

    with pytest.raises(ConfigErrors) as caught:
        parse_scenario(
            {
                "name": "x",
                "description": "x",
                "default_credentials": {"ssid": "Corp", **creds},
                "access_points": [{"ssid": "Corp", **ap}],
            },
            "inline",
        )
    assert problem in str(caught.value)


def test_the_scenarios_sign_in_becomes_real_files() -> None:
    recipe = FLOOR.default_credentials.eap
    assert recipe is not None and recipe.client_cert == "valid"
    eap = check_eap(eap_settings(recipe))  # a certificate and its own key, from the world's CA
    assert eap.client_cert is not None and b"BEGIN CERTIFICATE" in eap.client_cert
    assert world_pki().ca_pem("world") == eap.ca_cert
