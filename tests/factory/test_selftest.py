"""The end-of-line self-test: passes on a good unit, catches each kind of bad one."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from cryptography import x509

from device_sim import pki
from device_sim.apps.factory.checks import CHECKS, SelfTestReport, selftest
from device_sim.apps.factory.label import LabelText, decode_qr_texts, make_payload, render_png
from device_sim.security.secret import Secret
from device_sim.security.setup_code import format_setup_code

from .conftest import LabelledUnit


def _failed(report: SelfTestReport) -> list[str]:
    return report.failed_checks


def test_good_unit_passes_every_check(unit: LabelledUnit, factory: Path) -> None:
    report = selftest(unit.unit_dir, factory, setup_code=unit.setup_code, payload=unit.payload)
    assert report.passed and report.summary == f"SELFTEST {unit.serial} PASSED (6/6)"
    assert [c.name for c in report.checks] == list(CHECKS)
    assert all(c.duration_ms >= 0 and c.message for c in report.checks)
    assert unit.report.passed  # the one provision_unit ran


def test_setup_code_is_accepted_typed_without_the_dash(unit: LabelledUnit, factory: Path) -> None:
    digits = Secret(unit.setup_code.reveal().replace("-", ""))
    assert selftest(unit.unit_dir, factory, setup_code=digits, payload=unit.payload).passed


def test_certificate_from_another_ca_is_detected(
    unit: LabelledUnit, factory: Path, tmp_path: Path
) -> None:
    other = pki.create_factory_ca(tmp_path / "other", "Rogue")
    key = pki.load_private_key(unit.state_dir / "device.key")  # same key: only the CA differs
    forged = other.sign_csr(pki.make_csr(key, unit.device_id, unit.serial))
    (unit.state_dir / "device.pem").write_bytes(pki.cert_pem(forged))
    report = selftest(unit.unit_dir, factory, setup_code=unit.setup_code, payload=unit.payload)
    assert _failed(report) == ["certificate_chain"]
    assert "not signed by" in report.checks[0].message
    assert report.summary == f"SELFTEST {unit.serial} FAILED (5/6)"


def test_whole_chain_from_another_ca_is_detected(
    unit: LabelledUnit, factory: Path, tmp_path: Path
) -> None:
    other = pki.create_factory_ca(tmp_path / "other", "Rogue")
    key = pki.load_private_key(unit.state_dir / "device.key")
    (unit.state_dir / "device.pem").write_bytes(
        pki.cert_pem(other.sign_csr(pki.make_csr(key, unit.device_id, unit.serial)))
    )
    (unit.state_dir / "chain.pem").write_bytes(other.chain_pem())  # consistent, wrong root
    report = selftest(unit.unit_dir, factory, setup_code=unit.setup_code, payload=unit.payload)
    assert _failed(report) == ["certificate_chain"]
    assert "root other than the factory's" in report.checks[0].message


def test_flipped_signature_byte_is_detected(unit: LabelledUnit, factory: Path) -> None:
    pem = unit.state_dir / "device.pem"
    der = bytearray(
        x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(
            pki.serialization.Encoding.DER
        )
    )
    der[-8] ^= 0x01
    pem.write_bytes(pki.cert_pem(x509.load_der_x509_certificate(bytes(der))))
    report = selftest(unit.unit_dir, factory, setup_code=unit.setup_code, payload=unit.payload)
    assert "certificate_chain" in _failed(report)


def test_key_swapped_for_another_is_detected(unit: LabelledUnit, factory: Path) -> None:
    path = unit.state_dir / "device.key"
    path.unlink()
    path.write_bytes(pki.key_pem(pki.make_device_key()))
    report = selftest(unit.unit_dir, factory, setup_code=unit.setup_code, payload=unit.payload)
    assert _failed(report) == ["certificate_key"]


def test_wrong_setup_code_is_detected(unit: LabelledUnit, factory: Path) -> None:
    digits = unit.setup_code.reveal().replace("-", "")
    wrong = Secret(format_setup_code(f"{(int(digits) + 1) % 10**8:08d}"))
    report = selftest(unit.unit_dir, factory, setup_code=wrong, payload=unit.payload)
    assert _failed(report) == ["setup_code"]
    assert "WRONG_SETUP_CODE" in report.checks[CHECKS.index("setup_code")].message


def _relabel(unit: LabelledUnit, payload: Secret) -> None:
    text = LabelText(unit.serial, unit.device_id, unit.setup_code, "DS-TEST", Secret("x" * 12))
    (unit.unit_dir / "label.png").write_bytes(render_png(payload, text))


def test_label_with_another_payload_is_detected(unit: LabelledUnit, factory: Path) -> None:
    _relabel(unit, make_payload(unit.device_id, unit.setup_code, Secret("B" * 26)))
    report = selftest(unit.unit_dir, factory, setup_code=unit.setup_code, payload=unit.payload)
    assert _failed(report) == ["label_qr"]
    message = report.checks[CHECKS.index("label_qr")].message
    assert "differs" in message and "B" * 26 not in message


def test_label_checked_against_the_unit_without_a_payload(
    unit: LabelledUnit, factory: Path
) -> None:
    assert selftest(unit.unit_dir, factory, setup_code=unit.setup_code, payload=None).passed
    _relabel(unit, make_payload(unit.device_id, unit.setup_code, Secret("C" * 26)))
    report = selftest(unit.unit_dir, factory, setup_code=unit.setup_code, payload=None)
    assert _failed(report) == ["label_qr"]
    assert "claim token" in report.checks[CHECKS.index("label_qr")].message


def test_label_png_decodes_to_the_payload(unit: LabelledUnit) -> None:
    assert decode_qr_texts(unit.unit_dir / "label.png") == [unit.payload.reveal()]
    svg = ET.parse(unit.unit_dir / "label.svg").getroot()
    texts = "".join(svg.itertext())
    assert unit.serial in texts and unit.device_id in texts
    assert unit.setup_code.reveal() in texts  # label form 1234-5678


def test_missing_store_fails_without_creating_one(unit: LabelledUnit, factory: Path) -> None:
    for path in unit.state_dir.glob("device.sqlite3*"):
        path.unlink()
    report = selftest(unit.unit_dir, factory, setup_code=unit.setup_code, payload=unit.payload)
    assert _failed(report) == ["setup_code", "state_store"]
    assert not (unit.state_dir / "device.sqlite3").exists()


def test_broken_profile_fails_its_check(unit: LabelledUnit, factory: Path, tmp_path: Path) -> None:
    bad = tmp_path / "profile.yaml"
    bad.write_text("service: [not, a, mapping\n")
    report = selftest(
        unit.unit_dir, factory, setup_code=unit.setup_code, payload=unit.payload, profile_path=bad
    )
    assert _failed(report) == ["gatt_profile"]


def test_reports_json_and_junit(unit: LabelledUnit, factory: Path) -> None:
    wrong = Secret("0000-0001")
    report = selftest(unit.unit_dir, factory, setup_code=wrong, payload=unit.payload)
    data = json.loads((unit.unit_dir / "selftest.json").read_text())
    assert data["passed"] is False and data["summary"] == report.summary
    assert [c["name"] for c in data["checks"]] == list(CHECKS)
    root = ET.parse(unit.unit_dir / "selftest.xml").getroot()
    assert root.tag == "testsuite" and root.get("name") == unit.serial
    assert root.get("tests") == "6" and root.get("failures") == "1"
    cases = root.findall("testcase")
    assert [c.get("name") for c in cases] == list(CHECKS)
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["setup_code"]
    failure = cases[CHECKS.index("setup_code")].find("failure")
    assert failure is not None and "WRONG_SETUP_CODE" in (failure.get("message") or "")
    xml_text = (unit.unit_dir / "selftest.xml").read_text()
    assert unit.setup_code.reveal() not in xml_text and "00000001" not in xml_text


def test_missing_unit_json_fails_checks_not_the_run(unit: LabelledUnit, factory: Path) -> None:
    (unit.state_dir / "unit.json").unlink()
    report = selftest(
        unit.unit_dir, factory, setup_code=unit.setup_code, payload=unit.payload, write=False
    )
    assert report.serial == unit.serial  # from the directory name
    assert set(_failed(report)) == {"certificate_chain", "state_store"}
