"""The bench's pure parts: the homes model, phone behaviours, the statistics and the summary."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from device_sim.apps.bench.homes import default_homes_path, draw, load_homes
from device_sim.apps.bench.phone import PhoneBehaviour, _type, parse_behaviour
from device_sim.apps.bench.report import percentile, summarize
from device_sim.apps.bench.runner import phase_durations
from device_sim.errors import ConfigError
from device_sim.security.secret import Secret


def test_the_default_homes_load_and_draw_repeatably() -> None:
    model = load_homes()
    assert model.source == str(default_homes_path())
    assert {name for _, name in model.homes} >= {
        "typical-home",
        "mesh-failing-node",
        "five-ghz-only",
        "band-steering",
    }
    assert {p.name for _, p in model.phones} >= {"careful", "no-bluetooth", "walks-away"}
    first, again, other = draw(model, 300, 7), draw(model, 300, 7), draw(model, 300, 8)
    assert first == again and first != other
    share = sum(h.scenario == "typical-home" for h in first) / len(first)
    weight = dict((n, w) for w, n in model.homes)["typical-home"] / sum(w for w, _ in model.homes)
    assert abs(share - weight) < 0.1  # drawn by weight


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("homes: []\nphones: [{weight: 1, name: a}]", "homes"),
        (
            "homes: [{weight: 0, scenario: typical-home}]\nphones: [{weight: 1, name: a}]",
            "homes[0].weight",
        ),
        (
            "homes: [{weight: 1, scenario: cloud-down}]\nphones: [{weight: 1, name: a}]",
            "homes[0].scenario",
        ),
        ("homes: [{weight: 1, scenario: typical-home}]\nphones: [{weight: 1}]", "phones[0].name"),
        (
            "homes: [{weight: 1, scenario: typical-home}]\n"
            "phones: [{weight: 1, name: a, think_s: [9, 2]}]",
            "phones[0].think_s",
        ),
        ("homez: []", "homez"),
    ],
)
def test_bad_homes_files_name_the_place(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "homes.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_homes(path)
    assert info.value.where.endswith(where)


def test_behaviours_parse_and_type_passwords() -> None:
    phone = parse_behaviour(
        {"think_s": [1, 2], "typo_probability": 1, "bluetooth": False}, "x", name="p"
    )
    assert phone == PhoneBehaviour(
        name="p", bluetooth=False, think_s=(1.0, 2.0), typo_probability=1.0
    )
    typed, wrong = _type(Secret("correct-horse"), phone, random.Random(1))
    assert wrong and typed is not None and typed.reveal() != "correct-horse"
    assert len(typed.reveal()) == len("correct-horse")
    careful, typo = _type(Secret("correct-horse"), PhoneBehaviour(), random.Random(1))
    assert careful is not None and careful.reveal() == "correct-horse" and typo is False
    with pytest.raises(ConfigError, match="max_tries"):
        parse_behaviour({"max_tries": 0}, "x")


def test_percentile_interpolates() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([float(i) for i in range(1, 11)], 0.9) == pytest.approx(9.1)


def test_phase_durations_count_only_the_attempts() -> None:
    events = [
        {"at": "2026-01-01T00:00:00+00:00", "phase": "scanning"},  # a scan before: not counted
        {"at": "2026-01-01T00:00:30+00:00", "phase": "joining"},
        {"at": "2026-01-01T00:00:30.100+00:00", "phase": "scanning"},
        {"at": "2026-01-01T00:00:30.600+00:00", "phase": "associating"},
        {"at": "2026-01-01T00:00:31+00:00", "phase": "dhcp"},
        {"at": "2026-01-01T00:00:33+00:00", "phase": "associating"},  # the next mesh node
        {"at": "2026-01-01T00:00:33.250+00:00", "phase": "dhcp"},
        {"at": "2026-01-01T00:00:34+00:00", "phase": "online"},
    ]
    assert phase_durations(events) == {"scanning": 500, "associating": 650, "dhcp": 2750}


def run(code: str, seconds: float | None, **more: Any) -> dict[str, Any]:
    return {
        "id": code,
        "cell": "typical-home / ble / native",
        "scenario": "typical-home",
        "transport": "ble",
        "personality": "native",
        "phone": "careful",
        "seed": 0,
        "code_name": code,
        "online": code == "OK",
        "seconds": seconds,
        "phases_ms": {"dhcp": 900},
        "passed": code == "OK",
        **more,
    }


def test_the_population_summary() -> None:
    runs = (
        [run("OK", 30.0 + i) for i in range(7)]
        + [run("OK", 150.0)]
        + [run("NETWORK_5GHZ_ONLY", 12.0), run("NETWORK_5GHZ_ONLY", 15.0)]
    )
    summary = summarize(runs, "population")
    (group,) = summary["groups"].values()
    assert group["online_within_2_min"] == 7 and group["share_online_within_2_min"] == 0.7
    assert group["codes_costing_homes"] == {"NETWORK_5GHZ_ONLY": 2, "ONLINE_AFTER_2_MIN": 1}
    assert group["time_to_online_s"]["median"] == percentile(
        [30.0 + i for i in range(7)] + [150.0], 0.5
    )
    assert summary["all"]["phases_ms"]["dhcp"]["n"] == 10


def test_reonboardings_count_as_onboardings_of_their_own() -> None:
    """A replaced router's home re-onboards (its time from the doors reopening); a rebooted
    router's device is back by itself; both are counted apart and in the onboardings."""
    final = {"state": "online", "code_name": "OK"}
    replaced = run(
        "OK",
        40.0,
        story={
            "reonboarding": {"state": "online"},
            "reonboard_s": 35.0,
            "back_online_s": None,
            "final": final,
            "mismatches": [],
        },
    )
    slow = run(
        "OK",
        40.0,
        story={
            "reonboarding": {"state": "online"},
            "reonboard_s": 150.0,
            "back_online_s": None,
            "final": final,
            "mismatches": [],
        },
    )
    rebooted = run(
        "OK",
        40.0,
        story={
            "reonboarding": None,
            "reonboard_s": None,
            "back_online_s": 12.0,
            "final": final,
            "mismatches": ["the doors did not reopen"],
        },
    )
    (group,) = summarize([replaced, slow, rebooted, run("OK", 30.0)], "population")[
        "groups"
    ].values()
    assert group["online_within_2_min"] == 4  # the homes' first onboardings
    assert (group["onboardings"], group["onboardings_within_2_min"]) == (6, 5)
    assert group["share_onboardings_within_2_min"] == round(5 / 6, 4)
    assert group["reonboardings"] == {
        "n": 2,
        "online_within_2_min": 1,
        "median_s": 92.5,
        "p90_s": percentile([35.0, 150.0], 0.9),
    }
    assert group["back_by_itself"] == {"n": 1, "of": 1, "median_s": 12.0, "p90_s": 12.0}
    assert (group["stories_as_expected"], group["stories"]) == (2, 3)
