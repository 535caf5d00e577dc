"""Enterprise (802.1X) sign-in settings: the EAP method and what it needs, checked before a join.

What the native protocol's SET_CREDENTIALS carries in its ``eap`` object (docs/protocol.md 4.2)
becomes one :class:`EapSettings`; :func:`check_eap` refuses what no server could accept
(EAP_SETTINGS_INVALID) before the radio is touched: a method without its identity, password or
client certificate, a phase 2 the method does not take, neither a CA certificate nor a server
domain (the server could not be checked, and the device would send the password to anyone), a
certificate or key that is not PEM, or a key that is not the certificate's.

The password and the private key are :class:`~device_sim.security.secret.Secret`; the
identity and the certificates are not secrets, but events and logs carry only
:meth:`EapSettings.public` (method, phase 2, domain, the CA's fingerprint).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from ..codes import Code
from ..errors import NetworkError
from ..security.secret import Secret

__all__ = [
    "MAX_FILE_BYTES",
    "PHASE2_OF",
    "EapMethod",
    "EapSettings",
    "Phase2",
    "check_eap",
    "eap_from_json",
]

MAX_FILE_BYTES = 16_384
"""The largest certificate or key file the device takes (a chain of a few certificates)."""
_MAX_TEXT = 253  # an identity (RFC 7542 NAI) or a domain


class EapMethod(StrEnum):
    """The outer EAP method (NetworkManager's ``802-1x.eap`` names)."""

    PEAP = "peap"
    TTLS = "ttls"
    TLS = "tls"


class Phase2(StrEnum):
    """The inner method of PEAP and TTLS (NetworkManager's ``802-1x.phase2-auth`` names)."""

    MSCHAPV2 = "mschapv2"
    PAP = "pap"


PHASE2_OF: dict[EapMethod, tuple[Phase2, ...]] = {
    EapMethod.PEAP: (Phase2.MSCHAPV2,),
    EapMethod.TTLS: (Phase2.PAP, Phase2.MSCHAPV2),
    EapMethod.TLS: (),
}
"""The phase-2 methods each outer method takes (the first is the default)."""


@dataclass(frozen=True)
class EapSettings:
    """One network's enterprise sign-in: ``method`` with ``identity``, and for PEAP/TTLS a
    ``password`` and ``phase2``, for EAP-TLS a ``client_cert`` and ``private_key`` (PEM). The
    server is checked against ``ca_cert`` (PEM, one or more certificates) and/or ``domain``
    (suffix match on the server certificate's names)."""

    method: EapMethod
    identity: str
    anonymous_identity: str | None = None
    password: Secret | None = field(default=None, repr=False)
    phase2: Phase2 | None = None
    ca_cert: bytes | None = field(default=None, repr=False)
    domain: str | None = None
    client_cert: bytes | None = field(default=None, repr=False)
    private_key: Secret | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        """What events, status and logs may show: never the password, the key or the
        identity."""
        out: dict[str, Any] = {"method": str(self.method)}
        if self.phase2 is not None:
            out["phase2"] = str(self.phase2)
        if self.domain:
            out["domain"] = self.domain
        if self.ca_cert:
            out["ca_sha256"] = hashlib.sha256(self.ca_cert).hexdigest()[:16]
        if self.client_cert:
            out["client_cert"] = True
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything, secrets revealed: for the device store (a 0600 file) only."""
        out: dict[str, Any] = {"method": str(self.method), "identity": self.identity}
        for key in ("anonymous_identity", "domain"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        if self.phase2 is not None:
            out["phase2"] = str(self.phase2)
        for key in ("password", "private_key"):
            if (secret := getattr(self, key)) is not None:
                out[key] = secret.reveal()
        for key in ("ca_cert", "client_cert"):
            if (pem := getattr(self, key)) is not None:
                out[key] = pem.decode("ascii")
        return out


def eap_from_json(data: dict[str, Any]) -> EapSettings:
    """The settings :meth:`EapSettings.to_json` stored. Raises ValueError for a bad record."""
    secrets = {k: Secret(data[k]) for k in ("password", "private_key") if data.get(k) is not None}
    pems = {k: data[k].encode("ascii") for k in ("ca_cert", "client_cert") if data.get(k)}
    return EapSettings(
        method=EapMethod(data["method"]),
        identity=str(data["identity"]),
        anonymous_identity=data.get("anonymous_identity"),
        phase2=Phase2(data["phase2"]) if data.get("phase2") else None,
        domain=data.get("domain"),
        **secrets,  # type: ignore[arg-type]
        **pems,
    )


def _bad(detail: str) -> NetworkError:
    return NetworkError(Code.EAP_SETTINGS_INVALID, detail)


def check_eap(eap: EapSettings) -> EapSettings:
    """``eap`` as a join uses it (PEAP and TTLS get their default phase 2), or
    NetworkError(EAP_SETTINGS_INVALID) naming the first problem (never a secret)."""
    method = eap.method
    for name in ("identity", "anonymous_identity", "domain"):
        value = getattr(eap, name)
        if value is None:
            continue
        if not 0 < len(value) <= _MAX_TEXT or not value.isprintable():
            raise _bad(f"{name}: 1 to {_MAX_TEXT} printable characters")
    if eap.domain is not None and (" " in eap.domain or eap.domain.startswith(".")):
        raise _bad("domain: a DNS name such as example.com (no spaces, no leading dot)")
    phase2 = eap.phase2
    allowed = PHASE2_OF[method]
    if method is EapMethod.TLS:
        if phase2 is not None or eap.password is not None:
            raise _bad("EAP-TLS signs in with a client certificate: no password, no phase 2")
        if not eap.client_cert or eap.private_key is None:
            raise _bad("EAP-TLS needs a client certificate and its private key")
    else:
        if eap.client_cert or eap.private_key is not None:
            raise _bad(f"{method.upper()} signs in with a password, not a client certificate")
        if eap.password is None or not eap.password.reveal():
            raise _bad(f"{method.upper()} needs the account's password")
        if phase2 is None:
            phase2 = allowed[0]
        elif phase2 not in allowed:
            raise _bad(f"{method.upper()} takes phase 2 {' or '.join(allowed)}, not {phase2}")
    if not eap.ca_cert and not eap.domain:
        raise _bad(
            "neither a CA certificate nor a server domain: the server could not be checked, "
            "and the password would go to any network of that name"
        )
    _check_pems(eap)
    return eap if phase2 is eap.phase2 else replace(eap, phase2=phase2)


def _check_pems(eap: EapSettings) -> None:
    """The certificates parse, and the private key is the client certificate's."""
    from cryptography import x509  # lazy: only a device that gets enterprise settings needs it
    from cryptography.hazmat.primitives import serialization

    for name in ("ca_cert", "client_cert"):
        pem = getattr(eap, name)
        if pem is None:
            continue
        if len(pem) > MAX_FILE_BYTES:
            raise _bad(f"{name}: {len(pem)} bytes, more than {MAX_FILE_BYTES}")
        try:
            x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise _bad(f"{name}: not a PEM certificate") from None
    if eap.client_cert is None or eap.private_key is None:
        return
    try:
        key = serialization.load_pem_private_key(eap.private_key.reveal().encode(), None)
    except TypeError:
        raise _bad(
            "private_key: it is encrypted; send the key without a password (the transfer is "
            "sealed, and the device stores it as a secret)"
        ) from None
    except ValueError:
        raise _bad("private_key: not a PEM private key") from None
    cert = x509.load_pem_x509_certificates(eap.client_cert)[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != cert.public_key().public_bytes(der, public):
        raise _bad("private_key: it is not the client certificate's key")
