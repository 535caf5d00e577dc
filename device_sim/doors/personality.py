"""What a personality folder gives the registry (:mod:`.registry`): its :class:`Personality`
entry, and the :class:`DeviceContext` its device side is built from."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..client.target import Progress, ProvisionRequest, Target
from ..profile import Profile
from ..session.port import DoorPort

if TYPE_CHECKING:
    from .ble.gatt import BlePersonality
    from .softap.api import SoftApHost


Handler = Callable[[dict[str, object]], Awaitable[dict[str, object]]]


@dataclass(frozen=True)
class DeviceContext:
    """What a personality's device side is built from."""

    port: DoorPort  # its interface to the session layer
    options: Any  # its options model's values (None when it has no options)
    personalities: tuple[str, ...]  # every personality this device presents
    stack: AsyncExitStack  # for components of its own (a GPIO button); closed at shutdown
    # Another personality of this device serves the profile's diagnostics characteristic.
    diagnostics_elsewhere: bool = False


if TYPE_CHECKING:

    class DeviceSide(BlePersonality, Protocol):
        """A personality's device side as the daemon sees it: a BLE personality that also
        serves control commands and the device's button."""

        def commands(self) -> dict[str, Handler]:
            """``device-sim ctl`` commands it serves, by name."""

        def press_button(self, source: str) -> dict[str, object] | None:
            """The device's button was pressed briefly; what it did (None: nothing to do)."""

        def http_routes(self, host: SoftApHost) -> list[HttpRoute]:
            """Its endpoints on the SoftAP door ``host``'s listeners (a personality over
            SoftAP)."""


LabelMaker = Callable[
    [Callable[[str], "str | None"], Callable[[str, str], None], Profile, str], dict[str, str]
]


class HttpRoute(NamedTuple):
    """One endpoint a personality serves on the SoftAP door's HTTP listeners."""

    method: str
    path: str
    handler: Callable[[Any], Awaitable[Any]]  # an aiohttp handler: request -> response
    listeners: tuple[str, ...] = ("ap",)  # ap: on its access point; lan: the home network


class PhoneOption(NamedTuple):
    """One option of a personality's phone side: ``client provision --<key>``, handed to its
    phone side as ``request.extra[key]`` (a secret as a Secret)."""

    key: str
    help: str
    kind: Callable[[str], Any] = str
    choices: tuple[Any, ...] | None = None
    secret: bool = False


PhoneSide = Callable[
    [Profile, Target, ProvisionRequest, Progress | None], Awaitable[dict[str, Any]]
]


@dataclass(frozen=True)
class Personality:
    name: str
    summary: str  # one line for --help and the README
    device: Callable[[DeviceContext], Awaitable[DeviceSide]]
    phone: PhoneSide  # the reference client's onboarding through it
    options: type | None = None  # its options model (a section of the config, flags, env)
    check_profile: Callable[[Profile], object] | None = None  # parses its profile section
    setup_code: bool = True  # the phone needs the label's setup code
    activation: bool = True  # the phone can send activation inputs (account, claim token)
    security: bool = False  # the phone can send the network's security mode with credentials
    eap: bool = False  # the phone can send an enterprise network's sign-in (EAP settings)
    commands: tuple[str, ...] = ()  # the control commands its device side serves
    transports: tuple[str, ...] = ("ble",)
    # Control commands a bench sends the device before its phone onboards (Improv: the button).
    bench_commands: tuple[str, ...] = field(default=())
    # Its secrets and label lines, made with the device's identity (init, factory, demo):
    # label(setting, set_setting, profile, local_name) -> label fields; settings under its name.
    label: LabelMaker | None = None
    # How it reports a code to its phones, for the per-error documentation (device-sim docs):
    # reports(profile, code) -> one sentence.
    reports: Callable[[Profile, Any], str] | None = None
    # It serves the profile's diagnostics characteristic (the specific codes, readable by any
    # phone): the others need not add their own.
    serves_diagnostics: bool = False
    # Its settings that are secrets (kept out of the diagnostics bundle), e.g. ESP's PoP.
    secret_settings: tuple[str, ...] = ()
    # Its phone reads the outcome on the device's AP after the join, so the AP stays up
    # beside the station (ESP-IDF's APSTA); the others read it on the home network.
    concurrent_ap: bool = False
    # Its phone side's own options (ESP: --pop, --sec).
    phone_options: tuple[PhoneOption, ...] = ()
    # The phone-side options a label gives (the bench and fleets read labels): label fields ->
    # request.extra (ESP: the PoP from its QR).
    phone_label: Callable[[Mapping[str, str]], dict[str, Any]] | None = None
    # Requests its phone side makes beyond onboarding, by name (``device-sim client``):
    # discover, networks, saved_networks, forget_network, diagnostics.
    phone_requests: Mapping[str, Callable[..., Any]] = field(default_factory=dict)


def lazy(module: str, function: str) -> Callable[..., Any]:
    """``module.function``, imported when first called: a registry entry names its device and
    phone sides without loading bless or bleak until they are used."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"{module}.{function}"
    return call
