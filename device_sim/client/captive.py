"""What a phone OS does after joining a network: is there a captive portal, and where?

:func:`probe_connectivity` fetches a connectivity-check URL without following redirects, the way
Android does with ``generate_204``: 204 means open Internet, a redirect or a page instead means a
captive portal. Given the RFC 8908 API URI (from DHCP option 114, RFC 8910), it also asks the API,
whose ``user-portal-url`` then names the portal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp

from ..codes import Code
from ..errors import TransportError

DEFAULT_PROBE_URL = "http://connectivitycheck.gstatic.com/generate_204"
CAPTIVE_JSON = "application/captive+json"
MAX_BODY = 64 * 1024  # enough to tell "some page" from "no body"


@dataclass(frozen=True)
class PortalProbe:
    """The verdict: ``captive`` with the portal's URL, or open (``status`` 204)."""

    probe_url: str
    status: int
    captive: bool
    portal_url: str | None
    api: dict[str, Any] | None  # the RFC 8908 API's JSON, when an API URI was given


async def probe_connectivity(
    probe_url: str = DEFAULT_PROBE_URL,
    *,
    api_url: str | None = None,
    timeout: float = 5.0,
    session: aiohttp.ClientSession | None = None,
) -> PortalProbe:
    """Probe ``probe_url`` (and the captive-portal API at ``api_url``) like a phone.

    Verdicts: 204, or 200 with an empty body, is open; any 3xx is captive with ``portal_url``
    the ``Location`` (resolved against the probe URL); 200 with a body is captive with the probe
    URL as portal; other statuses (4xx, 5xx) are not captive, just broken, so ``status`` tells.
    An API answer of ``"captive": true`` makes the verdict captive, and its ``user-portal-url``
    wins as ``portal_url``.

    Each request is bounded by ``timeout`` seconds. Raises TransportError (SOFTAP_UNAVAILABLE)
    naming the URL when a request cannot connect, times out or the API does not answer 2xx
    JSON. Pass ``session`` to reuse one (it is left open); otherwise one is opened and closed.
    """
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await _probe(own, probe_url, api_url, timeout)
    return await _probe(session, probe_url, api_url, timeout)


async def _probe(
    session: aiohttp.ClientSession, probe_url: str, api_url: str | None, timeout: float
) -> PortalProbe:
    status, location, body = await _get(session, probe_url, timeout)
    portal_url: str | None = None
    if 300 <= status < 400:
        captive = True
        portal_url = urljoin(probe_url, location) if location else None
    elif status == 200 and body:
        captive, portal_url = True, probe_url
    else:
        captive = False
    api = await fetch_api(session, api_url, timeout) if api_url else None
    if api is not None and api.get("captive") is True:
        captive = True
        user_portal = api.get("user-portal-url")
        if isinstance(user_portal, str) and user_portal and api_url:
            portal_url = urljoin(api_url, user_portal)
    return PortalProbe(
        probe_url=probe_url, status=status, captive=captive, portal_url=portal_url, api=api
    )


async def fetch_api(
    session: aiohttp.ClientSession, api_url: str, timeout: float = 5.0
) -> dict[str, Any]:
    """GET an RFC 8908 captive-portal API. Raises TransportError unless 2xx with a JSON object."""
    status, _, body = await _get(session, api_url, timeout, accept=CAPTIVE_JSON)
    if not 200 <= status < 300:
        raise TransportError(
            f"captive-portal API {api_url} answered HTTP {status}", code=Code.SOFTAP_UNAVAILABLE
        )
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TransportError(
            f"captive-portal API {api_url} sent no JSON: {exc}", code=Code.SOFTAP_UNAVAILABLE
        ) from exc
    if not isinstance(data, dict):
        raise TransportError(
            f"captive-portal API {api_url} sent {type(data).__name__}, not a JSON object",
            code=Code.SOFTAP_UNAVAILABLE,
        )
    return data


async def _get(
    session: aiohttp.ClientSession, url: str, timeout: float, accept: str | None = None
) -> tuple[int, str | None, bytes]:
    """GET without following redirects: (status, Location header, first MAX_BODY bytes)."""
    headers = {"Cache-Control": "no-cache"}
    if accept:
        headers["Accept"] = accept
    try:
        async with session.get(
            url,
            allow_redirects=False,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            body = bytearray()
            async for chunk in resp.content.iter_any():
                body += chunk
                if len(body) >= MAX_BODY:
                    break
            return resp.status, resp.headers.get("Location"), bytes(body[:MAX_BODY])
    except (TimeoutError, aiohttp.ClientError) as exc:
        detail = str(exc) or type(exc).__name__
        raise TransportError(f"GET {url} failed: {detail}", code=Code.SOFTAP_UNAVAILABLE) from exc
