"""Provision one unit: serial, identity, key and certificate, label, self-test, record.

``out_dir/<serial>/``::

    state/device.sqlite3     the device store: identity (SRP salt + verifier, SoftAP passphrase),
                             optionally site Wi-Fi pre-provisioned (credentials_received, "factory")
    state/device.key   0600  P-256 private key (PEM)
    state/device.pem         its certificate from the factory's issuing CA
    state/chain.pem          issuing + root
    state/unit.json          {serial, device_id, cert_fingerprint_sha256, claim_token_sha256}
    state/registration.json  0600, only with a fleet registration key: {key_id, secret}
    label.png, label.svg     0600, QR (see :mod:`.label`) + text: the only copy of the secrets
    selftest.json, .xml      the self-test report (see :mod:`.checks`)

The setup code and claim token exist only on the label and in the returned :class:`UnitResult`;
the record and the cloud import carry their hashes (claim token) or nothing (setup code).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ... import pki
from ...codes import Code, State
from ...core.events import EventPhase
from ...core.identity import create_identity
from ...core.store import Credentials, DeviceStore
from ...doors import registry
from ...errors import ConfigError
from ...profile import Profile, load_profile
from ...security.secret import Secret
from . import outputs
from .checks import SelfTestReport, selftest
from .label import LabelText, PersonalityLabel, make_payload, make_qr, render_png, render_svg
from .registration import RegistrationKey, write_private
from .registry import DEFAULT_PREFIX, SerialRegistry

SiteWifi = tuple[bytes, str | Secret | None]  # (SSID bytes, passphrase or None: open)


@dataclass(frozen=True, repr=False)
class UnitResult:
    """One provisioned unit. ``setup_code``, ``claim_token`` and ``payload`` are for the label
    printer only (None from a worker process: they stay there); the repr shows none of them."""

    serial: str
    device_id: str
    unit_dir: Path
    setup_code: Secret | None
    claim_token: Secret | None
    payload: Secret | None
    record: dict[str, Any]
    report: SelfTestReport
    duration_s: float

    @property
    def state_dir(self) -> Path:
        return self.unit_dir / "state"

    @property
    def passed(self) -> bool:
        return self.report.passed

    def __repr__(self) -> str:
        return (
            f"UnitResult(serial={self.serial!r}, device_id={self.device_id!r}, "
            f"passed={self.passed})"
        )


def _claim_token() -> Secret:
    """128 random bits, base32 without padding (26 characters)."""
    return Secret(base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("="))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds")


def _site_credentials(site_wifi: SiteWifi | None) -> Credentials | None:
    if site_wifi is None:
        return None
    ssid, passphrase = site_wifi
    if not isinstance(ssid, bytes) or not 1 <= len(ssid) <= 32:
        raise ConfigError("--site-ssid", "an SSID is 1 to 32 bytes")
    secret = Secret(passphrase) if isinstance(passphrase, str) else passphrase
    if secret is not None:
        value = secret.reveal()
        hex64 = len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)
        if not hex64 and not (8 <= len(value) <= 63 and value.isascii() and value.isprintable()):
            raise ConfigError(
                "--site-passphrase",
                "a WPA2 passphrase is 8-63 printable ASCII characters (or 64 hex digits)",
            )
    return Credentials(ssid, secret, hidden=False)


def provision_unit(
    factory_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    station: str,
    serial: str | None = None,
    site_wifi: SiteWifi | None = None,
    claim_ttl_days: int = 365,
    registration: RegistrationKey | None = None,
    ca: pki.FactoryCA | None = None,
    profile: Profile | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> UnitResult:
    """Make one unit in ``out_dir/<serial>/`` (layout in the module docstring) and self-test it.

    ``ca`` and ``profile`` default to loading them (a batch passes them once). A unit that
    fails its self-test is still returned (``passed`` False, record result ``failed``) and is
    left out of the cloud import.

    Raises:
        ConfigError: no usable CA, a malformed or already issued ``serial`` (reuse is refused),
            an existing unit directory, bad site Wi-Fi, an empty station, ``claim_ttl_days`` < 0
            (0 makes a token that has expired by the time it is used: QA's "claim token
            expired").
        StoreError: the device store cannot be written. OSError: files cannot be written.
        If making the unit raises after its serial was registered, the registry marks the
        serial ``failed``: it is burnt, never reissued.
    """
    t0 = time.perf_counter()
    if not station.strip():
        raise ConfigError("--station", "must not be empty")
    if not 0 <= claim_ttl_days <= 3650:
        raise ConfigError("--claim-ttl-days", "must be from 0 (expired at once) to 3650")
    credentials = _site_credentials(site_wifi)
    factory, out = Path(factory_dir), Path(out_dir)
    ca = ca or pki.load_issuer(factory)
    profile = profile or load_profile()
    registry = SerialRegistry(factory)
    if serial is not None:
        registry.check_unissued(serial)  # fail before any work; register() decides atomically
    else:
        serial = registry.next_serial(prefix)
    unit_dir = out / serial
    if unit_dir.exists():
        raise ConfigError(str(unit_dir), f"serial {serial}: the unit directory already exists")

    device_id = secrets.token_hex(8)
    key = pki.make_device_key()
    cert = ca.sign_csr(pki.make_csr(key, device_id, serial))
    registry.register(
        serial, device_id=device_id, cert_serial=f"{cert.serial_number:x}", station=station
    )
    try:
        built = _build(
            unit_dir,
            factory,
            ca,
            profile,
            serial,
            device_id,
            key,
            cert,
            credentials,
            registration,
            claim_ttl_days,
            station,
        )
    except BaseException:
        registry.set_result(serial, "failed")  # the serial is burnt, never reissued
        raise
    registry.set_result(serial, built.record["result"])
    return dataclasses.replace(built, duration_s=time.perf_counter() - t0)


# Over 80 lines on purpose: one unit's making in the order the line runs it (identity, keys,
# certificate, registration, label, self-test), every step's failure naming the unit.
def _build(
    unit_dir: Path,
    factory: Path,
    ca: pki.FactoryCA,
    profile: Profile,
    serial: str,
    device_id: str,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    credentials: Credentials | None,
    registration: RegistrationKey | None,
    claim_ttl_days: int,
    station: str,
) -> UnitResult:
    state = unit_dir / "state"
    unit_dir.mkdir(parents=True)
    state.mkdir(mode=0o700)
    with DeviceStore(state) as store:
        identity, setup_code = create_identity(
            store, device_id=device_id, ap_passphrase_length=profile.softap.passphrase_length
        )
        local_name = profile.advertising.local_name_pattern.format(short_id=identity.short_id)
        personal = registry.make_labels(store, profile, local_name)  # e.g. ESP's PoP and QR
        if credentials is not None:  # QR pre-provisioning: tried at first boot
            store.transition(
                State.CREDENTIALS_RECEIVED,
                Code.OK,
                phase=EventPhase.FACTORY,
                credentials=credentials,
            )
    assert identity.softap_passphrase is not None
    write_private(state / "device.key", pki.key_pem(key))
    # Everything in a state directory is 0600 (the daemon checks it too at every start).
    write_private(state / "device.pem", pki.cert_pem(cert))
    write_private(state / "chain.pem", ca.chain_pem())
    claim_token = _claim_token()
    now = dt.datetime.now(dt.UTC)
    claim_hash, cert_fp = _sha256(claim_token.reveal()), pki.fingerprint_sha256(cert)
    write_private(
        state / "unit.json",
        (
            json.dumps(
                {
                    "serial": serial,
                    "device_id": device_id,
                    "cert_fingerprint_sha256": cert_fp,
                    "claim_token_sha256": claim_hash,
                },
                indent=2,
            )
            + "\n"
        ).encode(),
    )
    if registration is not None:
        write_private(state / "registration.json", registration.file_content())

    payload = make_payload(device_id, setup_code, claim_token)
    text = LabelText(
        serial,
        device_id,
        setup_code,
        profile.softap.ssid_pattern.format(short_id=identity.short_id),
        identity.softap_passphrase,
    )
    # The labels hold the setup code, claim token and SoftAP passphrase: 0600 until printed.
    symbol = make_qr(payload)  # one QR, two renderings
    write_private(unit_dir / "label.png", render_png(payload, text, symbol))
    write_private(unit_dir / "label.svg", render_svg(payload, text, symbol))
    # Each personality's own QR (Espressif's apps scan theirs) on a label of its own: the
    # device-sim label keeps exactly one QR, as the self-test checks.
    for field_name, value in personal.items():
        if field_name.endswith("_qr"):
            name = field_name.removesuffix("_qr")
            lines = tuple(
                (k.removeprefix(f"{name}_").replace("_", " "), v)
                for k, v in personal.items()
                if k.startswith(f"{name}_") and not k.endswith(("_qr", "_qr_softap"))
            )
            extra = PersonalityLabel(((f"{name} device", local_name), *lines))
            symbol = make_qr(Secret(value))
            write_private(unit_dir / f"label-{name}.png", render_png(Secret(value), extra, symbol))
            write_private(unit_dir / f"label-{name}.svg", render_svg(Secret(value), extra, symbol))

    report = selftest(
        unit_dir, factory, setup_code=setup_code, payload=payload, profile_path=profile.source
    )
    result = "passed" if report.passed else "failed"
    claim_expires = _iso(now + dt.timedelta(days=claim_ttl_days))
    record: dict[str, Any] = {
        "record_version": 1,
        "serial": serial,
        "device_id": device_id,
        "public_key_fingerprint_sha256": pki.public_key_fingerprint(cert),
        "cert_serial": f"{cert.serial_number:x}",
        "cert_fingerprint_sha256": cert_fp,
        "issuer": {
            "subject": ca.issuing_cert.subject.rfc4514_string(),
            "fingerprint_sha256": pki.fingerprint_sha256(ca.issuing_cert),
        },
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "station": station,
        "timestamp": _iso(now),
        "result": result,
        "selftest": {
            "passed": report.passed_count,
            "total": len(report.checks),
            "failed_checks": report.failed_checks,
        },
        "claim_token_sha256": claim_hash,
        "claim_expires_at": claim_expires,
        "site_wifi_preprovisioned": credentials is not None,
        "registration_key_id": registration.key_id if registration else None,
    }
    forbidden = [
        setup_code,
        claim_token,
        payload,
        identity.softap_passphrase,
        Secret(setup_code.reveal().replace("-", "")),
    ]
    forbidden += [credentials.passphrase] if credentials and credentials.passphrase else []
    forbidden += [registration.secret] if registration else []
    outputs.append_record(unit_dir.parent, record, forbidden)
    outputs.add_to_cloud_import(
        unit_dir.parent,
        {
            "serial": serial,
            "device_id": device_id,
            "cert_fingerprint_sha256": cert_fp,
            "claim_token_sha256": claim_hash,
            "claim_expires_at": claim_expires,
        }
        if report.passed
        else None,
        registration.cloud_entry() if registration else None,
        forbidden,
    )
    return UnitResult(
        serial,
        device_id,
        unit_dir,
        setup_code,
        claim_token,
        payload,
        record,
        report,
        duration_s=0.0,
    )
