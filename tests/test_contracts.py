"""Every shipped contract (device_sim/data/contracts/) holds real output: the ready line, init
--json, client provision --json, the events of watch --json and of the SSE stream, the bench's
results.json and a fleet's fleet.json (the last two checked where their tests make them)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from device_sim.apps.daemon_process import DaemonProcess, daemon_argv
from device_sim.contracts import CONTRACTS, contract
from device_sim.errors import ConfigError
from device_sim.network.scenario import load_scenario
from device_sim.testing.cli import clean_env, python

jsonschema = pytest.importorskip("jsonschema")  # a test dependency: CI=true fails without it


def holds(name: str, value: Any) -> None:
    """``value`` holds contract ``name`` (AssertionError naming the place otherwise)."""
    errors = sorted(jsonschema.Draft202012Validator(contract(name)).iter_errors(value), key=str)
    assert not errors, f"{name}: {errors[0].json_path}: {errors[0].message}"


def test_every_contract_is_a_valid_schema_and_a_wrong_value_breaks_it() -> None:
    import jsonschema

    for name in CONTRACTS:
        jsonschema.Draft202012Validator.check_schema(contract(name))
    with pytest.raises(AssertionError, match="ready"):
        holds("ready", {"ready": True})  # a ready line without its fields
    with pytest.raises(ConfigError):
        contract("no-such-contract")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return python("-m", "device_sim", *args, cwd=cwd)


async def test_the_daemon_the_client_and_the_watch_stream_keep_their_contracts(
    tmp_path: Path,
) -> None:
    made = _cli("init", "--state-dir", str(tmp_path / "dev"), "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    label = json.loads(made.stdout)
    holds("init", label)
    argv = daemon_argv(
        tmp_path / "dev",
        adapter="hci0",
        scenario="engineering-wifi",
        zero_delay=True,
        doors="softap-only",
        extra=["--watch", "--watch-listen", "127.0.0.1:0"],
    )
    daemon = DaemonProcess(argv, clean_env(), tmp_path / "daemon.log")
    ready = await daemon.start()
    try:
        holds("ready", ready)
        creds = load_scenario("engineering-wifi").default_credentials
        provision = await asyncio.to_thread(
            _cli,
            "client", "provision", "--softap", ready["doors"]["softap"]["ap_url"],
            "--setup-code", label["setup_code"], "--ssid", creds.ssid.decode(),
            "--passphrase", creds.passphrase or "", "--json",
            cwd=tmp_path,
        )  # fmt: skip
        assert provision.returncode == 0, provision.stderr
        result = json.loads(provision.stdout)
        holds("provision-result", result)
        assert result["events"]
        for event in result["events"]:
            holds("event", event)
        watched = await asyncio.to_thread(
            _cli, "watch", "--state-dir", str(tmp_path / "dev"), "--json", "--last", "30",
            "--until-outcome", "--timeout", "10", cwd=tmp_path,
        )  # fmt: skip
        items = [json.loads(line) for line in watched.stdout.splitlines() if line.strip()]
        events = [item for item in items if item.get("kind") == "event"]
        assert events, watched.stdout + watched.stderr
        for event in events:
            holds("event", event)
        for event in await _sse_events(ready["watch"]):
            holds("event", event)
    finally:
        await daemon.stop()


async def _sse_events(url: str) -> list[dict[str, Any]]:
    """The onboarding events the watch listener's SSE stream replays first."""
    import aiohttp

    got: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as http,
        asyncio.timeout(15),
        http.get(url + "/events") as resp,
    ):
        assert resp.status == 200
        kind = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "onboarding":
                got.append(json.loads(line.removeprefix("data: ")))
                if got[-1]["state"] == "online":
                    return got
    return got
