"""Load and validate ``gatt_profile.yaml`` into frozen dataclasses.

The profile is the single source of truth for the GATT service, the advertisement, the framing
limits, the message types, the onboarding states and the diagnostic-code catalogue. Validation is
strict: an unknown key or a bad value raises :class:`~device_sim.errors.ConfigError` whose
``where`` names the place, e.g. ``gatt_profile.yaml: codes.BUSY.id``.

This module parses the core sections and assembles :class:`Profile`; the SoftAP door's section
lives in :mod:`device_sim.profile.softap`. A personality's own section (under ``personalities``)
is kept as read here and parsed by its folder under :mod:`device_sim.doors` (the door registry
checks every one when the daemon starts). All of them read the YAML through
:mod:`device_sim.profile.reader`.
"""

# Over 500 lines on purpose: gatt_profile.yaml's core sections as frozen dataclasses with their
# parsers, in the file's order (softap.py and each personality's profile.py take their own
# sections).

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..codes import Code, MessageType, State
from ..document import check_document, parse_errors
from ..errors import ConfigError
from .reader import Reader
from .softap import EndpointDef, HttpDef, ProbeDef, SoftApDef, parse_softap

# The package's own copy (device_sim/data/ links to the repo's top-level file; a wheel holds it).
DEFAULT_PROFILE_PATH = Path(__file__).resolve().parents[1] / "data" / "gatt_profile.yaml"
GATT_PROPERTIES = frozenset({"read", "write", "write-without-response", "notify", "indicate"})

__all__ = [
    "DEFAULT_PROFILE_PATH",
    "GATT_PROPERTIES",
    "AdvertisingDef",
    "BackoffDef",
    "CharacteristicDef",
    "CodeDef",
    "EndpointDef",
    "FramingDef",
    "HttpDef",
    "MessageDef",
    "PersonalitiesDef",
    "PhaseDef",
    "ProbeDef",
    "Profile",
    "ServiceDef",
    "SessionDef",
    "SoftApDef",
    "StateDef",
    "enum_drift",
    "load_profile",
    "parse_profile",
]


@dataclass(frozen=True)
class CharacteristicDef:
    key: str
    uuid: str
    properties: tuple[str, ...]
    max_length: int
    description: str


@dataclass(frozen=True)
class ServiceDef:
    name: str
    uuid: str
    characteristics: Mapping[str, CharacteristicDef]

    def char(self, key: str) -> CharacteristicDef:
        return self.characteristics[key]


@dataclass(frozen=True)
class AdvertisingDef:
    local_name_pattern: str
    service_uuid: str
    manufacturer_id: int
    manufacturer_fields: tuple[tuple[str, str], ...]
    interval_ms: int


@dataclass(frozen=True)
class FramingDef:
    header_length: int
    first_extra_length: int
    max_message_length: int
    reassembly_timeout_ms: int


@dataclass(frozen=True)
class MessageDef:
    name: str
    id: int
    direction: str
    clear: bool
    body: str


@dataclass(frozen=True)
class BackoffDef:
    free_attempts: int
    base_ms: int
    max_ms: int


@dataclass(frozen=True)
class SessionDef:
    srp_group: str
    srp_hash: str
    srp_username: str
    aead: str
    key_derivation: str
    idle_timeout_ms: int
    handshake_timeout_ms: int
    backoff: BackoffDef


@dataclass(frozen=True)
class StateDef:
    name: str
    id: int
    stable: bool
    meaning: str
    recover_to: str | None = None
    recover_code: str | None = None
    timeout_ms: int | None = None
    timeout_code: str | None = None


@dataclass(frozen=True)
class CodeDef:
    name: str
    id: int
    category: str
    meaning: str
    user_message: str
    next_step: str
    support_question: str
    recoverable: bool  # true only where trying again (maybe with other input) can help
    reproduce: str = ""  # a runnable command that ends in this code ("" when none exists)
    collect: tuple[str, ...] = ()  # what support collects, besides its category's list


@dataclass(frozen=True)
class PhaseDef:
    """A join or check phase's own timeout and the code it ends with."""

    name: str
    timeout_ms: int
    timeout_code: str


@dataclass(frozen=True)
class PersonalitiesDef:
    """The ``personalities`` section: the default set, and each personality's own section as
    read (its folder under :mod:`device_sim.doors` parses it through :meth:`section`)."""

    default: tuple[str, ...]
    sections: Mapping[str, Mapping[str, Any]]
    where: str  # e.g. "gatt_profile.yaml: personalities"

    def section(self, name: str) -> Reader:
        """A strict reader over personality ``name``'s section. Raises ConfigError if absent."""
        place = f"{self.where}.{name}"
        if name not in self.sections:
            raise ConfigError(place, "missing (the personality needs its section)")
        return Reader(dict(self.sections[name]), place)


