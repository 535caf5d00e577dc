"""The simulated world's enterprise networks: their certificates and their RADIUS server's answer.

An enterprise access point of a scenario (``eap:`` on the BSS) has an authentication server
with a certificate and a list of accounts. :func:`authenticate` plays one sign-in as
wpa_supplicant and a RADIUS server would, with real certificates and real checks:

1. the server offers its methods: another one is refused (EAP_METHOD_REFUSED);
2. the device checks the server's certificate against the CA certificate it was given
   (EAP_SERVER_UNTRUSTED), or against its system store when it was given only a domain, and
   the certificate's names against that domain (EAP_SERVER_NAME_MISMATCH);
3. the server looks up the identity (EAP_IDENTITY_UNKNOWN), then checks the password (PEAP,
   TTLS) or the client certificate: issued by its CA (else EAP_CREDENTIALS_REJECTED) and in
   date (else EAP_CLIENT_CERT_EXPIRED).

The world's certificate authorities (:class:`WorldPki`) are made from fixed seeds, so the
daemon and the phone, in separate processes, agree on them without sharing files:

* ``world``: the organisation's private CA; its RADIUS certificates and client certificates;
* ``public``: a CA of the device's system store (a server signed by it passes a domain-only
  check);
* ``other``: a CA nobody trusts (an old server, or one pretending to be the organisation's).

These keys are test fixtures (anyone can derive them): never trust them outside the simulation.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..codes import Code
from ..security.secret import Secret
from .eap import EapMethod, EapSettings, Phase2
from .scenario.model import ISSUERS, EapRecipe, RadiusServer

__all__ = ["WorldPki", "authenticate", "eap_settings", "world_pki"]

_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
_FAR = dt.datetime(2099, 12, 31, tzinfo=dt.UTC)
_EXPIRED_AT = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)


def _key(label: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key derived from ``label`` (the same in every process)."""
    digest = hashlib.sha256(f"device-sim simulated enterprise: {label}".encode()).digest()
    return ec.derive_private_key(int.from_bytes(digest, "big") % (2**255), ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "device-sim simulated world"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class WorldPki:
    """The world's three CAs, and the certificates they issue (see the module's docs)."""

    def __init__(self) -> None:
        self._keys = {issuer: _key(f"ca {issuer}") for issuer in ISSUERS}
        self._certs = {issuer: self._ca(issuer) for issuer in ISSUERS}

    def _ca(self, issuer: str) -> x509.Certificate:
        key = self._keys[issuer]
        name = _name(f"{issuer.title()} CA")
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(hashlib.sha256(issuer.encode()).digest()[:8], "big"))
            .not_valid_before(_EPOCH)
            .not_valid_after(_FAR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )

    def ca_pem(self, issuer: str) -> bytes:
        return _pem(self._certs[issuer])

    def ca(self, issuer: str) -> x509.Certificate:
        return self._certs[issuer]

    def _leaf(
        self, issuer: str, common_name: str, key: ec.EllipticCurvePrivateKey, *, server: bool,
        not_after: dt.datetime = _FAR,
    ) -> x509.Certificate:  # fmt: skip
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._certs[issuer].subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_EPOCH)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False
            )
        return builder.sign(self._keys[issuer], hashes.SHA256())

    @functools.cache  # noqa: B019 (one WorldPki per process, see world_pki)
    def server_cert(self, issuer: str, name: str) -> x509.Certificate:
        """The RADIUS server's certificate: ``name`` as its DNS name, issued by ``issuer``."""
        return self._leaf(issuer, name, _key(f"server {name}"), server=True)

    def client(self, identity: str, *, expired: bool = False) -> tuple[bytes, bytes]:
        """A client certificate for ``identity`` from the world's CA, and its key (PEM, PKCS#8,
        unencrypted): valid until 2099, or (``expired``) ended on 2021-01-01."""
        key = _key(f"client {identity}")
        cert = self._leaf(
            "world", identity, key, server=False, not_after=_EXPIRED_AT if expired else _FAR
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return _pem(cert), key_pem


@functools.cache
def world_pki() -> WorldPki:
    return WorldPki()


def _issued_by(cert: x509.Certificate, issuers: list[x509.Certificate]) -> bool:
    for ca in issuers:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _names(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in sans.get_values_for_type(x509.DNSName)]


def _suffix_match(names: list[str], domains: str) -> bool:
    """NetworkManager's ``domain-suffix-match``: one of ``domains`` (``;``-separated) equals a
    name or is a whole-label suffix of it."""
    for domain in (d.strip().lower().rstrip(".") for d in domains.split(";") if d.strip()):
        if any(n == domain or n.endswith("." + domain) for n in names):
            return True
    return False


def authenticate(
    server: RadiusServer, eap: EapSettings, now: dt.datetime | None = None
) -> tuple[Code, str]:
    """One sign-in of ``eap`` at ``server``: OK, or the code and a detail (never a secret)."""
    pki, now = world_pki(), now or dt.datetime.now(dt.UTC)
    method = eap.method
    if method not in server.methods:
        offered = ", ".join(m.upper() for m in server.methods)
        return Code.EAP_METHOD_REFUSED, f"the server offers {offered}, not {method.upper()}"
    if method is EapMethod.PEAP and eap.phase2 not in (None, Phase2.MSCHAPV2):
        return Code.EAP_METHOD_REFUSED, f"the server's PEAP takes MSCHAPv2 inside, not {eap.phase2}"
    server_cert = pki.server_cert(server.issuer, server.name)
    if eap.ca_cert:
        trusted = x509.load_pem_x509_certificates(eap.ca_cert)
        why = "the CA certificate sent"
    else:
        trusted, why = [pki.ca("public")], "the device's system store (no CA certificate sent)"
    if not _issued_by(server_cert, trusted):
        issuer = server_cert.issuer.rfc4514_string()
        return Code.EAP_SERVER_UNTRUSTED, f"the server's certificate ({issuer}) is not from {why}"
    if eap.domain and not _suffix_match(_names(server_cert), eap.domain):
        return (
            Code.EAP_SERVER_NAME_MISMATCH,
            f"the server's certificate names {', '.join(_names(server_cert))}, not {eap.domain}",
        )
    account = next((a for a in server.accounts if a.identity == eap.identity), None)
    if account is None:
        return Code.EAP_IDENTITY_UNKNOWN, "the server has no account for the identity sent"
    if method is EapMethod.TLS:
        assert eap.client_cert is not None
        client = x509.load_pem_x509_certificates(eap.client_cert)[0]
        if not _issued_by(client, [pki.ca("world")]):
            return Code.EAP_CREDENTIALS_REJECTED, "the server does not trust the client certificate"
        if client.not_valid_after_utc < now:
            ended = client.not_valid_after_utc.date().isoformat()
            return Code.EAP_CLIENT_CERT_EXPIRED, f"the client certificate expired on {ended}"
        return Code.OK, "EAP-TLS accepted"
    sent = eap.password.reveal() if eap.password is not None else ""
    if account.password is None or not hmac.compare_digest(
        sent.encode(), account.password.encode()
    ):
        return Code.EAP_CREDENTIALS_REJECTED, "the server rejected the password (Access-Reject)"
    return Code.OK, f"{method.upper()} accepted"


def eap_settings(recipe: EapRecipe) -> EapSettings:
    """What a scenario's phone sends for ``recipe``: its CA certificate and (EAP-TLS) client
    certificate and key made by the world's PKI."""
    pki = world_pki()
    cert = key = None
    if recipe.client_cert is not None:
        cert, key_pem = pki.client(recipe.identity, expired=recipe.client_cert == "expired")
        key = Secret(key_pem.decode("ascii"))
    return EapSettings(
        method=recipe.method,
        identity=recipe.identity,
        anonymous_identity=recipe.anonymous_identity,
        password=Secret(recipe.password) if recipe.password is not None else None,
        phase2=recipe.phase2,
        ca_cert=pki.ca_pem(recipe.ca_cert) if recipe.ca_cert in ISSUERS else None,
        domain=recipe.domain,
        client_cert=cert,
        private_key=key,
    )
