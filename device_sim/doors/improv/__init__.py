"""The Improv Wi-Fi personality (improv-wifi.com, BLE spec revision 2.4).

Device side: :mod:`.device` (a GATT service of the BLE host) and :mod:`.button` (a GPIO button
for its authorization). Phone side: :mod:`.client`. Codec: :mod:`.codec`. Its section of
``gatt_profile.yaml`` (``personalities.improv``): :mod:`.profile`. Options: :mod:`.options`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..personality import DeviceContext, Personality, lazy
from .options import ImprovOptions

if TYPE_CHECKING:
    from ..personality import DeviceSide


async def _device(ctx: DeviceContext) -> DeviceSide:
    from .device import ImprovPersonality

    options = ctx.options or ImprovOptions()
    improv = ImprovPersonality(
        ctx.port,
        authorization=options.authorization,
        authorization_timeout_s=options.authorization_timeout_s,
        redirect_url=options.redirect_url,
        # An Improv-only device keeps the specific codes readable in a diagnostics service.
        with_diagnostics=not ctx.diagnostics_elsewhere,
    )
    if options.button:
        from .button import GpioButton

        await ctx.stack.enter_async_context(GpioButton(options.button, improv.authorize))
    return improv


PERSONALITY = Personality(
    reports=lazy(f"{__name__}.docs", "reports"),
    name="improv",
    summary="the open Improv Wi-Fi BLE service: physical authorization, no session",
    device=_device,
    phone=lazy(f"{__name__}.client", "provision_request"),
    options=ImprovOptions,
    check_profile=lazy(f"{__name__}.profile", "improv_def"),
    setup_code=False,
    activation=False,
    commands=("improv-authorize",),
    bench_commands=("improv-authorize",),
)
