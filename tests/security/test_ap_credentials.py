"""The SoftAP's WPA2 passphrase and the Wi-Fi QR string printed on the label."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim.core.store import DeviceStore
from device_sim.network.base import Security, validate_credentials
from device_sim.security.ap_credentials import ALPHABET, generate_ap_passphrase, wifi_qr_string
from device_sim.security.secret import Secret


def test_passphrases_are_valid_wpa2_random_and_unambiguous() -> None:
    seen = {generate_ap_passphrase(12).reveal() for _ in range(50)}
    assert len(seen) == 50
    for p in seen:
        assert len(p) == 12 and set(p) <= set(ALPHABET) and not set(p) & set("0O1lI")
        validate_credentials(b"DS-ABCD", p, Security.WPA2_PSK)
    with pytest.raises(ValueError):
        generate_ap_passphrase(7)


def test_wifi_qr_escapes_the_special_characters() -> None:
    qr = wifi_qr_string('DS;A,B:"C\\', Secret("pa;ss:wo,rd"))
    assert qr.reveal() == 'WIFI:T:WPA;S:DS\\;A\\,B\\:\\"C\\\\;P:pa\\;ss\\:wo\\,rd;;'
    assert "pa;ss" not in repr(qr)  # a Secret: the passphrase stays out of reprs and logs
    assert wifi_qr_string("DS-1234", None).reveal() == "WIFI:T:nopass;S:DS-1234;;"


def test_init_gives_the_device_its_ap_passphrase_and_label(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "device_sim", "init", "--state-dir", str(tmp_path / "d"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    label = json.loads(out.stdout)
    with DeviceStore(tmp_path / "d") as store:
        identity = store.identity()
    assert identity is not None and identity.softap_passphrase is not None
    assert label["softap_passphrase"] == identity.softap_passphrase.reveal()
    assert label["softap_ssid"] == f"DS-{identity.device_id[-4:].upper()}"
    assert label["softap_wifi_qr"] == (
        f"WIFI:T:WPA;S:{label['softap_ssid']};P:{label['softap_passphrase']};;"
    )
