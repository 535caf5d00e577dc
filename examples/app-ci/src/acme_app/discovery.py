"""How the app finds a device to set up: a BLE scan for the provisioning service, then a look
at its GATT table, as the app does before it asks the user for the setup code.

The service UUID is the device's published protocol (device-sim's docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass

from bleak import BleakClient, BleakScanner

PROVISIONING_SERVICE = "d5e10000-7b0c-4a36-9f3e-6c1d2b8a4e50"


@dataclass(frozen=True)
class Found:
    name: str
    address: str
    rssi: int


async def find_devices(adapter: str, timeout: float = 3.0) -> list[Found]:
    """Devices advertising the provisioning service, strongest first."""
    seen = await BleakScanner.discover(
        timeout=timeout,
        return_adv=True,
        service_uuids=[PROVISIONING_SERVICE],
        bluez={"adapter": adapter},
    )
    found = [
        Found(adv.local_name or device.name or "", device.address, adv.rssi)
        for device, adv in seen.values()
        if PROVISIONING_SERVICE in [u.lower() for u in adv.service_uuids]
    ]
    return sorted(found, key=lambda f: -f.rssi)


async def provisioning_characteristics(adapter: str, address: str) -> list[str]:
    """The provisioning service's characteristic UUIDs, read over a GATT connection."""
    async with BleakClient(address, bluez={"adapter": adapter}, timeout=20.0) as client:
        service = client.services.get_service(PROVISIONING_SERVICE)
        if service is None:
            return []
        return sorted(c.uuid for c in service.characteristics)
