"""One declarative model for every input file the project reads (scenario files, the homes
model, fleet files): a key's *kind* both validates its YAML value and describes it in JSON
Schema, so every key's type, range, choices, default and meaning are written once. A check
collects every error of a file (``Errors``), each naming its place (``access_points[1].band``);
:func:`checked` raises them together as one :class:`~device_sim.errors.ConfigErrors`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, ConfigErrors


class Bad:
    """A value that failed validation (its error is recorded)."""


BAD = Bad()
Errors = list[ConfigError]


@dataclass(frozen=True)
class Kind:
    """One key's type: validates a YAML value and describes it in JSON Schema."""

    doc: str
    default: Any = None
    check: Callable[[Any, str, Errors], Any] = field(default=lambda v, p, e: v)
    schema: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        out = {"description": self.doc, **self.schema}
        if self.default is not None:
            out["default"] = self.default
        return out


def err(errors: Errors, path: str, problem: str) -> Bad:
    errors.append(ConfigError(path, problem))
    return BAD


def integer(doc: str, lo: int, hi: int, default: int | None = None) -> Kind:
    def check(v: Any, path: str, errors: Errors) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            return err(errors, path, f"must be an integer, not {v!r}")
        if not lo <= v <= hi:
            return err(errors, path, f"must be between {lo} and {hi}, not {v}")
        return v

    return Kind(doc, default, check, {"type": "integer", "minimum": lo, "maximum": hi})


def number(doc: str, lo: float, hi: float, default: float | None = None) -> Kind:
    def check(v: Any, path: str, errors: Errors) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return err(errors, path, f"must be a number, not {v!r}")
        if not lo <= v <= hi:
            return err(errors, path, f"must be between {lo} and {hi}, not {v}")
        return float(v)

    return Kind(doc, default, check, {"type": "number", "minimum": lo, "maximum": hi})


def positive(doc: str, default: float | None = None) -> Kind:
    def check(v: Any, path: str, errors: Errors) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            return err(errors, path, f"must be a positive number, not {v!r}")
        return float(v)

    return Kind(doc, default, check, {"type": "number", "exclusiveMinimum": 0})


def anything(doc: str) -> Kind:
    """A value another parser checks (a key is listed, its value is not the model's)."""
    return Kind(doc)


def text(
    doc: str, *, allow_empty: bool = False, default: str | None = None, nullable: bool = False
) -> Kind:
    def check(v: Any, path: str, errors: Errors) -> Any:
        if v is None and nullable:
            return None
        if not isinstance(v, str):
            return err(errors, path, f"must be a string (quote it in YAML), not {v!r}")
        if not v and not allow_empty:
            return err(errors, path, "must not be empty")
        return v

    schema: dict[str, Any] = {"type": ["string", "null"] if nullable else "string"}
    if not allow_empty:
        schema["minLength"] = 1
    return Kind(doc, default, check, schema)


def flag(doc: str, default: bool = False) -> Kind:
    def check(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, bool):
            return err(errors, path, f"must be true or false, not {v!r}")
        return v

    return Kind(doc, default, check, {"type": "boolean"})


def choice(doc: str, choices: tuple[str, ...], default: str | None = None) -> Kind:
    def check(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, str) or v not in choices:
            return err(errors, path, f"must be one of {', '.join(choices)}, not {v!r}")
        return v

    return Kind(doc, default, check, {"enum": list(choices)})


def ip_address(doc: str, default: str | None = None, version: int | None = None) -> Kind:
    def check(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, str):
            return err(errors, path, f"must be a string (quote it in YAML), not {v!r}")
        try:
            address = ipaddress.ip_address(v)
        except ValueError:
            return err(errors, path, f"not an IP address: {v!r}")
        if version is not None and address.version != version:
            return err(errors, path, f"must be an IPv{version} address, not {v!r}")
        return str(address)

    return Kind(doc, default, check, {"type": "string", "format": f"ipv{version or 4}"})


