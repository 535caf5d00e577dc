"""How the native personality reports a diagnostic code (for ``device-sim docs``)."""

from __future__ import annotations

from ...profile import CodeDef, Profile


def reports(profile: Profile, code: CodeDef) -> str:
    if code.category == "client":
        return f"the reference client's own code {code.id} (no device sends it)"
    if code.name == "OK":
        return "state online with code 0 in the session's STATUS and EVENTs"
    if code.category in ("session", "request"):
        return (
            f"code {code.id} {code.name} in an ERROR (before a session) or SECURE_ERROR message "
            "answering the request, with its retry-after"
        )
    return (
        f"code {code.id} {code.name} with the failed state in the session's EVENT and STATUS, "
        "on the public state and diagnostics characteristics, and on the SoftAP's /api/v1/state"
    )
