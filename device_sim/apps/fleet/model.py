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

from ...doors import registry
from ...errors import ConfigError
from ...network.scenario import load_scenario
from ...schema import List_, Mapping_, choice, integer, read_document, text

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
    ble_stack: str = "bluez",
) -> Fleet:
    """A fleet of one group (``personality``: the registry's default). Raises ConfigError."""
    group = Group(count, scenario, personality or registry.default())
    return _checked(Fleet("fleet", transport, seed, (group,)), "--count", ble_stack)


FLEET_FILE = Mapping_(
    "a fleet of emulated devices, in groups",
    {
        "name": text("the fleet's name (default: the file's)"),
        "description": text("what the fleet is for", allow_empty=True),
        "transport": choice("the door every device opens", TRANSPORTS, "softap"),
        "seed": integer("each device's world is seeded from it and its number", 0, 2**31 - 1, 0),
        "groups": List_(
            "devices of one kind each",
            Mapping_(
                "a group",
                {
                    "count": integer("how many devices", 1, MAX_DEVICES),
                    "scenario": text("their world", default="engineering-wifi"),
                    "personality": text("the protocol they speak (default: the registry's)"),
                },
                required=("count",),
            ),
            min_items=1,
        ),
    },
    required=("groups",),
)


def load_fleet(path: Path, ble_stack: str = "bluez") -> Fleet:
    """Read and check a fleet file. Raises ConfigError naming the bad place."""
    data = read_document(path, FLEET_FILE)
    groups = tuple(
        Group(
            item["count"],
            item.get("scenario", "engineering-wifi"),
            item.get("personality", registry.default()),
        )
        for item in data["groups"]
    )
    fleet = Fleet(
        data.get("name", path.stem), data.get("transport", "softap"), data.get("seed", 0), groups
    )
    return _checked(fleet, str(path), ble_stack)


def _checked(fleet: Fleet, where: str, ble_stack: str = "bluez") -> Fleet:
    if fleet.transport not in TRANSPORTS:
        raise ConfigError(f"{where}: transport", f"softap or ble, not {fleet.transport!r}")
    seed = fleet.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: seed", "a whole number >= 0")
    # BlueZoo's adapter indices bound a BLE fleet on it; bumble's in-process link does not
    limit = MAX_BLE_DEVICES if fleet.transport == "ble" and ble_stack == "bluez" else MAX_DEVICES
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
