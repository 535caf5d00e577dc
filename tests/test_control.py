"""ControlServer and control_request over a real Unix socket; the ``ctl`` CLI end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from device_sim.codes import Code
from device_sim.control import MAX_REQUEST, ControlServer, control_request, socket_path
from device_sim.errors import ConfigError, OnboardingError, TransportError

ROOT = Path(__file__).resolve().parents[1]
WAIT = 5.0  # bound on every wait in these tests


async def _echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"got": args}


async def _invalid(args: dict[str, Any]) -> dict[str, Any]:
    raise OnboardingError(Code.INVALID_STATE, "not while online")


async def _boom(args: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("kaput")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ControlServer]:
    async with ControlServer(tmp_path, {"echo": _echo, "invalid": _invalid}) as srv:
        srv.register("boom", _boom)
        yield srv


async def _raw(path: Path, *chunks: bytes) -> list[bytes]:
    """Send each chunk, read one line after each; stop early at EOF."""
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_unix_connection(os.fspath(path))
        try:
            lines = []
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                lines.append(await reader.readline())
                if not lines[-1]:
                    break
            return lines
        finally:
            writer.close()
            await writer.wait_closed()


async def _eof(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(WAIT):
        return await reader.read()


async def test_ping_and_commands(server: ControlServer, tmp_path: Path) -> None:
    assert await control_request(tmp_path, "ping") == {"pong": True}
    assert await control_request(tmp_path, "commands") == {
        "commands": ["boom", "commands", "echo", "invalid", "ping"]
    }


async def test_handler_receives_args(server: ControlServer, tmp_path: Path) -> None:
    args = {"n": 3, "flag": True, "name": "kitchen"}
    assert await control_request(tmp_path, "echo", args) == {"got": args}


async def test_onboarding_error_keeps_its_code(server: ControlServer, tmp_path: Path) -> None:
    with pytest.raises(OnboardingError) as info:
        await control_request(tmp_path, "invalid")
    assert info.value.code is Code.INVALID_STATE and info.value.detail == "not while online"


async def test_other_exception_is_internal_error_and_logged(
    server: ControlServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(OnboardingError) as info:
        await control_request(tmp_path, "boom")
    assert info.value.code is Code.INTERNAL_ERROR and "RuntimeError" in info.value.detail
    assert "kaput" not in info.value.detail
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "RuntimeError" in record.getMessage() and "kaput" in record.getMessage()
    assert record.exc_info is not None


async def test_unknown_command_lists_known(server: ControlServer, tmp_path: Path) -> None:
    with pytest.raises(OnboardingError) as info:
        await control_request(tmp_path, "reboot")
    assert info.value.code is Code.MALFORMED_REQUEST
    assert "'reboot'" in info.value.detail and "echo, invalid, ping" in info.value.detail


async def test_malformed_lines_then_a_good_one(server: ControlServer) -> None:
    lines = await _raw(
        server.path,
        b"{not json\n",
        b'{"args": {}}\n',
        b"\xff\xfe\n",
        b'{"command": "echo", "args": [1]}\n',
        b"[" * 2000 + b"\n",
        b'{"command": "echo", "args": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}\n",
        b'{"command": "ping"}\n',
    )
    answers = [json.loads(line) for line in lines]
    assert [a.get("code_name") for a in answers[:6]] == ["MALFORMED_REQUEST"] * 6
    assert all(a["ok"] is False and a["code"] == 303 and a["detail"] for a in answers[:6])
    assert "nested deeper than 32" in answers[5]["detail"]
    assert answers[6] == {"ok": True, "result": {"pong": True}}


async def test_sequential_requests_on_one_connection(server: ControlServer) -> None:
    lines = await _raw(
        server.path,
        *(json.dumps({"command": "echo", "args": {"i": i}}).encode() + b"\n" for i in range(3)),
    )
    assert [json.loads(line)["result"]["got"]["i"] for line in lines] == [0, 1, 2]


async def test_line_at_the_limit_is_accepted(server: ControlServer) -> None:
    head = json.dumps({"command": "echo", "args": {"pad": ""}}).encode()
    line = head[:-3] + b"x" * (MAX_REQUEST - len(head)) + head[-3:]
    assert len(line) == MAX_REQUEST
    [answer] = await _raw(server.path, line + b"\n")
    assert json.loads(answer)["ok"] is True


async def test_oversized_line_is_refused_and_closed(server: ControlServer) -> None:
    line = json.dumps({"command": "echo", "args": {"pad": "x" * MAX_REQUEST}}).encode() + b"\n"
    reader, writer = await asyncio.open_unix_connection(os.fspath(server.path))
    try:
        writer.write(line)
        async with asyncio.timeout(WAIT):
            answer = json.loads(await reader.readline())
        assert await _eof(reader) == b""  # the server hung up
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer["ok"] is False and answer["code_name"] == "MESSAGE_TOO_LARGE"
    assert answer["code"] == int(Code.MESSAGE_TOO_LARGE)


async def test_socket_is_private_and_removed_on_stop(tmp_path: Path) -> None:
    srv = ControlServer(tmp_path)
    await srv.start()
    try:
        assert stat.S_IMODE(os.stat(socket_path(tmp_path)).st_mode) == 0o600
    finally:
        await srv.stop()
    assert not socket_path(tmp_path).exists()
    await srv.stop()  # twice is fine


async def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:  # a killed daemon's file
        dead.bind(os.fspath(path))
    with pytest.raises(TransportError, match="refuses connections"):
        await control_request(tmp_path, "ping")
    async with ControlServer(tmp_path):
        assert await control_request(tmp_path, "ping") == {"pong": True}


async def test_second_server_is_refused_while_first_lives(
    server: ControlServer, tmp_path: Path
) -> None:
    second = ControlServer(tmp_path)
    with pytest.raises(TransportError, match="another daemon is already running"):
        await second.start()
    await second.stop()  # must not remove the first server's socket
    assert await control_request(tmp_path, "ping") == {"pong": True}


async def test_non_socket_file_is_not_replaced(tmp_path: Path) -> None:
    socket_path(tmp_path).write_text("mine")
    with pytest.raises(TransportError, match="not a socket"):
        await ControlServer(tmp_path).start()
    assert socket_path(tmp_path).read_text() == "mine"


async def test_no_daemon_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match=r"no daemon is running for .*no control socket"):
        await control_request(tmp_path, "ping")


async def test_register_refuses_a_taken_name(server: ControlServer) -> None:
    with pytest.raises(ConfigError):
        server.register("ping", _echo)


async def test_silent_client_is_dropped(tmp_path: Path) -> None:
    async with ControlServer(tmp_path, idle_timeout=0.2) as srv:
        reader, writer = await asyncio.open_unix_connection(os.fspath(srv.path))
        try:
            assert await _eof(reader) == b""
        finally:
            writer.close()
            await writer.wait_closed()


async def test_stop_drops_connected_clients(tmp_path: Path) -> None:
    srv = ControlServer(tmp_path)
    await srv.start()
    reader, writer = await asyncio.open_unix_connection(os.fspath(srv.path))
    try:
        writer.write(b'{"command": "ping"}\n')
        async with asyncio.timeout(WAIT):
            assert json.loads(await reader.readline())["ok"] is True
            await srv.stop()
        assert await _eof(reader) == b""
    finally:
        writer.close()
        await writer.wait_closed()


async def test_args_are_not_logged(
    server: ControlServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="device_sim")
    await control_request(tmp_path, "echo", {"passphrase": "correct horse"})
    with pytest.raises(OnboardingError):
        await control_request(tmp_path, "invalid", {"passphrase": "correct horse"})
    assert "echo" in caplog.text and "correct horse" not in caplog.text


async def _ctl(state_dir: Path, *argv: str) -> tuple[int, str, str]:
    """``device-sim ctl`` in a subprocess, awaited so this loop keeps serving."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "ctl",
        "--state-dir",
        os.fspath(state_dir),
        *argv,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_ctl_end_to_end(server: ControlServer, tmp_path: Path) -> None:
    rc, out, err = await _ctl(
        tmp_path, "--json", "echo", "n=3", "flag=true", "name=kitchen", 'quoted="7"', "eq=a=b"
    )
    assert rc == 0, err
    assert json.loads(out) == {
        "got": {"n": 3, "flag": True, "name": "kitchen", "quoted": "7", "eq": "a=b"}
    }
    rc, out, err = await _ctl(tmp_path, "ping")
    assert (rc, out) == (0, "pong: true\n")
    rc, out, err = await _ctl(tmp_path, "invalid")
    assert (rc, out) == (1, "")
    assert err.strip() == "error INVALID_STATE (310): not while online"
    rc, out, err = await _ctl(tmp_path, "echo", "oops")
    assert rc == 2 and "KEY=VALUE" in err


