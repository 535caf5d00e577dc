"""The native personality: the SRP6a session protocol of ``gatt_profile.yaml``'s ``service``.

Device side: :mod:`.device` (a GATT service of the BLE host). Phone side: :mod:`.flow` (the
session flow), over :mod:`.client` (BLE, bleak) or :mod:`.http_link` (the SoftAP door's HTTP
API, which carries the same messages). Codec: :mod:`device_sim.wire` and
:mod:`device_sim.security.session`, shared with the SoftAP door.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..personality import DeviceContext, Personality

if TYPE_CHECKING:
    from ...client.target import Progress, ProvisionRequest, Target
    from ...profile import Profile
    from ..personality import DeviceSide


async def _device(ctx: DeviceContext) -> DeviceSide:
    from .device import NativePersonality

    return NativePersonality(ctx.port)


async def _phone(
    profile: Profile, target: Target, request: ProvisionRequest, progress: Progress | None
) -> dict[str, Any]:
    from .flow import provision_request

    return await provision_request(profile, target, request, progress)


PERSONALITY = Personality(
    name="native",
    summary="device-sim's own service: SRP6a session on the setup code, specific codes, events",
    device=_device,
    phone=_phone,
    transports=("ble", "softap"),
)
