"""The native personality: the SRP6a session protocol of ``gatt_profile.yaml``'s ``service``.

Device side: :mod:`.device` (a GATT service of the BLE host). Phone side: :mod:`.flow` (the
session flow), over :mod:`.client` (BLE, bleak) or :mod:`.http_link` (the SoftAP door's HTTP
API, which carries the same messages). Codec: :mod:`device_sim.wire` and
:mod:`device_sim.security.session`, shared with the SoftAP door.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..personality import DeviceContext, Personality, lazy

if TYPE_CHECKING:
    from ..personality import DeviceSide


async def _device(ctx: DeviceContext) -> DeviceSide:
    from .device import NativePersonality

    return NativePersonality(ctx.port)


PERSONALITY = Personality(
    name="native",
    summary="device-sim's own service: SRP6a session on the setup code, specific codes, events",
    device=_device,
    phone=lazy(f"{__name__}.flow", "provision_request"),
    reports=lazy(f"{__name__}.docs", "reports"),
    transports=("ble", "softap"),
)