async def test_cli_ctl_without_daemon(tmp_path: Path) -> None:
    rc, out, err = await _ctl(tmp_path, "ping")
    assert (rc, out) == (2, "")
    assert "no daemon is running" in err


async def test_a_stream_sends_items_until_the_client_goes(tmp_path: Path) -> None:
    from device_sim.control import control_stream

    more = asyncio.Event()
    ended = asyncio.Event()

    async def counter(args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            for i in range(int(args["from"]), 1000):
                yield {"n": i}
                if i == int(args["from"]) + 1:
                    await more.wait()  # the handler waits for news, as `watch` does
        finally:
            ended.set()

    async def refusing(args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise OnboardingError(Code.MALFORMED_REQUEST, "last: 0 to 200 events")
        yield {}  # pragma: no cover - makes it an async generator

    async with ControlServer(tmp_path) as srv:
        srv.register_stream("count", counter)
        srv.register_stream("refuse", refusing)
        with pytest.raises(ConfigError):
            srv.register_stream("count", counter)
        got: list[int] = []
        async with asyncio.timeout(WAIT):
            stream = control_stream(tmp_path, "count", {"from": 5})
            async for item in stream:
                got.append(item["n"])
                if len(got) == 2:
                    more.set()
                if len(got) == 4:
                    break
            await stream.aclose()  # the client hangs up: the daemon's handler ends
            await ended.wait()
        assert got == [5, 6, 7, 8]
        with pytest.raises(OnboardingError, match="0 to 200"):
            async for _ in control_stream(tmp_path, "refuse"):
                pass
        with pytest.raises(OnboardingError, match="unknown command"):
            async for _ in control_stream(tmp_path, "nope"):
                pass
        assert (await control_request(tmp_path, "ping"))["pong"] is True  # others unaffected
