"""The diagnostics bundle of a device that onboarded (and failed once): everything support
needs, none of the device's secrets."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from device_sim.core.store import DeviceStore
from device_sim.doors import registry
from device_sim.doors.native.flow import provision
from device_sim.network.scenario import load_scenario
from device_sim.security.secret import Secret

from .conftest import SETUP_CODE, Device

pytestmark = [pytest.mark.asyncio(loop_scope="session")]


async def test_bundle_holds_the_story_and_no_secret(
    device: Device, setup_code: Secret, tmp_path: Path
) -> None:
    with DeviceStore(device.state_dir) as store:
        labels = registry.make_labels(store, device.profile, "DS-TEST")  # ESP's PoP exists too
    pop = json.loads(labels["esp_qr"])["pop"]
    ready = await device.start("engineering-wifi", doors="softap-only")
    creds = load_scenario("engineering-wifi").default_credentials
    passphrase = creds.passphrase or ""
    result = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=Secret("wrong-passphrase-1"),
        retries=[(creds.ssid, Secret(passphrase), False)],
    )
    assert result["state"] == "online"
    out = tmp_path / "bundle.tar.gz"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "ctl",
            "--state-dir",
            str(device.state_dir),
            "--out",
            str(out),
            "diagnostics",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(out) as archive:
        names = sorted(Path(m.name).name for m in archive.getmembers())
        texts = {
            Path(m.name).name: archive.extractfile(m).read().decode()  # type: ignore
            for m in archive.getmembers()
        }
    assert names == [
        "daemon.log",
        "identity.json",
        "options.json",
        "scan.json",
        "state.json",
        "summary.txt",
        "timeline.jsonl",
        "versions.json",
    ]
    state = json.loads(texts["state.json"])
    assert state["record"]["state"] == "online" and "softap" in state["doors"]["doors"]
    events = [json.loads(line) for line in texts["timeline.jsonl"].splitlines()]
    assert any(e["code_name"] == "WRONG_CREDENTIALS" for e in events)  # the failed attempt
    assert json.loads(texts["scan.json"])  # the scan list
    assert json.loads(texts["versions.json"])["device-sim"]
    everything = "\n".join(texts.values())
    with DeviceStore(device.state_dir) as store:
        identity = store.identity()
    assert identity is not None and identity.softap_passphrase is not None
    for secret in (
        passphrase,
        "wrong-passphrase-1",
        SETUP_CODE,
        SETUP_CODE.replace("-", ""),
        identity.softap_passphrase.reveal(),
        pop,
        "PRIVATE KEY",
    ):
        assert secret not in everything, "a secret in the bundle"


async def test_a_passphrase_that_is_a_state_name_still_gives_a_bundle(
    device: Device, setup_code: Secret, tmp_path: Path
) -> None:
    """The Wi-Fi passphrase `credentials_received` (a state's name) fails to join: support
    needs the bundle exactly then, and gets it, states and all."""
    ready = await device.start("engineering-wifi", doors="softap-only")
    creds = load_scenario("engineering-wifi").default_credentials
    result = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=Secret("credentials_received"),
    )
    assert result["state"] == "failed"
    out = tmp_path / "bundle.tar.gz"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "ctl",
            "--state-dir",
            str(device.state_dir),
            "--out",
            str(out),
            "--json",
            "diagnostics",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with tarfile.open(out) as archive:
        texts = {
            Path(m.name).name: archive.extractfile(m).read().decode()  # type: ignore
            for m in archive.getmembers()
        }
    events = [json.loads(line) for line in texts["timeline.jsonl"].splitlines()]
    assert "credentials_received" in {e["state"] for e in events}
    assert "WRONG_CREDENTIALS" in {e["code_name"] for e in events}
    assert ("redacted.json" in texts) == ("redacted" in json.loads(done.stdout))


async def test_without_out_it_says_what_to_give(device: Device) -> None:
    await device.start("engineering-wifi", doors="softap-only")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "ctl",
            "--state-dir",
            str(device.state_dir),
            "diagnostics",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--out" in done.stderr and "Traceback" not in done.stderr


async def test_the_same_bundle_over_a_session(
    device: Device, setup_code: Secret, tmp_path: Path
) -> None:
    """An app reads the bundle over its session (DIAGNOSTICS_REQUEST, page by page): the
    reference client's `client diagnostics --out FILE`."""
    ready = await device.start("engineering-wifi", doors="softap-only")
    out = tmp_path / "from-the-phone.tar.gz"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "client",
            "diagnostics",
            "--softap",
            ready["doors"]["softap"]["ap_url"],
            "--setup-code",
            SETUP_CODE,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with tarfile.open(out) as archive:
        names = sorted(Path(m.name).name for m in archive.getmembers())
    assert names == [
        "daemon.log",
        "identity.json",
        "options.json",
        "scan.json",
        "state.json",
        "summary.txt",
        "timeline.jsonl",
        "versions.json",
    ]
    assert SETUP_CODE.replace("-", "") not in out.read_bytes().decode("latin-1")


async def test_a_crashed_device_gets_its_bundle_and_support_opens_it(
    device: Device, setup_code: Secret, tmp_path: Path
) -> None:
    """No daemon answers (it was killed): `ctl diagnostics` builds the bundle from the state
    directory, with a one-screen summary and the daemon's own log lines; `watch --bundle`
    opens it as support would."""
    ready = await device.start("engineering-wifi", doors="softap-only")
    creds = load_scenario("engineering-wifi").default_credentials
    result = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=Secret("wrong-passphrase-1"),
    )
    assert result["code_name"] == "WRONG_CREDENTIALS"
    assert device.daemon is not None
    device.daemon.kill()  # a crash: no clean stop
    await device.daemon.stop()
    out = tmp_path / "crashed.tar.gz"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "ctl",
            "--state-dir",
            str(device.state_dir),
            "--out",
            str(out),
            "diagnostics",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "no daemon answers" in done.stderr
    with tarfile.open(out) as archive:
        texts = {
            Path(m.name).name: archive.extractfile(m).read().decode()  # type: ignore
            for m in archive.getmembers()
        }
    assert {"summary.txt", "daemon.log", "timeline.jsonl", "state.json"} <= set(texts)
    summary = texts["summary.txt"]
    assert "WRONG_CREDENTIALS" in summary and "not running" in summary
    assert "next step:" in summary and len(summary.splitlines()) <= 25  # one screen
    assert "wrong-passphrase-1" not in "".join(texts.values())
    assert "softap" in texts["daemon.log"]  # the daemon's own INFO lines, kept without -v
    opened = subprocess.run(
        [sys.executable, "-m", "device_sim", "watch", "--bundle", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith(summary.splitlines()[0])
    assert "WRONG_CREDENTIALS" in opened.stdout and "next step:" in opened.stdout
    bad = tmp_path / "not-a-bundle.tar.gz"
    bad.write_bytes(b"not gzip")
    refused = subprocess.run(
        [sys.executable, "-m", "device_sim", "watch", "--bundle", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "not a diagnostics bundle" in refused.stderr
