"""Limits every loader applies to a parsed document before reading it.

The scenario files, the TOML config and ``gatt_profile.yaml`` come from users (a QA tester's
scenario, an edited config, a modified profile). A hostile or broken file must get the same
file-and-key :class:`~device_sim.errors.ConfigError` as a simple mistake, never a traceback:

* nesting deeper than :data:`MAX_DEPTH` (the parsers themselves recurse: 1,000 nested lists
  raise RecursionError in PyYAML and tomllib), including a YAML anchor that contains itself;
* more than :data:`MAX_NODES` values, counted with YAML aliases expanded (a "billion laughs"
  document is small on disk and endless when walked).

::

    with parse_errors(source):
        data = yaml.load(...)
    check_document(data, source)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .errors import ConfigError

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "JsonTooDeep",
    "check_document",
    "json_depth",
    "loads_json",
    "parse_errors",
]

MAX_DEPTH = 32  # our deepest real document (the profile) is 6 levels
MAX_NODES = 100_000  # the profile, the largest, has about 1,500


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


class JsonTooDeep(ValueError):
    """A JSON text nests deeper than allowed (a ValueError, as json.JSONDecodeError is)."""


def json_depth(raw: bytes) -> int:
    """How deep ``raw``'s arrays and objects nest (brackets inside strings do not count).

    A linear scan, never a recursion: it is what runs before the parser, which recurses."""
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b"", raw)):
        if match.group() in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_json(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for input from outside (a phone, a local client): nesting deeper than
    ``max_depth`` is refused before parsing, and the parser's RecursionError is kept as a
    backstop. Raises ValueError: JsonTooDeep, json.JSONDecodeError or UnicodeDecodeError."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if json_depth(data) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data.decode("utf-8") if isinstance(raw, bytes) else raw)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested too deeply (the limit is {max_depth} levels)") from None


@contextmanager
def parse_errors(where: str) -> Iterator[None]:
    """Turn a parser's RecursionError (a document nested thousands deep) into ConfigError."""
    try:
        yield
    except RecursionError:
        raise ConfigError(where, f"nested too deeply (the limit is {MAX_DEPTH} levels)") from None


def check_document(data: Any, where: str) -> None:
    """Raise ConfigError if ``data`` nests deeper than MAX_DEPTH or holds over MAX_NODES values.

    ``where`` is the file (``"x.yaml: "`` style prefixes are accepted); the message names the
    path to the place that went too deep.
    """
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    nodes = 0
    while stack:
        value, depth, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(
                where.rstrip(": "),
                f"more than {MAX_NODES} values (YAML aliases count each time they are used)",
            )
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"{where.rstrip(': ')}: {path.lstrip('.') or 'top level'}",
                f"nested deeper than {MAX_DEPTH} levels",
            )
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1, f"{path}.{k}") for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(value))
