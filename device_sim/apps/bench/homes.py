"""The population model: a weighted mix of homes (scenario files) and phones (with their users).

``scenarios/homes/default.yaml`` ships the default; any copy of it can be given to
``device-sim bench --population N --homes FILE``. :func:`draw` picks N homes with one seeded
generator, so the same seed gives the same homes to every variant it is compared across.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import device_sim

from ...document import read_mapping
from ...errors import ConfigError
from ...network.scenario import load_scenario
from .phone import PhoneBehaviour, parse_behaviour

__all__ = ["Home", "HomesModel", "default_homes_path", "draw", "load_homes"]


@dataclass(frozen=True)
class Home:
    scenario: str
    phone: PhoneBehaviour
    seed: int


@dataclass(frozen=True)
class HomesModel:
    name: str
    description: str
    seed: int
    homes: tuple[tuple[float, str], ...]
    phones: tuple[tuple[float, PhoneBehaviour], ...]
    source: str


def default_homes_path() -> Path:
    return (
        Path(device_sim.__file__).resolve().parent.parent / "scenarios" / "homes" / "default.yaml"
    )


def load_homes(path: Path | None = None) -> HomesModel:
    """Load and check a homes file (every scenario must load and need no cloud).

    Raises ConfigError naming the bad place."""
    path = path or default_homes_path()
    where = str(path)
    data = read_mapping(
        path, ("name", "description", "seed", "homes", "phones"), "name, seed, homes, phones"
    )
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: seed", "a whole number >= 0")
    homes = tuple(
        (_weight(item, f"{where}: homes[{i}]"), _scenario(item, f"{where}: homes[{i}]"))
        for i, item in enumerate(_list(data, "homes", where))
    )
    phones = []
    for i, item in enumerate(_list(data, "phones", where)):
        at = f"{where}: phones[{i}]"
        weight = _weight(item, at)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{at}.name", "each phone needs a name")
        fields = {k: v for k, v in item.items() if k not in ("weight", "name")}
        phones.append((weight, parse_behaviour(fields, at, name=name)))
    return HomesModel(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        seed=seed,
        homes=homes,
        phones=tuple(phones),
        source=where,
    )


def _list(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list) or not items or not all(isinstance(x, dict) for x in items):
        raise ConfigError(f"{where}: {key}", "a non-empty list of mappings")
    return items


def _weight(item: dict[str, Any], at: str) -> float:
    weight = item.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise ConfigError(f"{at}.weight", f"a positive number, not {weight!r}")
    return float(weight)


def _scenario(item: dict[str, Any], at: str) -> str:
    if set(item) - {"weight", "scenario"}:
        raise ConfigError(at, "a home has a weight and a scenario")
    name = item.get("scenario")
    if not isinstance(name, str):
        raise ConfigError(f"{at}.scenario", "a scenario name or path")
    world = load_scenario(name)
    if world.cloud.mode or world.cloud.activation != "ok":
        raise ConfigError(f"{at}.scenario", f"{name} needs cloud activation (not in the bench)")
    return name


def draw(model: HomesModel, count: int, seed: int | None = None) -> list[Home]:
    """``count`` homes, each a scenario and a phone drawn by weight, and a seed for its world."""
    rng = random.Random(model.seed if seed is None else seed)
    scenarios = [name for _, name in model.homes]
    phones = [phone for _, phone in model.phones]
    out = []
    for _ in range(count):
        scenario = rng.choices(scenarios, weights=[w for w, _ in model.homes])[0]
        phone = rng.choices(phones, weights=[w for w, _ in model.phones])[0]
        out.append(Home(scenario, phone, rng.randrange(2**31)))
    return out
