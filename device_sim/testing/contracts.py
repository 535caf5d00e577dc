"""Holding output to the shipped contracts (:mod:`device_sim.contracts`) in tests: needs the
``jsonschema`` package (the test extra)."""

from __future__ import annotations

from typing import Any

from ..contracts import contract


def holds(name: str, value: Any) -> None:
    """``value`` holds contract ``name``; AssertionError naming the first place otherwise."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(contract(name))
    errors = sorted(validator.iter_errors(value), key=str)
    assert not errors, f"{name}: {errors[0].json_path}: {errors[0].message}"
