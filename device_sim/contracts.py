"""The machine outputs apps rely on, as JSON Schemas shipped in the package
(``device_sim/data/contracts/``): the ``run`` ready line, ``init --json``, ``client provision
--json``, the events (``watch --json``, the SSE stream, the event log), the bench's
``results.json`` and a fleet's ``fleet.json``. ``docs/contracts.md`` lists them with the exit
codes and what may change between versions. Tests hold real output to every one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["CONTRACTS", "contract"]

CONTRACTS = ("ready", "init", "provision-result", "event", "bench-results", "fleet-index")
_DIR = Path(__file__).resolve().parent / "data" / "contracts"


def contract(name: str) -> dict[str, Any]:
    """The JSON Schema of contract ``name``. Raises ConfigError for an unknown name."""
    if name not in CONTRACTS:
        raise ConfigError("contract", f"unknown {name!r} (known: {', '.join(CONTRACTS)})")
    schema: dict[str, Any] = json.loads((_DIR / f"{name}.schema.json").read_text())
    return schema
