"""The SoftAP door's captive-portal behaviour: OS connectivity probes, the RFC 8908 API, the
portal mode's redirects, and the phone-side probe helper against the real door on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from device_sim.client.captive import probe_connectivity
from device_sim.codes import Code
from device_sim.profile import Profile

from .conftest import StackFactory

CAPTIVE_JSON = "application/captive+json"
FOREIGN_HOST = "connectivitycheck.gstatic.com"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def get(
    http: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, str, bytes, CIMultiDictProxy[str]]:
    async with http.get(url, allow_redirects=False, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.read(), resp.headers


def assert_json_404(profile: Profile, status: int, ctype: str, body: bytes) -> None:
    assert (status, ctype) == (404, "application/json"), (status, ctype, body)
    err = json.loads(body)
    assert (err["code"], err["code_name"]) == (int(Code.MALFORMED_REQUEST), "MALFORMED_REQUEST")
    assert err["message"] == profile.code(Code.MALFORMED_REQUEST).user_message


@pytest.mark.parametrize("mode", ["app", "portal"])
async def test_every_probe(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession, mode: str
) -> None:
    stack = await make_stack(captive_mode=mode)
    assert profile.softap.probes
    for probe in profile.softap.probes:
        # Phones send the probe server's name; on the AP the catch-all DNS sends it here.
        status, ctype, body, headers = await get(http, stack.url + probe.path, Host=FOREIGN_HOST)
        if mode == "app":  # as the real servers answer: the OS believes it is online
            assert (status, ctype) == (probe.status, probe.content_type), probe
            assert body == probe.body.encode(), probe
        else:  # every probe leads to the sign-in page
            assert status == 302, probe
            assert headers["Location"] == stack.url + "/", probe


@pytest.mark.parametrize("mode, captive", [("app", False), ("portal", True)])
async def test_captive_portal_api(
    make_stack: StackFactory, http: aiohttp.ClientSession, mode: str, captive: bool
) -> None:
    stack = await make_stack(captive_mode=mode)
    status, ctype, body, _ = await get(http, stack.url + "/captive-portal/api", Accept=CAPTIVE_JSON)
    assert (status, ctype) == (200, CAPTIVE_JSON)
    api = json.loads(body)
    assert api["captive"] is captive
    assert api["user-portal-url"] == stack.url + "/"


async def test_portal_mode_redirects_pages_but_not_apis(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack(captive_mode="portal")
    portal = stack.url + "/"
    status, _, _, headers = await get(http, stack.url + "/", Host=FOREIGN_HOST)
    assert (status, headers["Location"]) == (302, portal)
    # Addressed to the device itself (with or without the port): the page.
    host, port = stack.door.ap.host, stack.door.ap.port
    for own in (f"{host}:{port}", host):
        status, ctype, body, headers = await get(http, stack.url + "/", Host=own)
        assert (status, ctype) == (200, "text/html"), own
        assert b"<form" in body.lower() or b"<html" in body.lower()
        assert "Content-Security-Policy" in headers
    for path in ("/some/page", "/index.html", "/success"):
        status, _, _, headers = await get(http, stack.url + path)
        assert (status, headers["Location"]) == (302, portal), path
    # APIs never redirect: a client expecting JSON gets JSON.
    for path in ("/api/v1/nope", "/portal/v1/nope"):
        status, ctype, body, _ = await get(http, stack.url + path)
        assert_json_404(profile, status, ctype, body)
    status, ctype, body, _ = await get(http, stack.url + "/api/v1/state")
    assert (status, ctype) == (200, "application/json")


async def test_app_mode_unknown_path_is_json_404(
    make_stack: StackFactory, profile: Profile, http: aiohttp.ClientSession
) -> None:
    stack = await make_stack(captive_mode="app")
    for path in ("/some/page", "/api/v1/nope", "/favicon.ico"):
        status, ctype, body, _ = await get(http, stack.url + path)
        assert_json_404(profile, status, ctype, body)
    # The page itself is served in app mode too, whatever the Host.
    status, ctype, _, _ = await get(http, stack.url + "/", Host=FOREIGN_HOST)
    assert (status, ctype) == (200, "text/html")


async def test_phone_probe_in_app_mode_sees_no_portal(make_stack: StackFactory) -> None:
    stack = await make_stack(captive_mode="app")
    probe = await probe_connectivity(
        stack.url + "/generate_204", api_url=stack.url + "/captive-portal/api"
    )
    assert probe.status == 204 and not probe.captive and probe.portal_url is None
    assert probe.api is not None and probe.api["captive"] is False


async def test_phone_probe_in_portal_mode_finds_the_page(make_stack: StackFactory) -> None:
    stack = await make_stack(captive_mode="portal")
    probe = await probe_connectivity(
        stack.url + "/generate_204", api_url=stack.url + "/captive-portal/api"
    )
    assert probe.status == 302 and probe.captive
    assert probe.portal_url == stack.url + "/"
    # The probe alone (no DHCP option 114) also finds it, through the redirect.
    alone = await probe_connectivity(stack.url + "/hotspot-detect.html")
    assert alone.captive and alone.portal_url == stack.url + "/" and alone.api is None
