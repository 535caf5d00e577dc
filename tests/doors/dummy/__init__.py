"""A dummy personality, for tests/doors/test_new_personality.py: it is copied into a copy of the
package as ``device_sim/doors/dummy/`` and one line names it in the registry; nothing else of the
package changes. Its protocol: one write (``ssid NUL passphrase``), one status it notifies
(``<state> <CODE>``). Its imports are absolute, so it reads the same here and there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from device_sim.doors.personality import DeviceContext, Personality, lazy

from .options import DummyOptions

if TYPE_CHECKING:
    from device_sim.doors.personality import DeviceSide


async def _device(ctx: DeviceContext) -> DeviceSide:
    from .device import DummyPersonality

    options = ctx.options or DummyOptions()
    return DummyPersonality(ctx.port, greeting=options.greeting)


PERSONALITY = Personality(
    name="dummy",
    summary="a dummy protocol: credentials in one write, the outcome in one notification",
    device=_device,
    phone=lazy(f"{__name__}.client", "provision_request"),
    options=DummyOptions,
    setup_code=False,
    activation=False,
    reports=lazy(f"{__name__}.device", "reports"),
)
