"""How the Improv personality reports a diagnostic code (for ``device-sim docs``)."""

from __future__ import annotations

from ...profile import CodeDef, Profile
from .profile import improv_def


def reports(profile: Profile, code: CodeDef) -> str:
    if code.category == "client":
        return "not a device code (the phone's own)"
    if code.name == "OK":
        return "state provisioned, the redirect URL in the Wi-Fi settings' RPC result"
    spec = improv_def(profile)
    error = spec.error_for(code.name)
    name = next(n for n, v in spec.errors.items() if v == error)
    return (
        f"Improv error {name} ({error:#04x}); the specific code {code.id} on the device's "
        "diagnostics characteristic"
    )
