"""A personality's own endpoints on the SoftAP door (how a personality over SoftAP plugs in)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from device_sim.doors.personality import HttpRoute
from device_sim.doors.softap.door import SoftApDoor, SoftApOptions
from device_sim.errors import ConfigError
from device_sim.options import HostPort
from device_sim.testing.stack import build_stack

LOOPBACK = SoftApOptions(listen=HostPort("127.0.0.1", 0), lan=HostPort("127.0.0.1", 0))


async def test_extra_routes_are_served_on_their_listeners(tmp_path: Path) -> None:
    calls: list[bytes] = []

    async def session(request: web.Request) -> web.Response:
        calls.append(await request.read())
        return web.Response(body=b"\x08\x01", content_type="application/octet-stream")

    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path / "device")
        door = SoftApDoor(
            device.port("softap"),
            LOOPBACK,
            routes=lambda host: [HttpRoute("POST", "/prov-session", session)],
        )
        stack.push_async_callback(door.stop)
        await door.start()
        async with aiohttp.ClientSession() as http:
            async with http.post(door.ap.url + "/prov-session", data=b"\x10\x02") as resp:
                assert (resp.status, await resp.read()) == (200, b"\x08\x01")
            async with http.get(door.ap.url + "/prov-session") as resp:
                assert resp.status == 405  # the door's coded answer for a wrong method
                assert (await resp.json())["code_name"] == "MALFORMED_REQUEST"
            async with http.get(door.ap.url + "/api/v1/state") as resp:
                assert resp.status == 200  # the door's own API is still there
    assert calls == [b"\x10\x02"]


@pytest.mark.parametrize(
    "route",
    [
        HttpRoute("GET", "/api/v1/state", lambda r: r),  # the door's own endpoint
        HttpRoute("GET", "/generate_204", lambda r: r),  # a captive probe
        HttpRoute("POST", "prov-config", lambda r: r),  # not a path
    ],
)
async def test_a_clash_is_refused(tmp_path: Path, route: HttpRoute) -> None:
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path / "device")
        with pytest.raises(ConfigError, match="taken or not a path"):
            SoftApDoor(device.port("softap"), LOOPBACK, routes=lambda host: [route])


async def test_a_wildcard_listener_announces_a_reachable_address(tmp_path: Path) -> None:
    """`--softap-listen 0.0.0.0:P` used to announce http://0.0.0.0:P to phones."""
    from device_sim.dial import reachable

    assert reachable("127.0.0.1") is None and reachable("10.42.0.1") is None
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path / "device")
        door = SoftApDoor(
            device.port("softap"),
            SoftApOptions(listen=HostPort("0.0.0.0", 0), lan=HostPort("0.0.0.0", 0)),
        )
        stack.push_async_callback(door.stop)
        for url in (door.ap.url, door.lan.url):
            assert "0.0.0.0" not in url and url.startswith("http://"), url
        named = SoftApDoor(
            device.port("softap"),
            SoftApOptions(
                listen=HostPort("0.0.0.0", 0), lan=HostPort("127.0.0.1", 0), announce="device.local"
            ),
        )
        stack.push_async_callback(named.stop)
        assert named.ap.url.startswith("http://device.local:")
