"""The three loaders (scenario YAML, daemon TOML, gatt_profile.yaml) fed mutated documents and
hostile text: every one answers with ConfigError naming the file, never a crash."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from device_sim.config import load_config, parse_config
from device_sim.errors import ConfigError
from device_sim.network.scenario import load_scenario, parse_scenario, scenarios_dir
from device_sim.profile import DEFAULT_PROFILE_PATH, load_profile, parse_profile

from .conftest import FUZZ
from .strategies import mutated, values

ROOT = Path(__file__).resolve().parents[2]
PROFILE = yaml.safe_load(Path(DEFAULT_PROFILE_PATH).read_text())
SCENARIO = yaml.safe_load((scenarios_dir() / "typical-home.yaml").read_text())
CONFIG = tomllib.loads((ROOT / "packaging" / "device-sim.toml").read_text())


def _refused_or_parsed(parse: Any, data: Any) -> None:
    try:
        parse(data)
    except ConfigError as exc:
        assert exc.args and str(exc), "a ConfigError must say where and what"


@FUZZ
@given(mutated(SCENARIO))
def test_scenario_documents(fuzz_counts: Counter[str], data: Any) -> None:
    fuzz_counts["loaders: scenario documents"] += 1
    _refused_or_parsed(
        lambda d: parse_scenario(d, "typical-home.yaml", expected_name="typical-home"), data
    )


@FUZZ
@given(mutated(CONFIG, values.filter(lambda v: v is not None)))
def test_config_documents(fuzz_counts: Counter[str], data: Any) -> None:
    fuzz_counts["loaders: config documents"] += 1
    _refused_or_parsed(lambda d: parse_config(d, Path("/etc/device-sim/device-sim.toml")), data)


@FUZZ
@given(mutated(PROFILE))
def test_profile_documents(fuzz_counts: Counter[str], data: Any) -> None:
    fuzz_counts["loaders: profile documents"] += 1
    _refused_or_parsed(lambda d: parse_profile(d, Path("gatt_profile.yaml")), data)


HOSTILE_YAML = [
    "a: " + "[" * 3000 + "]" * 3000,  # deep flow nesting
    "".join("  " * i + f"k{i}:\n" for i in range(300)),  # deep block nesting
    "a: &x [*x]\n",  # an anchor that contains itself
    "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
    + "".join(  # billion laughs (10^7 values)
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n"
        for p, n in zip("abcdef", "bcdefg", strict=True)
    ),
    "properties: [[read], {write: 1}]\n",
    "\x00\x01\x02",
    "- - - -\n",
    "? [a]\n: b\n",
    "!!python/object:os.system {}\n",
]
HOSTILE_TOML = [
    "a = " + "[" * 3000 + "]" * 3000,
    "a = " + "{b = " * 2000 + "1" + "}" * 2000,
    '[ble]\npersonalities = [["native"], {a = 1}]\n',
    "state_dir = 1979-05-27T07:32:00Z\n",
    "\ufeffx = 1\n",
    "[a]\n[a]\n",
]


@pytest.mark.parametrize("text", HOSTILE_YAML)
def test_hostile_yaml_files(tmp_path: Path, text: str, fuzz_counts: Counter[str]) -> None:
    fuzz_counts["loaders: hostile files"] += 2
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    for load in (load_scenario, load_profile):
        with pytest.raises(ConfigError) as info:
            load(path)
        assert "hostile.yaml" in str(info.value)


@pytest.mark.parametrize("text", HOSTILE_TOML)
def test_hostile_toml_files(tmp_path: Path, text: str, fuzz_counts: Counter[str]) -> None:
    fuzz_counts["loaders: hostile files"] += 1
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "hostile.toml" in str(info.value)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=300),
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
        st.integers(0, 2000).map(lambda d: "x = " + "[" * d + "1" + "]" * d),
    )
)
def test_random_text_files(
    tmp_path_factory: pytest.TempPathFactory, fuzz_counts: Counter[str], text: str
) -> None:
    fuzz_counts["loaders: random files"] += 3
    directory = tmp_path_factory.mktemp("fuzz", numbered=True)
    for name, load in (
        ("s.yaml", load_scenario),
        ("p.yaml", load_profile),
        ("c.toml", load_config),
    ):
        path = directory / name
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load(path)
        except ConfigError:
            pass
