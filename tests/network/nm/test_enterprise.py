"""Enterprise (802.1X) joins through the NetworkManager mock: the exact ``802-1x`` settings for
PEAP, TTLS and EAP-TLS, the certificate files (0600, removed with their profile), and how
NetworkManager's failure reasons map to the EAP codes."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from device_sim.codes import Code
from device_sim.errors import NetworkError
from device_sim.network.base import Security
from device_sim.network.eap import EapMethod, EapSettings, Phase2
from device_sim.network.nm import mapping
from device_sim.network.nm.backend import NetworkManagerBackend
from device_sim.network.nm.defs import DeviceState as S
from device_sim.network.nm.defs import DeviceStateReason as R
from device_sim.network.radius import world_pki
from device_sim.security.secret import Secret
from device_sim.testing.nm_mock import NMMock

from .conftest import MakeBackend

PASSWORD = "hunter2-enterprise"
# The 802-1x and 802-11-wireless-security properties this backend writes, as NetworkManager's
# settings manual (nm-settings-dbus(5), "802-1x setting") names and types them.
DOCUMENTED_8021X = {
    "eap": "as",
    "identity": "s",
    "anonymous-identity": "s",
    "password": "s",
    "phase2-auth": "s",
    "ca-cert": "ay",
    "system-ca-certs": "b",
    "domain-suffix-match": "s",
    "client-cert": "ay",
    "private-key": "ay",
    "private-key-password-flags": "u",
}
DOCUMENTED_SECURITY = {"key-mgmt": "s", "psk": "s"}
KEY_MGMTS = {"none", "ieee8021x", "wpa-psk", "sae", "owe", "wpa-eap", "wpa-eap-suite-b-192"}


def peap(**changes: Any) -> EapSettings:
    base = EapSettings(
        EapMethod.PEAP,
        "alice@corp.example",
        anonymous_identity="anonymous@corp.example",
        password=Secret(PASSWORD),
        phase2=Phase2.MSCHAPV2,
        ca_cert=world_pki().ca_pem("world"),
        domain="corp.example",
    )
    return EapSettings(**{**base.__dict__, **changes})


def tls() -> EapSettings:
    cert, key = world_pki().client("sensor-0042@devices.corp.example")
    return EapSettings(
        EapMethod.TLS,
        "sensor-0042@devices.corp.example",
        ca_cert=world_pki().ca_pem("world"),
        domain="corp.example",
        client_cert=cert,
        private_key=Secret(key.decode()),
    )


@pytest.fixture
async def corp(nm: NMMock, wifi: str) -> str:
    await nm.add_access_point(
        wifi, "corp", b"Corp", bssid="02:00:00:00:00:0e", strength=70, security=Security.ENTERPRISE
    )
    return wifi


@pytest.fixture
async def backend(corp: str, make_backend: MakeBackend, tmp_path: Path) -> NetworkManagerBackend:
    return await make_backend(cert_dir=tmp_path / "nm-certs")


def _path(value: bytes) -> Path:
    assert value.startswith(b"file://") and value.endswith(b"\0"), value
    return Path(value[len(b"file://") : -1].decode())


async def _joined(nm: NMMock, eap: EapSettings, backend: NetworkManagerBackend) -> dict[str, Any]:
    await nm.on_activate("activated", need_auth=True)
    await backend.join(b"Corp", None, eap=eap)
    [path] = await nm.connections()
    return await nm.connection(path)


async def test_peap_settings(nm: NMMock, backend: NetworkManagerBackend, tmp_path: Path) -> None:
    conn = await _joined(nm, peap(), backend)
    settings = conn["settings"]
    assert settings["802-11-wireless-security"] == {"key-mgmt": "wpa-eap"}
    eap = settings["802-1x"]
    ca = _path(eap.pop("ca-cert"))
    assert eap == {
        "eap": ["peap"],
        "identity": "alice@corp.example",
        "anonymous-identity": "anonymous@corp.example",
        "phase2-auth": "mschapv2",
        "domain-suffix-match": "corp.example",
    }
    assert conn["eap_secrets"] == {"password": PASSWORD}  # a secret: not in GetSettings
    assert ca.read_bytes() == world_pki().ca_pem("world")
    assert stat.S_IMODE(ca.stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.parent.stat().st_mode) == 0o700
    assert ca.parent.parent == tmp_path / "nm-certs"
    assert ca.parent.name == settings["connection"]["uuid"]  # one folder per profile


async def test_ttls_pap_with_a_domain_only(nm: NMMock, backend: NetworkManagerBackend) -> None:
    conn = await _joined(nm, peap(method=EapMethod.TTLS, phase2=Phase2.PAP, ca_cert=None), backend)
    eap = conn["settings"]["802-1x"]
    assert eap["eap"] == ["ttls"] and eap["phase2-auth"] == "pap"
    assert eap["system-ca-certs"] is True and "ca-cert" not in eap  # the system store checks it
    assert eap["domain-suffix-match"] == "corp.example"


async def test_eap_tls_settings_and_key_file(nm: NMMock, backend: NetworkManagerBackend) -> None:
    settings = tls()
    conn = await _joined(nm, settings, backend)
    eap = conn["settings"]["802-1x"]
    files = {k: _path(eap[k]) for k in ("ca-cert", "client-cert", "private-key")}
    assert eap["eap"] == ["tls"] and eap["identity"] == settings.identity
    assert eap["private-key-password-flags"] == 4  # not required: the key file is not encrypted
    assert "password" not in eap and "phase2-auth" not in eap
    assert conn["eap_secrets"] == {}
    assert files["client-cert"].read_bytes() == settings.client_cert
    assert settings.private_key is not None
    assert files["private-key"].read_text() == settings.private_key.reveal()
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("eap", [peap(), tls()], ids=["peap", "tls"])
async def test_every_name_written_is_networkmanagers(eap: EapSettings, tmp_path: Path) -> None:
    uuid = "5f1e0c7a-0000-4000-8000-000000000001"
    files = {name: tmp_path / file for name, file in mapping.EAP_FILES.items()}
    settings = mapping.station_settings(b"Corp", None, "wpa-eap", uuid=uuid, eap=eap, files=files)
    for group, documented in (
        ("802-1x", DOCUMENTED_8021X),
        ("802-11-wireless-security", DOCUMENTED_SECURITY),
    ):
        for key, value in settings[group].items():
            assert documented.get(key) == value.signature, (group, key, value.signature)
    assert settings["802-11-wireless-security"]["key-mgmt"].value in KEY_MGMTS
    # and a hidden SAE network, an OWE one (the other key managements this issue added)
    for key_mgmt in ("sae", "owe"):
        other = mapping.station_settings(b"Quiet", "sae-only-please", key_mgmt, hidden=True)
        assert other["802-11-wireless-security"]["key-mgmt"].value in KEY_MGMTS


@pytest.mark.parametrize(
    ("reason", "code", "says"),
    [
        (R.NO_SECRETS, Code.EAP_CREDENTIALS_REJECTED, "reports these alike"),
        (R.SUPPLICANT_DISCONNECT, Code.EAP_CREDENTIALS_REJECTED, "server's certificate"),
        (R.SUPPLICANT_CONFIG_FAILED, Code.EAP_SETTINGS_INVALID, "certificate file"),
        (R.SUPPLICANT_TIMEOUT, Code.ASSOCIATION_TIMEOUT, "in time"),
    ],
)
async def test_networkmanagers_reasons_become_eap_codes(
    nm: NMMock, backend: NetworkManagerBackend, tmp_path: Path, reason: R, code: Code, says: str
) -> None:
    fail_in = S.NEED_AUTH if reason != R.SUPPLICANT_CONFIG_FAILED else S.CONFIG
    await nm.on_activate(("failed", reason), fail_in=fail_in, need_auth=fail_in == S.NEED_AUTH)
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Corp", None, eap=peap())
    assert caught.value.code is code and says in caught.value.detail
    assert PASSWORD not in str(caught.value) + repr(caught.value.raw)
    assert caught.value.raw["nm_reason_value"] == int(reason)
    assert await nm.connections() == []  # the failed profile is deleted ...
    assert list((tmp_path / "nm-certs").iterdir()) == []  # ... and its certificate files


async def test_a_reset_deletes_the_certificate_files(
    nm: NMMock, backend: NetworkManagerBackend, tmp_path: Path
) -> None:
    await nm.on_activate("activated")
    await backend.join(b"Corp", None, eap=tls())
    await backend.keep_networks([b"Corp"])  # saved: its files stay while the profile does
    [folder] = (tmp_path / "nm-certs").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "client.key", "client.pem"]
    await backend.forget_all()
    assert list((tmp_path / "nm-certs").iterdir()) == []


async def test_leftover_folders_of_a_killed_run_are_removed_at_start(
    corp: str, make_backend: MakeBackend, tmp_path: Path
) -> None:
    left = tmp_path / "nm-certs" / "0b4c3d1e-dead-4bee-8000-000000000000"
    left.mkdir(parents=True)
    (left / "client.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    await make_backend(cert_dir=tmp_path / "nm-certs")
    assert not left.exists()


async def test_enterprise_without_eap_settings_and_eap_for_a_psk_network(
    nm: NMMock, backend: NetworkManagerBackend
) -> None:
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Corp", PASSWORD)  # Improv and ESP: no field for the sign-in
    assert caught.value.code is Code.UNSUPPORTED_SECURITY
    assert "without EAP settings" in caught.value.detail
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Home", None, eap=peap())
    assert caught.value.code is Code.SECURITY_MISMATCH
    assert await nm.connections() == []


async def test_no_folder_for_certificates_is_an_internal_error(
    nm: NMMock, corp: str, make_backend: MakeBackend
) -> None:
    backend = await make_backend()  # no cert_dir
    with pytest.raises(NetworkError) as caught:
        await backend.join(b"Corp", None, eap=peap())
    assert caught.value.code is Code.INTERNAL_ERROR and "cert_dir" in caught.value.detail
