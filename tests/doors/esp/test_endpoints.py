"""The ESP endpoints in-process (the daemon's wiring, no radio): sessions, the status mapping,
retry in the session, scan paging, prov-ctrl, the diagnostics endpoint and bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from device_sim.codes import Code
from device_sim.core.engine import Timeouts
from device_sim.doors.esp import proto
from device_sim.doors.esp.endpoints import IDLE_S, EndpointError, EspEndpoints
from device_sim.doors.esp.profile import esp_def
from device_sim.doors.esp.security import ClientSecurity
from device_sim.network.scenario import load_scenario
from device_sim.network.simulated import SimulatedBackend
from device_sim.stack import DeviceStack
from device_sim.testing.stack import build_stack

LAB = load_scenario("engineering-wifi").default_credentials


class GatedBackend(SimulatedBackend):
    """A join that waits for the test: the device stays Connecting until the gate opens."""

    def __init__(self) -> None:
        super().__init__(load_scenario("engineering-wifi"), zero_delay=True)
        self.gate = asyncio.Event()

    async def join(self, *args: Any, **kwargs: Any) -> Any:
        await self.gate.wait()
        return await super().join(*args, **kwargs)


@pytest_asyncio.fixture
async def device(tmp_path: Path) -> AsyncIterator[tuple[DeviceStack, GatedBackend]]:
    backend = GatedBackend()
    async with AsyncExitStack() as stack:
        dev = await build_stack(
            stack, tmp_path / "d", backend=lambda store: backend, timeouts=Timeouts(60, 60, 60, 60)
        )
        yield dev, backend


def endpoints(dev: DeviceStack, version: int = 2, patch: int = 1) -> EspEndpoints:
    return EspEndpoints(dev.port("esp"), esp_def(dev.profile), security=version, patch=patch)


class App:
    """A phone's protocomm session over the endpoints (our client security; Espressif's own is
    proven in tests/e2e/test_esp_reference_client.py)."""

    def __init__(self, eps: EspEndpoints, key: Any = ("esp", "/phone"), pop: str = "") -> None:
        self.eps, self.key = eps, key
        self.sec = ClientSecurity(
            eps.version,
            pop=(pop or eps.pop.reveal()).encode(),
            password=pop or eps.pop.reveal(),
            patch=eps.patch,
        )

    async def open(self) -> None:
        answer = None
        while (request := self.sec.request(answer)) is not None:
            raw = await self.eps.call(
                "prov-session", self.key, proto.encode(proto.SESSION, request)
            )
            answer = proto.decode(proto.SESSION, raw)

    async def config(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.sec.cipher is not None
        raw = await self.eps.call(
            "prov-config", self.key, self.sec.cipher.encrypt(proto.encode(proto.CONFIG, message))
        )
        return proto.decode(proto.CONFIG, self.sec.cipher.decrypt(raw))

    async def status(self) -> dict[str, Any]:
        answer = await self.config({"msg": proto.CMD_GET_STATUS, "cmd_get_status": {}})
        return dict(answer["resp_get_status"])

    async def apply(self, ssid: bytes, passphrase: bytes) -> tuple[int, int]:
        set_ = await self.config(
            {
                "msg": proto.CMD_SET_CONFIG,
                "cmd_set_config": {"ssid": ssid, "passphrase": passphrase},
            }
        )
        apply = await self.config({"msg": proto.CMD_APPLY_CONFIG, "cmd_apply_config": {}})
        return (
            set_["resp_set_config"].get("status", 0),
            apply["resp_apply_config"].get("status", 0),
        )

    async def outcome(self) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while (status := await self.status()).get("sta_state", 0) == proto.STA_CONNECTING:  # noqa: ASYNC110 (an app polls GetStatus (protocol))
                await asyncio.sleep(0.01)
        return status


async def test_proto_ver_says_the_security(device: Any) -> None:
    dev, _ = device
    info = json.loads(endpoints(dev, 2, 0).proto_ver())
    assert info["prov"] == {"ver": "v1.1", "sec_ver": 2, "sec_patch_ver": 0, "cap": ["wifi_scan"]}
    assert info["device_sim"]["diag"] == "device-sim-diag"
    assert json.loads(endpoints(dev, 0).proto_ver())["prov"]["cap"] == ["wifi_scan", "no_sec"]


async def test_status_from_connecting_to_failed_to_connected_in_one_session(device: Any) -> None:
    dev, backend = device
    app = App(endpoints(dev))
    await app.open()
    assert (await app.status())["sta_state"] == proto.STA_DISCONNECTED
    assert await app.apply(LAB.ssid, b"not-the-passphrase") == (0, 0)
    assert (await app.status())["sta_state"] == proto.STA_CONNECTING  # the join waits
    backend.gate.set()
    failed = await app.outcome()
    # AuthError is 0, protobuf's default: absent on the wire
    assert (failed["sta_state"], failed.get("fail_reason", 0)) == (
        proto.STA_FAILED,
        proto.FAIL_AUTH_ERROR,
    )
    assert (await app.status())["sta_state"] == proto.STA_FAILED  # kept for later polls
    assert await app.apply(b"No Such Network", b"whatever-pass") == (0, 0)
    failed = await app.outcome()
    assert failed.get("fail_reason", 0) == proto.FAIL_NETWORK_NOT_FOUND
    assert await app.apply(LAB.ssid, (LAB.passphrase or "").encode()) == (0, 0)
    online = await app.outcome()
    assert online.get("sta_state", 0) == proto.STA_CONNECTED  # 0: absent on the wire
    assert online["connected"]["ip4_addr"] == "10.20.0.50"
    assert online["connected"]["ssid"] == LAB.ssid
    assert dev.service.session_peer == app.key  # still there to read the diagnostics
    released = asyncio.Event()
    dev.service.follow_sessions(closed=lambda peer, code: released.set())
    async with asyncio.timeout(5):  # then the device is free (ESP's cleanup delay)
        await released.wait()
    assert dev.service.session_peer is None


async def test_bad_input_is_refused_without_a_session(device: Any) -> None:
    dev, _ = device
    eps = endpoints(dev)
    with pytest.raises(EndpointError, match="without an established session"):
        await eps.call("prov-config", ("esp", "x"), b"\x08\x00")
    with pytest.raises(EndpointError, match="prov-session"):
        await eps.call("prov-session", ("esp", "x"), b"\xff\xff")
    with pytest.raises(EndpointError, match="request of"):
        await eps.call("prov-session", ("esp", "x"), b"\x00" * 5000)
    app = App(eps)
    await app.open()
    with pytest.raises(EndpointError, match="authentication"):
        await eps.call("prov-config", app.key, b"not sealed by the session")


async def test_wrong_proofs_count_toward_the_shared_backoff(device: Any) -> None:
    dev, _ = device
    eps = endpoints(dev, 1)
    free = dev.profile.session.backoff.free_attempts
    for i in range(free):
        app = App(eps, key=("esp", f"/thief{i}"), pop="not-the-pop")
        with pytest.raises(Exception, match=r"refused|verified"):
            await app.open()
    assert dev.store.auth_failures()[0] == free
    # now the device refuses to start a session at all (InvalidSession) while the backoff runs
    app = App(eps, key=("esp", "/owner"))
    with pytest.raises(Exception, match="InvalidSession"):
        await app.open()


async def test_scan_pages_and_ctrl(device: Any) -> None:
    dev, backend = device
    app = App(endpoints(dev, 0))
    await app.open()

    async def scan(message: dict[str, Any]) -> dict[str, Any]:
        assert app.sec.cipher is not None
        raw = await app.eps.call("prov-scan", app.key, proto.encode(proto.SCAN, message))
        return proto.decode(proto.SCAN, app.sec.cipher.decrypt(raw))

    await scan({"msg": proto.CMD_SCAN_START, "cmd_scan_start": {"blocking": 1}})
    count = (await scan({"msg": proto.CMD_SCAN_STATUS, "cmd_scan_status": {}}))["resp_scan_status"][
        "result_count"
    ]
    assert count >= 1
    page = await scan(
        {"msg": proto.CMD_SCAN_RESULT, "cmd_scan_result": {"start_index": 0, "count": 99}}
    )
    assert len(page["resp_scan_result"]["entries"]) == min(count, 4)
    beyond = await scan(
        {"msg": proto.CMD_SCAN_RESULT, "cmd_scan_result": {"start_index": count, "count": 1}}
    )
    assert beyond["status"] == proto.STATUS["InvalidArgument"]
    # prov-ctrl reset refuses to interrupt a join, and is taken after it
    await app.apply(LAB.ssid, b"wrong-passphrase")

    async def ctrl(msg: int) -> dict[str, Any]:
        assert app.sec.cipher is not None
        raw = await app.eps.call(
            "prov-ctrl",
            app.key,
            proto.encode(
                proto.CTRL, {"msg": msg, "cmd_ctrl_reset" if msg == 1 else "cmd_ctrl_reprov": {}}
            ),
        )
        return proto.decode(proto.CTRL, app.sec.cipher.decrypt(raw))

    assert (await ctrl(proto.CMD_CTRL_RESET))["status"] == proto.STATUS["InvalidSession"]
    backend.gate.set()
    await app.outcome()
    assert (await ctrl(proto.CMD_CTRL_RESET)) == {
        "msg": proto.RESP_CTRL_RESET,
        "resp_ctrl_reset": {},
    }
    cipher = app.sec.cipher
    assert cipher is not None
    diag = json.loads(
        cipher.decrypt(await app.eps.call("device-sim-diag", app.key, cipher.encrypt(b"{}")))
    )
    assert (diag["state"], diag["code_name"]) == ("failed", "WRONG_CREDENTIALS")
    assert diag["next_step"] == dev.profile.code("WRONG_CREDENTIALS").next_step


async def test_a_new_session_never_ends_an_established_one_in_use(device: Any) -> None:
    """Anyone may start a session (CMD0 needs no proof): one that has not proved itself, or one
    left unused, makes room; established sessions in use do not (a full house is BUSY)."""
    dev, _ = device
    eps = endpoints(dev, 0)
    apps = [App(eps, key=("esp", f"/p{i}")) for i in range(eps.spec.max_sessions)]
    for app in apps:
        await app.open()
    late = App(eps, key=("esp", "/late"))
    with pytest.raises(EndpointError) as info:
        await late.open()
    assert info.value.code is Code.BUSY
    assert [(await app.status())["sta_state"] for app in apps] == [proto.STA_DISCONNECTED] * len(
        apps
    )
    # One left unused for IDLE_S makes room.
    eps._sessions[("esp", "/p1")].last_used -= IDLE_S
    late = App(eps, key=("esp", "/late"))  # the phone starts its handshake again
    await late.open()
    with pytest.raises(EndpointError):
        await apps[1].status()
    assert (await late.status())["sta_state"] == proto.STA_DISCONNECTED


async def test_a_handshake_in_progress_makes_room_first(device: Any) -> None:
    dev, _ = device
    eps = endpoints(dev, 2)
    full = [App(eps, key=("esp", f"/p{i}")) for i in range(eps.spec.max_sessions - 1)]
    for app in full:
        await app.open()
    half = App(eps, key=("esp", "/half"))  # sends its first message and stops
    first = half.sec.request(None)
    assert first is not None
    await eps.call("prov-session", half.key, proto.encode(proto.SESSION, first))
    newest = App(eps, key=("esp", "/new"))
    await newest.open()
    assert not eps.has_session(half.key) and eps.has_session(newest.key)
    assert all(eps.has_session(app.key) for app in full)


async def test_random_requests_get_an_answer_or_a_refusal(device: Any) -> None:
    """Every endpoint, fed seeded random and mutated bytes with and without a session: an
    answer or EndpointError, never another exception (the transports turn that into an empty
    BLE answer or HTTP 400)."""
    import random

    dev, backend = device
    backend.gate.set()
    eps = endpoints(dev, 0)
    app = App(eps)
    await app.open()
    rng = random.Random(1337)
    valid = proto.encode(proto.CONFIG, {"msg": proto.CMD_GET_STATUS, "cmd_get_status": {}})
    for i in range(300):
        endpoint = rng.choice(
            [
                "proto-ver",
                "prov-session",
                "prov-config",
                "prov-scan",
                "prov-ctrl",
                "device-sim-diag",
                "no-such-endpoint",
            ]
        )
        data = bytearray(valid if i % 2 else rng.randbytes(rng.randint(0, 60)))
        if data and i % 3 == 0:
            data[rng.randrange(len(data))] ^= 0xFF
        key = app.key if i % 4 else ("esp", f"/stranger{i % 7}")
        try:
            answer = await eps.call(endpoint, key, bytes(data))
        except EndpointError:
            continue
        assert isinstance(answer, bytes)
        if endpoint == "prov-session" and key == app.key:
            app = App(eps)  # the fuzzer may have restarted this phone's session: open anew
            await app.open()
