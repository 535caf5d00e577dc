"""The reference client playing phones as people use them (`client provision --phone`):
a wrong password retyped, Bluetooth denied (the SoftAP fallback), an OS that leaves the
device's network while the user types, a user who walks away. Real daemon, real doors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from device_sim.network.scenario import load_scenario

from .conftest import SETUP_CODE, Device, fresh_adapter

pytestmark = [pytest.mark.asyncio(loop_scope="session")]
LAB = load_scenario("engineering-wifi").default_credentials


def phone(
    device: Device,
    behaviour: dict[str, Any],
    *target: str,
    seed: int = 0,
    passphrase: str | None = LAB.passphrase,
    ssid: bytes = LAB.ssid,
) -> dict[str, Any]:
    env = {**device.vb.env(), "DEVICE_SIM_SETUP_CODE": SETUP_CODE}
    if passphrase is not None:
        env["DEVICE_SIM_PASSPHRASE"] = passphrase  # secrets out of the command line
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "client",
            "provision",
            "--json",
            "--ssid",
            ssid.decode(),
            "--timeout",
            "30",
            "--phone",
            json.dumps(behaviour),
            "--phone-seed",
            str(seed),
            "--device-state-dir",
            str(device.state_dir),
            *target,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert done.stdout, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def ap_url(device: Device) -> str:
    """The device's access point as its control socket reports it now."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "ctl",
            "--state-dir",
            str(device.state_dir),
            "--json",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return str(json.loads(done.stdout)["softap"]["ap_url"])


async def test_a_fumbling_user_retypes_the_password(device: Device) -> None:
    await device.start("engineering-wifi", doors="softap-only")
    always = phone(
        device,
        {"typo_probability": 1.0, "max_tries": 2, "retype_s": 0.1},
        "--softap",
        ap_url(device),
    )
    assert always["code_name"] == "WRONG_CREDENTIALS"
    assert (always["phone"]["tries"], always["phone"]["typos"]) == (2, 2)
    # p 0.5 with a retry: each seed is one repeatable story; some seeds fumble first
    fumbled = 0
    for seed in range(6):
        half = phone(
            device,
            {"typo_probability": 0.5, "max_tries": 5, "retype_s": 0.1},
            "--softap",
            ap_url(device),
            seed=seed,
        )
        if half["state"] != "online":
            assert half["code_name"] == "WRONG_CREDENTIALS" and half["phone"]["tries"] == 5
            continue
        assert half["phone"]["tries"] == half["phone"]["typos"] + 1  # the last one was right
        fumbled += half["phone"]["typos"] > 0
        if fumbled:
            break
        reset = subprocess.run(
            [
                sys.executable,
                "-m",
                "device_sim",
                "ctl",
                "--state-dir",
                str(device.state_dir),
                "factory-reset",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reset.returncode == 0, reset.stderr  # back to unprovisioned, AP up
    assert fumbled, "no seed of six typed the password wrong first (p = 0.5 each)"


async def test_a_phone_without_bluetooth_waits_for_the_softap(device: Device) -> None:
    await device.start("engineering-wifi", "--softap-window", "2", doors="ble-then-softap")
    adapter = await fresh_adapter(device.vb)
    result = phone(
        device, {"bluetooth": False}, "--adapter", adapter, "--name", device.ready["local_name"]
    )
    assert result["state"] == "online", result
    assert result["phone"]["transport"] == "softap"
    assert result["phone"]["seconds"] >= 1.0  # it waited for the device's fallback window


async def test_the_os_leaving_the_ap_mid_typing_and_the_user_rejoining(device: Device) -> None:
    """The phone vanishes (no END_SESSION); the device still holds that session and answers
    BUSY with a retry time; the app waits that long and onboards on the second join."""
    ready = await device.start("engineering-wifi", "--idle-timeout", "2", doors="softap-only")
    result = phone(
        device,
        {"think_s": 2.0, "drops_no_internet_after_s": 0.5, "retype_s": 0.1, "rejoin_s": 0.2},
        "--softap",
        ready["doors"]["softap"]["ap_url"],
    )
    assert result["state"] == "online", result
    assert result["phone"]["drops"] == 1
    assert any("left the device's AP" in line for line in result["phone"]["story"])


async def test_a_user_who_walks_away_leaves_a_device_that_recovers(device: Device) -> None:
    ready = await device.start(
        "slow-dhcp", "--time-scale", "0.05", zero_delay=False, doors="softap-only"
    )
    home = load_scenario("slow-dhcp").default_credentials  # its DHCP answers after 2.5 s
    result = phone(
        device,
        {"walks_away_after_s": 0.4},
        "--softap",
        ready["doors"]["softap"]["ap_url"],
        passphrase=home.passphrase,
        ssid=home.ssid,
    )
    assert result["state"] == "abandoned" and result["code_name"] == "CLIENT_TIMEOUT", result
    assert result["phone"]["walked_away"] is True
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "ctl",
            "--state-dir",
            str(device.state_dir),
            "--json",
            "status",
            "wait_decided_ms=0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(done.stdout)["state"] in (
        "joining",
        "failed",
        "session_open",
        "credentials_received",
        "unprovisioned",
    )


async def test_bad_phone_behaviours_are_refused_with_their_key() -> None:
    for behaviour, words in [
        ('{"typo_probability": 2}', "--phone.typo_probability"),
        ('{"bluetooh": false}', "--phone.bluetooh: unknown key"),
        ("[1]", "a phone behaviour is a mapping"),
        ("not json", "--phone: not a JSON object"),
    ]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "device_sim",
                "client",
                "provision",
                "--ssid",
                "x",
                "--setup-code",
                SETUP_CODE,
                "--softap",
                "http://127.0.0.1:9",
                "--phone",
                behaviour,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and words in done.stderr, (behaviour, done.stderr)
        assert "Traceback" not in done.stderr
