"""ESP's protocomm sessions over the SoftAP (``POST /prov-session`` and the rest), as hostile
stations on the same access point would try them: the device issues its own session cookies
and binds each to the address it was issued to, bare CMD0s cannot push out an established
session, and a body that trickles in times out with a code."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest_asyncio

from device_sim.doors.esp import proto
from device_sim.doors.esp.device import EspPersonality
from device_sim.doors.esp.security import ClientSecurity
from device_sim.doors.softap.door import SoftApDoor, SoftApOptions
from device_sim.network.scenario import load_scenario
from device_sim.options import HostPort
from device_sim.profile import load_profile
from device_sim.testing.stack import build_stack

LOOPBACK = SoftApOptions(listen=HostPort("127.0.0.1", 0), lan=HostPort("127.0.0.1", 0))
PROFILE = load_profile()
FAST = replace(
    PROFILE, softap=replace(PROFILE.softap, http=replace(PROFILE.softap.http, body_timeout_ms=300))
)


@pytest_asyncio.fixture
async def esp(tmp_path: Path) -> AsyncIterator[tuple[EspPersonality, SoftApDoor]]:
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path / "device", profile=FAST)
        personality = EspPersonality(device.port("esp"), security=1, patch=None)
        door = SoftApDoor(device.port("softap"), LOOPBACK, routes=personality.http_routes)
        stack.push_async_callback(door.stop)
        await door.start()
        yield personality, door


class Station:
    """A phone (or a neighbour) on the AP: its own address and cookie jar."""

    def __init__(self, url: str, source: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(source, 0)),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )

    async def post(
        self, endpoint: str, data: bytes, cookies: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        async with self.http.post(f"{self.url}/{endpoint}", data=data, cookies=cookies) as resp:
            return resp.status, await resp.read()

    async def handshake(self, pop: str) -> ClientSecurity:
        sec = ClientSecurity(1, pop=pop.encode(), password=pop, patch=0)
        answer = None
        while (request := sec.request(answer)) is not None:
            status, raw = await self.post("prov-session", proto.encode(proto.SESSION, request))
            assert status == 200, raw
            answer = proto.decode(proto.SESSION, raw)
        return sec

    async def status(self, sec: ClientSecurity) -> tuple[int, Any]:
        assert sec.cipher is not None
        body = sec.cipher.encrypt(
            proto.encode(proto.CONFIG, {"msg": proto.CMD_GET_STATUS, "cmd_get_status": {}})
        )
        status, raw = await self.post("prov-config", body)
        if status != 200:
            return status, json.loads(raw)
        return status, proto.decode(proto.CONFIG, sec.cipher.decrypt(raw))

    async def close(self) -> None:
        await self.http.close()


CMD0 = proto.encode(
    proto.SESSION,
    {"sec_ver": 1, "sec1": {"msg": proto.CMD0, "sc0": {"client_pubkey": b"\x01" * 32}}},
)


async def test_bare_cmd0s_from_another_station_cannot_end_an_established_session(
    esp: tuple[EspPersonality, SoftApDoor],
) -> None:
    personality, door = esp
    phone = Station(door.ap.url, "127.0.0.1")
    neighbour = Station(door.ap.url, "127.0.0.66")
    try:
        sec = await phone.handshake(personality.endpoints.pop.reveal())
        for _ in range(personality.spec.max_sessions * 2):  # no cookie: a new session each
            neighbour.http.cookie_jar.clear()
            await neighbour.post("prov-session", CMD0)
        status, answer = await phone.status(sec)
        assert status == 200 and answer["resp_get_status"]["sta_state"] == proto.STA_DISCONNECTED
    finally:
        await phone.close()
        await neighbour.close()


async def test_a_cookie_is_the_devices_and_bound_to_its_address(
    esp: tuple[EspPersonality, SoftApDoor],
) -> None:
    personality, door = esp
    phone = Station(door.ap.url, "127.0.0.1")
    neighbour = Station(door.ap.url, "127.0.0.67")
    try:
        # A cookie the client made up is not taken as the session's key.
        chosen = {"session": "attacker-chosen-cookie-0001"}
        async with phone.http.post(
            f"{door.ap.url}/prov-session", data=CMD0, cookies=chosen
        ) as resp:
            issued = resp.cookies["session"].value
        assert issued != chosen["session"] and len(issued) >= 32
        phone.http.cookie_jar.clear()
        sec = await phone.handshake(personality.endpoints.pop.reveal())
        cookie = {c.key: c.value for c in phone.http.cookie_jar}["session"]
        # Seen by a neighbour: from its address the cookie is refused, coded, and ends nothing.
        status, raw = await neighbour.post("prov-session", CMD0, cookies={"session": cookie})
        assert status == 401 and json.loads(raw)["code_name"] == "SESSION_REQUIRED"
        status, raw = await neighbour.post("prov-config", b"\x00" * 16, cookies={"session": cookie})
        assert json.loads(raw)["code_name"] == "SESSION_REQUIRED"
        status, answer = await phone.status(sec)
        assert status == 200, answer
    finally:
        await phone.close()
        await neighbour.close()


async def test_a_body_that_trickles_in_times_out_with_a_code(
    esp: tuple[EspPersonality, SoftApDoor],
) -> None:
    _, door = esp
    parts = urlsplit(door.ap.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(b"POST /prov-session HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n\x08")
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            body = await reader.readexactly(length)
    finally:
        writer.close()
    assert b" 408 " in head.split(b"\r\n")[0], head
    assert json.loads(body)["code_name"] == "CLIENT_TIMEOUT"


class EspProvLike:
    """A client that behaves as Espressif's esp_prov does over the SoftAP: one kept-alive
    http.client connection for everything, the session cookie sent back, a scan asking for 100
    entries at once, and 5 s of sleep before each status poll. (Its behaviour, not its code.)"""

    def __init__(self, url: str, pop: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        self.cookie = ""
        self.sec = ClientSecurity(1, pop=pop.encode(), password=pop, patch=0)
        self.ports: set[int] = set()

    def post(self, endpoint: str, body: bytes) -> bytes:
        headers = {"Content-type": "application/x-www-form-urlencoded", "Accept": "text/plain"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        self.conn.request("POST", "/" + endpoint, body, headers)
        reply = self.conn.getresponse()
        data = reply.read()
        assert reply.status == 200, (endpoint, reply.status, data[:200])
        if reply.getheader("Set-Cookie"):
            self.cookie = reply.getheader("Set-Cookie", "").split(";")[0]
        assert self.conn.sock is not None
        self.ports.add(self.conn.sock.getsockname()[1])
        return data

    def secure(self, endpoint: str, schema: Any, message: dict[str, Any]) -> dict[str, Any]:
        assert self.sec.cipher is not None
        raw = self.post(endpoint, self.sec.cipher.encrypt(proto.encode(schema, message)))
        return proto.decode(schema, self.sec.cipher.decrypt(raw))

    def provision(self, ssid: bytes, passphrase: bytes) -> tuple[int, list[bytes], int]:
        """Returns the number of scan entries, the SSIDs listed and the final sta_state."""
        json.loads(self.post("proto-ver", b"---"))
        answer = None
        while (request := self.sec.request(answer)) is not None:
            answer = proto.decode(
                proto.SESSION, self.post("prov-session", proto.encode(proto.SESSION, request))
            )
        self.secure(
            "prov-scan",
            proto.SCAN,
            {"msg": proto.CMD_SCAN_START, "cmd_scan_start": {"blocking": 1}},
        )
        status = self.secure(
            "prov-scan", proto.SCAN, {"msg": proto.CMD_SCAN_STATUS, "cmd_scan_status": {}}
        )
        count = status["resp_scan_status"]["result_count"]
        result = self.secure(
            "prov-scan",
            proto.SCAN,
            {"msg": proto.CMD_SCAN_RESULT, "cmd_scan_result": {"start_index": 0, "count": 100}},
        )
        listed = [e["ssid"] for e in result["resp_scan_result"]["entries"]]
        self.secure(
            "prov-config",
            proto.CONFIG,
            {
                "msg": proto.CMD_SET_CONFIG,
                "cmd_set_config": {"ssid": ssid, "passphrase": passphrase},
            },
        )
        self.secure(
            "prov-config", proto.CONFIG, {"msg": proto.CMD_APPLY_CONFIG, "cmd_apply_config": {}}
        )
        for _ in range(6):  # bounded: 30 s
            time.sleep(5.0)  # esp_prov's own pause before each poll, on the idle connection
            state = self.secure(
                "prov-config", proto.CONFIG, {"msg": proto.CMD_GET_STATUS, "cmd_get_status": {}}
            )["resp_get_status"]
            if state.get("sta_state", 0) != proto.STA_CONNECTING:
                return count, listed, state.get("sta_state", 0)
        return count, listed, proto.STA_CONNECTING


async def test_an_esp_prov_like_client_onboards_over_a_concurrent_access_point(
    tmp_path: Path,
) -> None:
    """esp_prov's pattern end to end (the issue: its idle connection got an unprompted 408 and
    its 100-entry scan listed 4 of 6 networks): online, every network listed, one connection."""
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path / "device", scenario="typical-home")
        personality = EspPersonality(device.port("esp"), security=1, patch=None)
        door = SoftApDoor(
            device.port("softap"),
            replace(LOOPBACK, concurrent=True),
            routes=personality.http_routes,
        )
        stack.push_async_callback(door.stop)
        await door.start()
        creds = load_scenario("typical-home").default_credentials
        client = EspProvLike(door.ap.url, personality.endpoints.pop.reveal())
        try:
            count, listed, sta = await asyncio.to_thread(
                client.provision, creds.ssid, (creds.passphrase or "").encode()
            )
        finally:
            client.conn.close()
        assert sta == proto.STA_CONNECTED
        assert count > personality.spec.scan_page and len(listed) == count
        assert creds.ssid in listed
        assert len(client.ports) == 1  # one kept-alive connection served everything
