"""The population model: a weighted mix of homes (scenario files) and phones (with their users).

``scenarios/homes/default.yaml`` ships the default; any copy of it can be given to
``device-sim bench --population N --homes FILE``. :func:`draw` picks N homes with one seeded
generator, so the same seed gives the same homes to every variant it is compared across.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import device_sim

from ...errors import ConfigError
from ...network.scenario import load_scenario
from ...schema import List_, Mapping_, anything, integer, positive, read_document, text
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
        Path(device_sim.__file__).resolve().parent / "data" / "scenarios" / "homes" / "default.yaml"
    )


HOMES_FILE = Mapping_(
    "the homes a population is drawn from, and the phones and users in them",
    {
        "name": text("the model's name (default: the file's)"),
        "description": text("what it models", allow_empty=True),
        "seed": integer("seeds the draws", 0, 2**31 - 1, 0),
        "homes": List_(
            "kinds of homes, by weight",
            Mapping_(
                "one kind of home",
                {
                    "weight": positive("how often it is drawn, against the others"),
                    "scenario": text("its world: a scenario name or path"),
                },
                required=("weight", "scenario"),
            ),
            min_items=1,
        ),
        "phones": List_(
            "phones and their users, by weight (device_sim/apps/bench/phone.py PhoneBehaviour)",
            Mapping_(
                "one phone and its user",
                {
                    "weight": positive("how often it is drawn, against the others"),
                    "name": text("its name in the report"),
                    **{
                        f: anything(f"PhoneBehaviour.{f}")
                        for f in PhoneBehaviour.__dataclass_fields__
                        if f != "name"
                    },
                },
                required=("weight", "name"),
            ),
            min_items=1,
        ),
    },
    required=("homes", "phones"),
)


def load_homes(path: Path | None = None) -> HomesModel:
    """Load and check a homes file (every scenario must load and need no cloud).

    Raises ConfigError naming the bad place."""
    path = path or default_homes_path()
    where = str(path)
    data = read_document(path, HOMES_FILE)
    homes = tuple(
        (item["weight"], _scenario(item["scenario"], f"{where}: homes[{i}].scenario"))
        for i, item in enumerate(data["homes"])
    )
    phones = []
    for i, item in enumerate(data["phones"]):
        fields = {k: v for k, v in item.items() if k not in ("weight", "name")}
        phones.append(
            (item["weight"], parse_behaviour(fields, f"{where}: phones[{i}]", name=item["name"]))
        )
    return HomesModel(
        name=data.get("name", path.stem),
        description=data.get("description", ""),
        seed=data.get("seed", 0),
        homes=homes,
        phones=tuple(phones),
        source=where,
    )


def _scenario(name: str, at: str) -> str:
    world = load_scenario(name)
    if world.cloud.mode or world.cloud.activation != "ok":
        raise ConfigError(at, f"{name} needs cloud activation (not in the bench)")
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
