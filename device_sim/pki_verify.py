"""Checking certificates and keys: fingerprints, key pairs, and a device's chain to the factory.

:mod:`device_sim.pki` builds what is checked here and re-exports these names.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = [
    "cert_matches_key",
    "fingerprint_sha256",
    "load_certificates",
    "public_key_fingerprint",
    "verify_chain",
]

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle. Raises ValueError if there is none or one is bad."""
    certs = x509.load_pem_x509_certificates(data)
    if not certs:  # pragma: no cover - cryptography raises first
        raise ValueError("no certificate in the PEM data")
    return certs


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """The certificate's SHA-256 thumbprint (of its DER), lowercase hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def public_key_fingerprint(cert_or_key: x509.Certificate | PrivateKey | PublicKey) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex."""
    if isinstance(cert_or_key, x509.Certificate | ec.EllipticCurvePrivateKey):
        public = cert_or_key.public_key()
    else:
        public = cert_or_key
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def cert_matches_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    """True when ``key`` is the private half of ``cert``'s public key (compared and proven)."""
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    if public_key_fingerprint(public) != public_key_fingerprint(key):
        return False
    challenge = os.urandom(32)
    try:
        public.verify(
            key.sign(challenge, ec.ECDSA(hashes.SHA256())), challenge, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:  # pragma: no cover - a key whose public half was forged
        return False
    return True


def _check_signed_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    if cert.signature_hash_algorithm is None or cert.signature_hash_algorithm.name != "sha256":
        raise ValueError(f"{what} is not signed with SHA-256")
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ValueError(
            f"{what} is not signed by {issuer.subject.rfc4514_string()}: {exc or 'bad signature'}"
        ) from None


def _check_valid_at(cert: x509.Certificate, what: str, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise ValueError(f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise ValueError(f"{what} expired on {cert.not_valid_after_utc.isoformat()}")


def _check_ca(cert: x509.Certificate, what: str, max_path: int) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise ValueError(f"{what}: {exc}") from None
    if not bc.ca or (bc.path_length is not None and bc.path_length > max_path):
        raise ValueError(f"{what} is not a CA allowed to sign at this depth")
    if not ku.key_cert_sign:
        raise ValueError(f"{what} key usage lacks keyCertSign")


def _check_leaf(cert: x509.Certificate) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise ValueError(f"device certificate: {exc}") from None
    if bc.ca:
        raise ValueError("device certificate must not be a CA")
    if not ku.digital_signature:
        raise ValueError("device certificate key usage lacks digitalSignature")
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise ValueError("device certificate extended key usage lacks clientAuth")


def verify_chain(
    cert: x509.Certificate,
    chain_pems: bytes | Sequence[bytes | x509.Certificate],
    *,
    now: dt.datetime | None = None,
) -> None:
    """Check ``cert`` against ``[issuing, root]`` (a PEM bundle, PEMs or certificates).

    Checks the signatures (device by issuing, issuing by root, root by itself, all SHA-256),
    validity at ``now`` (default: the current time), CA constraints and key usages.

    Raises:
        ValueError: with the reason, for the first check that fails.
    """
    if isinstance(chain_pems, bytes):
        chain = load_certificates(chain_pems)
    else:
        chain = []
        for item in chain_pems:
            chain += [item] if isinstance(item, x509.Certificate) else load_certificates(item)
    if len(chain) != 2:
        raise ValueError(f"the chain must be [issuing, root], got {len(chain)} certificates")
    issuing, root = chain
    when = now or dt.datetime.now(dt.UTC)
    _check_signed_by(cert, issuing, "device certificate")
    _check_signed_by(issuing, root, "issuing certificate")
    _check_signed_by(root, root, "root certificate")
    for c, what in (
        (cert, "device certificate"),
        (issuing, "issuing certificate"),
        (root, "root certificate"),
    ):
        _check_valid_at(c, what, when)
    _check_ca(root, "root certificate", max_path=1)
    _check_ca(issuing, "issuing certificate", max_path=0)
    _check_leaf(cert)
