"""The cloud API's errors: one class for both sides of the wire.

The emulator raises :class:`CloudApiError` to answer ``{"error": name, "detail": ...}`` with an
HTTP status; the admin client raises the same class when the emulator answers with an error, so a
caller can match on ``exc.error`` either way. Details never contain a secret.
"""

from __future__ import annotations

from ...codes import Code
from ...errors import DeviceSimError

__all__ = ["CloudApiError", "bad_request", "rejected"]

# Error names the device maps to diagnostic codes (gatt_profile.yaml, category cloud).
_CODES = {
    "activation_rejected": Code.CLOUD_ACTIVATION_REJECTED,
    "claim_token_expired": Code.CLAIM_TOKEN_EXPIRED,
    "claim_token_used": Code.CLAIM_TOKEN_USED,
    "claimed_by_another_account": Code.CLAIMED_BY_ANOTHER_ACCOUNT,
}


class CloudApiError(DeviceSimError):
    """An error answer of the cloud API: HTTP ``status``, machine-readable ``error``, ``detail``."""

    def __init__(self, status: int, error: str, detail: str = "") -> None:
        super().__init__(detail, code=_CODES.get(error, Code.INTERNAL_ERROR))
        self.status = status
        self.error = error

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, "detail": self.detail}

    def __str__(self) -> str:
        return (
            f"{self.status} {self.error}: {self.detail}"
            if self.detail
            else f"{self.status} {self.error}"
        )

    def __repr__(self) -> str:
        return f"CloudApiError({self.status}, {self.error!r}, {self.detail!r})"


def bad_request(detail: str) -> CloudApiError:
    """A 400 ``bad_request`` (malformed or invalid input)."""
    return CloudApiError(400, "bad_request", detail)


def rejected(detail: str) -> CloudApiError:
    """A 403 ``activation_rejected``."""
    return CloudApiError(403, "activation_rejected", detail)
