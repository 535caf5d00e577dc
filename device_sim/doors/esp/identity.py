"""The ESP personality's secrets and label: the proof of possession (also the security 2
password) and the security 2 salt and verifier, kept in the device's settings under ``esp.``.

``device-sim init`` and the factory step make them with the device's identity and print them on
the label the way Espressif's apps scan it (their QR JSON). A device made before the ESP
personality existed gets them the first time the personality starts (``device-sim ctl esp-label``
prints the label then).
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from collections.abc import Callable, Mapping
from typing import Any

from ...profile import Profile
from ...security.secret import Secret
from ...session.port import DoorPort
from .profile import EspDef, esp_def
from .security import make_verifier, password_interoperates

LOG = logging.getLogger(__name__)
_ALPHABET = string.ascii_letters + string.digits


def make_credentials(
    setting: Callable[[str], str | None], set_setting: Callable[[str, str], None], spec: EspDef
) -> tuple[Secret, bytes, bytes]:
    """The PoP, salt and verifier from the settings, made and stored when absent."""
    pop, salt, verifier = setting("pop"), setting("srp_salt"), setting("srp_verifier")
    if pop is None or salt is None or verifier is None:
        while True:  # a PoP every client can use (security.password_interoperates)
            pop = "".join(secrets.choice(_ALPHABET) for _ in range(spec.pop_length))
            if password_interoperates(spec.username, pop):
                break
        salt_b, verifier_b = make_verifier(spec.username, pop)
        salt, verifier = salt_b.hex(), verifier_b.hex()
        set_setting("pop", pop)
        set_setting("srp_salt", salt)
        set_setting("srp_verifier", verifier)
    return Secret(pop), bytes.fromhex(salt), bytes.fromhex(verifier)


def credentials(port: DoorPort, spec: EspDef) -> tuple[Secret, bytes, bytes]:
    """The device's ESP secrets (made now, and logged as such, if its identity has none)."""
    if port.setting("pop") is None:
        LOG.warning(
            "esp: this device had no proof of possession; one was made now "
            "(`device-sim ctl esp-label` prints its label)"
        )
    return make_credentials(port.setting, port.set_setting, spec)


def label_fields(
    setting: Callable[[str], str | None],
    set_setting: Callable[[str, str], None],
    profile: Profile,
    local_name: str,
) -> dict[str, str]:
    """What the label says for ESP apps (made with the identity by init and the factory)."""
    spec = esp_def(profile)
    pop, _, _ = make_credentials(setting, set_setting, spec)
    return {
        "esp_qr": _qr(local_name, pop, "ble"),
        "esp_qr_softap": _qr(local_name, pop, "softap"),
        "esp_username": spec.username,
    }


def qr_payload(port: DoorPort, spec: EspDef, transport: str = "ble") -> str:
    pop, _, _ = credentials(port, spec)
    name = port.profile.advertising.local_name_pattern.format(short_id=port.identity.short_id)
    return _qr(name, pop, transport)


def _qr(name: str, pop: Secret, transport: str) -> str:
    """Espressif's provisioning QR content: {"ver":"v1","name":..,"pop":..,"transport":..}."""
    payload = {"ver": "v1", "name": name, "pop": pop.reveal(), "transport": transport}
    return json.dumps(payload, separators=(",", ":"))


def phone_options(label: Mapping[str, str]) -> dict[str, Any]:
    """The phone-side options a device's label gives: the PoP from its QR."""
    if "esp_qr" not in label:
        return {}
    return {"pop": Secret(json.loads(label["esp_qr"])["pop"])}
