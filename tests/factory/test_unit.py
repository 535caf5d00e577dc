"""provision_unit and batch: files, uniqueness, records without secrets, pre-provisioning."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from device_sim import pki
from device_sim.apps.factory import outputs
from device_sim.apps.factory import unit as unit_mod
from device_sim.apps.factory.label import LabelText, make_payload, parse_payload
from device_sim.apps.factory.line import batch
from device_sim.apps.factory.registration import create_registration_key, load_registration_key
from device_sim.apps.factory.registry import SerialRegistry
from device_sim.apps.factory.unit import provision_unit
from device_sim.codes import State
from device_sim.core.store import DeviceStore
from device_sim.errors import ConfigError
from device_sim.profile import Profile
from device_sim.security.secret import Secret

from .conftest import LabelledUnit, labelled


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / outputs.RECORDS).read_text().splitlines()]


def test_batch_of_five_units_is_unique_and_chains(factory: Path, out: Path) -> None:
    stream = io.StringIO()
    result = batch(factory, out, 5, station="line-2", workers=2, stream=stream)
    assert result.ok and result.passed == 5 and result.failed == 0
    assert stream.getvalue() == ""  # not a terminal: no bar (and no unit failed)

    units = result.units
    # Made in two worker processes (a unit is CPU-bound: threads would take turns): their
    # secrets stayed there, in the labels they wrote (Secret refuses to be pickled).
    assert all(u.setup_code is None and u.claim_token is None and u.payload is None for u in units)
    assert len({u.serial for u in units}) == 5
    assert len({u.device_id for u in units}) == 5
    chain = (factory / pki.CHAIN).read_bytes()
    fingerprints = set()
    for u in units:
        state = u.state_dir
        cert = x509.load_pem_x509_certificate((state / "device.pem").read_bytes())
        pki.verify_chain(cert, chain)
        key = pki.load_private_key(state / "device.key")
        assert pki.cert_matches_key(cert, key)
        assert _mode(state / "device.key") == 0o600
        fingerprints.add(pki.public_key_fingerprint(cert))
        info = json.loads((state / "unit.json").read_text())
        assert info["serial"] == u.serial and info["device_id"] == u.device_id
        assert info["cert_fingerprint_sha256"] == pki.fingerprint_sha256(cert)
        assert (u.unit_dir / "label.png").stat().st_size > 0
        assert (u.unit_dir / "label.svg").stat().st_size > 0
        with DeviceStore(state) as store:
            identity = store.identity()
        assert identity is not None and identity.device_id == u.device_id
    assert len(fingerprints) == 5
    records = _records(out)
    assert sorted(r["serial"] for r in records) == sorted(u.serial for u in units)
    assert all(r["result"] == "passed" and r["station"] == "line-2" for r in records)
    cloud = json.loads((out / outputs.CLOUD_IMPORT).read_text())
    assert sorted(e["serial"] for e in cloud["units"]) == sorted(u.serial for u in units)
    assert {u.serial for u in SerialRegistry(factory).units()} == {u.serial for u in units}

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    assert batch(factory, out.parent / "tty", 2, station="line-2", stream=tty).ok
    assert "2/2" in tty.getvalue()  # at a terminal: rich's bar


def test_record_fields(unit: LabelledUnit, out: Path, factory: Path) -> None:
    (record,) = _records(out)
    cert = x509.load_pem_x509_certificate((unit.state_dir / "device.pem").read_bytes())
    issuing = pki.load_issuer(factory).issuing_cert
    assert record["cert_serial"] == f"{cert.serial_number:x}"
    assert record["cert_fingerprint_sha256"] == pki.fingerprint_sha256(cert)
    assert record["public_key_fingerprint_sha256"] == pki.public_key_fingerprint(cert)
    assert record["issuer"] == {
        "subject": issuing.subject.rfc4514_string(),
        "fingerprint_sha256": pki.fingerprint_sha256(issuing),
    }
    assert record["not_before"] == cert.not_valid_before_utc.isoformat(timespec="seconds")
    assert record["selftest"] == {"passed": 6, "total": 6, "failed_checks": []}
    assert (
        record["claim_token_sha256"]
        == hashlib.sha256(unit.claim_token.reveal().encode()).hexdigest()
    )
    fields = parse_payload(unit.payload)
    assert fields.device_id == unit.device_id and fields.claim_token == unit.claim_token
    assert len(unit.claim_token.reveal()) == 26  # 128 bits, base32, no padding
    assert "=" not in unit.claim_token.reveal()


def test_records_and_imports_hold_no_secrets(factory: Path, out: Path, profile: Profile) -> None:
    reg = create_registration_key(factory)
    units = [
        labelled(
            provision_unit(
                factory,
                out,
                station="s",
                profile=profile,
                registration=reg,
                site_wifi=(b"Plant WiFi", "site-pass-7731"),
            )
        )
        for _ in range(2)
    ]
    secrets = ["site-pass-7731", reg.secret.reveal(), "BEGIN", "PRIVATE KEY"]
    for u in units:
        with DeviceStore(u.state_dir) as store:
            identity = store.identity()
        assert identity is not None and identity.softap_passphrase is not None
        code = u.setup_code.reveal()
        secrets += [
            code,
            code.replace("-", ""),
            u.claim_token.reveal(),
            u.payload.reveal(),
            identity.softap_passphrase.reveal(),
        ]
    for u in units:  # the things the label carries are really on the label
        assert u.setup_code.reveal() in (u.unit_dir / "label.svg").read_text()
    files = [out / outputs.RECORDS, out / outputs.CLOUD_IMPORT]
    for u in units:
        files += [
            u.state_dir / "unit.json",
            u.unit_dir / "selftest.json",
            u.unit_dir / "selftest.xml",
        ]
    for path in files:
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, f"{path.name} holds a secret"
    assert "<redacted>" in repr(units[0].setup_code) and units[0].setup_code.reveal() not in repr(
        units[0]
    )


def test_site_wifi_preprovisioning(factory: Path, out: Path, profile: Profile) -> None:
    u = provision_unit(
        factory,
        out,
        station="s",
        profile=profile,
        site_wifi=(b"Plant \xe2\x98\x85", "correct horse"),
    )
    with DeviceStore(u.state_dir) as store:
        record, credentials = store.record(), store.credentials()
    assert record.state == State.CREDENTIALS_RECEIVED and record.phase == "factory"
    assert record.ssid == b"Plant \xe2\x98\x85"
    assert credentials is not None and credentials.passphrase == Secret("correct horse")
    assert _records(out)[0]["site_wifi_preprovisioned"] is True


def test_without_site_wifi_the_unit_is_unprovisioned(unit: LabelledUnit) -> None:
    with DeviceStore(unit.state_dir) as store:
        assert store.record().state == State.UNPROVISIONED and store.credentials() is None


@pytest.mark.parametrize(
    "site", [(b"", "password1"), (b"x" * 33, "password1"), (b"ok", "short"), (b"ok", "x" * 64)]
)
def test_bad_site_wifi_is_refused_before_any_serial(
    factory: Path, out: Path, site: tuple[bytes, str]
) -> None:
    with pytest.raises(ConfigError, match="--site-"):
        provision_unit(factory, out, station="s", site_wifi=site)
    assert SerialRegistry(factory).units() == [] and not out.exists()


def test_registration_key_files(factory: Path, out: Path, profile: Profile) -> None:
    reg = create_registration_key(factory)
    assert _mode(factory / "registration.json") == 0o600
    with pytest.raises(ConfigError, match="already has"):
        create_registration_key(factory)
    assert load_registration_key(factory) == reg
    u = provision_unit(factory, out, station="s", profile=profile, registration=reg)
    path = u.state_dir / "registration.json"
    assert _mode(path) == 0o600
    assert json.loads(path.read_text()) == {"key_id": reg.key_id, "secret": reg.secret.reveal()}
    cloud = json.loads((out / outputs.CLOUD_IMPORT).read_text())
    assert cloud["registration"] == [{"key_id": reg.key_id, "secret_sha256": reg.secret_sha256}]
    provision_unit(factory, out, station="s", profile=profile, registration=reg)
    cloud = json.loads((out / outputs.CLOUD_IMPORT).read_text())
    assert len(cloud["units"]) == 2 and len(cloud["registration"]) == 1  # deduplicated


def test_serial_reuse_is_refused(
    unit: LabelledUnit, factory: Path, out: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=unit.serial):
        provision_unit(factory, out, station="s", serial=unit.serial)
    with pytest.raises(ConfigError, match=unit.serial):  # even into another output directory
        provision_unit(factory, tmp_path / "elsewhere", station="s", serial=unit.serial)
    assert not (tmp_path / "elsewhere" / unit.serial).exists()
    assert len(_records(out)) == 1


def test_explicit_serial_is_used(factory: Path, out: Path, profile: Profile) -> None:
    u = provision_unit(factory, out, station="s", serial="QA-24-000123", profile=profile)
    assert u.serial == "QA-24-000123" and (out / "QA-24-000123" / "label.png").exists()


def test_no_ca_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="factory CA"):
        provision_unit(tmp_path / "nothing", tmp_path / "out", station="s")


def test_failed_selftest_marks_record_and_batch_continues(
    factory: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = unit_mod.render_png
    calls = itertools.count()

    def render_with_wrong_payload_for_second_unit(
        payload: Secret, text: Any, qr: Any = None
    ) -> bytes:
        if not isinstance(text, LabelText):  # a personality's own label: not counted
            return real(payload, text, qr)
        if next(calls) == 1:  # a QR of another payload: made here, not the one passed
            return real(make_payload(text.device_id, text.setup_code, Secret("A" * 26)), text)
        return real(payload, text, qr)

    monkeypatch.setattr(unit_mod, "render_png", render_with_wrong_payload_for_second_unit)
    stream = io.StringIO()
    result = batch(factory, out, 3, station="s", progress=False, stream=stream)
    assert not result.ok and (result.passed, result.failed) == (2, 1)
    (bad,) = result.failed_serials
    assert f"SELFTEST {bad} FAILED (5/6)" in stream.getvalue()
    assert "label_qr" in stream.getvalue()
    records = {r["serial"]: r for r in _records(out)}
    assert records[bad]["result"] == "failed"
    assert records[bad]["selftest"]["failed_checks"] == ["label_qr"]
    assert sum(r["result"] == "passed" for r in records.values()) == 2
    cloud = json.loads((out / outputs.CLOUD_IMPORT).read_text())
    assert bad not in {e["serial"] for e in cloud["units"]} and len(cloud["units"]) == 2
    issued = SerialRegistry(factory).lookup(bad)
    assert issued is not None and issued.result == "failed"


def test_outputs_refuse_a_record_with_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="secret"):
        outputs.append_record(tmp_path, {"x": "1234-5678"}, [Secret("1234-5678")])
    with pytest.raises(ValueError, match="PEM"):
        outputs.append_record(tmp_path, {"x": "-----BEGIN PRIVATE KEY-----"}, [])
    assert not (tmp_path / outputs.RECORDS).exists()


def test_personalities_get_their_own_label(factory: Path, out: Path) -> None:
    """ESP's PoP and QR (Espressif's provisioning JSON) are made with the unit, printed on a
    label of their own, and match what the device keeps."""
    import json

    from device_sim.apps.factory.label import decode_qr_texts
    from device_sim.core.store import DeviceStore

    unit = provision_unit(factory, out, station="s")
    (qr,) = decode_qr_texts(unit.unit_dir / "label-esp.png")
    data = json.loads(qr)
    assert data["ver"] == "v1" and data["transport"] == "ble" and len(data["pop"]) >= 8
    with DeviceStore(unit.state_dir) as store:
        assert store.setting("esp.pop") == data["pop"]
        assert data["name"].startswith("DS-")
    assert oct((unit.unit_dir / "label-esp.png").stat().st_mode & 0o777) == "0o600"
    assert data["pop"] not in repr(unit)


def test_claim_lifetime_zero_makes_an_expired_token_and_bad_ones_are_refused(
    factory: Path, out: Path, profile: Profile
) -> None:
    """0 days: QA's "claim token expired" (the token has expired by the time it is used)."""
    u = provision_unit(factory, out, station="s", claim_ttl_days=0, profile=profile)
    import datetime as dt

    made = json.loads((out / "cloud-import.json").read_text())
    (imported,) = [x for x in made["units"] if x["serial"] == u.serial]
    expires = dt.datetime.fromisoformat(imported["claim_expires_at"])
    assert expires <= dt.datetime.now(dt.UTC)  # already expired when used
    for days in (-1, 3651):
        with pytest.raises(ConfigError, match="--claim-ttl-days"):
            provision_unit(factory, out, station="s", claim_ttl_days=days, profile=profile)
