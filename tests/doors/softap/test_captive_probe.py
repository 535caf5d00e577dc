"""probe_connectivity against a real aiohttp server on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from device_sim.client.captive import CAPTIVE_JSON, probe_connectivity
from device_sim.codes import Code
from device_sim.errors import TransportError

SEEN_ACCEPT = web.AppKey("seen_accept", list[str])
PORTAL_HTML = "<html><body>Set up your device</body></html>"


def build_app() -> web.Application:
    seen_accept: list[str] = []

    async def no_content(_: web.Request) -> web.Response:
        return web.Response(status=204)

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("/portal?from=probe")

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PORTAL_HTML, content_type="text/html")

    async def empty(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404, text="nope")

    async def api(request: web.Request) -> web.Response:
        seen_accept.append(request.headers.get("Accept", ""))
        base = f"http://{request.host}"
        body = {
            "captive": True,
            "user-portal-url": f"{base}/setup",
            "venue-info-url": f"{base}/about",
        }
        return web.json_response(body, content_type=CAPTIVE_JSON)

    async def api_open(_: web.Request) -> web.Response:
        return web.json_response({"captive": False}, content_type=CAPTIVE_JSON)

    async def api_list(_: web.Request) -> web.Response:
        return web.json_response([1, 2])

    app = web.Application()
    app[SEEN_ACCEPT] = seen_accept
    app.router.add_get("/generate_204", no_content)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/page", page)
    app.router.add_get("/empty", empty)
    app.router.add_get("/missing", missing)
    app.router.add_get("/captive-portal/api", api)
    app.router.add_get("/api-open", api_open)
    app.router.add_get("/api-list", api_list)
    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, web.Application]]:
    app = build_app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()


async def test_204_is_open(server: tuple[str, web.Application]) -> None:
    base, _ = server
    probe = await probe_connectivity(f"{base}/generate_204")
    assert probe.status == 204 and not probe.captive
    assert probe.portal_url is None and probe.api is None
    assert probe.probe_url == f"{base}/generate_204"


async def test_redirect_is_captive_with_resolved_location(
    server: tuple[str, web.Application],
) -> None:
    base, _ = server
    probe = await probe_connectivity(f"{base}/redirect")
    assert probe.status == 302 and probe.captive
    assert probe.portal_url == f"{base}/portal?from=probe"


async def test_page_instead_of_204_is_captive(server: tuple[str, web.Application]) -> None:
    base, _ = server
    probe = await probe_connectivity(f"{base}/page")
    assert probe.status == 200 and probe.captive
    assert probe.portal_url == f"{base}/page"


async def test_empty_200_is_open_and_404_is_not_captive(
    server: tuple[str, web.Application],
) -> None:
    base, _ = server
    assert not (await probe_connectivity(f"{base}/empty")).captive
    probe = await probe_connectivity(f"{base}/missing")
    assert probe.status == 404 and not probe.captive and probe.portal_url is None


async def test_api_user_portal_url_wins(server: tuple[str, web.Application]) -> None:
    base, app = server
    probe = await probe_connectivity(f"{base}/redirect", api_url=f"{base}/captive-portal/api")
    assert probe.captive and probe.status == 302
    assert probe.api == {
        "captive": True,
        "user-portal-url": f"{base}/setup",
        "venue-info-url": f"{base}/about",
    }
    assert probe.portal_url == f"{base}/setup"
    assert app[SEEN_ACCEPT] == [CAPTIVE_JSON]


async def test_api_captive_overrides_an_open_probe(server: tuple[str, web.Application]) -> None:
    base, _ = server
    probe = await probe_connectivity(f"{base}/generate_204", api_url=f"{base}/captive-portal/api")
    assert probe.status == 204 and probe.captive and probe.portal_url == f"{base}/setup"


async def test_api_not_captive_keeps_probe_verdict(server: tuple[str, web.Application]) -> None:
    base, _ = server
    probe = await probe_connectivity(f"{base}/page", api_url=f"{base}/api-open")
    assert probe.captive and probe.portal_url == f"{base}/page"
    assert probe.api == {"captive": False}


@pytest.mark.parametrize(("path", "words"), [("/missing", "HTTP 404"), ("/api-list", "list")])
async def test_bad_api_raises(server: tuple[str, web.Application], path: str, words: str) -> None:
    base, _ = server
    with pytest.raises(TransportError) as info:
        await probe_connectivity(f"{base}/generate_204", api_url=f"{base}{path}")
    assert f"{base}{path}" in str(info.value) and words in str(info.value)


async def test_connection_refused_names_the_url() -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/generate_204"
    with pytest.raises(TransportError) as info:
        await probe_connectivity(url, timeout=2.0)
    assert url in str(info.value)
    assert info.value.code is Code.SOFTAP_UNAVAILABLE
