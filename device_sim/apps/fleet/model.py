"""A fleet: N emulated devices, in groups that each have a scenario and a personality.

A fleet file (YAML, e.g. ``scenarios/fleets/shelf.yaml``)::

    name: shelf
    transport: softap          # softap | ble: the door every device opens
    seed: 7                    # each device's world is seeded from it and its number
    groups:
      - {count: 8, scenario: engineering-wifi, personality: native}
      - {count: 2, scenario: captive-portal}

``device-sim fleet --count N`` is a fleet of one group. Every member gets a name
(``dev-0001``), its own state directory under the fleet's root, and over the SoftAP its own
loopback address (127.90.x.y: no two devices share a port space).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...document import read_mapping
from ...doors import registry
from ...errors import ConfigError
from ...network.scenario import load_scenario

__all__ = ["MAX_DEVICES", "Fleet", "Member", "fleet_of", "load_fleet"]

MAX_DEVICES = 5000  # 127.90.0.0/16 holds them with room; a BlueZoo bus holds 255 adapters
MAX_BLE_DEVICES = 190  # BlueZoo adapter indices are one byte; up to 64 phones need some too
TRANSPORTS = ("softap", "ble")
SOFTAP_NET = (127, 90)


@dataclass(frozen=True)
class Group:
    count: int
    scenario: str
    personality: str


@dataclass(frozen=True)
class Member:
    index: int  # from 1
    scenario: str
    personality: str
    seed: int

    @property
    def name(self) -> str:
        return f"dev-{self.index:04d}"

    @property
    def address(self) -> str:
        """The device's own loopback address for its SoftAP listeners."""
        return f"{SOFTAP_NET[0]}.{SOFTAP_NET[1]}.{self.index // 250}.{self.index % 250 + 2}"


@dataclass(frozen=True)
class Fleet:
    name: str
    transport: str
    seed: int
    groups: tuple[Group, ...]

    @property
    def count(self) -> int:
        return sum(group.count for group in self.groups)

    def members(self) -> list[Member]:
        members, index = [], 0
        for group in self.groups:
            for _ in range(group.count):
                index += 1
                members.append(
                    Member(index, group.scenario, group.personality, self.seed * 100_003 + index)
                )
        return members


def fleet_of(
    count: int,
    transport: str = "softap",
    *,
    scenario: str = "engineering-wifi",
    personality: str | None = None,
    seed: int = 0,
) -> Fleet:
    """A fleet of one group (``personality``: the registry's default). Raises ConfigError."""
    group = Group(count, scenario, personality or registry.default())
    return _checked(Fleet("fleet", transport, seed, (group,)), "--count")


def load_fleet(path: Path) -> Fleet:
    """Read and check a fleet file. Raises ConfigError naming the bad place."""
    where = str(path)
    data = read_mapping(
        path,
        ("name", "description", "transport", "seed", "groups"),
        "name, transport, seed, groups",
    )
    items = data.get("groups")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: groups", "a non-empty list of {count, scenario, personality}")
    groups = tuple(_group(item, f"{where}: groups[{i}]") for i, item in enumerate(items))
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name", "a non-empty string")
    return _checked(
        Fleet(name, data.get("transport", "softap"), data.get("seed", 0), groups), where
    )


def _group(item: Any, where: str) -> Group:
    if not isinstance(item, dict):
        raise ConfigError(where, "a mapping {count, scenario, personality}")
    unknown = set(item) - {"count", "scenario", "personality"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(map(str, unknown))[0]}", "unknown key")
    count = item.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"{where}.count", "a whole number >= 1")
    scenario = item.get("scenario", "engineering-wifi")
    personality = item.get("personality", registry.default())
    for key, value in (("scenario", scenario), ("personality", personality)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{key}", "a name")
    return Group(count, scenario, personality)


def _checked(fleet: Fleet, where: str) -> Fleet:
    if fleet.transport not in TRANSPORTS:
        raise ConfigError(f"{where}: transport", f"softap or ble, not {fleet.transport!r}")
    seed = fleet.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: seed", "a whole number >= 0")
    limit = MAX_BLE_DEVICES if fleet.transport == "ble" else MAX_DEVICES
    if not 1 <= fleet.count <= limit:
        raise ConfigError(
            where, f"{fleet.count} devices: a {fleet.transport} fleet holds 1 to {limit}"
        )
    for group in fleet.groups:
        if group.count < 1:
            raise ConfigError(f"{where}: count", "a whole number >= 1")
        world = load_scenario(group.scenario)  # raises ConfigError(s) naming the file
        if world.cloud.mode or world.cloud.activation != "ok":
            raise ConfigError(
                f"{where}: {group.scenario}",
                "a fleet runs without cloud activation; play cloud scenarios with demo",
            )
        entry = registry.get(group.personality, f"{where}: personality")
        if fleet.transport not in entry.transports:
            raise ConfigError(
                f"{where}: personality",
                f"{entry.name} does not run over {fleet.transport} "
                f"(it runs over {', '.join(entry.transports)})",
            )
    return fleet