def ip_list(doc: str, default: list[str]) -> Kind:
    one = ip_address("an IP address")

    def check(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, list) or not 1 <= len(v) <= 3:
            return err(errors, path, "must be a list of 1 to 3 IP addresses")
        items = [one.check(x, f"{path}[{i}]", errors) for i, x in enumerate(v)]
        return BAD if any(x is BAD for x in items) else tuple(items)

    schema = {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string"}}
    return Kind(doc, default, check, schema)


@dataclass(frozen=True)
class Mapping_:
    """A mapping of known keys (every one described); unknown keys are errors."""

    doc: str
    keys: dict[str, Kind | Mapping_ | List_]
    required: tuple[str, ...] = ()

    def check(self, v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, Mapping):
            return err(errors, path or "", "must be a mapping")
        out: dict[str, Any] = {}
        for key, raw in v.items():
            where = join_path(path, str(key))
            kind = self.keys.get(key) if isinstance(key, str) else None
            if kind is None:
                err(errors, where, f"unknown key (allowed: {', '.join(sorted(self.keys))})")
                continue
            out[key] = kind.check(raw, where, errors)  # BAD kept: builders skip its dependants
        for key in self.required:
            if key not in v:
                err(errors, join_path(path, key), "missing")
        return out

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": self.doc,
            "type": "object",
            "additionalProperties": False,
            "properties": {k: kind.json() for k, kind in self.keys.items()},
        }
        if self.required:
            out["required"] = list(self.required)
        return out


@dataclass(frozen=True)
class List_:
    doc: str
    item: Mapping_
    max_items: int = 256
    min_items: int = 0

    def check(self, v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, list):
            return err(errors, path, "must be a list")
        if len(v) < self.min_items:
            return err(errors, path, f"must be a non-empty list (at least {self.min_items})")
        if len(v) > self.max_items:
            return err(errors, path, f"at most {self.max_items} entries, not {len(v)}")
        return [self.item.check(x, f"{path}[{i}]", errors) for i, x in enumerate(v)]

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.doc, "type": "array", "items": self.item.json()}
        if self.min_items:
            out["minItems"] = self.min_items
        return {**out, "maxItems": self.max_items}


def good(node: Any) -> tuple[dict[str, Any], set[str]]:
    """A checked mapping without its bad values, and the keys that were bad."""
    if not isinstance(node, dict):
        return {}, set()
    return {k: v for k, v in node.items() if v is not BAD}, {k for k, v in node.items() if v is BAD}


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def checked(model: Mapping_, data: Any, source: str) -> dict[str, Any]:
    """``data`` checked against ``model``. Raises ConfigErrors (every error, each prefixed with
    ``source``)."""
    errors: Errors = []
    out = model.check(data, "", errors)
    if errors:
        raise ConfigErrors([ConfigError(f"{source}: {e.where}", e.problem) for e in errors])
    assert isinstance(out, dict)
    return out


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key
        self.line = line


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: the base constructor reports it
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path, source: str) -> Any:
    """A YAML file read and parsed under the loader limits, a duplicate mapping key refused
    (a second value would silently win). Raises ConfigError naming ``source`` (and the line)."""
    from .document import parse_errors

    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, f"cannot read: {exc}") from exc
    try:
        with parse_errors(source):
            return yaml.load(raw, Loader=_UniqueKeyLoader)
    except _DuplicateKey as exc:
        raise ConfigError(f"{source}: line {exc.line}", f"duplicate key {exc.key!r}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"not valid YAML: {exc}") from exc


def read_document(path: Path, model: Mapping_) -> dict[str, Any]:
    """A small YAML file (a homes model, a fleet) read (:func:`load_yaml`), held to the loader
    limits and checked against ``model``. Raises ConfigError (ConfigErrors: every error) naming
    the file and the place."""
    from .document import check_document

    where = str(path)
    data = load_yaml(path, where)
    check_document(data, where)
    return checked(model, data, where)
