"""The enterprise flags as users run them: the world's certificates written as files by one
process, read by the demo's phone in another (the world's CAs come from fixed seeds), a bad
file or flag a one-line error naming it, and the password from the environment."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from device_sim.testing.cli import clean_env


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device_sim", *argv],
        capture_output=True,
        text=True,
        timeout=90,
        env=env or clean_env(),
    )


def test_certificate_files_from_one_process_onboard_in_another(tmp_path: Path) -> None:
    done = run("scenario", "certs", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for name in ("world-ca.pem", "client.pem", "client.key", "client-expired.pem"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    demo = ["demo", "--scenario", "enterprise-tls", "--zero-delay", "--json"]
    demo += ["--transport", "softap"]
    files = ["--eap-ca", str(tmp_path / "world-ca.pem"),
             "--eap-private-key", str(tmp_path / "client.key")]  # fmt: skip
    for cert, expected in (("client.pem", "OK"), ("client-expired.pem", "EAP_CLIENT_CERT_EXPIRED")):
        done = run(*demo, *files, "--eap-client-cert", str(tmp_path / cert))
        assert json.loads(done.stdout)["code_name"] == expected, done.stderr[-2000:]


def test_bad_enterprise_flags_are_one_line_each(tmp_path: Path) -> None:
    demo = ["demo", "--scenario", "enterprise-peap", "--zero-delay", "--transport", "softap"]
    missing = run(*demo, "--eap-ca", str(tmp_path / "nope.pem"))
    assert missing.returncode == 2 and "--eap-ca: cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr
    improv = run(*demo, "--personality", "improv", "--eap-method", "peap")
    assert improv.returncode == 2 and "no enterprise (802.1X) settings" in improv.stderr
    alone = run("client", "provision", "--softap", "http://127.0.0.1:9", "--ssid", "Corp",
                "--setup-code", "1234-5678", "--eap-password", "x")  # fmt: skip
    assert alone.returncode == 2 and "--eap-method: required" in alone.stderr


def test_the_password_may_come_from_the_environment() -> None:
    env = {**clean_env(), "DEVICE_SIM_EAP_PASSWORD": "not-the-password"}
    done = run("demo", "--scenario", "enterprise-peap", "--zero-delay", "--json",
               "--transport", "softap", env=env)  # fmt: skip
    result = json.loads(done.stdout)
    assert result["code_name"] == "EAP_CREDENTIALS_REJECTED"
    assert "not-the-password" not in done.stdout + done.stderr
