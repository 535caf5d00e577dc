"""The GATT host interface is neutral to the BLE stack: native, Improv and ESP onboard end to
end on a host in memory (device_sim/testing/memory_gatt.py: no bless, no D-Bus, no radio),
with their own unchanged device sides and their own phone sides (bleak's client swapped for
the memory central). The bless host runs the same personalities over BlueZoo in tests/e2e."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import pytest

from device_sim.codes import MessageType, State
from device_sim.doors import registry
from device_sim.doors.personality import DeviceContext
from device_sim.network.scenario import load_scenario
from device_sim.security.secret import Secret
from device_sim.stack import DeviceStack
from device_sim.testing.memory_gatt import MemoryGattHost
from device_sim.testing.stack import SETUP_CODE, build_stack

HOME = load_scenario("typical-home").default_credentials


async def _device(
    stack: AsyncExitStack, state_dir: Path, name: str
) -> tuple[DeviceStack, Any, MemoryGattHost, dict[str, str]]:
    device = await build_stack(stack, state_dir)
    labels = registry.make_labels(device.store, device.profile, device.local_name)
    side = await registry.get(name).device(DeviceContext(device.port(name), None, (name,), stack))
    host = MemoryGattHost([side])
    await host.start()
    stack.push_async_callback(host.stop)
    return device, side, host, labels


def _swap_bleak(monkeypatch: pytest.MonkeyPatch, host: MemoryGattHost) -> None:
    """The phone's radio connects to the memory host (its central has bleak's methods)."""
    from device_sim.client.ble import Radio

    monkeypatch.setattr(Radio, "client", lambda *args, **kwargs: host.central("phone"))


async def test_native_onboards_on_the_memory_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from device_sim.doors.native.client import BleLink, ClientSession

    async with AsyncExitStack() as stack:
        device, _, host, _ = await _device(stack, tmp_path, "native")
        _swap_bleak(monkeypatch, host)
        async with BleLink(device.profile, "memory", adapter="memory") as link:
            session = ClientSession(link)
            answers = await session.open(
                Secret(SETUP_CODE),
                bundle=[
                    (
                        MessageType.SET_CREDENTIALS,
                        {
                            "ssid_hex": HOME.ssid.hex(),
                            "hidden": False,
                            "passphrase": HOME.passphrase,
                        },
                    ),
                    (MessageType.CONNECT, {}),
                ],
            )
            assert [kind for kind, _ in answers] == [MessageType.ACK, MessageType.ACK]
            assert link.round_trips == 2  # the proof bundle: two round trips in all
            while (event := await session.next_event(30))["state"] not in ("online", "failed"):
                pass
            assert event["state"] == "online", event
        assert device.engine.state is State.ONLINE
        assert host.advertisements > 0  # the state changes asked for a new advertisement


async def test_improv_onboards_on_the_memory_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from device_sim.doors.improv.client import ImprovLink
    from device_sim.doors.improv.codec import Command, ImprovState

    async with AsyncExitStack() as stack:
        device, side, host, _ = await _device(stack, tmp_path, "improv")
        _swap_bleak(monkeypatch, host)
        async with ImprovLink(device.profile, cast(Any, "memory"), adapter="memory") as link:
            assert await link.read_state() is ImprovState.AUTHORIZATION_REQUIRED
            assert side.press_button("test")["action"] == "improv-authorize"
            assert await asyncio.wait_for(link.states.get(), 5) is ImprovState.AUTHORIZED
            await link.rpc(
                Command.WIFI_SETTINGS, [HOME.ssid, (HOME.passphrase or "").encode()], timeout=30
            )
            assert await link.read_state() is ImprovState.PROVISIONED
        assert device.engine.state is State.ONLINE


async def test_esp_onboards_on_the_memory_host(tmp_path: Path) -> None:
    from device_sim.client.target import Clock, Target
    from device_sim.doors.esp.client import BleLink, ClientSecurity, EspSession, _attempt
    from device_sim.doors.esp.profile import esp_def

    async with AsyncExitStack() as stack:
        device, _, host, labels = await _device(stack, tmp_path, "esp")
        spec = esp_def(device.profile)
        central = host.central("phone")
        await central.connect()
        link = BleLink(cast(Any, central), dict(spec.endpoints))  # a bleak look-alike
        info = json.loads(await link.call("proto-ver", b"---"))
        assert info["prov"]["sec_ver"] == 2
        pop = json.loads(labels["esp_qr"])["pop"]
        session = EspSession(
            link,
            ClientSecurity(
                2, username=spec.username, password=pop, patch=info["prov"]["sec_patch_ver"]
            ),
        )
        await session.open()
        outcome = await _attempt(
            session,
            Clock(),
            HOME.ssid,
            Secret(HOME.passphrase) if HOME.passphrase else None,
            30,
            Target(adapter="memory"),
            lambda phase, data: None,
        )
        assert outcome["state"] == "online", outcome
        assert device.engine.state is State.ONLINE
        await central.disconnect()
