"""Small HTTP pieces of the SoftAP door: coded JSON errors, bounded body reads, message records.

Every error the door answers is JSON with the profile's code, user message and next step, and the
HTTP status the profile assigns to that code (``softap.http.status_for_code``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ...codes import Code
from ...errors import OnboardingError
from ...guarded_http import Answer, read_body
from ...profile import Profile

__all__ = [
    "LISTENER",
    "coded_answer",
    "error_body",
    "error_response",
    "json_response",
    "query_ms",
    "read_body",
    "require_content_type",
    "retry_headers",
]

LISTENER = web.AppKey("listener", str)  # which listener an app serves: ap | lan


def json_response(
    data: dict[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def error_body(
    profile: Profile, code: Code, detail: str, retry_after_ms: int = 0
) -> dict[str, Any]:
    entry = profile.code(code)
    return {
        "code": entry.id,
        "code_name": entry.name,
        "message": entry.user_message,
        "next_step": entry.next_step,
        "detail": detail,
        "retry_after_ms": retry_after_ms,
    }


def coded_answer(profile: Profile) -> Answer:
    """What a guarded listener answers for a code: the profile's status and error body."""
    return lambda code, detail: (
        profile.softap.http.status(code),
        error_body(profile, code, detail),
    )


def retry_headers(retry_after_ms: int) -> dict[str, str]:
    return {"Retry-After": str(max(1, -(-retry_after_ms // 1000)))} if retry_after_ms else {}


def error_response(profile: Profile, exc: OnboardingError) -> web.Response:
    return json_response(
        error_body(profile, exc.code, exc.detail, exc.retry_after_ms),
        profile.softap.http.status(exc.code),
        headers=retry_headers(exc.retry_after_ms),
    )


def require_content_type(request: web.Request, expected: str) -> None:
    if request.content_type != expected:
        raise OnboardingError(
            Code.UNSUPPORTED_MEDIA_TYPE,
            f"{request.method} {request.path} takes {expected}, "
            f"not {request.content_type or 'no content type'}",
        )


def query_ms(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OnboardingError(Code.MALFORMED_REQUEST, f"{name} must be an integer") from None
    if value < 0:
        raise OnboardingError(Code.MALFORMED_REQUEST, f"{name} must be >= 0")
    return min(value, maximum)
