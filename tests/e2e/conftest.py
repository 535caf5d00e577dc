"""End-to-end fixtures: one private D-Bus with BlueZoo adapters for the whole run, a fresh device
(state directory + identity + daemon subprocess on hci0) per test, phones on hci1 and hci2."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import itertools

import pytest
import pytest_asyncio
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from device_sim.client.flow import Target
from device_sim.demo import DaemonProcess, daemon_argv
from device_sim.identity import create_identity
from device_sim.profile import Profile, load_profile
from device_sim.security.secret import Secret
from device_sim.store import DeviceStore
from device_sim.virtual.harness import VirtualBle, use_bus

SETUP_CODE = "2468-1357"


@pytest.fixture(scope="session")
def profile() -> Profile:
    return load_profile()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def vble() -> AsyncIterator[VirtualBle]:
    async with VirtualBle(adapters=3) as vb:
        with use_bus(vb):
            yield vb


_next_adapter = itertools.count(10)


async def add_adapter(vb: VirtualBle) -> str:
    """A fresh BlueZoo adapter (new address) for one device.

    BlueZoo never unexports the GATT objects it linked under a peer's Device1 on the phone's
    adapter, so a second daemon on the same device adapter would show the phone two copies of
    every characteristic. A new adapter per device gives each device its own address, as real
    devices have. Returns the adapter name (``hci10`` ...).
    """
    index = next(_next_adapter)
    bus = await MessageBus(bus_address=vb.bus_address, bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(Message(
            destination="org.bluez", path="/org/bluezoo", interface="org.bluezoo.Manager1",
            member="AddAdapter", signature="ys", body=[index, f"00:11:22:33:55:{index:02X}"]))
        assert reply is not None and reply.message_type is MessageType.METHOD_RETURN, reply
        path = f"/org/bluez/hci{index}"
        powered = await bus.call(Message(
            destination="org.bluez", path=path, interface="org.freedesktop.DBus.Properties",
            member="Get", signature="ss", body=["org.bluez.Adapter1", "Powered"]))
        assert powered is not None and powered.body[0].value is True, "adapter not powered"
    finally:
        bus.disconnect()
    return f"hci{index}"


class Device:
    """A device under test: its state directory, its adapter and its daemon process.

    Phones are the harness's hci1 and hci2 (``target(phone=1)``); hci0 is left unused.
    """

    def __init__(self, vb: VirtualBle, adapter: str, state_dir: Path, log: Path) -> None:
        self.vb = vb
        self.adapter = adapter
        self.state_dir = state_dir
        self.log = log
        self.daemon: DaemonProcess | None = None
        self.ready: dict[str, Any] = {}

    async def start(self, scenario: str = "engineering-wifi", *extra: str,
                    zero_delay: bool = True) -> dict[str, Any]:
        argv = daemon_argv(self.state_dir, adapter=self.adapter, scenario=scenario,
                           zero_delay=zero_delay, extra=list(extra))
        self.daemon = DaemonProcess(["-v", *argv], self.vb.env(), self.log)
        self.ready = await self.daemon.start()
        return self.ready

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()

    def target(self, phone: int = 1, **kw: Any) -> Target:
        return Target(adapter=self.vb.adapters[phone], name=self.ready["local_name"], **kw)

    def record(self) -> Any:
        with DeviceStore(self.state_dir) as store:
            return store.record()


@pytest_asyncio.fixture(loop_scope="session")
async def device(vble: VirtualBle, tmp_path: Path) -> AsyncIterator[Device]:
    state_dir = tmp_path / "device"
    with DeviceStore(state_dir) as store:
        create_identity(store, Secret(SETUP_CODE))
    dev = Device(vble, await add_adapter(vble), state_dir, tmp_path / "daemon.log")
    try:
        yield dev
    finally:
        await dev.stop()


@pytest.fixture
def setup_code() -> Secret:
    return Secret(SETUP_CODE)
