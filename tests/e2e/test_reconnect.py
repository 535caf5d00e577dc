"""A phone reconnects to the same device: BlueZoo's GATT links are removed on disconnect by the
harness's launcher (interop quirk 4, device_sim/apps/virtual/bluezoo_launch.py)."""

from __future__ import annotations

import pytest

from device_sim.doors.native.flow import provision
from device_sim.security.secret import Secret

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]


async def test_the_same_phone_onboards_the_same_device_twice(device, setup_code) -> None:
    await device.start("engineering-wifi")
    results = []
    for _ in range(2):  # connect, subscribe, onboard, disconnect; then all of it again
        results.append(
            await provision(
                device.profile,
                device.target(phone=2),
                setup_code=setup_code,
                ssid=b"DeviceSim-Lab",
                passphrase=Secret("lab-bench-passphrase"),
            )
        )
    assert [(r["state"], r["code_name"]) for r in results] == [("online", "OK")] * 2
    assert results[1]["device"]["address"] == results[0]["device"]["address"]
