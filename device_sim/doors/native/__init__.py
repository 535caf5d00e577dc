"""The native personality: the SRP6a session protocol of ``gatt_profile.yaml``'s ``service``.

Device side: :mod:`.device` (a GATT service of the BLE host) and :mod:`.http_api` (its routes
on the SoftAP door), both speaking :mod:`.session` (the handshake, the sealed requests, the
events). Phone side: :mod:`.flow` (the session flow), over :mod:`.client` (BLE, bleak) or
:mod:`.http_link` (HTTP). Codec: :mod:`.wire` (framing, messages), over the SRP6a and AES-GCM
primitives of :mod:`device_sim.security.session`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..personality import DeviceContext, Personality, lazy

if TYPE_CHECKING:
    from ..personality import DeviceSide


async def _device(ctx: DeviceContext) -> DeviceSide:
    from .device import NativePersonality

    side = NativePersonality(ctx.port)
    ctx.stack.callback(side.close)  # its session outlives a BLE host that stops (no adapter)
    return side


PERSONALITY = Personality(
    name="native",
    summary="device-sim's own service: SRP6a session on the setup code, specific codes, events",
    device=_device,
    phone=lazy(f"{__name__}.flow", "provision_request"),
    reports=lazy(f"{__name__}.docs", "reports"),
    transports=("ble", "softap"),
    security=True,  # SET_CREDENTIALS' security (revision 3)
    eap=True,  # SET_CREDENTIALS' eap, with CREDENTIAL_FILE parts (revision 4)
    serves_diagnostics=True,
    phone_requests={
        "discover": lazy(f"{__name__}.client", "discover"),
        "networks": lazy(f"{__name__}.flow", "list_networks"),
        "saved_networks": lazy(f"{__name__}.flow", "saved_networks"),
        "forget_network": lazy(f"{__name__}.flow", "forget_network"),
        "diagnostics": lazy(f"{__name__}.flow", "fetch_diagnostics"),
    },
)
