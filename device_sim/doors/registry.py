"""The registry of personalities: name -> device side, phone side, options and profile section.

The daemon, the config file, the command line, the demo and the benchmarks read the names and
what each personality offers from here, so no list of personality names is written anywhere
else. A personality is a folder under :mod:`device_sim.doors` whose ``__init__`` defines
``PERSONALITY`` (a :class:`Personality`); adding one means adding its folder, its section of
``gatt_profile.yaml`` (``personalities.<name>``) and its line in :data:`FOLDERS` below.

Modules load lazily: asking for the names imports nothing; asking for an entry imports only
that personality's ``__init__``, and its entry imports its device side (bless) or phone side
(bleak) only when called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ConfigError
from ..profile import Profile
from .personality import Personality, PhoneOption

# One line per personality: its name and its folder (a package under device_sim.doors). The
# first is the reference client's default.
FOLDERS: dict[str, str] = {
    "native": "device_sim.doors.native",
    "improv": "device_sim.doors.improv",
    "esp": "device_sim.doors.esp",
}


def names() -> tuple[str, ...]:
    """Every personality's name, in the registry's order."""
    return tuple(FOLDERS)


def default() -> str:
    """The personality the tools speak when none is named (the registry's first)."""
    return next(iter(FOLDERS))


def phone_request(entry: Personality, request: str, where: str) -> Callable[..., Any]:
    """``entry``'s phone-side ``request``. Raises ConfigError (naming ``where`` and the
    personalities that make it) when it makes none."""
    if request in entry.phone_requests:
        return entry.phone_requests[request]
    able = [name for name in FOLDERS if request in get(name).phone_requests]
    raise ConfigError(
        where,
        f"the {entry.name} personality makes no {request.replace('_', ' ')} request "
        f"({', '.join(able) or 'none'} does)",
    )


def check_security(entry: Personality, security: str | None, where: str) -> None:
    """A security mode for a personality whose protocol carries none: ConfigError (naming
    ``where``); the device reads the network's mode from its scan instead."""
    if security is not None and not entry.security:
        raise ConfigError(
            where,
            f"the {entry.name} personality's protocol carries no security field "
            "(the device reads the network's from its scan)",
        )


def check_eap(entry: Personality, eap: object, where: str) -> None:
    """Enterprise settings for a personality whose protocol carries none: ConfigError (naming
    ``where``)."""
    if eap is not None and not entry.eap:
        raise ConfigError(
            where,
            f"the {entry.name} personality's protocol carries no enterprise (802.1X) settings: "
            f"use --personality {default()}",
        )


def phone_options() -> dict[str, PhoneOption]:
    """Every personality's phone-side options, by key (one flag for two that share a key)."""
    return {o.key: o for name in FOLDERS for o in get(name).phone_options}


def get(name: str, where: str = "personality") -> Personality:
    """The entry of ``name``. Raises ConfigError (naming ``where``) for an unknown name."""
    if name not in FOLDERS:
        raise ConfigError(where, f"unknown personality {name!r} (known: {', '.join(FOLDERS)})")
    entry = importlib.import_module(FOLDERS[name]).PERSONALITY
    assert isinstance(entry, Personality) and entry.name == name
    return entry


def resolve(chosen: Sequence[str] | None, profile: Profile, where: str) -> list[Personality]:
    """The personalities a device presents: ``chosen`` or the profile's default.

    Raises ConfigError for an unknown or repeated name, or a bad profile section."""
    picked = tuple(chosen) if chosen else profile.personalities.default
    if len(set(picked)) != len(picked):
        raise ConfigError(where, f"a personality is named twice: {', '.join(picked)}")
    if not chosen:
        where = f"{profile.personalities.where}.default"
    entries = [get(name, where) for name in picked]
    check_profile(profile, picked)
    return entries


def check_profile(profile: Profile, chosen: Iterable[str] = ()) -> None:
    """The profile's personality sections belong to registered personalities and parse, and
    every personality in ``chosen`` (and the default) that needs a section has one.

    Raises ConfigError naming the place."""
    p = profile.personalities
    for name in p.default:
        get(name, f"{p.where}.default")
    for name in p.sections:
        if get(name, f"{p.where}.{name}").check_profile is None:
            raise ConfigError(f"{p.where}.{name}", f"the {name} personality takes no section")
    for name in dict.fromkeys([*p.sections, *p.default, *chosen]):
        entry = get(name, f"{p.where}.{name}")
        if entry.check_profile is not None:
            entry.check_profile(profile)


def make_labels(store: Any, profile: Profile, local_name: str) -> dict[str, str]:
    """Every personality's secrets and label lines for a new identity (``device-sim init``,
    the factory, the demo): each writes its settings under its own name in ``store``."""
    fields: dict[str, str] = {}
    for name in names():
        entry = get(name)
        if entry.label is not None:
            fields.update(entry.label(*_settings_of(store, name), profile, local_name))
    return fields


def _settings_of(
    store: Any, name: str
) -> tuple[Callable[[str], str | None], Callable[[str, str], None]]:
    def setting(key: str) -> str | None:
        value = store.setting(f"{name}.{key}")
        return None if value is None else str(value)

    def set_setting(key: str, value: str) -> None:
        store.set_setting(f"{name}.{key}", value)

    return setting, set_setting
