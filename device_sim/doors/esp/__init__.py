"""The ESP-IDF unified provisioning personality (protocomm + wifi_provisioning), over BLE and the
SoftAP, with security 0, 1 and 2.

Device side: :mod:`.device`. Phone side: :mod:`.client`. Codec: :mod:`.proto` (protobuf) and
:mod:`.security` (the session ciphers). Secrets and label: :mod:`.identity`. Its section of
``gatt_profile.yaml`` (``personalities.esp``): :mod:`.profile`. Options: :mod:`.options`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..personality import DeviceContext, Personality
from .options import EspOptions

if TYPE_CHECKING:
    from ...client.target import Progress, ProvisionRequest, Target
    from ...profile import Profile
    from ..personality import DeviceSide


async def _device(ctx: DeviceContext) -> DeviceSide:
    from .device import EspPersonality

    options = ctx.options or EspOptions()
    return EspPersonality(ctx.port, security=options.sec, patch=options.sec_patch)


async def _phone(
    profile: Profile, target: Target, request: ProvisionRequest, progress: Progress | None
) -> dict[str, Any]:
    from .client import provision_request

    return await provision_request(profile, target, request, progress)


def _check_profile(profile: Profile) -> object:
    from .profile import esp_def

    return esp_def(profile)


def _label(
    setting: Callable[[str], str | None],
    set_setting: Callable[[str, str], None],
    profile: Profile,
    local_name: str,
) -> dict[str, str]:
    from .identity import label_fields

    return label_fields(setting, set_setting, profile, local_name)


PERSONALITY = Personality(
    name="esp",
    summary="ESP-IDF unified provisioning: protocomm security 0/1/2, wifi_provisioning endpoints",
    device=_device,
    phone=_phone,
    options=EspOptions,
    check_profile=_check_profile,
    setup_code=False,
    activation=False,
    commands=("esp-label",),
    transports=("ble", "softap"),
    label=_label,
)
