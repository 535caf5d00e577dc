"""The dummy personality, phone side: over bleak, the result in the other phone sides' shape."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bleak import BleakClient, BleakScanner

from device_sim.client.target import Progress, ProvisionRequest, Target
from device_sim.codes import Code
from device_sim.errors import DeviceUnreachable
from device_sim.profile import Profile

from .device import SERVICE, STATUS, WRITE


async def provision_request(
    profile: Profile, target: Target, request: ProvisionRequest, on_progress: Progress | None
) -> dict[str, Any]:
    t0 = time.monotonic()
    found = await BleakScanner.find_device_by_filter(
        lambda device, adv: SERVICE in [u.lower() for u in adv.service_uuids],
        timeout=target.discover_timeout,
        bluez={"adapter": target.adapter},
    )
    if found is None:
        raise DeviceUnreachable("no dummy device seen", code=Code.DEVICE_NOT_FOUND)
    statuses: asyncio.Queue[str] = asyncio.Queue()
    async with BleakClient(found, bluez={"adapter": target.adapter}) as client:
        await client.start_notify(STATUS, lambda _, data: statuses.put_nowait(data.decode()))
        secret = request.passphrase.reveal().encode() if request.passphrase else b""
        await client.write_gatt_char(WRITE, request.ssid + b"\0" + secret, response=True)
        async with asyncio.timeout(request.outcome_timeout):
            while (status := await statuses.get()).split()[0] not in ("online", "failed"):
                pass
    state, code_name = status.split()
    entry = profile.code(Code[code_name])
    return {
        "state": state,
        "code": entry.id,
        "code_name": entry.name,
        "message": entry.user_message,
        "next_step": entry.next_step,
        "detail": "",
        "transport": "ble-dummy",
        "device": {"transport": "ble-dummy", "address": found.address, "name": found.name},
        "events": [],
        "timings_ms": {"total": int((time.monotonic() - t0) * 1000)},
    }
