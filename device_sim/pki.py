"""Small X.509 helpers for the factory: a two-tier CA and device certificates (P-256, SHA-256).

Layout of a factory CA directory (see :func:`create_factory_ca`)::

    root/root.key        0600  the root's private key: only ever used to sign the issuing CA
    root/root.pem              self-signed root certificate (CA, pathlen 1, 20 years)
    issuing/issuing.key  0600  the issuing CA's key: signs every device certificate
    issuing/issuing.pem        issuing certificate, signed by the root (CA, pathlen 0, 10 years)
    chain.pem                  issuing then root: what devices carry and verifiers pin

Issuing units needs only ``issuing/`` and ``chain.pem`` (:func:`load_issuer` never reads the root
key). In production ``root/`` goes offline (or into an HSM) right after :func:`create_factory_ca`;
the root certificate stays available in ``chain.pem``. Keys are written as unencrypted PKCS#8 PEM
with mode 0600; a real line keeps them in an HSM or under a passphrase.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ConfigError

ROOT_DIR = "root"
ISSUING_DIR = "issuing"
ROOT_KEY, ROOT_CERT = "root.key", "root.pem"
ISSUING_KEY, ISSUING_CERT = "issuing.key", "issuing.pem"
CHAIN = "chain.pem"
ORGANIZATION = "device-sim"
ROOT_DAYS = 20 * 365 + 5
ISSUING_DAYS = 10 * 365 + 2
DEVICE_DAYS = 3650
_BACKDATE = dt.timedelta(minutes=5)  # tolerate a device clock slightly behind the line's

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_device_key() -> PrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, *extra: x509.NameAttribute) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name), *extra])


def _ca_cert(subject: x509.Name, key: PrivateKey, issuer: x509.Name, issuer_key: PrivateKey,
             *, path_length: int, days: int, aki_from: PublicKey) -> x509.Certificate:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(aki_from),
                       critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass(frozen=True, repr=False)
class FactoryCA:
    """The issuing CA as the line uses it: its key and certificate, and the chain to the root.

    ``chain`` is ``[issuing, root]``. The root's private key is never part of this object.
    """

    directory: Path
    issuing_cert: x509.Certificate
    root_cert: x509.Certificate
    _issuing_key: PrivateKey = field(compare=False)

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.issuing_cert, self.root_cert]

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def sign_csr(self, csr: x509.CertificateSigningRequest, *,
                 valid_days: int = DEVICE_DAYS) -> x509.Certificate:
        """A device certificate for ``csr``'s subject and key (clientAuth, digitalSignature).

        Only the CSR's subject and public key are used; requested extensions are ignored. The
        validity ends no later than the issuing certificate's.

        Raises:
            ValueError: the CSR's signature is invalid, its key is not P-256, or
                ``valid_days`` < 1.
        """
        if valid_days < 1:
            raise ValueError("valid_days must be at least 1")
        if not csr.is_signature_valid:
            raise ValueError("the CSR's self-signature is invalid")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("device keys must be P-256 (secp256r1)")
        now = _now()
        not_after = min(now + dt.timedelta(days=valid_days),
                        self.issuing_cert.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            .subject_name(csr.subject).issuer_name(self.issuing_cert.subject).public_key(key)
            .serial_number(x509.random_serial_number())  # 159 random bits
            .not_valid_before(now - _BACKDATE).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._issuing_key.public_key()), critical=False)
            .sign(self._issuing_key, hashes.SHA256())
        )

    def __repr__(self) -> str:
        return (f"FactoryCA(directory={str(self.directory)!r}, "
                f"issuing={self.issuing_cert.subject.rfc4514_string()!r})")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def key_pem(key: PrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM (write it with mode 0600)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def create_factory_ca(directory: str | os.PathLike[str], name: str) -> FactoryCA:
    """Create a root and an issuing CA in ``directory`` (layout in the module docstring).

    Raises:
        ConfigError: ``directory`` already holds (part of) a CA, or ``name`` is empty.
        OSError: the files cannot be written.
    """
    base = Path(directory)
    if not name.strip():
        raise ConfigError("--name", "the CA name must not be empty")
    for existing in (base / ROOT_DIR, base / ISSUING_DIR, base / CHAIN):
        if existing.exists():
            raise ConfigError(str(existing), "a factory CA already exists here; refusing to "
                              "overwrite it")
    base.mkdir(parents=True, exist_ok=True)
    (base / ROOT_DIR).mkdir(mode=0o700)
    (base / ISSUING_DIR).mkdir(mode=0o700)
    root_key, issuing_key = make_device_key(), make_device_key()
    root_name = _name(f"{name} Root CA")
    root = _ca_cert(root_name, root_key, root_name, root_key, path_length=1, days=ROOT_DAYS,
                    aki_from=root_key.public_key())
    issuing = _ca_cert(_name(f"{name} Issuing CA"), issuing_key, root_name, root_key,
                       path_length=0, days=ISSUING_DAYS, aki_from=root_key.public_key())
    _write_private(base / ROOT_DIR / ROOT_KEY, key_pem(root_key))
    (base / ROOT_DIR / ROOT_CERT).write_bytes(cert_pem(root))
    _write_private(base / ISSUING_DIR / ISSUING_KEY, key_pem(issuing_key))
    (base / ISSUING_DIR / ISSUING_CERT).write_bytes(cert_pem(issuing))
    ca = FactoryCA(base, issuing, root, issuing_key)
    (base / CHAIN).write_bytes(ca.chain_pem())
    return ca


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle. Raises ValueError if there is none or one is bad."""
    certs = x509.load_pem_x509_certificates(data)
    if not certs:  # pragma: no cover - cryptography raises first
        raise ValueError("no certificate in the PEM data")
    return certs


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """A P-256 key from an unencrypted PEM file. Raises OSError, ValueError (not P-256 / bad)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: not a P-256 private key")
    return key


def load_issuer(directory: str | os.PathLike[str]) -> FactoryCA:
    """The issuing CA of ``directory`` (``issuing/`` and ``chain.pem``; never the root key).

    Raises:
        ConfigError: a file is missing or unreadable, or the issuing key does not match its
            certificate, or ``chain.pem`` is not [issuing, root].
    """
    base = Path(directory)
    try:
        key = load_private_key(base / ISSUING_DIR / ISSUING_KEY)
        issuing = x509.load_pem_x509_certificate((base / ISSUING_DIR / ISSUING_CERT).read_bytes())
        chain = load_certificates((base / CHAIN).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(base), f"not a usable factory CA: {exc}") from None
    if not cert_matches_key(issuing, key):
        raise ConfigError(str(base / ISSUING_DIR), "issuing key does not match issuing.pem")
    if len(chain) != 2 or chain[0] != issuing:
        raise ConfigError(str(base / CHAIN), "must hold the issuing then the root certificate")
    return FactoryCA(base, issuing, chain[1], key)


def make_csr(key: PrivateKey, device_id: str, serial: str) -> x509.CertificateSigningRequest:
    """A CSR with subject ``O=device-sim, CN=<device_id>, serialNumber=<serial>``, signed by key."""
    subject = _name(device_id, x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """The certificate's SHA-256 thumbprint (of its DER), lowercase hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def public_key_fingerprint(cert_or_key: x509.Certificate | PrivateKey | PublicKey) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex."""
    if isinstance(cert_or_key, x509.Certificate):
        public = cert_or_key.public_key()
    elif isinstance(cert_or_key, ec.EllipticCurvePrivateKey):
        public = cert_or_key.public_key()
    else:
        public = cert_or_key
    spki = public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
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
        public.verify(key.sign(challenge, ec.ECDSA(hashes.SHA256())), challenge,
                      ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:  # pragma: no cover - a key whose public half was forged
        return False
    return True


def _check_signed_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    if cert.signature_hash_algorithm is None or cert.signature_hash_algorithm.name != "sha256":
        raise ValueError(f"{what} is not signed with SHA-256")
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ValueError(f"{what} is not signed by {issuer.subject.rfc4514_string()}: "
                         f"{exc or 'bad signature'}") from None


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


def verify_chain(cert: x509.Certificate,
                 chain_pems: bytes | Sequence[bytes | x509.Certificate],
                 *, now: dt.datetime | None = None) -> None:
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
    when = now or _now()
    _check_signed_by(cert, issuing, "device certificate")
    _check_signed_by(issuing, root, "issuing certificate")
    _check_signed_by(root, root, "root certificate")
    for c, what in ((cert, "device certificate"), (issuing, "issuing certificate"),
                    (root, "root certificate")):
        _check_valid_at(c, what, when)
    _check_ca(root, "root certificate", max_path=1)
    _check_ca(issuing, "issuing certificate", max_path=0)
    _check_leaf(cert)
