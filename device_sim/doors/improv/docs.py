"""How the Improv personality reports a diagnostic code (for ``device-sim docs``)."""

from __future__ import annotations

from ...profile import CodeDef, Profile
from .profile import improv_def

# The connected life's codes: no RPC is running when they happen, so no Improv error is set.
STILL_ASSOCIATED = frozenset({"DNS_LOST", "INTERNET_LOST"})
OFF_THE_NETWORK = frozenset(
    {"LINK_LOST", "LEASE_LOST", "SAVED_NETWORKS_NOT_FOUND", "SAVED_NETWORK_REJECTED"}
)


def reports(profile: Profile, code: CodeDef) -> str:
    if code.category == "client":
        return "not a device code (the phone's own)"
    if code.name == "OK":
        return "state provisioned, the redirect URL in the Wi-Fi settings' RPC result"
    diag = f"the specific code {code.id} on the device's diagnostics characteristic"
    if code.name in STILL_ASSOCIATED:
        return f"state stays provisioned (the device is still on its Wi-Fi); {diag}"
    if code.name in OFF_THE_NETWORK:
        return (
            "state back to authorization_required (it was provisioned): a client sets it up "
            f"again after a button press, as the first time; {diag}"
        )
    spec = improv_def(profile)
    error = spec.error_for(code.name)
    name = next(n for n, v in spec.errors.items() if v == error)
    return (
        f"Improv error {name} ({error:#04x}); the specific code {code.id} on the device's "
        "diagnostics characteristic"
    )
