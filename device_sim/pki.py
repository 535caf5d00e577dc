"""Every X.509 key, name, extension and certificate device-sim makes (P-256, SHA-256).

Two kinds of CA are built here:

* the factory's two-tier CA (:func:`create_factory_ca`, :class:`FactoryCA`), which signs device
  certificates (clientAuth) and is checked by :func:`verify_chain`;
* :class:`CertificateAuthority`, a one-tier CA for TLS servers (serverAuth, DNS and IP SANs): held
  in memory by the simulated network backend, and persisted by the cloud emulator
  (:mod:`device_sim.apps.cloud.tls`), which also writes its files.

Checking (fingerprints, key pairs, :func:`verify_chain`) lives in :mod:`device_sim.pki_verify`;
the names are re-exported here.

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
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ConfigError
from .pki_verify import (
    cert_matches_key,
    fingerprint_sha256,
    load_certificates,
    public_key_fingerprint,
    verify_chain,
)

__all__ = [
    "CHAIN",
    "ISSUING_DIR",
    "ORGANIZATION",
    "ROOT_DIR",
    "CertificateAuthority",
    "FactoryCA",
    "cert_matches_key",
    "cert_pem",
    "create_factory_ca",
    "fingerprint_sha256",
    "key_pem",
    "load_certificates",
    "load_issuer",
    "load_private_key",
    "make_csr",
    "make_device_key",
    "make_key",
    "public_key_fingerprint",
    "subject_alt_names",
    "verify_chain",
]

ROOT_DIR = "root"
ISSUING_DIR = "issuing"
ROOT_KEY, ROOT_CERT = "root.key", "root.pem"
ISSUING_KEY, ISSUING_CERT = "issuing.key", "issuing.pem"
CHAIN = "chain.pem"
ORGANIZATION = "device-sim"
ROOT_DAYS = 20 * 365 + 5
ISSUING_DAYS = 10 * 365 + 2
DEVICE_DAYS = 3650
TLS_CA_DAYS = 3650
TLS_SERVER_DAYS = 30
_BACKDATE = dt.timedelta(minutes=5)  # tolerate a device clock slightly behind the line's
_SERVER_BACKDATE = dt.timedelta(hours=1)
_EXPIRED = (dt.timedelta(days=60), dt.timedelta(days=30))  # expired: from 60 until 30 days ago
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # listen addresses no client connects to

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- keys, names, extensions ----------------------------------------------------------------------


def make_key() -> PrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


make_device_key = make_key  # the factory's name for it


def _name(
    common_name: str, *extra: x509.NameAttribute, organization: str | None = ORGANIZATION
) -> x509.Name:
    org = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
    return x509.Name([*org, x509.NameAttribute(NameOID.COMMON_NAME, common_name), *extra])


def _key_usage(*, digital_signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def subject_alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """SANs for ``hosts`` in order, without duplicates: IP SANs for addresses, else DNS SANs.

    Wildcard listen addresses (``""``, ``0.0.0.0``, ``::``) are left out.
    """
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        if host in _WILDCARD_HOSTS:
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def key_pem(key: PrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM (write it with mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- certificates ---------------------------------------------------------------------------------


def _ca_cert(
    subject: x509.Name,
    key: PrivateKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    *,
    path_length: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    digital_signature: bool = False,
    authority_key_id: bool = True,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            _key_usage(digital_signature=digital_signature, cert_sign=True), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if authority_key_id:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _leaf_cert(
    subject: x509.Name,
    key: PublicKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    aki: x509.AuthorityKeyIdentifier,
    *,
    eku: x509.ObjectIdentifier,
    not_before: dt.datetime,
    not_after: dt.datetime,
    sans: list[x509.GeneralName] | None = None,
    subject_key_id: bool = True,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())  # 159 random bits
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    )
    if subject_key_id:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key), critical=False
        )
    return builder.add_extension(aki, critical=False).sign(issuer_key, hashes.SHA256())


class CertificateAuthority:
    """A one-tier CA (P-256, pathlen 0) that issues TLS server certificates.

    ``CertificateAuthority(common_name)`` makes a fresh self-signed CA, valid from ``backdate``
    before ``now`` (default: the current time) for ``valid_days``; its subject has only the common
    name unless ``organization`` is given. :meth:`load` reads one back from PEM files.
    """

    def __init__(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        now: dt.datetime | None = None,
        backdate: dt.timedelta = dt.timedelta(days=1),
        valid_days: int = TLS_CA_DAYS,
    ) -> None:
        key, start = make_key(), now or _now()
        subject = _name(common_name, organization=organization)
        self._adopt(
            key,
            _ca_cert(
                subject,
                key,
                subject,
                key,
                path_length=0,
                not_before=start - backdate,
                not_after=start + dt.timedelta(days=valid_days),
                digital_signature=True,
                authority_key_id=False,
            ),
        )

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> CertificateAuthority:
        """The CA whose certificate and (unencrypted PEM, EC) key are in these files.

        Raises:
            OSError: a file cannot be read.
            ValueError: not a PEM certificate, or not an EC private key.
        """
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file} is not an EC key")
        ca = cls.__new__(cls)
        ca._adopt(key, x509.load_pem_x509_certificate(cert_file.read_bytes()))
        return ca

    def _adopt(self, key: PrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate
        try:
            self._ski = certificate.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier
            ).value
        except x509.ExtensionNotFound:
            self._ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        """The CA's private key as unencrypted PKCS#8 PEM (write it with mode 0600)."""
        return key_pem(self._key)

    def issue(
        self,
        *hosts: str,
        common_name: str | None = None,
        expired: bool = False,
        valid_days: int = TLS_SERVER_DAYS,
        now: dt.datetime | None = None,
        subject_key_id: bool = True,
    ) -> tuple[bytes, bytes]:
        """A TLS server certificate (serverAuth) and a fresh key: (certificate PEM, key PEM).

        ``hosts`` become the SANs (:func:`subject_alt_names`); the subject is
        ``CN=<common_name>``, by default the first host. The certificate is valid from an hour
        before ``now`` for ``valid_days``, or, if ``expired``, from 60 until 30 days before.

        Raises:
            ValueError: no host is given.
        """
        if not hosts:
            raise ValueError("a server certificate needs at least one host")
        now = now or _now()
        start, end = (
            (now - _EXPIRED[0], now - _EXPIRED[1])
            if expired
            else (now - _SERVER_BACKDATE, now + dt.timedelta(days=valid_days))
        )
        key = make_key()
        cert = _leaf_cert(
            _name(common_name or hosts[0], organization=None),
            key.public_key(),
            self.certificate.subject,
            self._key,
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
            eku=ExtendedKeyUsageOID.SERVER_AUTH,
            not_before=start,
            not_after=end,
            sans=subject_alt_names(hosts),
            subject_key_id=subject_key_id,
        )
        return cert_pem(cert), key_pem(key)

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.certificate.subject.rfc4514_string()!r})"


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
        return b"".join(cert_pem(c) for c in self.chain)

    def sign_csr(
        self, csr: x509.CertificateSigningRequest, *, valid_days: int = DEVICE_DAYS
    ) -> x509.Certificate:
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
        return _leaf_cert(
            csr.subject,
            key,
            self.issuing_cert.subject,
            self._issuing_key,
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self._issuing_key.public_key()),
            eku=ExtendedKeyUsageOID.CLIENT_AUTH,
            not_before=now - _BACKDATE,
            not_after=min(
                now + dt.timedelta(days=valid_days), self.issuing_cert.not_valid_after_utc
            ),
        )

    def __repr__(self) -> str:
        return (
            f"FactoryCA(directory={str(self.directory)!r}, "
            f"issuing={self.issuing_cert.subject.rfc4514_string()!r})"
        )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


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
            raise ConfigError(
                str(existing), "a factory CA already exists here; refusing to overwrite it"
            )
    base.mkdir(parents=True, exist_ok=True)
    (base / ROOT_DIR).mkdir(mode=0o700)
    (base / ISSUING_DIR).mkdir(mode=0o700)
    root_key, issuing_key = make_key(), make_key()
    root_name, now = _name(f"{name} Root CA"), _now()
    root = _ca_cert(
        root_name,
        root_key,
        root_name,
        root_key,
        path_length=1,
        not_before=now - _BACKDATE,
        not_after=now + dt.timedelta(days=ROOT_DAYS),
    )
    issuing = _ca_cert(
        _name(f"{name} Issuing CA"),
        issuing_key,
        root_name,
        root_key,
        path_length=0,
        not_before=now - _BACKDATE,
        not_after=now + dt.timedelta(days=ISSUING_DAYS),
    )
    _write_private(base / ROOT_DIR / ROOT_KEY, key_pem(root_key))
    (base / ROOT_DIR / ROOT_CERT).write_bytes(cert_pem(root))
    _write_private(base / ISSUING_DIR / ISSUING_KEY, key_pem(issuing_key))
    (base / ISSUING_DIR / ISSUING_CERT).write_bytes(cert_pem(issuing))
    ca = FactoryCA(base, issuing, root, issuing_key)
    (base / CHAIN).write_bytes(ca.chain_pem())
    return ca


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