@dataclass(frozen=True)
class Profile:
    source: Path
    protocol_version: int
    protocol_revision: int  # advertised; 2: PAKE_PROOF may carry sealed requests; 3: security
    max_bundled_requests: int
    service: ServiceDef
    advertising: AdvertisingDef
    framing: FramingDef
    messages: Mapping[str, MessageDef]
    session: SessionDef
    states: Mapping[str, StateDef]
    codes: Mapping[str, CodeDef]
    softap: SoftApDef
    personalities: PersonalitiesDef
    phases: Mapping[str, PhaseDef]
    collect: Mapping[str, tuple[str, ...]]  # what support collects, by code category

    def code(self, code: Code | int | str) -> CodeDef:
        """The catalogue entry of ``code`` (enum, number or name). Raises KeyError if unknown."""
        if isinstance(code, str):
            return self.codes[code]
        number = int(code)
        for entry in self.codes.values():
            if entry.id == number:
                return entry
        raise KeyError(number)

    def state(self, state: State | int | str) -> StateDef:
        """The definition of ``state`` (enum, number or name). Raises KeyError if unknown."""
        if isinstance(state, str):
            return self.states[state]
        number = int(state)
        for entry in self.states.values():
            if entry.id == number:
                return entry
        raise KeyError(number)

    def state_timeout_ms(self, state: State) -> int | None:
        return self.state(state).timeout_ms


def _service(r: Reader) -> ServiceDef:
    chars: dict[str, CharacteristicDef] = {}
    cr = r.child("characteristics")
    for key in list(cr.data):
        c = cr.child(key)
        props = c.strings("properties")
        for i, p in enumerate(props):
            if p not in GATT_PROPERTIES:
                raise ConfigError(f"{c.at('properties')}[{i}]", f"unknown GATT property {p!r}")
        max_length = c.positive("max_length")
        if max_length is not None and max_length > 512:
            raise ConfigError(c.at("max_length"), "an attribute value is at most 512 bytes")
        chars[key] = CharacteristicDef(
            key, c.uuid("uuid"), tuple(props), int(max_length or 0), c.get("description", str)
        )
        c.done()
    cr.done()
    for needed in ("request", "response", "state", "diagnostics", "info"):
        if needed not in chars:
            raise ConfigError(cr.at(needed), "missing (the daemon needs it)")
    uuids = [c.uuid for c in chars.values()]
    if len(set(uuids)) != len(uuids):
        raise ConfigError(cr.where, "two characteristics share a UUID")
    svc = ServiceDef(r.get("name", str), r.uuid("uuid"), chars)
    r.done()
    return svc


def _advertising(r: Reader) -> AdvertisingDef:
    fields: list[tuple[str, str]] = []
    for i, item in enumerate(r.get("manufacturer_data", list)):
        f = Reader(item, f"{r.at('manufacturer_data')}[{i}]")
        kind = f.get("type", str)
        if kind not in ("u8", "u16", "bytes3"):
            raise ConfigError(f.at("type"), f"unknown field type {kind!r}")
        fields.append((f.get("field", str), kind))
        f.done()
    manufacturer_id = r.get("manufacturer_id", int)
    if not 0 <= manufacturer_id <= 0xFFFF:
        raise ConfigError(r.at("manufacturer_id"), "must fit in 16 bits")
    pattern = r.get("local_name_pattern", str)
    if "{short_id}" not in pattern:
        raise ConfigError(r.at("local_name_pattern"), "must contain {short_id}")
    adv = AdvertisingDef(
        pattern,
        r.uuid("service_uuid"),
        manufacturer_id,
        tuple(fields),
        int(r.positive("interval_ms") or 0),
    )
    r.done()
    return adv


def _framing(r: Reader) -> FramingDef:
    f = FramingDef(
        int(r.positive("header_length") or 0),
        int(r.positive("first_extra_length") or 0),
        int(r.positive("max_message_length") or 0),
        int(r.positive("reassembly_timeout_ms") or 0),
    )
    if f.max_message_length > 0xFFFF:
        raise ConfigError(r.at("max_message_length"), "must fit the u16 length field")
    r.done()
    return f


