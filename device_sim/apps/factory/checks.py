"""The end-of-line self-test of one unit: six named checks, each timed, pass or fail.

================== ===============================================================================
check              passes when
================== ===============================================================================
certificate_chain  ``device.pem`` chains (signatures, validity, usages) through the unit's
                   ``chain.pem`` to a root equal to the factory's, names this unit (CN = device
                   id, serialNumber = serial) and is the certificate ``unit.json`` recorded
certificate_key    ``device.key`` is the private half of ``device.pem`` (compared and proven)
label_qr           ``label.png`` holds exactly one QR code, decoding (zxing-cpp) to the payload
setup_code         both SRP halves, run with the printed setup code against the stored verifier,
                   agree, and the session they open carries a message each way
gatt_profile       the GATT profile loads and validates
state_store        the device store opens, holds this unit's identity, and commits a setting
                   (``factory.selftest_at``, the time of the last self-test)
================== ===============================================================================

Results go to ``<unit>/selftest.json`` and ``<unit>/selftest.xml`` (JUnit: one testsuite named
after the serial, one testcase per check). Messages never contain the setup code or payload.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from ... import pki
from ...codes import MessageType
from ...core.store import DeviceStore
from ...security.secret import Secret, redact
from ...security.session import ClientHandshake, DeviceHandshake
from ...security.setup_code import normalize_setup_code
from .label import decode_qr_texts, parse_payload

CHECKS = (
    "certificate_chain",
    "certificate_key",
    "label_qr",
    "setup_code",
    "gatt_profile",
    "state_store",
)
STATE_DIR = "state"
UNIT_JSON = "unit.json"
LABEL_PNG = "label.png"
REPORT_JSON = "selftest.json"
REPORT_XML = "selftest.xml"


class CheckFailed(Exception):
    """A check's condition does not hold (the message says which)."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    duration_ms: float
    message: str


@dataclass(frozen=True)
class SelfTestReport:
    serial: str
    device_id: str
    started_at: str
    duration_ms: float
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def passed_count(self) -> int:
        return sum(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    @property
    def summary(self) -> str:
        """``SELFTEST DS-25-000001 PASSED (6/6)``."""
        verdict = "PASSED" if self.passed else "FAILED"
        return f"SELFTEST {self.serial} {verdict} ({self.passed_count}/{len(self.checks)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "device_id": self.device_id,
            "passed": self.passed,
            "started_at": self.started_at,
            "duration_ms": round(self.duration_ms, 3),
            "summary": self.summary,
            "checks": [asdict(c) for c in self.checks],
        }

    def to_junit_xml(self) -> str:
        suite = ET.Element(
            "testsuite",
            name=self.serial,
            tests=str(len(self.checks)),
            failures=str(len(self.checks) - self.passed_count),
            errors="0",
            skipped="0",
            time=f"{self.duration_ms / 1000:.3f}",
            timestamp=self.started_at,
        )
        for c in self.checks:
            case = ET.SubElement(
                suite,
                "testcase",
                classname="device_sim.apps.factory.selftest",
                name=c.name,
                time=f"{c.duration_ms / 1000:.3f}",
            )
            if c.passed:
                ET.SubElement(case, "system-out").text = c.message
            else:
                ET.SubElement(
                    case, "failure", message=c.message, type="SelfTestFailure"
                ).text = c.message
        ET.indent(suite)
        return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _unit_json(state: Path) -> dict[str, Any]:
    data = json.loads((state / UNIT_JSON).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("serial", "device_id")
    ):
        raise CheckFailed(f"{UNIT_JSON} lacks serial/device_id")
    return data


