"""Options defined once: a typed model per component, from which the config file, the command
line flags and the environment variables are all derived.

A component declares its options as a frozen dataclass whose fields carry an :func:`opt`
(default, help, limits). A root model gathers the components as :func:`section` fields. From
that one declaration:

* the TOML file: ``[section] key = value`` (root fields at the top), strictly checked: an unknown
  section or key, or a bad value, is a :class:`~device_sim.errors.ConfigError` naming the place
  (``device-sim.toml: ble.adapter``); relative paths are relative to the file's directory;
* the command line: ``--section-key`` (or the field's own ``flag``), parsed by the same rules,
  a bad value answered in one line by argparse;
* the environment: ``DEVICE_SIM_SECTION_KEY`` (``DEVICE_SIM_KEY`` for root fields).

Precedence: the model's defaults, then the file, then the environment, then the flags.
Supported field types: ``str``, ``int``, ``float``, ``bool``, ``Path``, a ``StrEnum``,
``HostPort`` (``host:port``, IPv6 as ``[::1]:8380``) and ``tuple[str, ...]`` (a TOML list or a
comma-separated flag), each optionally ``| None``.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

from .errors import ConfigError

ENV_PREFIX = "DEVICE_SIM_"
IFNAME = r"^[^\s/:]{1,15}$"  # a Linux interface name: IFNAMSIZ - 1, no '/', ':' or space
_HOST_RE = re.compile(r"^[A-Za-z0-9._:-]+$")


class HostPort(NamedTuple):
    host: str
    port: int  # 0: any free port

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host_port(text: str) -> HostPort:
    """``"0.0.0.0:80"`` / ``"[::1]:8380"`` -> HostPort; port 0 means any free port.

    The one host:port rule of the project (config file, flags, environment). Raises ValueError
    with a message naming the expected form.
    """
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address must be bracketed
    if not sep or not host or not _HOST_RE.match(host) or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT (IPv6 as [::1]:8380), not {text!r}")
    return HostPort(host, int(port))


@dataclass(frozen=True)
class Opt:
    """How one option is shown and checked (in a field's metadata; see :func:`opt`)."""

    help: str
    flag: str | None = None  # the command-line flag when not --section-key
    choices: tuple[str, ...] = ()
    low: float | None = None  # the smallest value allowed (numbers)
    high: float | None = None  # the largest
    above: bool = False  # low is exclusive: the value must be greater
    pattern: str | None = None  # a regular expression a string must match
    what: str = ""  # the expected form, for a pattern's error message
    path_like: bool = False  # a string that is a path when it looks like one (relative to a file)
    metavar: str | None = None


def opt(default: Any, help: str, **spec: Any) -> Any:
    """A field of an options model: its default, its help and its checks (:class:`Opt`)."""
    return field(default=default, metadata={"opt": Opt(help, **spec)})


def section(model: type) -> Any:
    """A field of a root model holding one component's options model."""
    return field(default_factory=model, metadata={"section": True})


def sections(models: Callable[[], Mapping[str, type]]) -> Any:
    """A field of a root model holding the sections known only at run time (the
    personalities' options): ``models()`` names them and their models (:class:`Sections`)."""
    return field(default_factory=Sections, metadata={"sections": models})


T = TypeVar("T")


class Sections(Mapping[str, Any]):
    """The run-time sections' values by name, each an instance of its model; a section that
    was never built (a model without options set, in a hand-made root) reads as None."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Sections({self._values!r})"

    def of(self, name: str, model: type[T]) -> T:
        """Section ``name`` as its model (its defaults when absent). Raises TypeError for a
        value of another model."""
        value = self._values.get(name)
        if value is None:
            return model()
        if not isinstance(value, model):
            raise TypeError(f"section {name!r} holds a {type(value).__name__}, not {model}")
        return value


@dataclass(frozen=True)
class Option:
    """One option of a model tree, with its three names."""

    section: str  # "" for the root's own fields
    key: str
    kind: Any  # the base type (str, int, float, bool, Path, HostPort, tuple, a StrEnum)
    optional: bool
    spec: Opt
    default: Any

    @property
    def place(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    @property
    def flag(self) -> str:
        if self.spec.flag:
            return self.spec.flag
        return "--" + self.place.replace(".", "-").replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.place.replace(".", "_").upper()

    @property
    def choices(self) -> tuple[str, ...]:
        if isinstance(self.kind, type) and issubclass(self.kind, enum.Enum):
            return tuple(str(m.value) for m in self.kind)
        return self.spec.choices

    # --- values ------------------------------------------------------------------------------

    def from_text(self, text: str) -> Any:
        """A value given as text (a flag, an environment variable). Raises ValueError."""
        if self.optional and text == "":
            return None
        kind = self.kind
        if kind is bool:
            word = text.strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, not {text!r}")
        if kind is int or kind is float:
            try:
                number = kind(text)
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise ValueError(f"expected {what}, not {text!r}") from None
            return self.check(number)
        if kind is tuple:
            return self.check(tuple(part.strip() for part in text.split(",")))
        return self.check(self._from_string(text, None))

    def from_toml(self, value: Any, base: Path) -> Any:
        """A value read from the config file (``base``: its directory). Raises ValueError."""
        kind = self.kind
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"must be true or false, not {value!r}")
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"must be an integer, not {value!r}")
            return self.check(value)
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"must be a number, not {value!r}")
            return self.check(float(value))
        if kind is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"must be a list of strings, not {value!r}")
            return self.check(tuple(value))
        if not isinstance(value, str) or not value:
            raise ValueError(f"must be a non-empty string, not {value!r}")
        return self.check(self._from_string(value, base))

    def _from_string(self, text: str, base: Path | None) -> Any:
        kind = self.kind
        if kind is HostPort:
            return parse_host_port(text)
        if kind is Path:
            if not text or "\0" in text:
                raise ValueError(f"must be a path, not {text!r}")
            path = Path(text).expanduser()
            return base / path if base is not None else path  # an absolute path replaces base
        if (
            self.spec.path_like
            and base is not None
            and (text.endswith((".yaml", ".yml")) or "/" in text)
        ):
            return str(base / Path(text).expanduser())
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            if text not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}; not {text!r}")
            return kind(text)
        return text

    def check(self, value: Any) -> Any:
        """The field's own limits. Raises ValueError."""
        s = self.spec
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"must be a finite number, not {value!r}")
            low_ok = s.low is None or (value > s.low if s.above else value >= s.low)
            if not low_ok or (s.high is not None and value > s.high):
                bound = "" if s.low is None else (f"> {s.low:g}" if s.above else f">= {s.low:g}")
                upper = "" if s.high is None else f"<= {s.high:g}"
                raise ValueError(
                    f"must be {' and '.join(filter(None, (bound, upper)))}, not {value!r}"
                )
        if isinstance(value, str):
            if not value:
                raise ValueError("must not be empty")
            if s.choices and value not in s.choices:
                raise ValueError(f"must be one of {', '.join(s.choices)}; not {value!r}")
            if s.pattern is not None and not re.match(s.pattern, value):
                raise ValueError(f"expected {s.what or s.pattern}, not {value!r}")
        if isinstance(value, tuple) and self.kind is tuple:
            if not value or not all(value) or len(set(value)) != len(value):
                raise ValueError(f"must be a non-empty list of distinct names, not {list(value)!r}")
            if s.choices and not set(value) <= set(s.choices):
                raise ValueError(f"must name only {', '.join(s.choices)}; not {', '.join(value)}")
        return value


