"""What the Locust file and its callers share, without importing Locust (it monkey-patches the
standard library with gevent on import, which an asyncio process must not get)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CA_ENV", "REQUEST_NAME", "UNITS_ENV", "WORKERS_ENV", "unit_dirs"]

UNITS_ENV = "DEVICE_SIM_UNITS"
CA_ENV = "DEVICE_SIM_CLOUD_CA"
WORKERS_ENV = "DEVICE_SIM_LOAD_WORKERS"
REQUEST_NAME = "POST /v1/activate (zero-touch)"


def unit_dirs(root: Path) -> list[Path]:
    """Every unit's state directory under a factory output directory, by serial."""
    return sorted(p.parent for p in root.glob("*/state/unit.json"))
