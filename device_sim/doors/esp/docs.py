"""How the ESP personality reports a diagnostic code (for ``device-sim docs``)."""

from __future__ import annotations

from ...profile import CodeDef, Profile
from .profile import DIAG, esp_def


def reports(profile: Profile, code: CodeDef) -> str:
    if code.category == "client":
        return "not a device code (the phone's own)"
    if code.name == "OK":
        return "GetStatus: sta_state Connected, with the address and SSID"
    diag = f"the specific code {code.id} on the {DIAG} endpoint"
    if code.name in ("DNS_LOST", "INTERNET_LOST"):
        return f"GetStatus: sta_state Connected (still on its Wi-Fi); {diag}"
    if code.category in ("network", "cloud", "device"):
        spec = esp_def(profile)
        reason = "AuthError" if code.name in spec.auth_error_codes else "NetworkNotFound"
        return f"GetStatus: sta_state ConnectionFailed, fail_reason {reason}; {diag}"
    if code.name in ("WRONG_SETUP_CODE", "TOO_MANY_ATTEMPTS"):
        return (
            "prov-session: Status CryptoError for a wrong proof of possession / SRP password, "
            f"InvalidSession while the backoff runs; {diag}"
        )
    return f"the endpoint's Status (InvalidArgument, InternalError or InvalidSession); {diag}"