def _messages(r: Reader) -> dict[str, MessageDef]:
    out: dict[str, MessageDef] = {}
    for name in list(r.data):
        m = r.child(name)
        direction = m.get("direction", str)
        if direction not in ("to_device", "to_client", "both"):
            raise ConfigError(m.at("direction"), f"unknown direction {direction!r}")
        msg_id = m.get("id", int)
        if not 0 < msg_id <= 0xFF:
            raise ConfigError(m.at("id"), "must be 1..255")
        out[name] = MessageDef(name, msg_id, direction, m.get("clear", bool), m.get("body", str))
        m.done()
    r.done()
    ids = [m.id for m in out.values()]
    if len(set(ids)) != len(ids):
        raise ConfigError(r.where, "two messages share an id")
    return out


def _session(r: Reader) -> SessionDef:
    srp = r.child("srp")
    b = r.child("backoff")
    backoff = BackoffDef(
        int(b.positive("free_attempts") or 0),
        int(b.positive("base_ms") or 0),
        int(b.positive("max_ms") or 0),
    )
    b.done()
    s = SessionDef(
        srp.get("group", str),
        srp.get("hash", str),
        srp.get("username", str),
        r.get("aead", str),
        r.get("key_derivation", str),
        int(r.positive("idle_timeout_ms") or 0),
        int(r.positive("handshake_timeout_ms") or 0),
        backoff,
    )
    if s.srp_group != "rfc5054-3072" or s.srp_hash != "sha512" or s.aead != "aes-256-gcm":
        raise ConfigError(
            srp.where, "this build implements rfc5054-3072 / sha512 / aes-256-gcm only"
        )
    srp.done()
    r.done()
    return s


def _states(r: Reader, code_names: set[str]) -> dict[str, StateDef]:
    out: dict[str, StateDef] = {}
    for name in list(r.data):
        s = r.child(name)
        st = StateDef(
            name,
            s.get("id", int),
            s.get("stable", bool),
            s.get("meaning", str),
            s.get("recover_to", str, required=False),
            s.get("recover_code", str, required=False),
            s.positive("timeout_ms", required=False),
            s.get("timeout_code", str, required=False),
        )
        for key in ("recover_code", "timeout_code"):
            value = getattr(st, key)
            if value is not None and value not in code_names:
                raise ConfigError(s.at(key), f"unknown code {value!r}")
        if not st.stable and st.recover_to is None:
            raise ConfigError(s.at("recover_to"), "an unstable state needs a recover_to state")
        if (st.timeout_ms is None) != (st.timeout_code is None):
            raise ConfigError(s.at("timeout_code"), "timeout_ms and timeout_code go together")
        s.done()
        out[name] = st
    for st in out.values():
        if st.recover_to is not None and st.recover_to not in out:
            raise ConfigError(f"{r.at(st.name)}.recover_to", f"unknown state {st.recover_to!r}")
    r.done()
    return out


def _codes(r: Reader) -> dict[str, CodeDef]:
    out: dict[str, CodeDef] = {}
    seen: dict[int, str] = {}
    for name in list(r.data):
        c = r.child(name)
        code_id = c.get("id", int)
        if not 0 <= code_id <= 0xFFFF:
            raise ConfigError(c.at("id"), "must fit in 16 bits")
        if code_id in seen:
            raise ConfigError(c.at("id"), f"{code_id} is already used by {seen[code_id]}")
        seen[code_id] = name
        entry = CodeDef(
            name,
            code_id,
            c.get("category", str),
            c.get("meaning", str),
            c.get("user_message", str),
            c.get("next_step", str),
            c.get("support_question", str),
            c.get("recoverable", bool),
            c.get("reproduce", str, required=False, default=""),
            tuple(c.strings("collect", required=False)),
        )
        for key in ("meaning", "user_message", "next_step"):
            if not getattr(entry, key).strip():
                raise ConfigError(c.at(key), "must not be empty")
        c.done()
        out[name] = entry
    r.done()
    return out


def _collect(r: Reader, categories: set[str]) -> dict[str, tuple[str, ...]]:
    out = {str(name): tuple(r.strings(str(name))) for name in list(r.data)}
    r.done()
    missing = categories - set(out)
    if missing:
        raise ConfigError(r.at(sorted(missing)[0]), "a code category without its list")
    return out


def _phases(r: Reader, code_names: set[str]) -> dict[str, PhaseDef]:
    out: dict[str, PhaseDef] = {}
    for name in list(r.data):
        p = r.child(str(name))
        phase = PhaseDef(str(name), int(p.positive("timeout_ms") or 0), p.get("timeout_code", str))
        if phase.timeout_code not in code_names:
            raise ConfigError(p.at("timeout_code"), f"unknown code {phase.timeout_code!r}")
        p.done()
        out[phase.name] = phase
    r.done()
    return out