class _Unit:
    """What the checks read, loaded lazily so one missing file fails only its checks."""

    def __init__(
        self,
        unit_dir: Path,
        factory_dir: Path,
        setup_code: Secret,
        payload: Secret | None,
        profile_path: Path | None,
    ) -> None:
        self.dir = unit_dir
        self.state = unit_dir / STATE_DIR
        self.factory_dir = factory_dir
        self.setup_code = setup_code
        self.payload = payload
        self.profile_path = profile_path
        try:
            self.info: dict[str, Any] | None = _unit_json(self.state)
        except (OSError, ValueError, CheckFailed):
            self.info = None

    def need_info(self) -> dict[str, Any]:
        if self.info is None:
            raise CheckFailed(f"{STATE_DIR}/{UNIT_JSON} is missing or unreadable")
        return self.info

    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.state / "device.pem").read_bytes())

    # -- the checks: each returns a success message or raises ------------------------------

    def certificate_chain(self) -> str:
        info, cert = self.need_info(), self.cert()
        chain = pki.load_certificates((self.state / "chain.pem").read_bytes())
        pki.verify_chain(cert, chain)
        factory_root = pki.load_certificates((self.factory_dir / pki.CHAIN).read_bytes())[-1]
        if pki.fingerprint_sha256(chain[-1]) != pki.fingerprint_sha256(factory_root):
            raise CheckFailed("the unit's chain ends in a root other than the factory's")
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        sn = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        if [a.value for a in cn] != [info["device_id"]] or [a.value for a in sn] != [
            info["serial"]
        ]:
            raise CheckFailed("the certificate's subject does not name this unit")
        if info.get("cert_fingerprint_sha256") != pki.fingerprint_sha256(cert):
            raise CheckFailed(f"device.pem is not the certificate {UNIT_JSON} recorded")
        return f"chains to {factory_root.subject.rfc4514_string()}"

    def certificate_key(self) -> str:
        key = pki.load_private_key(self.state / "device.key")
        if not pki.cert_matches_key(self.cert(), key):
            raise CheckFailed("device.key is not the key of device.pem")
        return "device.key signs for device.pem (P-256)"

    def label_qr(self) -> str:
        texts = decode_qr_texts(self.dir / LABEL_PNG)
        if len(texts) != 1:
            raise CheckFailed(f"{LABEL_PNG} holds {len(texts)} readable QR codes, not 1")
        decoded = texts[0]
        if self.payload is not None:
            if not hmac.compare_digest(decoded.encode(), self.payload.reveal().encode()):
                raise CheckFailed("the label's QR payload differs from the expected payload")
            return "QR decodes to the expected payload"
        info, fields = self.need_info(), parse_payload(decoded)
        token_hash = hashlib.sha256(fields.claim_token.reveal().encode()).hexdigest()
        if fields.device_id != info["device_id"]:
            raise CheckFailed("the label's QR names another device id")
        if not hmac.compare_digest(
            fields.setup_code.reveal().encode(), normalize_setup_code(self.setup_code).encode()
        ):
            raise CheckFailed("the label's QR carries another setup code")
        if token_hash != info.get("claim_token_sha256"):
            raise CheckFailed("the label's QR carries another claim token")
        return "QR decodes to this unit's id, setup code and claim token"

    def setup_code_check(self) -> str:
        with DeviceStore(self._existing_store()) as store:
            identity = store.identity()
        if identity is None:
            raise CheckFailed("the store holds no identity")
        client = ClientHandshake(self.setup_code)
        device = DeviceHandshake(identity.srp_salt, identity.srp_verifier)
        hamk, device_channel = device.verify(
            client.process_challenge(device.challenge(client.start()))
        )
        client_channel = client.confirm(hamk)
        probe = b"factory self-test"
        _, got = device_channel.open(client_channel.seal(MessageType.STATUS_REQUEST, probe))
        _, back = client_channel.open(device_channel.seal(MessageType.STATUS, got))
        if back != probe:
            raise CheckFailed("the session did not carry the probe message")
        return "SRP-6a handshake with the printed code succeeded; session round trip OK"

    def gatt_profile(self) -> str:
        from ...profile import load_profile

        profile = load_profile(self.profile_path)
        return f"profile loaded: {len(profile.codes)} codes, {len(profile.states)} states"

    def state_store(self) -> str:
        info = self.need_info()
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        with DeviceStore(self._existing_store()) as store:
            identity = store.identity()
            if identity is None or identity.device_id != info["device_id"]:
                raise CheckFailed("the store does not hold this unit's identity")
            store.set_setting("factory.selftest_at", stamp)
            if store.setting("factory.selftest_at") != stamp:
                raise CheckFailed("a committed setting did not read back")
        return "store opened, identity present, setting committed and read back"

    def _existing_store(self) -> Path:
        if not (self.state / DeviceStore.FILENAME).is_file():  # opening would create it
            raise CheckFailed(f"{STATE_DIR}/{DeviceStore.FILENAME} is missing")
        return self.state


def selftest(
    unit_dir: str | Path,
    factory_dir: str | Path,
    *,
    setup_code: Secret | str,
    payload: Secret | str | None,
    profile_path: str | Path | None = None,
    write: bool = True,
) -> SelfTestReport:
    """Run the six checks on ``unit_dir`` (``<out>/<serial>``) and write the reports.

    ``payload`` is the QR payload the label must carry; ``None`` checks instead that the
    label's payload names this unit, ``setup_code`` and the claim token ``unit.json`` hashed.
    A failing check never stops the others. Raises only OSError if the reports cannot be
    written (``write=False`` skips writing).
    """
    code = setup_code if isinstance(setup_code, Secret) else Secret(setup_code)
    expected = Secret(payload) if isinstance(payload, str) else payload
    unit = _Unit(
        Path(unit_dir),
        Path(factory_dir),
        code,
        expected,
        Path(profile_path) if profile_path else None,
    )
    runners: dict[str, Callable[[], str]] = {
        "certificate_chain": unit.certificate_chain,
        "certificate_key": unit.certificate_key,
        "label_qr": unit.label_qr,
        "setup_code": unit.setup_code_check,
        "gatt_profile": unit.gatt_profile,
        "state_store": unit.state_store,
    }
    secrets_ = [code] + ([expected] if expected is not None else [])
    started, t0 = dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), time.perf_counter()
    results = []
    for name in CHECKS:
        t = time.perf_counter()
        try:
            message, ok = runners[name](), True
        except Exception as exc:
            message = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
            ok = False
        results.append(
            CheckResult(
                name, ok, round((time.perf_counter() - t) * 1000, 3), redact(message, *secrets_)
            )
        )
    info = unit.info or {}
    report = SelfTestReport(
        str(info.get("serial", unit.dir.name)),
        str(info.get("device_id", "")),
        started,
        (time.perf_counter() - t0) * 1000,
        tuple(results),
    )
    if write:
        (unit.dir / REPORT_JSON).write_text(
            json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8"
        )
        (unit.dir / REPORT_XML).write_text(report.to_junit_xml(), encoding="utf-8")
    return report
