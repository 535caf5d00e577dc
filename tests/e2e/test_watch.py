"""`device-sim watch` in another process while the reference client onboards a device: the
event stream (wall-clock time, sequence rising across restarts, time since CONNECT) shows each
phase as it happens, before the outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from device_sim.doors.native.flow import provision
from device_sim.network.scenario import load_scenario
from device_sim.security.secret import Secret

from .conftest import Device

pytestmark = [pytest.mark.asyncio(loop_scope="session")]
SLOW = ["--time-scale", "0.05", "--timeout-scale", "0.05"]  # 50 s DHCP -> 2.5 s, its limit 1 s


async def watcher(state_dir: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "watch",
        "--state-dir",
        str(state_dir),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )


async def lines_until_done(proc: asyncio.subprocess.Process, timeout: float = 60) -> list[str]:
    async with asyncio.timeout(timeout):
        out, _ = await proc.communicate()
    return out.decode().splitlines()


async def test_watch_shows_dhcp_before_the_outcome(device: Device, setup_code: Secret) -> None:
    ready = await device.start("slow-dhcp", *SLOW, zero_delay=False, doors="softap-only")
    watch = await watcher(device.state_dir, "--json", "--until-outcome", "--timeout", "60")
    assert watch.stdout is not None
    joined = json.loads(await asyncio.wait_for(watch.stdout.readline(), 15))  # it is watching
    creds = load_scenario("slow-dhcp").default_credentials
    result = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=Secret(creds.passphrase or ""),
        outcome_timeout=30,
    )
    assert result["code_name"] == "NO_DHCP_LEASE", (result.get("detail"), result.get("timings_ms"))
    items = [joined, *(json.loads(line) for line in await lines_until_done(watch))]
    assert watch.returncode == 1  # the outcome: failed
    assert items[0]["kind"] == "state"
    live = [i for i in items if i["kind"] == "event" and not i.get("backlog")]
    phases = [i["phase"] for i in live]
    assert "dhcp" in phases and phases.index("dhcp") < phases.index("failed")
    failed = live[phases.index("failed")]
    assert failed["code_name"] == "NO_DHCP_LEASE" and "dhcp took over" in failed["detail"]
    seqs = [i["seq"] for i in live]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for item in live:  # RFC 3339 UTC wall-clock time
        assert dt.datetime.fromisoformat(item["at"].replace("Z", "+00:00")).tzinfo is not None
    dhcp = live[phases.index("dhcp")]
    assert dhcp["since_connect_ms"] is not None and dhcp["since_session_ms"] is not None
    assert failed["since_connect_ms"] >= dhcp["since_connect_ms"]

    # The sequence keeps rising across a restart; the watcher follows the daemon across it.
    follow = await watcher(device.state_dir, "--json", "--timeout", "20", "--last", "0")
    assert follow.stdout is not None
    first = json.loads(await asyncio.wait_for(follow.stdout.readline(), 10))
    assert first["kind"] == "state" and first["code_name"] == "NO_DHCP_LEASE"
    await device.stop()
    await device.start("engineering-wifi", zero_delay=True, doors="softap-only")
    again = json.loads(await asyncio.wait_for(follow.stdout.readline(), 15))
    assert again["kind"] == "state"  # reconnected to the new daemon
    follow.terminate()
    await follow.communicate()
    text = await watcher(device.state_dir, "--last", "5", "--timeout", "2")
    shown = "\n".join(await lines_until_done(text))
    assert "device:" in shown
    late = [e for e in await _events(device) if e["seq"] > max(seqs)]
    assert late, "events after the restart have higher sequence numbers"


async def _events(device: Device) -> list[dict[str, Any]]:
    lines = (device.state_dir / "onboarding.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


async def _sse_events(
    url: str, headers: dict[str, str] | None = None, until: Any = None, timeout: float = 30
) -> list[tuple[str, dict]]:
    """Read a Server-Sent Events stream until ``until(kind, data)`` is true."""
    import aiohttp

    got: list[tuple[str, dict]] = []
    async with (
        aiohttp.ClientSession() as http,
        asyncio.timeout(timeout),
        http.get(url, headers=headers or {}) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        kind = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                got.append((kind, json.loads(line.removeprefix("data: "))))
                if until is not None and until(kind, got[-1][1]):
                    return got
    return got


async def test_watch_listener_streams_server_sent_events(
    device: Device, setup_code: Secret
) -> None:
    ready = await device.start(
        "slow-dhcp",
        *SLOW,
        "--watch",
        "--watch-listen",
        "127.0.0.1:0",
        zero_delay=False,
        doors="softap-only",
    )
    url = ready["watch"]
    assert url.startswith("http://127.0.0.1:")
    creds = load_scenario("slow-dhcp").default_credentials
    done = lambda kind, data: data.get("phase") == "failed"  # noqa: E731

    reading = asyncio.ensure_future(_sse_events(url + "/events", until=done))
    await asyncio.sleep(0)  # the watcher's request goes out before the onboarding starts
    result = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=Secret(creds.passphrase or ""),
        outcome_timeout=30,
    )
    events = await reading
    assert result["code_name"] == "NO_DHCP_LEASE", (result.get("detail"), result.get("timings_ms"))
    assert events[0][0] == "state"
    phases = [d["phase"] for kind, d in events if kind == "onboarding"]
    assert phases.index("dhcp") < phases.index("failed")
    assert events[-1][1]["code_name"] == "NO_DHCP_LEASE"
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/state") as resp:
            assert (await resp.json())["code_name"] == "NO_DHCP_LEASE"
        async with http.post(url + "/state") as resp:
            assert resp.status == 405  # read-only


async def test_watch_listener_off_loopback_needs_its_token(device: Device) -> None:
    import aiohttp

    ready = await device.start(
        "engineering-wifi", "--watch", "--watch-listen", "0.0.0.0:0", doors="softap-only"
    )
    port = ready["watch"].rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{port}"
    token_file = device.state_dir / "watch.token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    token = token_file.read_text().strip()
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/state") as resp:
            assert resp.status == 401
        async with http.get(url + "/state", headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 401
        async with http.get(url + "/state", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200 and (await r.json())["state"] == "unprovisioned"
    assert token not in device.log.read_text()


async def test_watch_listener_can_require_its_token_on_loopback_and_times_out_headers(
    device: Device,
) -> None:
    """Other local users cannot watch when the token is required; a connection that never
    finishes its headers gets the coded 408 (it used to stay open for good)."""
    import aiohttp

    ready = await device.start(
        "engineering-wifi",
        "--watch",
        "--watch-listen",
        "127.0.0.1:0",
        "--watch-require-token",
        doors="softap-only",
    )
    url = ready["watch"]
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\nX-a: ")  # and never the end
    token = (device.state_dir / "watch.token").read_text().strip()
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/state") as resp:
            assert resp.status == 401
            assert (await resp.json())["code_name"] == "SESSION_REQUIRED"
        async with http.get(url + "/state", params={"token": token}) as resp:
            assert resp.status == 200
    try:
        async with asyncio.timeout(15):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(body)["code_name"] == "CLIENT_TIMEOUT"


async def test_the_live_view_at_a_real_terminal(device: Device, setup_code: Secret) -> None:
    """`device-sim watch` with a pseudo-terminal as its output (the live view, not --plain):
    it draws before any event arrived, follows an onboarding, and Ctrl-C ends it cleanly. The
    first draw used to crash (exit 70) at every real terminal."""
    import pty
    import signal

    ready = await device.start("engineering-wifi", doors="softap-only")
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "watch",
        "--state-dir",
        str(device.state_dir),
        "--last",
        "0",
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"},
    )
    os.close(slave)
    screen = bytearray()
    loop = asyncio.get_running_loop()
    grew = asyncio.Event()

    def readable() -> None:
        try:
            screen.extend(os.read(master, 65536))
        except OSError:  # the child closed its end
            loop.remove_reader(master)
        grew.set()

    async def until(text: bytes) -> None:
        async with asyncio.timeout(30):
            while text not in screen:
                grew.clear()
                await grew.wait()

    loop.add_reader(master, readable)
    try:
        await until(b"unprovisioned")  # the first draw: the device's state, no event yet
        creds = load_scenario("engineering-wifi").default_credentials
        result = await provision(
            device.profile,
            device.target_softap(ready),
            setup_code=setup_code,
            ssid=creds.ssid,
            passphrase=Secret(creds.passphrase or ""),
            outcome_timeout=30,
        )
        assert result["state"] == "online"
        await until(b"online")
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            code = await proc.wait()
    finally:
        loop.remove_reader(master)
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = screen.decode(errors="replace")
    assert code in (0, 130), text[-2000:]
    assert "Traceback" not in text and "ValueError" not in text


async def test_watch_follows_a_remote_listener_by_url_and_token(
    device: Device, setup_code: Secret
) -> None:
    """`watch --url` (another host's device, or this one's listener) with its token: the
    stream as lines until the outcome; without the token it says what to give."""
    ready = await device.start(
        "engineering-wifi",
        "--watch",
        "--watch-listen",
        "127.0.0.1:0",
        "--watch-require-token",
        doors="softap-only",
    )
    token = (device.state_dir / "watch.token").read_text().strip()
    refused = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "watch",
        "--url",
        ready["watch"],
        "--timeout",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await refused.communicate()
    assert refused.returncode == 2 and b"--token" in err
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "watch",
        "--url",
        ready["watch"],
        "--token",
        token,
        "--until-outcome",
        "--timeout",
        "60",
        "--last",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):  # the first line: the device's state, before onboarding
        first = (await proc.stdout.readline()).decode()
    assert "device: unprovisioned" in first, first
    creds = load_scenario("engineering-wifi").default_credentials
    result = await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=Secret(creds.passphrase or ""),
    )
    assert result["state"] == "online"
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    phases = [line.split()[-1] for line in out.decode().splitlines() if line.strip()]
    assert "dhcp" in phases and phases[-1] == "online", out.decode()
