"""Never stranded, end to end: the shipped stories through `device-sim demo` over BLE (BlueZoo)
and the SoftAP (loopback), every personality re-onboarding, a softap-only device whose network
is gone, a loss forced on a running daemon, the saved networks over the reference client, and
reopened doors that ask the same proofs as the first onboarding."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from device_sim.control import control_request
from device_sim.core.store import Credentials, DeviceStore
from device_sim.doors import registry
from device_sim.doors.improv.client import provision_improv
from device_sim.doors.native import flow
from device_sim.errors import OnboardingError
from device_sim.security.secret import Secret

from .conftest import Device

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]

STORIES = ["router-reboot", "router-replaced", "late-router", "moved", "new-passphrase"]
SCALE = "0.1"  # the world and the device's timers ten times faster


async def demo(*args: str, timeout: float = 150) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "demo",
        "--zero-delay",
        "--json",
        "--time-scale",
        SCALE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"demo {' '.join(args)}: no result within {timeout} s") from None
    assert out, err.decode()[-800:]
    return proc.returncode or 0, json.loads(out), err.decode()


# The runs of `demo`, all at once (4 at a time), shared by the tests below: name -> argv.
RUNS: dict[tuple[str, str], list[str]] = {
    **{
        (name, transport): ["--scenario", name, "--transport", transport]
        for name in STORIES
        for transport in ("ble", "softap")
    },
    **{
        ("router-replaced", f"{personality}-{transport}"): [
            "--scenario",
            "router-replaced",
            "--personality",
            personality,
            "--transport",
            transport,
        ]
        for personality, transport in (("improv", "ble"), ("esp", "ble"), ("esp", "softap"))
    },
    ("router-replaced", "claim"): [
        "--scenario",
        "router-replaced",
        "--activation",
        "claim",
        "--transport",
        "softap",
    ],
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def played() -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
    gate = asyncio.Semaphore(4)

    async def one(key: tuple[str, str]) -> tuple[tuple[str, str], tuple[int, dict[str, Any]]]:
        async with gate:
            code, result, _ = await demo(*RUNS[key])
        return key, (code, result)

    return dict(await asyncio.gather(*(one(key) for key in RUNS)))


async def test_every_story_ends_as_it_expects_over_ble_and_the_softap(
    played: dict[tuple[str, str], tuple[int, dict[str, Any]]],
) -> None:
    """`demo --scenario NAME` for the five stories, both transports: exit 0, online, and the
    story's own expectations (its events in order, doors, time back online, phone sessions,
    the network it ends on) all met."""
    failed = {
        key: r["story"]["mismatches"] or r["code_name"]
        for key, (code, r) in played.items()
        if code != 0
    }
    assert failed == {}
    by = {key: r for key, (_, r) in played.items()}
    for transport in ("ble", "softap"):
        replaced = by["router-replaced", transport]["story"]
        assert replaced["phone_sessions"] == 1 and replaced["online_ssid"] == "Miller Fiber"
        assert replaced["reonboarding"]["state"] == "online"  # the phone's own view
        reboot = by["router-reboot", transport]["story"]
        assert reboot["phone_sessions"] == 0 and reboot["doors_reopened"]
        assert "LINK_LOST" in reboot["codes"] and reboot["back_online_s"] <= 40
        moved = by["moved", transport]["story"]
        assert moved["associations"] == 1 and not moved["doors_reopened"]
        rejected = by["new-passphrase", transport]["story"]
        assert "SAVED_NETWORK_REJECTED" in rejected["codes"]


@pytest.mark.parametrize("variant", ["improv-ble", "esp-ble", "esp-softap"])
async def test_every_personality_reonboards_after_the_router_is_replaced(
    played: dict[tuple[str, str], tuple[int, dict[str, Any]]], variant: str
) -> None:
    """The same proof as the first time: Improv's button, ESP's PoP (the native setup code:
    the stories above)."""
    code, result = played["router-replaced", variant]
    assert code == 0, result["story"]["mismatches"]
    assert result["story"]["online_ssid"] == "Miller Fiber"
    assert result["story"]["reonboarding"]["state"] == "online"


async def test_a_reonboarded_device_keeps_its_cloud_binding_and_owner(
    played: dict[tuple[str, str], tuple[int, dict[str, Any]]],
) -> None:
    code, result = played["router-replaced", "claim"]
    assert code == 0, result["story"]["mismatches"]
    assert result["activation"]["status"] == "active" and result["activation"]["account"] == "alice"
    # Not claimed again: the cloud's binding is the first one (generation 1), same mode.
    assert result["cloud_listing"]["generation"] == 1 == result["activation"]["generation"]
    assert result["cloud_listing"]["mode"] == "claim"


WORLD = """\
name: {name}
description: the device's saved network is gone; only a new one is here
default_credentials: {{ssid: New Net, passphrase: "new-net-passphrase", expect: OK}}
history:
  networks: [{{ssid: Old Net, passphrase: "old-net-passphrase"}}]
