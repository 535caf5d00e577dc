"""The strict YAML walker behind :mod:`device_sim.profile`: typed reads, unknown keys rejected.

Every section parser of ``gatt_profile.yaml`` reads its mapping through a :class:`Reader`, which
tracks the path so that a :class:`~device_sim.errors.ConfigError` names the bad place, e.g.
``gatt_profile.yaml: codes.BUSY.id``.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from ..errors import ConfigError


class Reader:
    """Walks one mapping of the YAML document, tracking the path for error messages."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(where, f"expected a mapping, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.where = where
        self.used: set[str] = set()

    def at(self, key: str) -> str:
        return (
            f"{self.where}.{key}"
            if self.where and not self.where.endswith(": ")
            else f"{self.where}{key}"
        )

    def get(
        self, key: str, kind: type | tuple[type, ...], *, required: bool = True, default: Any = None
    ) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise ConfigError(self.at(key), "missing")
            return default
        value = self.data[key]
        if kind is int and isinstance(value, bool):
            raise ConfigError(self.at(key), f"expected an integer, got {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ConfigError(self.at(key), f"expected {names}, got {value!r}")
        return value

    def strings(self, key: str, *, required: bool = True) -> list[str]:
        """A list whose every item is a string (``properties``, ``listeners``)."""
        items = self.get(key, list, required=required, default=[])
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ConfigError(f"{self.at(key)}[{i}]", f"expected a string, got {item!r}")
        return list(items)

    def child(self, key: str) -> Reader:
        return Reader(self.get(key, dict), self.at(key))

    def positive(self, key: str, *, required: bool = True) -> int | None:
        value = self.get(key, int, required=required)
        if value is not None and value <= 0:
            raise ConfigError(self.at(key), f"must be > 0, got {value}")
        return value

    def uuid(self, key: str) -> str:
        text = self.get(key, str)
        try:
            return str(uuidlib.UUID(text))
        except ValueError:
            raise ConfigError(self.at(key), f"not a UUID: {text!r}") from None

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used, key=str)  # YAML keys need not be strings
        if unknown:
            raise ConfigError(self.at(str(unknown[0])), "unknown key")