def options_of(model: type, section_name: str = "") -> Iterator[Option]:
    """The options of one model (its :func:`opt` fields), in declaration order."""
    hints = typing.get_type_hints(model)
    for f in dataclasses.fields(model):
        spec = f.metadata.get("opt")
        if spec is None:
            continue
        kind, optional = _base(hints[f.name])
        yield Option(section_name, f.name, kind, optional, spec, f.default)


def sections_of(root: type) -> dict[str, type]:
    """The component models of a root model, by section name (its run-time sections too)."""
    hints = typing.get_type_hints(root)
    found = {f.name: hints[f.name] for f in dataclasses.fields(root) if f.metadata.get("section")}
    for f in dataclasses.fields(root):
        if "sections" in f.metadata:
            found.update(f.metadata["sections"]())
    return found


def _runtime_field(root: type) -> str | None:
    """The root's field holding its run-time sections (:func:`sections`), if any."""
    return next((f.name for f in dataclasses.fields(root) if "sections" in f.metadata), None)


def all_options(root: type) -> list[Option]:
    """Every option of a root model and its sections."""
    out = list(options_of(root))
    for name, model in sections_of(root).items():
        out += options_of(model, name)
    return out


def value_of(options: Any, o: Option) -> Any:
    """Option ``o``'s value in a built root model ``options``."""
    if o.section == "":
        return getattr(options, o.key)
    holder = getattr(options, o.section, None)
    if holder is None or not dataclasses.is_dataclass(holder):
        field_name = _runtime_field(type(options))
        assert field_name is not None
        holder = getattr(options, field_name).of(o.section, sections_of(type(options))[o.section])
    return getattr(holder, o.key)


