"""``device-sim cloud``: ``serve`` in a subprocess (ready line, SIGTERM), the admin commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from device_sim.apps.cloud import CloudAdmin
from device_sim.apps.cloud.cli import add_parser, async_run

from .conftest import PASSWORD, Factory

READY_TIMEOUT = 20.0


@pytest.fixture
async def served(tmp_path: Path, factory: Factory) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim.apps.cloud.cli",
        "serve",
        "--state-dir",
        str(tmp_path / "c"),
        "--listen",
        "127.0.0.1:0",
        "--factory-chain",
        str(factory.chain_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
        assert line, (await proc.stderr.read()).decode()
        yield proc, json.loads(line)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_prints_ready_line_and_stops_on_sigterm(
    served: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    proc, ready = served
    assert set(ready) == {"ready", "url", "ca_file", "admin_token"}
    assert ready["ready"] is True
    assert ready["url"].startswith("https://localhost:")
    assert Path(ready["ca_file"]) == tmp_path / "c" / "server-ca.pem"
    assert (tmp_path / "c" / "admin-token").read_text().strip() == ready["admin_token"]
    async with CloudAdmin(ready["url"], Path(ready["ca_file"]), ready["admin_token"]) as admin:
        await admin.add_account("alice", PASSWORD)
        assert await admin.list_devices("alice", PASSWORD) == []
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), READY_TIMEOUT) == 0
    rest = await proc.stdout.read()
    assert rest == b""  # the ready line is the only stdout output
    assert ready["admin_token"] not in (await proc.stderr.read()).decode()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="device-sim")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["cloud", *argv])


async def test_admin_commands(
    served: tuple[Any, dict[str, Any]],
    factory: Factory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, ready = served
    conn = ["--url", ready["url"], "--ca", ready["ca_file"], "--admin-token", ready["admin_token"]]
    device = factory.device("SN-CLI")
    import_file = tmp_path / "cloud-import.json"
    import_file.write_text(json.dumps({"units": [device.unit()], "registration": []}))

    assert await async_run(_parse(["import", *conn, str(import_file)])) == 0
    assert json.loads(capsys.readouterr().out) == {"imported": 1}
    assert await async_run(_parse(["account", "add", *conn, "alice", "--password", PASSWORD])) == 0
    assert await async_run(_parse(["supply-chain", *conn, device.serial, "alice"])) == 0
    assert await async_run(_parse(["devices", *conn, "alice", "--password", PASSWORD])) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == []
    # A refused command: exit 1 and the error on stderr.
    assert await async_run(_parse(["account", "add", *conn, "alice", "--password", PASSWORD])) == 1
    assert "account_exists" in capsys.readouterr().err
    wrong = ["--url", ready["url"], "--ca", ready["ca_file"], "--admin-token", "nope"]
    assert await async_run(_parse(["supply-chain", *wrong, device.serial, "alice"])) == 1
    assert "admin_token_required" in capsys.readouterr().err


async def test_serve_refuses_a_bad_listen_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse(["serve", "--state-dir", str(tmp_path / "c"), "--listen", "nowhere"])
    assert await async_run(args) == 1
    assert "HOST:PORT" in capsys.readouterr().err


def test_admin_tokens_can_always_be_passed_as_a_flag_value(tmp_path: Path) -> None:
    """A token that starts with "-" (token_urlsafe does, one time in 64) would be read by
    argparse as an option: `--admin-token -abc` fails. Every new token must be safe."""
    from device_sim.apps.cloud.emulator import _load_admin_token

    tokens = []
    for i in range(300):
        (tmp_path / str(i)).mkdir()
        tokens.append(_load_admin_token(tmp_path / str(i)))
    assert len(set(tokens)) == 300
    assert not [t for t in tokens if t.startswith("-")]
