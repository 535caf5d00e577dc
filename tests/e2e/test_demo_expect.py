"""`demo` checks a scenario's `expect`: 0 when the onboarding ends as the scenario says (a
failure scenario included), 1 with a mismatch message when not; the user's own credentials
fall back to 0 online, 1 failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "demo",
            "--zero-delay",
            "--transport",
            "softap",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("scenario", "code"), [("no-dhcp", "NO_DHCP_LEASE"), ("engineering-wifi", "OK")]
)
def test_the_expected_outcome_exits_0(scenario: str, code: str) -> None:
    done = demo("--scenario", scenario)
    assert done.returncode == 0, done.stdout[-800:] + done.stderr[-800:]
    assert f"as the scenario expects: {code}" in done.stdout


def test_a_mismatch_exits_1_and_says_so(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "engineering-wifi.yaml").read_text()
    wrong = tmp_path / "lab-that-should-fail.yaml"
    wrong.write_text(
        text.replace("name: engineering-wifi", "name: lab-that-should-fail").replace(
            "expect: OK", "expect: NO_DHCP_LEASE"
        )
    )
    done = demo("--scenario", str(wrong))
    assert done.returncode == 1
    assert (
        "MISMATCH: the scenario lab-that-should-fail expects NO_DHCP_LEASE, the onboarding ended OK"
    ) in done.stdout


def test_the_users_own_credentials_keep_online_or_not() -> None:
    done = demo("--scenario", "no-dhcp", "--passphrase", "not-the-key-123")
    assert done.returncode == 1 and "expects" not in done.stdout


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        ("cloud-claim-expired", "CLAIM_TOKEN_EXPIRED"),
        ("cloud-claimed-elsewhere", "CLAIMED_BY_ANOTHER_ACCOUNT"),
        ("cloud-down", "CLOUD_UNREACHABLE"),
        ("cloud-rejecting", "CLOUD_ACTIVATION_REJECTED"),
    ],
)
def test_the_clouds_behaviour_comes_from_the_scenario(scenario: str, code: str) -> None:
    """The scenario's `cloud` section: the demo activates in its mode against the cloud
    emulator playing that behaviour, and the device reports the cloud's code."""
    done = demo("--scenario", scenario)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-800:]
    assert f"as the scenario expects: {code}" in done.stdout
    assert "the cloud plays:" in done.stdout
