"""Fleet files: groups of devices, each group a world and a personality; every mistake named."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_sim.apps.fleet.model import fleet_of, load_fleet
from device_sim.errors import ConfigError, ConfigErrors


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


def test_a_fleet_file_gives_each_device_its_group(tmp_path: Path) -> None:
    fleet = load_fleet(
        write(
            tmp_path,
            """
name: shelf
transport: softap
seed: 7
groups:
  - {count: 2, scenario: engineering-wifi}
  - {count: 1, scenario: dns-failure, personality: esp}
""",
        )
    )
    members = fleet.members()
    assert [m.name for m in members] == ["dev-0001", "dev-0002", "dev-0003"]
    assert [m.scenario for m in members] == ["engineering-wifi"] * 2 + ["dns-failure"]
    assert [m.personality for m in members] == ["native", "native", "esp"]
    assert len({m.seed for m in members}) == 3  # each world drawn on its own
    assert len({m.address for m in members}) == 3 and all(
        m.address.startswith("127.90.") for m in members
    )


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("groups: []", "groups", "non-empty list"),
        ("colour: red\ngroups: [{count: 1}]", "colour", "unknown key"),
        ("groups: [{count: 0}]", "groups[0].count", "between 1 and"),
        ("groups: [{count: 1, scenario: no-such-world}]", "no-such-world", ""),
        ("transport: zigbee\ngroups: [{count: 1}]", "transport", "one of softap, ble"),
        (
            "transport: softap\ngroups: [{count: 1, personality: improv}]",
            "personality",
            "does not run over softap",
        ),
        ("groups: [{count: 1, scenario: cloud-down}]", "cloud-down", "without cloud activation"),
        ("transport: ble\ngroups: [{count: 500}]", "", "holds 1 to"),
        ("groups: [{count: 1, colour: red}]", "groups[0].colour", "unknown key"),
        ("[1, 2]", "", "mapping"),
        ("a: &a [*a, *a]\ngroups: [{count: 1}]", "", "nested deeper than"),  # an anchor in itself
        ("groups: [{count: 1}\n", "", "not valid YAML"),
    ],
)
def test_a_bad_fleet_file_names_its_mistake(
    tmp_path: Path, text: str, where: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_fleet(write(tmp_path, text))
    message = str(caught.value)
    assert where in message and words in message, message


def test_count_makes_a_fleet_of_one_group() -> None:
    fleet = fleet_of(3, "ble", scenario="captive-portal", personality="improv")
    assert fleet.count == 3 and {m.personality for m in fleet.members()} == {"improv"}
    with pytest.raises(ConfigError):
        fleet_of(0)


def test_the_shipped_fleet_files_load() -> None:
    shipped = sorted((Path(__file__).parents[2] / "scenarios" / "fleets").glob("*.yaml"))
    assert shipped
    for path in shipped:
        assert load_fleet(path).count >= 1


def test_a_fleet_file_reports_every_mistake_at_once(tmp_path: Path) -> None:
    """Fleet files, homes models and scenarios share one loader model (device_sim/schema.py):
    every error of a file at once, each naming its place."""
    text = "transport: zigbee\nseed: -1\ngroups: [{count: 0, colour: red}]"
    with pytest.raises(ConfigErrors) as caught:
        load_fleet(write(tmp_path, text))
    places = sorted(e.where.split(": ", 1)[1] for e in caught.value.errors)
    assert places == ["groups[0].colour", "groups[0].count", "seed", "transport"]