access_points:
  - {{ssid: New Net, bssid: "02:00:00:00:10:01", security: wpa2-psk,
     passphrase: "new-net-passphrase"}}
"""


def stranded(tmp_path: Path, device: Device) -> Path:
    """A device that was online on Old Net (its past), in a world with only New Net."""
    path = tmp_path / "stranded.yaml"
    path.write_text(WORLD.format(name="stranded"))
    with DeviceStore(device.state_dir) as store:
        store.remember_history(
            [Credentials(b"Old Net", Secret("old-net-passphrase"), False)], online=True
        )
    return path


async def until_event(
    device: Device, match: Any, *, after: int = 0, timeout: float = 30
) -> dict[str, Any]:
    """The first event after sequence number ``after`` that ``match``es (the device's own
    stream, backlog included)."""
    from device_sim.control import control_stream

    async with asyncio.timeout(timeout):
        async for item in control_stream(device.state_dir, "watch", {"last": 200}):
            if item.get("kind") == "event" and item["seq"] > after and match(item):
                return item
    raise AssertionError("the stream ended")


async def test_a_softap_only_device_whose_network_is_gone_opens_its_ap_and_is_reonboarded(
    device: Device, tmp_path: Path, setup_code: Secret
) -> None:
    world = stranded(tmp_path, device)
    reopen_after = 2.0
    started = time.monotonic()
    ready = await device.start(str(world), "--reopen-after", str(reopen_after), doors="softap-only")
    assert ready["doors"]["doors"] == []  # it retries its saved network first
    opened = await until_event(
        device, lambda e: e["phase"] == "door" and e["detail"].startswith("softap opened")
    )
    assert time.monotonic() - started < reopen_after + 10
    assert opened["state"] == "failed" and opened["code_name"] == "OK"
    status = await control_request(device.state_dir, "status")
    assert "softap" in status["doors"] and status["code_name"] == "SAVED_NETWORKS_NOT_FOUND"
    result = await flow.provision(
        device.profile,
        device.target_softap(),
        setup_code=setup_code,
        ssid=b"New Net",
        passphrase=Secret("new-net-passphrase"),
        outcome_timeout=30,
    )
    assert result["state"] == "online", result
    status = await control_request(device.state_dir, "status")
    assert [n["ssid"] for n in status["saved_networks"]] == ["New Net", "Old Net"]
    assert status["saved_networks"][0]["current"] and "passphrase" not in json.dumps(status)


async def test_a_fault_breaks_a_running_devices_connection_and_it_comes_back(
    device: Device,
) -> None:
    """`ctl fault add NAME step=link` deauthenticates an online device: LINK_LOST, retries that
    fail while the fault stays, online again once it is removed; watch shows every step."""
    await device.start(
        "engineering-wifi",
        "--reconnect-initial",
        "0.1",
        "--reconnect-max",
        "0.3",
        "--reopen-after",
        "1",
    )
    result = await flow.provision(
        device.profile,
        device.target(),
        setup_code=Secret("2468-1357"),
        ssid=b"DeviceSim-Lab",
        passphrase=Secret("lab-bench-passphrase"),
    )
    assert result["state"] == "online"
    watch = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "watch",
        "--state-dir",
        str(device.state_dir),
        "--plain",
        "--last",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        assert watch.stdout is not None
        async with asyncio.timeout(20):  # the watcher is attached: its first line, the state
            first = (await watch.stdout.readline()).decode()
        assert first.startswith("device: online (OK)"), first
        await control_request(
            device.state_dir, "fault", {"action": "add", "name": "deauth", "step": "link"}
        )
        reopened = await until_event(device, lambda e: e["phase"] == "reopen")
        await control_request(device.state_dir, "fault", {"action": "remove", "name": "deauth"})
        await until_event(device, lambda e: e["phase"] == "online", after=reopened["seq"])
        lines: list[str] = []
        async with asyncio.timeout(20):  # the live view shows it all, up to the online line
            while not (lines and re.search(r"\sonline\s+online\b", lines[-1])):
                lines.append((await watch.stdout.readline()).decode())
    finally:
        watch.terminate()
        await watch.wait()
    text = "".join(lines)
    assert re.search(
        r"link_lost\s+LINK_LOST deauthenticated by the access point \(fault "
        r"deauth\)",
        text,
    ), text
    assert "ASSOCIATION_TIMEOUT" in text  # the retries while the fault stayed
    assert re.search(r"reconnect\s+retry \d+ in", text)
    assert re.search(r"reopen\s+no connection for", text)
    assert "LINK_LOST (116): The device lost its Wi-Fi connection." in text  # its card


async def test_saved_networks_are_listed_and_forgotten_by_the_reference_client(
    device: Device, tmp_path: Path, setup_code: Secret
) -> None:
    world = stranded(tmp_path, device)
    await device.start(str(world), "--reopen-after", "0.5", doors="softap-only")
    await until_event(
        device, lambda e: e["phase"] == "door" and e["detail"].startswith("softap opened")
    )
    target = device.target_softap()
    opened = await flow.saved_networks(device.profile, target, setup_code)
    assert [n["ssid"] for n in opened["networks"]] == ["Old Net"] and opened["max"] == 5
    assert "old-net-passphrase" not in json.dumps(opened)
    forgotten = await flow.forget_network(device.profile, target, setup_code, b"Old Net")
    assert forgotten["networks"] == [] and forgotten["forgotten"] == b"Old Net".hex()
    with pytest.raises(OnboardingError) as unknown:
        await flow.forget_network(device.profile, target, setup_code, b"Old Net")
    assert unknown.value.code.name == "INVALID_STATE"
    # The CLI, as a phone-app developer types it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_sim",
        "client",
        "saved-networks",
        "--softap",
        target.softap_url or "",
        "--setup-code",
        "2468-1357",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and json.loads(out) == {"networks": [], "max": 5}


async def test_reopened_doors_ask_the_same_proofs_as_the_first_time(
    device: Device, tmp_path: Path
) -> None:
    """A deauthentication (a neighbour can send one) forces the device offline and its doors
    open: Improv still wants its button, the native session the setup code."""
    world = stranded(tmp_path, device)
    ready = await device.start(
        str(world), "--personality", "native,improv", "--reopen-after", "0.5"
    )
    await until_event(device, lambda e: e["phase"] == "reopen")
    improv = await provision_improv(
        device.profile,
        adapter=device.vb.adapters[1],
        name=ready["local_name"],
        discover_timeout=20,
        ssid=b"New Net",
        passphrase=Secret("new-net-passphrase"),
    )
    assert improv["code_name"] == "NOT_AUTHORIZED" and improv["improv_state"] == (
        "authorization_required"
    )
    native = await registry.get("native").phone(
        device.profile, device.target(phone=2), _request(Secret("1111-2222")), None
    )
    assert native["code_name"] == "WRONG_SETUP_CODE"
    assert device.record().state.wire_name == "failed"  # nothing was joined


def _request(code: Secret) -> Any:
    from device_sim.client.target import ProvisionRequest

    return ProvisionRequest(
        ssid=b"New Net", passphrase=Secret("new-net-passphrase"), setup_code=code
    )
