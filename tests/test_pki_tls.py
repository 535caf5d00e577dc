"""The TLS server CA in device_sim/pki.py (used by the simulated backend and the cloud emulator)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from device_sim import pki


def test_subject_alt_names_split_ips_from_names_and_skip_wildcards() -> None:
    sans = pki.subject_alt_names(
        ["localhost", "127.0.0.1", "", "0.0.0.0", "::", "::1", "localhost"]
    )
    assert sans == [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]


def test_issue_server_certificate() -> None:
    ca = pki.CertificateAuthority("test CA")
    assert ca.certificate.subject.rfc4514_string() == "CN=test CA"
    cert = x509.load_pem_x509_certificate(ca.issue("cloud.test", "192.0.2.1")[0])
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject.rfc4514_string() == "CN=cloud.test"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cloud.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30, hours=1)


def test_expired_and_without_host() -> None:
    ca = pki.CertificateAuthority("test CA")
    cert = x509.load_pem_x509_certificate(ca.issue("cloud.test", expired=True)[0])
    assert cert.not_valid_after_utc < dt.datetime.now(dt.UTC) - dt.timedelta(days=29)
    with pytest.raises(ValueError, match="at least one host"):
        ca.issue()


def test_load_round_trip(tmp_path: Path) -> None:
    made = pki.CertificateAuthority("persisted CA", organization=pki.ORGANIZATION)
    (tmp_path / "ca.pem").write_bytes(made.cert_pem)
    (tmp_path / "ca.key").write_bytes(made.key_pem)
    loaded = pki.CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert loaded.certificate == made.certificate
    cert = x509.load_pem_x509_certificate(
        loaded.issue("localhost", common_name="server", subject_key_id=False)[0]
    )
    cert.verify_directly_issued_by(made.certificate)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "ca.key").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="not an EC key"):
        pki.CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "ca.key")
