"""The personality registry: names, entries, and the profile's personality sections."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

import pytest

from device_sim.doors import registry
from device_sim.doors.personality import Personality
from device_sim.errors import ConfigError
from device_sim.options import options_of
from device_sim.profile import Profile


def with_sections(
    profile: Profile, default: tuple[str, ...] | None = None, **sections: Any
) -> Profile:
    p = profile.personalities
    merged = {k: v for k, v in {**p.sections, **sections}.items() if v is not None}
    return replace(profile, personalities=replace(p, default=default or p.default, sections=merged))


def test_every_folder_gives_its_entry() -> None:
    assert registry.names() == tuple(registry.FOLDERS)
    assert registry.default() == registry.names()[0]
    for name in registry.names():
        entry = registry.get(name)
        assert isinstance(entry, Personality) and entry.name == name
        assert callable(entry.device) and callable(entry.phone) and entry.summary
        assert set(entry.transports) <= {"ble", "softap"} and entry.transports
        assert set(entry.bench_commands) <= set(entry.commands)
        if entry.options is not None:  # every field of an options model is an option
            fields = {f.name for f in dataclasses.fields(entry.options)}
            assert fields == {o.key for o in options_of(entry.options, name)}


def test_unknown_names_are_refused_with_the_place() -> None:
    with pytest.raises(ConfigError) as info:
        registry.get("esp32", "--personality")
    assert info.value.where == "--personality" and "native" in info.value.problem
    with pytest.raises(ConfigError, match="named twice"):
        registry.resolve(["native", "native"], _profile(), "--personality")


def _profile() -> Profile:
    from device_sim.profile import load_profile

    return load_profile()


def test_resolve_takes_the_profile_default(profile: Profile) -> None:
    assert [e.name for e in registry.resolve(None, profile, "x")] == list(
        profile.personalities.default
    )
    assert [e.name for e in registry.resolve(["improv", "native"], profile, "x")] == [
        "improv",
        "native",
    ]
    bad_default = with_sections(profile, default=("nativ",))
    with pytest.raises(ConfigError) as info:
        registry.resolve(None, bad_default, "--personality")
    assert info.value.where == "gatt_profile.yaml: personalities.default"


def test_the_shipped_profile_checks(profile: Profile) -> None:
    registry.check_profile(profile, registry.names())


@pytest.mark.parametrize(
    ("sections", "chosen", "where"),
    [
        ({"esp32": {"service_uuid": "x"}}, (), "personalities.esp32"),  # no such personality
        ({"native": {}}, (), "personalities.native"),  # takes no section
        ({"improv": "spec_revision=2"}, (), "personalities.improv.spec_revision"),
        ({"improv": None}, ("improv",), "personalities.improv"),  # needed, missing
    ],
)
def test_bad_sections_name_the_place(
    profile: Profile, sections: dict[str, Any], chosen: tuple[str, ...], where: str
) -> None:
    if sections.get("improv") == "spec_revision=2":  # the shipped section, one value wrong
        sections = {"improv": {**profile.personalities.sections["improv"], "spec_revision": 2}}
    broken = with_sections(profile, **sections)
    with pytest.raises(ConfigError) as info:
        registry.check_profile(broken, chosen)
    assert info.value.where == f"gatt_profile.yaml: {where}"


def test_a_missing_section_is_fine_when_nobody_uses_it(profile: Profile) -> None:
    registry.check_profile(with_sections(profile, improv=None), ("native",))