def _personalities(r: Reader) -> PersonalitiesDef:
    default = r.strings("default")
    if not default or len(set(default)) != len(default):
        raise ConfigError(r.at("default"), "a non-empty list of distinct personality names")
    sections: dict[str, Mapping[str, Any]] = {}
    for name in r.data:
        if name == "default":
            continue
        sections[str(name)] = r.child(str(name)).data  # a mapping; its folder checks the rest
    r.done()
    return PersonalitiesDef(tuple(default), sections, r.where)


def parse_profile(data: Any, source: Path) -> Profile:
    """Validate a parsed YAML document. Raises ConfigError naming the bad place."""
    check_document(data, source.name)
    root = Reader(data, f"{source.name}: ")
    version = root.get("protocol_version", int)
    revision = root.get("protocol_revision", int)
    if not 1 <= revision <= 15:
        raise ConfigError(root.at("protocol_revision"), "1 to 15 (a nibble of the advertisement)")
    bundled = root.get("max_bundled_requests", int)
    if not 0 <= bundled <= 16:
        raise ConfigError(root.at("max_bundled_requests"), "0 to 16")
    codes = _codes(root.child("codes"))
    profile = Profile(
        source=source,
        protocol_version=version,
        protocol_revision=revision,
        max_bundled_requests=bundled,
        service=_service(root.child("service")),
        advertising=_advertising(root.child("advertising")),
        framing=_framing(root.child("framing")),
        messages=_messages(root.child("messages")),
        session=_session(root.child("session")),
        states=_states(root.child("states"), set(codes)),
        codes=codes,
        softap=parse_softap(root.child("softap"), set(codes)),
        personalities=_personalities(root.child("personalities")),
        phases=_phases(root.child("phases"), set(codes)),
        collect=_collect(root.child("support_collect"), {c.category for c in codes.values()}),
    )
    root.done()
    if profile.advertising.service_uuid != profile.service.uuid:
        raise ConfigError(root.at("advertising.service_uuid"), "must equal service.uuid")
    return profile


def load_profile(path: str | os.PathLike[str] | None = None) -> Profile:
    """Load the profile from ``path``, ``$DEVICE_SIM_PROFILE`` or the repository's default.

    Raises ConfigError if the file is missing, is not YAML, or fails validation.
    """
    chosen = Path(path or os.environ.get("DEVICE_SIM_PROFILE") or DEFAULT_PROFILE_PATH)
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(chosen), f"cannot read: {exc.strerror}") from None
    # The same text parses to the same (frozen) profile: the file is read every time, and
    # parsed once per content (the factory's self-test loads it once per unit).
    key = (str(chosen), hashlib.sha256(text.encode("utf-8")).digest())
    cached = _PARSED.get(key)
    if cached is not None:
        return cached
    profile = _parse_text(text, chosen)
    if len(_PARSED) >= 8:
        _PARSED.pop(next(iter(_PARSED)))
    _PARSED[key] = profile
    return profile


_PARSED: dict[tuple[str, bytes], Profile] = {}


def _parse_text(text: str, chosen: Path) -> Profile:
    try:
        # libyaml's loader when present (5x faster: the factory self-test loads the profile
        # once per unit), else the pure-Python one.
        with parse_errors(str(chosen)):
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(str(chosen), f"not valid YAML: {exc}") from None
    return parse_profile(data, chosen)


def enum_drift(profile: Profile) -> list[str]:
    """Differences between the profile and the enums in codes.py (empty when in step)."""
    problems: list[str] = []
    pairs: list[tuple[str, dict[str, int], dict[str, int]]] = [
        ("codes", {n: c.id for n, c in profile.codes.items()}, {c.name: c.value for c in Code}),
        (
            "states",
            {n: s.id for n, s in profile.states.items()},
            {s.wire_name: s.value for s in State},
        ),
        (
            "messages",
            {n: m.id for n, m in profile.messages.items()},
            {m.name: m.value for m in MessageType},
        ),
    ]
    for section, yaml_side, code_side in pairs:
        for name in sorted(set(yaml_side) | set(code_side)):
            if name not in code_side:
                problems.append(f"{section}.{name} is in the profile but not in codes.py")
            elif name not in yaml_side:
                problems.append(f"{section}.{name} is in codes.py but not in the profile")
            elif yaml_side[name] != code_side[name]:
                problems.append(
                    f"{section}.{name}: profile says {yaml_side[name]}, "
                    f"codes.py says {code_side[name]}"
                )
    return problems
