"""End-to-end fixtures: one private D-Bus with BlueZoo adapters for the whole run, a fresh device
(state directory + identity + daemon subprocess on hci0) per test, phones on hci1 and hci2."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from device_sim.apps.daemon_process import DaemonProcess, daemon_argv
from device_sim.apps.virtual.harness import VirtualBle, add_adapter, use_bus
from device_sim.core.identity import create_identity
from device_sim.core.store import DeviceStore
from device_sim.doors.native.flow import Target
from device_sim.profile import load_profile
from device_sim.security.secret import Secret

SETUP_CODE = "2468-1357"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def vble() -> AsyncIterator[VirtualBle]:
    async with VirtualBle(adapters=3) as vb:
        with use_bus(vb):
            yield vb


_next_adapter = itertools.count(10)


async def fresh_adapter(vb: VirtualBle) -> str:
    """A new adapter (and address) per device: see ``add_adapter`` for the BlueZoo reason."""
    index = next(_next_adapter)
    return await add_adapter(vb.bus_address, index, f"00:11:22:33:55:{index:02X}")


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
        self.profile = load_profile()

    async def start(
        self,
        scenario: str = "engineering-wifi",
        *extra: str,
        zero_delay: bool = True,
        doors: str = "ble-only",
        adapter: str | None = None,
        fd_limit: int | None = None,
    ) -> dict[str, Any]:
        argv = daemon_argv(
            self.state_dir,
            adapter=adapter or self.adapter,
            scenario=scenario,
            zero_delay=zero_delay,
            extra=list(extra),
            doors=doors,
        )
        self.daemon = DaemonProcess(["-v", *argv], self.vb.env(), self.log, fd_limit=fd_limit)
        self.ready = await self.daemon.start()
        return self.ready

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()

    def target(self, phone: int = 1, **kw: Any) -> Target:
        return Target(adapter=self.vb.adapters[phone], name=self.ready["local_name"], **kw)

    def target_softap(self, ready: dict[str, Any] | None = None) -> Target:
        """The phone on the device's access point (the daemon's ready line gives the URL)."""
        return Target(softap_url=(ready or self.ready)["doors"]["softap"]["ap_url"])

    def record(self) -> Any:
        with DeviceStore(self.state_dir) as store:
            return store.record()


@pytest_asyncio.fixture(loop_scope="session")
async def device(vble: VirtualBle, tmp_path: Path) -> AsyncIterator[Device]:
    state_dir = tmp_path / "device"
    with DeviceStore(state_dir) as store:
        create_identity(store, Secret(SETUP_CODE))
    dev = Device(vble, await fresh_adapter(vble), state_dir, tmp_path / "daemon.log")
    try:
        yield dev
    finally:
        await dev.stop()


@pytest.fixture
def setup_code() -> Secret:
    return Secret(SETUP_CODE)
