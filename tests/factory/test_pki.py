"""The factory CA and device certificates (device_sim/pki.py)."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from device_sim import pki
from device_sim.errors import ConfigError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_layout_keeps_root_key_apart_with_private_modes(tmp_path: Path) -> None:
    ca = pki.create_factory_ca(tmp_path / "f", "Acme")
    root_key, issuing_key = tmp_path / "f/root/root.key", tmp_path / "f/issuing/issuing.key"
    assert _mode(root_key) == 0o600 and _mode(issuing_key) == 0o600
    assert _mode(tmp_path / "f/root") == 0o700 and _mode(tmp_path / "f/issuing") == 0o700
    assert root_key.read_bytes() != issuing_key.read_bytes()
    assert not list((tmp_path / "f/issuing").glob("root*"))  # no root key beside the issuing
    chain = pki.load_certificates((tmp_path / "f/chain.pem").read_bytes())
    assert chain == [ca.issuing_cert, ca.root_cert]
    assert chain[1] == x509.load_pem_x509_certificate((tmp_path / "f/root/root.pem").read_bytes())

    root_bc = ca.root_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    issuing_bc = ca.issuing_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (root_bc.ca, root_bc.path_length) == (True, 1)
    assert (issuing_bc.ca, issuing_bc.path_length) == (True, 0)
    ku = ca.root_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    root_years = (ca.root_cert.not_valid_after_utc - ca.root_cert.not_valid_before_utc).days / 365
    issuing_years = (
        ca.issuing_cert.not_valid_after_utc - ca.issuing_cert.not_valid_before_utc
    ).days / 365
    assert round(root_years) == 20 and round(issuing_years) == 10
    root_public = ca.root_cert.public_key()
    assert isinstance(root_public, ec.EllipticCurvePublicKey)
    assert root_public.curve.name == "secp256r1"
    digest = ca.issuing_cert.signature_hash_algorithm
    assert digest is not None and digest.name == "sha256"


def test_issuer_loads_and_signs_with_the_root_offline(tmp_path: Path) -> None:
    pki.create_factory_ca(tmp_path / "f", "Acme")
    shutil.rmtree(tmp_path / "f/root")  # production: the root goes offline
    ca = pki.load_issuer(tmp_path / "f")
    key = pki.make_device_key()
    cert = ca.sign_csr(pki.make_csr(key, "00112233aabbccdd", "DS-25-000001"))
    pki.verify_chain(cert, (tmp_path / "f/chain.pem").read_bytes())
    keys = [v for v in vars(ca).values() if isinstance(v, ec.EllipticCurvePrivateKey)]
    assert len(keys) == 1 and pki.cert_matches_key(ca.issuing_cert, keys[0])  # never the root's
    assert "PRIVATE" not in repr(ca) and "Issuing CA" in repr(ca)


def test_refuses_to_overwrite_an_existing_ca(tmp_path: Path) -> None:
    pki.create_factory_ca(tmp_path / "f", "Acme")
    before = (tmp_path / "f/root/root.key").read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        pki.create_factory_ca(tmp_path / "f", "Acme")
    assert (tmp_path / "f/root/root.key").read_bytes() == before


def test_device_certificate_contents(tmp_path: Path) -> None:
    ca = pki.create_factory_ca(tmp_path / "f", "Acme")
    key = pki.make_device_key()
    cert = ca.sign_csr(pki.make_csr(key, "00112233aabbccdd", "DS-25-000042"))
    subject = {a.oid: a.value for a in cert.subject}
    assert subject == {
        NameOID.COMMON_NAME: "00112233aabbccdd",
        NameOID.SERIAL_NUMBER: "DS-25-000042",
        NameOID.ORGANIZATION_NAME: "device-sim",
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert cert.serial_number.bit_length() > 64
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.issuing_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_after_utc <= ca.issuing_cert.not_valid_after_utc
    assert pki.cert_matches_key(cert, key)
    assert not pki.cert_matches_key(cert, pki.make_device_key())
    assert pki.public_key_fingerprint(cert) == pki.public_key_fingerprint(key)
    assert pki.public_key_fingerprint(cert) != pki.fingerprint_sha256(cert)
    assert len(pki.fingerprint_sha256(cert)) == 64


def test_sign_csr_rejects_other_curves(tmp_path: Path) -> None:
    ca = pki.create_factory_ca(tmp_path / "f", "Acme")
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        ca.sign_csr(pki.make_csr(p384, "00112233aabbccdd", "DS-25-000001"))


def _flip_signature_byte(cert: x509.Certificate) -> x509.Certificate:
    der = bytearray(cert.public_bytes(pki.serialization.Encoding.DER))
    der[-8] ^= 0x01  # inside the ECDSA signature's integer bytes
    return x509.load_der_x509_certificate(bytes(der))


@pytest.fixture
def signed(tmp_path: Path) -> tuple[pki.FactoryCA, x509.Certificate]:
    ca = pki.create_factory_ca(tmp_path / "f", "Acme")
    return ca, ca.sign_csr(pki.make_csr(pki.make_device_key(), "00112233aabbccdd", "DS-25-000001"))


def test_verify_chain_accepts_pems_and_certificates(
    signed: tuple[pki.FactoryCA, x509.Certificate],
) -> None:
    ca, cert = signed
    pki.verify_chain(cert, ca.chain_pem())
    pki.verify_chain(cert, [pki.cert_pem(ca.issuing_cert), pki.cert_pem(ca.root_cert)])
    pki.verify_chain(cert, ca.chain)


def test_verify_chain_reasons(
    tmp_path: Path, signed: tuple[pki.FactoryCA, x509.Certificate]
) -> None:
    ca, cert = signed
    other = pki.create_factory_ca(tmp_path / "other", "Other")
    foreign = other.sign_csr(
        pki.make_csr(pki.make_device_key(), "00112233aabbccdd", "DS-25-000001")
    )
    with pytest.raises(ValueError, match="device certificate is not signed by"):
        pki.verify_chain(foreign, ca.chain)
    with pytest.raises(ValueError, match="device certificate is not signed by"):
        pki.verify_chain(_flip_signature_byte(cert), ca.chain)
    with pytest.raises(ValueError, match="issuing certificate is not signed by"):
        pki.verify_chain(cert, [ca.issuing_cert, other.root_cert])
    with pytest.raises(ValueError, match="expired"):
        pki.verify_chain(cert, ca.chain, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=4000))
    with pytest.raises(ValueError, match="not valid before"):
        pki.verify_chain(cert, ca.chain, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    with pytest.raises(ValueError, match=r"\[issuing, root\]"):
        pki.verify_chain(cert, [ca.issuing_cert])


def test_verify_chain_requires_client_auth(signed: tuple[pki.FactoryCA, x509.Certificate]) -> None:
    ca, cert = signed
    now = dt.datetime.now(dt.UTC)
    key = pki.make_device_key()
    no_eku = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(ca.issuing_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(ca._issuing_key, hashes.SHA256())
    )
    with pytest.raises(ValueError, match=r"ExtendedKeyUsage|extended key usage"):
        pki.verify_chain(no_eku, ca.chain)
