"""The SoftAP's own Wi-Fi credentials: a per-device WPA2 passphrase and the Wi-Fi QR string.

The passphrase is made with the device's identity and printed on its label (with a
``WIFI:T:WPA;S:...;P:...;;`` QR code that phones join by scanning). It protects the link the
setup code and the home Wi-Fi passphrase cross when a phone provisions over the SoftAP.
"""

from __future__ import annotations

import secrets

from .secret import Secret

# No 0/O, 1/l/I: the label is read by people and typed on phones.
ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def generate_ap_passphrase(length: int = 12) -> Secret:
    """A random WPA2 passphrase of ``length`` characters (8-63), about 5 bits per character."""
    if not 8 <= length <= 63:
        raise ValueError(f"a WPA2 passphrase has 8 to 63 characters, not {length}")
    return Secret("".join(secrets.choice(ALPHABET) for _ in range(length)))


def _escape(text: str) -> str:
    # The Wi-Fi QR format (ZXing "WIFI:" / Wi-Fi Alliance) escapes \ ; , : " with a backslash.
    return "".join("\\" + ch if ch in '\\;,:"' else ch for ch in text)


def wifi_qr_string(ssid: str, passphrase: Secret | None) -> Secret:
    """The ``WIFI:`` string for a QR code; an open AP when ``passphrase`` is None.

    Returned as a Secret because it contains the passphrase.
    """
    if passphrase is None:
        return Secret(f"WIFI:T:nopass;S:{_escape(ssid)};;")
    return Secret(f"WIFI:T:WPA;S:{_escape(ssid)};P:{_escape(passphrase.reveal())};;")
