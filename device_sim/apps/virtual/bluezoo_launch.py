"""Run BlueZoo with two fixes that make it behave as BlueZ does towards phones.

Interop quirk 4: BlueZoo 1.0.2 exports a peripheral's GATT services under the phone's Device1
path on connect and never removes them on disconnect, so the next connect of that phone to that
peripheral fails with EEXIST ("sd_bus_add_object_vtable ... error number: 17"). Real BlueZ drops
those objects when the link goes down. The virtual-BLE harness starts BlueZoo through this module
so phones can reconnect, as apps and third-party clients (py-improv-ble-client reconnects after a
failed provisioning) do.

Interop quirk 6: BlueZoo reports a peripheral to a scanning adapter once, when it exports the
Device1 object; later scans find the object already there, change none of its properties and
send no signal. bleak (like any BlueZ client) reports a device when it sees InterfacesAdded or a
PropertiesChanged during its scan, so a second phone-side process on the same adapter (`client
scan`, then `client networks`) never sees the device. BlueZ invalidates RSSI when discovery
stops and sets it again for the first advertisement of the next discovery, and drops temporary
devices (never connected or paired) it no longer sees. :func:`patch_rediscovery` does the
equivalent: when an adapter starts discovering afresh, its cached devices that are neither
connected, connecting nor paired are removed, so the scan that follows adds them again and every
client command finds the device, as on real BlueZ.

Interop quirk 7: while an adapter discovers, BlueZ reports every advertisement it receives as a
property change of the device (RSSI moves with every packet), so a client that starts scanning
while another scan on the same adapter is still winding down still sees a device it already
knows. BlueZoo updates a cached device only when an advertised value changed, so such a scan
(Espressif's client scans, stops, and scans again to connect by address) sees nothing and gives
up. :func:`patch_reannounce` re-announces a cached, unconnected device on every scan pass (its
advertised UUIDs set again, the property change a BlueZ RSSI update would be).

Interop quirk 8: BlueZoo calls ``Confirm`` on a peripheral's characteristic after every value
it relays to a subscribed phone, notifications included, and waits for the answer. BlueZ calls
``Confirm`` only when a phone confirms an indication (and expects no reply). bless implements no
``Confirm``, so each notification cost the bus an error reply and BlueZoo one pending call: 16.5
per onboarding, and past 128 at once (a fleet onboarding together) the private bus refused
BlueZoo's calls. :func:`patch_confirm` confirms indications only, as BlueZ does.

    python -m device_sim.apps.virtual.bluezoo_launch [bluezoo options]
"""

from __future__ import annotations

import logging
import sys
from typing import Any

LOG = logging.getLogger("device_sim.bluezoo_launch")


def patch_disconnect() -> None:
    from bluezoo import device

    original = device.Device.disconnect
    if getattr(original, "_device_sim_fixed", False):
        return

    async def disconnect(self: Any, uuid: str | None = None) -> None:
        await original(self, uuid)
        for link in list(self.services.values()):
            # A subscription the phone left running ends with the link, as on BlueZ; else the
            # peripheral's characteristic stays Notifying and the next subscriber is sent down
            # the AcquireNotify path (interop quirk 2 again).
            subscription = getattr(link, "client_props_changed_subscription", None)
            if subscription is not None and getattr(subscription, "unsubscribe", None):
                try:
                    subscription.unsubscribe()
                    if link.client.Notifying.get():
                        await link.client.StopNotify()
                except Exception as exc:  # the peripheral may be gone already
                    LOG.debug("stopping a notification on disconnect: %s", exc)
            try:
                self.peer_adapter.mock.remove_object(link)
            except KeyError:  # never exported, or already gone
                pass
        self.services.clear()
        await self.ServicesResolved.set_async(False)

    disconnect._device_sim_fixed = True  # type: ignore[attr-defined]
    device.Device.disconnect = disconnect


def patch_rediscovery() -> None:
    from bluezoo import bluezoo

    original = bluezoo.BluezMockService.create_discovering_task
    if getattr(original, "_device_sim_fixed", False):
        return

    def create_discovering_task(self: Any, id: int) -> Any:
        adapter = self.adapters[id]
        if not adapter.discovering:  # a fresh discovery, not a second scanner joining one
            for path, dev in list(adapter.devices.items()):
                if dev.connected or dev.paired or not dev.connecting_task.done():
                    continue
                LOG.debug("fresh discovery on %s: forgetting cached %s", adapter, dev)
                adapter.devices.pop(path, None)
                try:
                    adapter.mock.remove_object(dev)
                except KeyError:  # not exported
                    pass
                dev.pairing_task.cancel()
                dev.connecting_task.cancel()
        return original(self, id)

    create_discovering_task._device_sim_fixed = True  # type: ignore[attr-defined]
    bluezoo.BluezMockService.create_discovering_task = create_discovering_task


def patch_reannounce() -> None:
    from bluezoo import adapter

    original = adapter.Adapter.add_device
    if getattr(original, "_device_sim_fixed", False):
        return

    async def add_device(self: Any, device: Any) -> None:
        await original(self, device)  # it attaches the device first: its path is known after
        cached = self.devices.get(device.get_object_path())
        if (
            cached is not device
            and cached is not None
            and self.discovering
            and not cached.connected
        ):
            try:
                await cached.UUIDs.set_async(list(device.uuids))
            except Exception as exc:  # the device went away meanwhile
                LOG.debug("re-announcing %s: %s", cached, exc)

    add_device._device_sim_fixed = True  # type: ignore[attr-defined]
    adapter.Adapter.add_device = add_device


def patch_confirm() -> None:
    from bluezoo.gatt import characteristic

    client = characteristic.GattCharacteristicClient
    if getattr(client.__dict__.get("Confirm"), "_device_sim_fixed", False):
        return

    async def Confirm(self: Any) -> None:  # the D-Bus method's name
        if "indicate" not in (self.Flags.get() or ()):
            return  # a notification: BlueZ sends no Confirm for it
        await super(client, self).Confirm()

    Confirm._device_sim_fixed = True  # type: ignore[attr-defined]
    client.Confirm = Confirm


def main() -> int:
    patch_disconnect()
    patch_confirm()
    patch_rediscovery()
    patch_reannounce()
    from bluezoo.bluezoo import main as bluezoo_main

    return int(bluezoo_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
