"""``device-sim factory ...`` through argparse (as the command line wires it), and the line
script."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from device_sim.apps.factory import unit as unit_mod
from device_sim.apps.factory.cli import add_parser, run
from device_sim.apps.factory.label import LabelText, decode_qr_texts, make_payload, parse_payload
from device_sim.core.store import DeviceStore
from device_sim.security.secret import Secret

REPO = Path(__file__).resolve().parents[2]


def cli(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="device-sim")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args([str(a) for a in argv])
    assert args.command == "factory"
    return run(args)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    assert cli("factory", "ca", "--factory-dir", tmp_path / "f", "--name", "CLI") == 0
    return tmp_path / "f"


def test_ca_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("factory", "ca", "--factory-dir", tmp_path / "f", "--name", "CLI") == 0
    out = capsys.readouterr().out
    assert "CN=CLI Root CA" in out and "offline" in out and "PRIVATE" not in out
    assert cli("factory", "ca", "--factory-dir", tmp_path / "f") == 2
    assert "already exists" in capsys.readouterr().err


def test_unit_end_to_end(ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    rc = cli(
        "factory",
        "unit",
        "--factory-dir",
        ca_dir,
        "--out",
        out_dir,
        "--station",
        "st-9",
        "--site-ssid",
        "Plant",
        "--site-passphrase",
        "plantpass99",
        "--registration",
        "--json",
    )
    assert rc == 0
    stdout = capsys.readouterr().out
    data = json.loads(stdout)
    assert data["passed"] is True and data["summary"].endswith("PASSED (6/6)")
    unit_dir = Path(data["unit_dir"])
    (payload,) = decode_qr_texts(unit_dir / "label.png")
    fields = parse_payload(payload)
    assert fields.device_id == data["device_id"]
    for secret in (fields.setup_code.reveal(), fields.claim_token.reveal(), "plantpass99"):
        assert secret not in stdout
    with DeviceStore(unit_dir / "state") as store:
        assert store.record().phase == "factory" and store.record().ssid == b"Plant"
    assert (unit_dir / "state" / "registration.json").exists()

    # the self-test again, as an operator would run it with the label in hand
    code = f"{fields.setup_code.reveal()[:4]}-{fields.setup_code.reveal()[4:]}"
    base = ("factory", "selftest", "--factory-dir", ca_dir, "--unit", unit_dir)
    assert cli(*base, "--setup-code", code, "--payload-from-label") == 0
    assert f"SELFTEST {data['serial']} PASSED (6/6)" in capsys.readouterr().out
    assert cli(*base, "--setup-code", code, "--payload", payload) == 0
    capsys.readouterr()
    wrong = "0000-0000" if code != "0000-0000" else "1111-1111"
    assert cli(*base, "--setup-code", wrong, "--payload-from-label", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert {c["name"] for c in report["checks"] if not c["passed"]} == {"label_qr", "setup_code"}

    # serial reuse
    assert (
        cli(
            "factory",
            "unit",
            "--factory-dir",
            ca_dir,
            "--out",
            out_dir,
            "--station",
            "s",
            "--serial",
            data["serial"],
        )
        == 2
    )
    assert data["serial"] in capsys.readouterr().err


def test_batch_exit_codes(
    ca_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        cli(
            "factory",
            "batch",
            "--factory-dir",
            ca_dir,
            "--out",
            tmp_path / "a",
            "--count",
            "3",
            "--station",
            "s",
            "--no-progress",
            "--json",
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["passed"] == 3 and len(set(summary["serials"])) == 3

    real = unit_mod.render_png

    def wrong_label(payload: Secret, text: Any, qr: Any = None) -> bytes:
        if not isinstance(text, LabelText):  # a personality's own label (ESP's): untouched
            return real(payload, text, qr)
        return real(make_payload(text.device_id, text.setup_code, Secret("Z" * 26)), text)

    monkeypatch.setattr(unit_mod, "render_png", wrong_label)
    assert (
        cli(
            "factory",
            "batch",
            "--factory-dir",
            ca_dir,
            "--out",
            tmp_path / "b",
            "--count",
            "2",
            "--station",
            "s",
        )
        == 1
    )
    captured = capsys.readouterr()
    assert "2 failed" in captured.out and captured.err.count("FAILED (5/6)") == 2


def test_missing_ca_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli(
            "factory",
            "batch",
            "--factory-dir",
            tmp_path / "none",
            "--out",
            tmp_path / "o",
            "--count",
            "1",
            "--station",
            "s",
        )
        == 2
    )
    assert "factory CA" in capsys.readouterr().err


def test_factory_line_script(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "STATION": "line-7",
        "FACTORY_DIR": str(tmp_path / "f"),
        "OUT_DIR": str(tmp_path / "o"),
        "PYTHON": sys.executable,
    }
    script = str(REPO / "scripts" / "factory_line.sh")
    first = subprocess.run(
        [script, "2", "--no-progress"], env=env, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "f" / "chain.pem").exists() and "creating one" in first.stderr
    second = subprocess.run(
        [script, "1", "--no-progress"], env=env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0, second.stderr
    assert "creating one" not in second.stderr  # the CA is made once
    records = (tmp_path / "o" / "records.jsonl").read_text().splitlines()
    assert len(records) == 3 and all(json.loads(r)["station"] == "line-7" for r in records)
    no_station = subprocess.run(
        [script, "1"], env={**env, "STATION": ""}, capture_output=True, text=True, timeout=60
    )
    assert no_station.returncode == 2


def test_batch_progress_in_a_log_file_is_plain(ca_dir: Path, tmp_path: Path) -> None:
    """A station's log (stderr to a file) gets no carriage returns and no colour codes."""
    log = tmp_path / "station.log"
    with log.open("w") as err:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "device_sim",
                "factory",
                "batch",
                "--factory-dir",
                str(ca_dir),
                "--out",
                str(tmp_path / "o"),
                "--count",
                "2",
                "--station",
                "s",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, log.read_text()
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    assert "batch: 2 units, 2 passed" in proc.stdout


def test_batch_ctrl_c_stops_after_the_unit_being_made(ca_dir: Path, tmp_path: Path) -> None:
    """SIGINT during a 300-unit batch: the unit in progress is finished, no other starts, and
    the summary lists exactly the units whose records were written."""
    import signal
    import time

    out = tmp_path / "o"
    records = out / "records.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_sim",
            "factory",
            "batch",
            "--factory-dir",
            str(ca_dir),
            "--out",
            str(out),
            "--count",
            "300",
            "--station",
            "s",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60  # bounded wait for the first finished unit's record
        while not (records.exists() and records.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no unit made in 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    made = [json.loads(line) for line in records.read_text().splitlines()]
    assert 1 <= len(made) < 300
    assert f"batch interrupted: {len(made)} of 300 units made" in stdout
    for record in made:
        assert record["serial"] in stdout
