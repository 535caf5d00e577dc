"""Create a device's identity in its state directory: device id, SRP verifier, SoftAP passphrase.

The setup code is returned once (for the label) and never stored: the device keeps only the SRP
salt and verifier. The factory line (:mod:`device_sim.apps.factory`) builds on this with per-device
keys and certificates.
"""

from __future__ import annotations

import secrets

from ..security.ap_credentials import generate_ap_passphrase
from ..security.secret import Secret
from ..security.setup_code import generate_setup_code, make_verifier
from .store import DeviceStore, Identity


def create_identity(
    store: DeviceStore,
    setup_code: Secret | None = None,
    device_id: str | None = None,
    *,
    ap_passphrase_length: int = 12,
) -> tuple[Identity, Secret]:
    """Give the device in ``store`` an id and a verifier for ``setup_code`` (generated if None).

    Returns the identity and the setup code (to print on the label). Raises StoreError if the
    device already has an identity.
    """
    code = setup_code if setup_code is not None else generate_setup_code()
    salt, verifier = make_verifier(code)
    identity = store.create_identity(
        device_id or secrets.token_hex(8),
        salt,
        verifier,
        generate_ap_passphrase(ap_passphrase_length),
    )
    return identity, code