def _base(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return _base(rest[0])[0], True
    if hint is HostPort:
        return HostPort, False
    if typing.get_origin(hint) is tuple:
        return tuple, False
    return hint, False


# --- the three sources -------------------------------------------------------------------------

Values = dict[tuple[str, str], Any]  # (section, key) -> value


def from_toml(data: Mapping[str, Any], source: Path, root: type) -> Values:
    """The values a parsed TOML document sets. Raises ConfigError naming the place."""
    where = f"{source.name}: "
    if not isinstance(data, Mapping):
        raise ConfigError(source.name, f"must be a table of sections, not {type(data).__name__}")
    base = source.parent.absolute()
    by_section: dict[str, dict[str, Option]] = {}
    for o in all_options(root):
        by_section.setdefault(o.section, {})[o.key] = o
    known_sections = set(sections_of(root))
    values: Values = {}
    for name, value in data.items():
        if name in known_sections:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}{name}", "must be a table")
            table = by_section.get(name, {})
            for key, item in value.items():
                if key not in table:
                    known = ", ".join(table) or "none"
                    raise ConfigError(f"{where}{name}.{key}", f"unknown key (known here: {known})")
                values[(name, key)] = _checked(
                    table[key].from_toml, item, base, f"{where}{name}.{key}"
                )
        elif name in by_section.get("", {}):
            values[("", name)] = _checked(
                by_section[""][name].from_toml, value, base, f"{where}{name}"
            )
        else:
            known = ", ".join([*by_section.get("", {}), *sorted(known_sections)])
            raise ConfigError(f"{where}{name}", f"unknown key or section (known: {known})")
    return values


def _checked(convert: Any, value: Any, base: Path, where: str) -> Any:
    try:
        return convert(value, base)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def from_env(environ: Mapping[str, str], root: type) -> Values:
    """The values set by ``DEVICE_SIM_*`` variables. Raises ConfigError naming the variable."""
    values: Values = {}
    for o in all_options(root):
        if o.env in environ:
            try:
                values[(o.section, o.key)] = o.from_text(environ[o.env])
            except ValueError as exc:
                raise ConfigError(o.env, str(exc)) from None
    return values


def add_flags(
    parser: argparse.ArgumentParser,
    root: type,
    titles: Mapping[str, str] = {},
) -> None:
    """One flag per option, grouped by section (``titles``: a group's heading). A flag that is
    not given leaves its value to the file, the environment or the default."""
    groups: dict[str, Any] = {}
    for o in all_options(root):
        if o.section not in groups:
            title = titles.get(o.section, f"[{o.section}]" if o.section else None)
            groups[o.section] = parser.add_argument_group(title) if title else parser
        where = f"[{o.section}] {o.key}" if o.section else o.key
        help_text = f"{o.spec.help} (config: {where}; env: {o.env})"
        kwargs: dict[str, Any] = {
            "dest": _dest(o),
            "default": argparse.SUPPRESS,
            "help": help_text.replace("%", "%%"),
        }
        if o.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _flag_type(o)
            kwargs["metavar"] = o.spec.metavar or _metavar(o)
        groups[o.section].add_argument(o.flag, **kwargs)


def from_flags(args: argparse.Namespace, root: type) -> Values:
    """The values of the flags given on the command line (parsed by :func:`add_flags`)."""
    return {
        (o.section, o.key): getattr(args, _dest(o))
        for o in all_options(root)
        if hasattr(args, _dest(o))
    }


def _dest(o: Option) -> str:
    return "opt__" + o.place.replace(".", "__")


def _metavar(o: Option) -> str:
    if o.choices:
        return "{" + ",".join(o.choices) + "}"
    if o.kind is HostPort:
        return "HOST:PORT"
    if o.kind is tuple:
        return "A,B"
    return o.key.upper().removesuffix("_S") if o.kind is not Path else "PATH"


def _flag_type(o: Option) -> Any:
    def convert(text: str) -> Any:
        try:
            return o.from_text(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = o.key  # argparse names a failed type by it
    return convert


def build(root: type[T], layers: list[Values], **root_fields: Any) -> T:
    """The root model with its sections from the defaults and ``layers`` (later layers win).
    ``root_fields`` sets root fields that are not options."""
    merged: Values = {}
    for layer in layers:
        merged.update(layer)

    def make(model: type, name: str) -> Any:
        return model(**{k: v for (s, k), v in merged.items() if s == name})

    fields: dict[str, Any] = {k: v for (s, k), v in merged.items() if s == ""}
    runtime = _runtime_field(root)
    built = {name: make(model, name) for name, model in sections_of(root).items()}
    static = {f.name for f in dataclasses.fields(cast(Any, root))}
    fields.update({name: value for name, value in built.items() if name in static})
    if runtime is not None:
        fields[runtime] = Sections({n: v for n, v in built.items() if n not in static})
    return root(**fields, **root_fields)
