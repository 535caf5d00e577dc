"""The cloud emulator's TLS: its own CA and server certificate, and the device's client certificate.

On first start the emulator makes, in its state directory::

    server-ca.pem   the CA devices trust (give it to the device as its cloud CA)
    server-ca.key   its key (0600)
    server.pem      the server certificate (localhost, 127.0.0.1 and the listen host as SANs)
    server.key      its key (0600)

Later starts reuse them; the server certificate is issued again (by the same CA) when its names
change or it is near expiry, so devices keep trusting ``server-ca.pem``. The keys and certificates
are made by :class:`device_sim.pki.CertificateAuthority`; this module only decides when, and
writes them.

Client certificates are optional at the TLS level (``ssl.CERT_OPTIONAL``) and verified against the
factory chain given at start: a certificate that does not chain to it fails the handshake, so a
handler only ever sees a verified certificate or none.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from ...errors import ConfigError
from ...pki import ORGANIZATION, CertificateAuthority, subject_alt_names

__all__ = [
    "CA_FILE",
    "PeerCertificate",
    "ServerPki",
    "client_context",
    "ensure_server_pki",
    "fingerprint_sha256",
    "server_context",
]

CA_FILE = "server-ca.pem"
CA_KEY_FILE = "server-ca.key"
CERT_FILE = "server.pem"
KEY_FILE = "server.key"
_CA_NAME = "device-sim cloud emulator CA"
_LEAF_DAYS = 397
_RENEW_BEFORE = timedelta(days=7)


@dataclass(frozen=True)
class ServerPki:
    """Paths of the emulator's CA and server certificate."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class PeerCertificate:
    """What the emulator reads from a (TLS-verified) device certificate."""

    device_id: str  # subject CN
    serial: str | None  # subject serialNumber attribute
    fingerprint_sha256: str  # lowercase hex of SHA-256 over the DER

    @classmethod
    def from_der(cls, der: bytes) -> PeerCertificate:
        """Parse a DER certificate.

        Raises:
            ValueError: not a certificate, or its subject has no common name.
        """
        cert = x509.load_der_x509_certificate(der)
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cns:
            raise ValueError("client certificate has no subject CN")
        serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        return cls(
            device_id=_text(cns[0].value),
            serial=_text(serials[0].value) if serials else None,
            fingerprint_sha256=fingerprint_sha256(der),
        )


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def fingerprint_sha256(der: bytes) -> str:
    """Lowercase hex SHA-256 of a DER certificate (the form the factory's import file uses)."""
    return hashlib.sha256(der).hexdigest()


def ensure_server_pki(
    state_dir: Path,
    hosts: Iterable[str] = ("localhost", "127.0.0.1"),
    *,
    now: datetime | None = None,
) -> ServerPki:
    """Create (or reuse) the CA and a server certificate for ``hosts`` in ``state_dir``.

    Host names that parse as IP addresses become IP SANs, the others DNS SANs.

    Raises:
        ConfigError: the files exist but cannot be read, or the state dir cannot be written.
    """
    now = now or datetime.now(UTC)
    paths = ServerPki(state_dir / CA_FILE, state_dir / CERT_FILE, state_dir / KEY_FILE)
    hosts = tuple(hosts)
    try:
        ca = _load_or_make_ca(state_dir, now)
        if not _leaf_is_current(paths, ca.certificate, subject_alt_names(hosts), now):
            # No subjectKeyIdentifier on this leaf, as the emulator has always issued it.
            cert_pem, key_pem = ca.issue(
                *hosts,
                common_name="localhost",
                valid_days=_LEAF_DAYS,
                now=now,
                subject_key_id=False,
            )
            _write_private(paths.key_file, key_pem)
            _write(paths.cert_file, cert_pem)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cloud state dir {state_dir}", f"cannot create or read the server certificates: {exc}"
        ) from exc
    return paths


def server_context(pki: ServerPki, factory_chain: Path | None) -> ssl.SSLContext:
    """The emulator's TLS server context; client certificates optional, checked against the chain.

    Without a factory chain the server asks for no client certificate at all (so zero-touch and
    claim activations are refused by the handler).

    Raises:
        ConfigError: the factory chain file is missing or holds no usable certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.cert_file, pki.key_file)
    if factory_chain is not None:
        try:
            certs = x509.load_pem_x509_certificates(factory_chain.read_bytes())
            context.load_verify_locations(cafile=str(factory_chain))
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ConfigError(f"factory chain {factory_chain}", f"unusable: {exc}") from exc
        if not certs:
            raise ConfigError(f"factory chain {factory_chain}", "holds no certificate")
        context.verify_mode = ssl.CERT_OPTIONAL
        # Trust the issuing CA even if only it (not the root) is in the file.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def client_context(
    ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file`` and optionally presents a client certificate.

    Raises:
        OSError, ssl.SSLError: a file is missing or unusable.
    """
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


# -- helpers --------------------------------------------------------------------------------------


def _load_or_make_ca(state_dir: Path, now: datetime) -> CertificateAuthority:
    ca_file, key_file = state_dir / CA_FILE, state_dir / CA_KEY_FILE
    if ca_file.exists() and key_file.exists():
        return CertificateAuthority.load(ca_file, key_file)
    ca = CertificateAuthority(
        _CA_NAME, organization=ORGANIZATION, now=now, backdate=timedelta(hours=1)
    )
    _write_private(key_file, ca.key_pem)
    _write(ca_file, ca.cert_pem)
    return ca


def _leaf_is_current(
    paths: ServerPki, ca_cert: x509.Certificate, sans: list[x509.GeneralName], now: datetime
) -> bool:
    if not (paths.cert_file.exists() and paths.key_file.exists()):
        return False
    cert = x509.load_pem_x509_certificate(paths.cert_file.read_bytes())
    try:
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return (
        cert.issuer == ca_cert.subject
        and set(have) == set(sans)
        and cert.not_valid_after_utc - _RENEW_BEFORE > now
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 from the first byte."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
