"""Run BlueZoo with one fix: a disconnect removes the GATT client objects its connect exported.

Interop quirk 4: BlueZoo 1.0.2 exports a peripheral's GATT services under the phone's Device1
path on connect and never removes them on disconnect, so the next connect of that phone to that
peripheral fails with EEXIST ("sd_bus_add_object_vtable ... error number: 17"). Real BlueZ drops
those objects when the link goes down. The virtual-BLE harness starts BlueZoo through this module
so phones can reconnect, as apps and third-party clients (py-improv-ble-client reconnects after a
failed provisioning) do.

    python -m device_sim.virtual.bluezoo_launch [bluezoo options]
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


def main() -> int:
    patch_disconnect()
    from bluezoo.bluezoo import main as bluezoo_main

    return int(bluezoo_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
