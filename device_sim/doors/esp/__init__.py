"""The ESP-IDF unified provisioning personality (protocomm + wifi_provisioning), over BLE and the
SoftAP, with security 0, 1 and 2.

Device side: :mod:`.device`. Phone side: :mod:`.client`. Codec: :mod:`.proto` (protobuf) and
:mod:`.security` (the session ciphers). Secrets and label: :mod:`.identity`. Its section of
``gatt_profile.yaml`` (``personalities.esp``): :mod:`.profile`. Options: :mod:`.options`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..personality import DeviceContext, Personality, PhoneOption, lazy
from .options import EspOptions

if TYPE_CHECKING:
    from ..personality import DeviceSide


async def _device(ctx: DeviceContext) -> DeviceSide:
    from .device import EspPersonality

    options = ctx.options or EspOptions()
    return EspPersonality(ctx.port, security=options.sec, patch=options.sec_patch)


PERSONALITY = Personality(
    name="esp",
    summary="ESP-IDF unified provisioning: protocomm security 0/1/2, wifi_provisioning endpoints",
    device=_device,
    phone=lazy(f"{__name__}.client", "provision_request"),
    options=EspOptions,
    check_profile=lazy(f"{__name__}.profile", "esp_def"),
    setup_code=False,
    activation=False,
    commands=("esp-label",),
    reports=lazy(f"{__name__}.docs", "reports"),
    transports=("ble", "softap"),
    secret_settings=("pop", "srp_verifier"),
    label=lazy(f"{__name__}.identity", "label_fields"),
    concurrent_ap=True,  # ESP-IDF keeps its AP up during the join (APSTA)
    phone_options=(
        PhoneOption(
            "pop",
            "esp: the proof of possession on the label (also the security 2 password)",
            secret=True,
        ),
        PhoneOption(
            "sec",
            "esp: the protocomm security (default: what the device's proto-ver says)",
            kind=int,
            choices=(0, 1, 2),
        ),
    ),
    phone_label=lazy(f"{__name__}.identity", "phone_options"),
)
