"""Scenario files: the simulated Wi-Fi world the simulated backend plays.

A scenario is YAML (format in ``scenarios/README.md``). One declarative model, :data:`MODEL`,
both validates a file and generates its JSON Schema (:func:`json_schema`, for editor
completion): every key's type, range, choices, default and meaning are written once.
Validation reports every error of a file at once (:class:`~device_sim.errors.ConfigErrors`),
each naming its place, e.g. ``scenarios/x.yaml: access_points[1].band``.

The world holds the device's radio (bands, antenna offset, IPv6, clock), BSSes per SSID with
band, channel, RSSI and their own fate (a mesh node that fails, band steering), the steps after
association as distributions (a delay range, jitter, a failure probability per attempt, drawn
from a seeded generator), IPv6-only networks with or without NAT64, network time, and what the
cloud does when the device activates. Over time: a ``timeline`` changes the world after boot or
after the device is first online (an access point off and back, a router replaced, a lease not
renewed, DNS or the internet down for a while), a ``history`` gives the device the networks it
saved before the story starts, and a ``story`` says what ``demo`` checks beyond the outcome (the
event sequence, doors reopening, the time back online, the phone's sessions) and what its
phone does (re-onboarding once the doors reopen).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

import device_sim

from ..codes import Code
from ..document import check_document, parse_errors
from ..errors import ConfigError, ConfigErrors, NetworkError
from .base import AccessPoint, Band, Security, validate_credentials

__all__ = [
    "CLOUD_BEHAVIOURS",
    "AfterAssociation",
    "AssociationStep",
    "CaptivePortalStep",
    "CloudBehaviour",
    "DefaultCredentials",
    "DeviceRadio",
    "DhcpStep",
    "DnsStep",
    "History",
    "InternetStep",
    "NtpStep",
    "Scenario",
    "ScenarioAccessPoint",
    "Step",
    "Story",
    "StoryPhone",
    "TimelineStep",
    "TlsStep",
    "json_schema",
    "list_scenarios",
    "load_scenario",
    "parse_scenario",
    "scenarios_dir",
]

ENV_SCENARIOS = "DEVICE_SIM_SCENARIOS"
DEFAULT_MIN_RSSI_DBM = -85
_MAX_DELAY_MS = 600_000


# -- the model's dataclasses ----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step after association, as a distribution: a delay drawn from ``delay_ms`` ..
    ``delay_max_ms`` (uniform) plus up to ``jitter_ms`` either way, and the step's failure
    (``failure``, the first non-ok result) with ``fail_probability`` per attempt on top of its
    fixed ``result``."""

    delay_ms: int = 0
    delay_max_ms: int | None = None
    jitter_ms: int = 0
    fail_probability: float = 0.0
    result: str = "ok"

    def draw_delay_ms(self, rng: random.Random) -> int:
        delay = self.delay_ms
        if self.delay_max_ms is not None and self.delay_max_ms > self.delay_ms:
            delay = rng.randint(self.delay_ms, self.delay_max_ms)
        if self.jitter_ms:
            delay += rng.randint(-self.jitter_ms, self.jitter_ms)
        return max(0, delay)

    def draw_result(self, rng: random.Random, failure: str) -> str:
        flaky = self.result == _OK_RESULT[type(self).__name__] and self.fail_probability > 0
        if flaky and rng.random() < self.fail_probability:
            return failure
        return self.result


@dataclass(frozen=True)
class AssociationStep(Step):
    pass


@dataclass(frozen=True)
class DhcpStep(Step):
    ip: str = "192.168.1.50"
    gateway: str = "192.168.1.1"
    dns: tuple[str, ...] = ("192.168.1.1",)
    addressing: str = "ipv4"  # ipv4 | dual | ipv6-only
    ip6: str = "2001:db8:1::50"
    nat64: bool = False


@dataclass(frozen=True)
class DnsStep(Step):
    pass


@dataclass(frozen=True)
class CaptivePortalStep(Step):
    result: str = "none"  # none | portal
    login_url: str | None = None


@dataclass(frozen=True)
class InternetStep(Step):
    pass


@dataclass(frozen=True)
class NtpStep(Step):
    pass


@dataclass(frozen=True)
class TlsStep(Step):
    pass


@dataclass(frozen=True)
class AfterAssociation:
    """What happens once a BSS is chosen: association, DHCP, network time and the checks."""

    association: AssociationStep = AssociationStep()
    dhcp: DhcpStep = DhcpStep()
    dns: DnsStep = DnsStep()
    captive_portal: CaptivePortalStep = CaptivePortalStep()
    internet: InternetStep = InternetStep()
    ntp: NtpStep = NtpStep()
    tls: TlsStep = TlsStep()


_STEP_TYPES: dict[str, type[Step]] = {
    "association": AssociationStep,
    "dhcp": DhcpStep,
    "dns": DnsStep,
    "captive_portal": CaptivePortalStep,
    "internet": InternetStep,
    "ntp": NtpStep,
    "tls": TlsStep,
}
# Each step's results; the first is the good one, the second what a flaky attempt ends in.
RESULTS: dict[str, tuple[str, ...]] = {
    "association": ("ok", "timeout"),
    "dhcp": ("ok", "timeout"),
    "dns": ("ok", "fail"),
    "captive_portal": ("none", "portal"),
    "internet": ("ok", "none"),
    "ntp": ("ok", "blocked"),
    "tls": ("ok", "untrusted", "hostname_mismatch", "expired"),
}
_OK_RESULT = {_STEP_TYPES[name].__name__: results[0] for name, results in RESULTS.items()}


@dataclass(frozen=True)
class DeviceRadio:
    """The device's side of the world: its radio and its clock."""

    bands: tuple[Band, ...] = (Band.GHZ_2_4, Band.GHZ_5)
    antenna_offset_db: int = 0  # added to every BSS's RSSI (a small PCB antenna: -6)
    ipv6: bool = True  # the device's IP stack speaks IPv6 (SLAAC, AAAA)
    rtc: bool = True  # a battery-backed clock; without one the clock is unset until NTP
    clock_skew_s: int = 0  # how far the RTC is off (negative: behind)


CLOUD_BEHAVIOURS = (
    "ok",
    "unreachable",
    "rejecting",
    "claim_token_expired",
    "claimed_by_another_account",
)


@dataclass(frozen=True)
class CloudBehaviour:
    """What the cloud does when the device activates (``demo``: ``mode`` activates without
    ``--activation``)."""

    activation: str = "ok"
    mode: str | None = None  # zero-touch | claim | registration


@dataclass(frozen=True)
class ScenarioAccessPoint:
    """One simulated BSS: what scans show (``ap``, with its real SSID), its key and behaviour."""

    ap: AccessPoint
    passphrase: str | None = field(repr=False)
    after_association: AfterAssociation
    band_steering: bool = False  # on a 2.4 GHz BSS: holds dual-band clients off, to 5 GHz
    steering_holdoff_ms: int = 3000  # how long it ignores a 2.4 GHz-only device
    present: bool = True  # on the air when the world starts (a timeline step may change it)


TIMELINE_ACTIONS = ("ap_off", "ap_on", "passphrase", "lease", "dns_down", "internet_down")
# Actions whose target is one network's BSSes (the others may name one, else act on all).
TARGETED = frozenset({"ap_off", "ap_on", "passphrase"})


@dataclass(frozen=True)
class TimelineStep:
    """One change of the world, ``at_s`` (world seconds) after ``after`` (boot: the backend's
    start; online: the device's first successful checks), undone ``for_s`` later (None: for
    good). ``bssids``: the BSSes it acts on (empty: every network, for lease/DNS/internet)."""

    after: str
    at_s: float
    action: str
    bssids: tuple[str, ...]
    target: str  # what it acts on, for its note
    passphrase: str | None = field(default=None, repr=False)
    for_s: float | None = None


@dataclass(frozen=True)
class History:
    """What the device did before the story: the networks it saved (most recent first) and
    whether it was online on the first when the story starts (as before a power cut)."""

    networks: tuple[DefaultCredentials, ...]
    online: bool = True


@dataclass(frozen=True)
class StoryPhone:
    """The phone of ``demo``'s story: it sets the device up again once it sees ``when``."""

    when: str  # reopen: the device's doors reopened; loss: the connection was lost
    ssid: bytes
    passphrase: str | None = field(repr=False)
    hidden: bool = False


@dataclass(frozen=True)
class Story:
    """What ``demo`` checks beyond the outcome (each None: not checked)."""

    sequence: tuple[str, ...] = ()  # event phases in order ("phase" or "phase:CODE_NAME")
    doors_reopened: bool | None = None
    back_online_within_s: float | None = None  # world seconds after the network came back
    phone_sessions: int | None = None  # sessions after the first onboarding (re-onboarding)
    online_ssid: bytes | None = None  # the network it ends online on
    associations: int | None = None  # association attempts during the story
    within_s: float = 300.0  # the story's bound, in world seconds
    phone: StoryPhone | None = None


@dataclass(frozen=True)
class DefaultCredentials:
    """The credentials demos and tests use for this scenario, and the code they end with."""

    ssid: bytes
    passphrase: str | None = field(repr=False)
    hidden: bool = False
    expect: Code = Code.OK


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    source: str
    default_credentials: DefaultCredentials
    access_points: tuple[ScenarioAccessPoint, ...]
    after_association: AfterAssociation
    min_rssi_dbm: int = DEFAULT_MIN_RSSI_DBM
    scan_delay_ms: int = 0
    seed: int = 0
    device: DeviceRadio = DeviceRadio()
    cloud: CloudBehaviour = CloudBehaviour()
    timeline: tuple[TimelineStep, ...] = ()
    history: History | None = None
    story: Story | None = None

    def bsses(self, ssid: bytes) -> list[ScenarioAccessPoint]:
        """Every BSS broadcasting (or hiding) ``ssid``."""
        return [sap for sap in self.access_points if sap.ap.ssid == ssid]

    def heard_rssi(self, sap: ScenarioAccessPoint) -> int:
        """The RSSI the device hears from ``sap`` (its antenna offset applied)."""
        return sap.ap.rssi + self.device.antenna_offset_db


# -- the declarative model -----------------------------------------------------------------------


class _Bad:
    """A value that failed validation (its error is recorded)."""


BAD = _Bad()
_Errors = list[ConfigError]


@dataclass(frozen=True)
class Kind:
    """One key's type: validates a YAML value and describes it in JSON Schema."""

    doc: str
    default: Any = None
    check: Callable[[Any, str, _Errors], Any] = field(default=lambda v, p, e: v)
    schema: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        out = {"description": self.doc, **self.schema}
        if self.default is not None:
            out["default"] = self.default
        return out


def _err(errors: _Errors, path: str, problem: str) -> _Bad:
    errors.append(ConfigError(path, problem))
    return BAD


def integer(doc: str, lo: int, hi: int, default: int | None = None) -> Kind:
    def check(v: Any, path: str, errors: _Errors) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            return _err(errors, path, f"must be an integer, not {v!r}")
        if not lo <= v <= hi:
            return _err(errors, path, f"must be between {lo} and {hi}, not {v}")
        return v

    return Kind(doc, default, check, {"type": "integer", "minimum": lo, "maximum": hi})


def number(doc: str, lo: float, hi: float, default: float | None = None) -> Kind:
    def check(v: Any, path: str, errors: _Errors) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return _err(errors, path, f"must be a number, not {v!r}")
        if not lo <= v <= hi:
            return _err(errors, path, f"must be between {lo} and {hi}, not {v}")
        return float(v)

    return Kind(doc, default, check, {"type": "number", "minimum": lo, "maximum": hi})


def text(
    doc: str, *, allow_empty: bool = False, default: str | None = None, nullable: bool = False
) -> Kind:
    def check(v: Any, path: str, errors: _Errors) -> Any:
        if v is None and nullable:
            return None
        if not isinstance(v, str):
            return _err(errors, path, f"must be a string (quote it in YAML), not {v!r}")
        if not v and not allow_empty:
            return _err(errors, path, "must not be empty")
        return v

    schema: dict[str, Any] = {"type": ["string", "null"] if nullable else "string"}
    if not allow_empty:
        schema["minLength"] = 1
    return Kind(doc, default, check, schema)


def flag(doc: str, default: bool = False) -> Kind:
    def check(v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, bool):
            return _err(errors, path, f"must be true or false, not {v!r}")
        return v

    return Kind(doc, default, check, {"type": "boolean"})


def choice(doc: str, choices: tuple[str, ...], default: str | None = None) -> Kind:
    def check(v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, str) or v not in choices:
            return _err(errors, path, f"must be one of {', '.join(choices)}, not {v!r}")
        return v

    return Kind(doc, default, check, {"enum": list(choices)})


def ip_address(doc: str, default: str | None = None, version: int | None = None) -> Kind:
    def check(v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, str):
            return _err(errors, path, f"must be a string (quote it in YAML), not {v!r}")
        try:
            address = ipaddress.ip_address(v)
        except ValueError:
            return _err(errors, path, f"not an IP address: {v!r}")
        if version is not None and address.version != version:
            return _err(errors, path, f"must be an IPv{version} address, not {v!r}")
        return str(address)

    return Kind(doc, default, check, {"type": "string", "format": f"ipv{version or 4}"})


def ip_list(doc: str, default: list[str]) -> Kind:
    one = ip_address("an IP address")

    def check(v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, list) or not 1 <= len(v) <= 3:
            return _err(errors, path, "must be a list of 1 to 3 IP addresses")
        items = [one.check(x, f"{path}[{i}]", errors) for i, x in enumerate(v)]
        return BAD if any(x is BAD for x in items) else tuple(items)

    schema = {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string"}}
    return Kind(doc, default, check, schema)


def delay(doc: str) -> Kind:
    """An int (ms) or a range ``[lo, hi]`` drawn uniformly each attempt."""

    def check(v: Any, path: str, errors: _Errors) -> Any:
        def one(x: Any) -> Any:
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= _MAX_DELAY_MS:
                return _err(errors, path, f"must be between 0 and {_MAX_DELAY_MS} ms, not {x!r}")
            return x

        if isinstance(v, list):
            if len(v) != 2:
                return _err(errors, path, f"a range is [low, high], not {v!r}")
            lo, hi = one(v[0]), one(v[1])
            if lo is BAD or hi is BAD:
                return BAD
            if lo > hi:
                return _err(errors, path, f"the range's low end {lo} is above its high end {hi}")
            return (lo, hi)
        x = one(v)
        return BAD if x is BAD else (x, None)

    integer_ms = {"type": "integer", "minimum": 0, "maximum": _MAX_DELAY_MS}
    schema = {
        "oneOf": [integer_ms, {"type": "array", "items": integer_ms, "minItems": 2, "maxItems": 2}]
    }
    return Kind(doc, 0, check, schema)


def bssid_kind(doc: str) -> Kind:
    pattern = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"

    def check(v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, str) or not re.match(pattern, v):
            return _err(errors, path, f"not a MAC address like 02:00:00:00:00:01: {v!r}")
        return v.lower()

    return Kind(doc, None, check, {"type": "string", "pattern": pattern})


def code_name(doc: str) -> Kind:
    def check(v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, str) or v not in Code.__members__:
            return _err(errors, path, f"not a diagnostic code name: {v!r}")
        return Code[v]

    return Kind(doc, "OK", check, {"enum": list(Code.__members__)})


def band_list(doc: str) -> Kind:
    bands = tuple(str(b) for b in Band)

    def check(v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, list) or not v:
            return _err(errors, path, f"must be a non-empty list of bands ({', '.join(bands)})")
        if len(set(map(str, v))) != len(v):
            return _err(errors, path, f"lists a band twice: {v!r}")
        out = []
        for i, b in enumerate(v):
            if b not in bands:
                return _err(errors, f"{path}[{i}]", f"must be one of {', '.join(bands)}, not {b!r}")
            out.append(Band(b))
        return tuple(out)

    schema = {"type": "array", "uniqueItems": True, "minItems": 1, "items": {"enum": list(bands)}}
    return Kind(doc, list(bands), check, schema)


_PHASE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}(:[A-Z][A-Z0-9_]*)?$")


def sequence_kind(doc: str) -> Kind:
    """A list of ``phase`` or ``phase:CODE_NAME`` strings (the code a known one)."""

    def check(v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, list) or len(v) > 64:
            return _err(errors, path, "must be a list of at most 64 phase names")
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, str) or not _PHASE_RE.match(item):
                return _err(errors, f"{path}[{i}]", f"not `phase` or `phase:CODE`: {item!r}")
            code = item.partition(":")[2]
            if code and code not in Code.__members__:
                return _err(errors, f"{path}[{i}]", f"not a diagnostic code name: {code!r}")
            out.append(item)
        return tuple(out)

    schema = {
        "type": "array",
        "maxItems": 64,
        "items": {"type": "string", "pattern": _PHASE_RE.pattern},
    }
    return Kind(doc, None, check, schema)


@dataclass(frozen=True)
class Mapping_:
    """A mapping of known keys (every one described); unknown keys are errors."""

    doc: str
    keys: dict[str, Kind | Mapping_ | List_]
    required: tuple[str, ...] = ()

    def check(self, v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, Mapping):
            return _err(errors, path or "", "must be a mapping")
        out: dict[str, Any] = {}
        for key, raw in v.items():
            where = _join(path, str(key))
            kind = self.keys.get(key) if isinstance(key, str) else None
            if kind is None:
                _err(errors, where, f"unknown key (allowed: {', '.join(sorted(self.keys))})")
                continue
            out[key] = kind.check(raw, where, errors)  # BAD kept: builders skip its dependants
        for key in self.required:
            if key not in v:
                _err(errors, _join(path, key), "missing")
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

    def check(self, v: Any, path: str, errors: _Errors) -> Any:
        if not isinstance(v, list):
            return _err(errors, path, "must be a list")
        if len(v) > self.max_items:
            return _err(errors, path, f"at most {self.max_items} entries, not {len(v)}")
        return [self.item.check(x, f"{path}[{i}]", errors) for i, x in enumerate(v)]

    def json(self) -> dict[str, Any]:
        return {
            "description": self.doc,
            "type": "array",
            "items": self.item.json(),
            "maxItems": self.max_items,
        }


def _step_kind(name: str, doc: str, extra: dict[str, Kind] | None = None) -> Mapping_:
    results = RESULTS[name]
    keys: dict[str, Kind | Mapping_ | List_] = {
        "delay_ms": delay("how long the step takes: ms, or [low, high] drawn each attempt"),
        "jitter_ms": integer("up to this much more or less, each attempt", 0, _MAX_DELAY_MS, 0),
        "fail_probability": number(
            f"chance per attempt that the step ends {results[1]!r} (a flaky network)", 0, 1, 0
        ),
        "result": choice("what the step does every attempt", results, results[0]),
    }
    return Mapping_(doc, keys | (extra or {}))


_SSID_KEYS: dict[str, Kind | Mapping_ | List_] = {
    "ssid": text("the SSID as text (UTF-8)"),
    "ssid_hex": text("the SSID as hex digits (any bytes, 1-32)"),
}
_STEPS = Mapping_(
    "what happens after association; every field optional",
    {
        "association": _step_kind("association", "associating with the chosen BSS"),
        "dhcp": _step_kind(
            "dhcp",
            "getting an address",
            {
                "ip": ip_address("the leased IPv4 address", "192.168.1.50", 4),
                "gateway": ip_address("the default gateway", "192.168.1.1"),
                "dns": ip_list("DNS servers", ["192.168.1.1"]),
                "addressing": choice(
                    "ipv4 (DHCPv4), dual (DHCPv4 and SLAAC) or ipv6-only (SLAAC, no DHCPv4)",
                    ("ipv4", "dual", "ipv6-only"),
                    "ipv4",
                ),
                "ip6": ip_address("the SLAAC IPv6 address", "2001:db8:1::50", 6),
                "nat64": flag("ipv6-only: DNS64/NAT64 reach IPv4-only servers (RFC 6146)"),
            },
        ),
        "dns": _step_kind("dns", "resolving the cloud and the connectivity probe"),
        "captive_portal": _step_kind(
            "captive_portal",
            "the HTTP connectivity probe (a portal redirects it)",
            {"login_url": text("where a portal redirects (http:// or https://)")},
        ),
        "internet": _step_kind("internet", "a TCP connection to the probe host"),
        "ntp": _step_kind(
            "ntp", "network time (SNTP, UDP 123); blocked: the device keeps its own clock"
        ),
        "tls": _step_kind("tls", "the TLS handshake to the cloud (the device trusts its CA)"),
    },
)
_AP = Mapping_(
    "one BSS",
    _SSID_KEYS
    | {
        "hidden": flag('hidden BSSes show ssid "" in scans'),
        "bssid": bssid_kind("its MAC address; generated when absent; unique"),
        "band": choice("its band", tuple(str(b) for b in Band), str(Band.GHZ_2_4)),
        "channel": integer("1-14 on 2.4GHz, 32-177 on 5GHz (default 6 / 36)", 0, 255),
        "rssi": integer("signal strength in dBm as a standard antenna hears it", -100, -10, -50),
        "security": choice("its security mode", tuple(str(s) for s in Security)),
        "passphrase": text(
            "its key: 8-63 printable ASCII or 64 hex (WPA2/WPA3); none for open",
            allow_empty=True,
            nullable=True,
        ),
        "band_steering": flag(
            "a 2.4 GHz BSS that holds dual-band clients off so they join 5 GHz; a 2.4 GHz-only "
            "device gets in after the router's hold-off (steering_holdoff_ms)"
        ),
        "steering_holdoff_ms": integer(
            "how long band steering ignores a 2.4 GHz-only device", 0, 60_000, 3000
        ),
        "present": flag("on the air when the world starts (a timeline step brings it)", True),
        "after_association": _STEPS,
    },
    required=("security",),
)
_CREDENTIALS = Mapping_(
    "a network the device joins",
    _SSID_KEYS
    | {
        "passphrase": text("null for open networks", allow_empty=True, nullable=True),
        "hidden": flag("a hidden network (joined with a probe for its SSID)"),
    },
)
_TIMELINE_STEP = Mapping_(
    "one change of the world",
    _SSID_KEYS
    | {
        "after": choice(
            "what at_s counts from: boot (the backend's start) or online (the first time the "
            "device's checks passed)",
            ("boot", "online"),
            "online",
        ),
        "at_s": number("world seconds after `after`", 0, 86400),
        "action": choice(
            "ap_off: the access points go off the air (a router restarting, or gone); ap_on: "
            "they come on; passphrase: the network's key changes (its clients are disconnected);"
            " lease: DHCP stops renewing leases (a device on it loses its address); dns_down, "
            "internet_down: name resolution or the internet stop answering",
            TIMELINE_ACTIONS,
        ),
        "bssid": bssid_kind("one BSS instead of every BSS of the SSID"),
        "passphrase": text("passphrase: the new key", allow_empty=True, nullable=True),
        "for_s": number("undo the change this many seconds later (absent: for good)", 0, 86400),
    },
    required=("at_s", "action"),
)
_STORY = Mapping_(
    "what demo checks beyond the outcome, and what its phone does later",
    {
        "sequence": sequence_kind(
            "event phases that must happen in this order (others may come between): "
            "`phase` or `phase:CODE_NAME`, e.g. link_lost:LINK_LOST, reopen, online"
        ),
        "doors_reopened": flag("whether the device's doors reopened during the story"),
        "back_online_within_s": number(
            "online again at most this many world seconds after the network came back (the "
            "last world change that restores it; from boot when there is none)",
            0,
            86400,
        ),
        "phone_sessions": integer(
            "sessions phones opened after the first onboarding (0: no user acted)", 0, 100
        ),
        "online_ssid": text("the network the device ends online on (UTF-8 SSID)"),
        "associations": integer(
            "association attempts during the story (1: one scan, then one join)", 0, 1000
        ),
        "within_s": number("the story's bound, in world seconds", 1, 86400, 300),
        "phone": Mapping_(
            "the phone sets the device up again when it sees `when`",
            _SSID_KEYS
            | {
                "when": choice(
                    "reopen: the device's doors reopened; loss: its connection was lost",
                    ("reopen", "loss"),
                    "reopen",
                ),
                "passphrase": text("null for open networks", allow_empty=True, nullable=True),
                "hidden": flag("a hidden network"),
            },
        ),
    },
)

_MODEL_DICT: dict[str, Kind | Mapping_ | List_] = {
    "name": text("must equal the file name without .yaml"),
    "description": text("one line saying what this world is and how it ends"),
    "default_credentials": Mapping_(
        "what demos and tests join with",
        _SSID_KEYS
        | {
            "passphrase": text("null for open networks", allow_empty=True, nullable=True),
            "hidden": flag("join with hidden=true (a probe for a hidden SSID)"),
            "expect": code_name("the code a join + verify with these ends with (demo checks it)"),
        },
    ),
    "min_rssi_dbm": integer(
        "BSSes the device hears weaker than this time out on association", -100, 0, -85
    ),
    "scan_delay_ms": integer("how long a scan takes", 0, _MAX_DELAY_MS, 0),
    "seed": integer(
        "seeds the draws of delay ranges, jitter and failure probabilities: the same seed, the "
        "same sequence of attempts (--seed overrides it)",
        0,
        2**63 - 1,
        0,
    ),
    "device": Mapping_(
        "the device's radio and clock",
        {
            "bands": band_list("the bands its radio can use (many IoT chips: 2.4GHz only)"),
            "antenna_offset_db": integer(
                "added to every RSSI the device hears (a small PCB antenna: -6)", -40, 20, 0
            ),
            "ipv6": flag("its IP stack speaks IPv6 (SLAAC, AAAA records)", True),
            "clock": Mapping_(
                "its clock before network time",
                {
                    "rtc": flag("a battery-backed real-time clock (else unset until NTP)", True),
                    "skew_s": integer(
                        "how far the RTC is off, in seconds (negative: behind)",
                        -(2**40),
                        2**40,
                        0,
                    ),
                },
            ),
        },
    ),
    "cloud": Mapping_(
        "what the cloud does when the device activates (demo --activation)",
        {
            "activation": choice("the cloud's answer", CLOUD_BEHAVIOURS, "ok"),
            "mode": choice(
                "demo activates in this mode (as with --activation)",
                ("zero-touch", "claim", "registration"),
            ),
        },
    ),
    "access_points": List_("the BSSes of this world", _AP),
    "after_association": _STEPS,
    "timeline": List_("the world over time: changes after boot or after online", _TIMELINE_STEP),
    "history": Mapping_(
        "what the device did before the story (demo and init --scenario give it this past)",
        {
            "networks": List_(
                "the networks it saved, most recent first", _CREDENTIALS, max_items=32
            ),
            "online": flag("it was online on the first when the story starts", True),
        },
        required=("networks",),
    ),
    "story": _STORY,
}
MODEL = Mapping_(
    "device-sim scenario: a simulated Wi-Fi world",
    _MODEL_DICT,
    required=("name", "description", "default_credentials", "access_points"),
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of scenario files, from :data:`MODEL`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://device-sim.dev/schemas/scenario.json",
        "title": "device-sim scenario",
        **MODEL.json(),
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


# -- locating files -------------------------------------------------------------------------------


def scenarios_dir() -> Path:
    """Where bare scenario names resolve: ``$DEVICE_SIM_SCENARIOS`` or the repo's ``scenarios/``."""
    env = os.environ.get(ENV_SCENARIOS)
    if env:
        return Path(env)
    return Path(device_sim.__file__).resolve().parent.parent / "scenarios"


def list_scenarios() -> list[str]:
    """Names of the scenarios in :func:`scenarios_dir`, sorted."""
    directory = scenarios_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.yaml"))


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def load_scenario(name_or_path: str | os.PathLike[str]) -> Scenario:
    """Load a scenario by bare name (``typical-home``) or by path (``./x.yaml``).

    Raises ConfigError when it cannot be found or read, ConfigErrors (every problem of the
    file) when it does not validate.
    """
    text_ = os.fspath(name_or_path)
    is_path = (
        not isinstance(name_or_path, str)
        or "/" in text_
        or os.sep in text_
        or text_.endswith((".yaml", ".yml"))
    )
    if is_path:
        path = Path(text_)
    else:
        if not _NAME_RE.match(text_):
            raise ConfigError(f"scenario {text_!r}", "not a valid scenario name")
        path = scenarios_dir() / f"{text_}.yaml"
        if not path.is_file():
            known = ", ".join(list_scenarios()) or "none"
            raise ConfigError(
                f"scenario {text_!r}", f"not found in {scenarios_dir()} (known: {known})"
            )
    source = _display(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, f"cannot read: {exc}") from exc
    try:
        with parse_errors(source):
            data = yaml.load(raw, Loader=_UniqueKeyLoader)
    except _DuplicateKey as exc:
        raise ConfigError(f"{source}: line {exc.line}", f"duplicate key {exc.key!r}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"not valid YAML: {exc}") from exc
    return parse_scenario(data, source, expected_name=path.stem)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


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


# -- validation -----------------------------------------------------------------------------------


def parse_scenario(data: Any, source: str, *, expected_name: str | None = None) -> Scenario:
    """Validate already-loaded YAML data into a :class:`Scenario`.

    Raises ConfigErrors listing every problem (``where`` and ``problem`` are the first's)."""
    check_document(data, source)
    errors: _Errors = []
    checked = MODEL.check(data, "", errors)
    scenario = None if checked is BAD else _Builder(errors).scenario(checked, expected_name)
    if errors or scenario is None:
        located = [
            ConfigError(f"{source}: {e.where}" if e.where else source, e.problem) for e in errors
        ]
        raise ConfigErrors(located)
    return replace(scenario, source=source)


_CHANNELS = {Band.GHZ_2_4: range(1, 15), Band.GHZ_5: range(32, 178)}
_DEFAULT_CHANNEL = {Band.GHZ_2_4: 6, Band.GHZ_5: 36}

_S = TypeVar("_S", bound=Step)


class _Builder:
    """Checked values -> dataclasses, with the checks that span keys."""

    def __init__(self, errors: _Errors) -> None:
        self.errors = errors

    def scenario(self, top: dict[str, Any], expected_name: str | None) -> Scenario | None:
        top, _ = _good(top)
        name = top.get("name")
        if expected_name is not None and name is not None and name != expected_name:
            _err(self.errors, "name", f"must match the file name {expected_name!r}, not {name!r}")
        after = self.after_association(
            top.get("after_association", {}), "after_association", AfterAssociation()
        )
        aps = [
            self.access_point(raw, f"access_points[{i}]", i, after)
            for i, raw in enumerate(top.get("access_points", []))
        ]
        seen: dict[str, int] = {}
        for i, sap in enumerate(aps):
            if sap is None:
                continue
            if sap.ap.bssid in seen:
                _err(
                    self.errors,
                    f"access_points[{i}].bssid",
                    f"duplicate of access_points[{seen[sap.ap.bssid]}].bssid",
                )
            seen[sap.ap.bssid] = i
        creds = (
            self.credentials(top["default_credentials"], "default_credentials")
            if "default_credentials" in top
            else None
        )
        device, _ = _good(top.get("device", {}))
        clock, _ = _good(device.get("clock", {}))
        cloud = self.cloud(_good(top.get("cloud", {}))[0])
        good_aps = [sap for sap in aps if sap is not None]
        timeline = tuple(
            step
            for i, raw in enumerate(top.get("timeline", []))
            if (step := self.timeline_step(_good(raw)[0], f"timeline[{i}]", good_aps))
        )
        history = self.history(_good(top["history"])[0]) if "history" in top else None
        story = self.story(_good(top["story"])[0]) if "story" in top else None
        if self.errors or creds is None or None in aps or name is None:
            return None
        return Scenario(
            name=name,
            description=top["description"],
            source="",
            default_credentials=creds,
            access_points=tuple(sap for sap in aps if sap is not None),
            after_association=after,
            min_rssi_dbm=top.get("min_rssi_dbm", DEFAULT_MIN_RSSI_DBM),
            scan_delay_ms=top.get("scan_delay_ms", 0),
            seed=top.get("seed", 0),
            device=DeviceRadio(
                bands=device.get("bands", DeviceRadio.bands),
                antenna_offset_db=device.get("antenna_offset_db", 0),
                ipv6=device.get("ipv6", True),
                rtc=clock.get("rtc", True),
                clock_skew_s=clock.get("skew_s", 0),
            ),
            cloud=cloud,
            timeline=timeline,
            history=history,
            story=story,
        )

    def timeline_step(
        self, node: dict[str, Any], path: str, aps: list[ScenarioAccessPoint]
    ) -> TimelineStep | None:
        if "action" not in node or "at_s" not in node:
            return None
        action = node["action"]
        named = "ssid" in node or "ssid_hex" in node
        ssid = self.ssid(node, path) if named else None
        if "bssid" in node:
            bssids = tuple(s.ap.bssid for s in aps if s.ap.bssid == node["bssid"])
            target = node["bssid"]
            if not bssids:
                _err(self.errors, _join(path, "bssid"), "no access point has this bssid")
        elif ssid is not None:
            bssids = tuple(s.ap.bssid for s in aps if s.ap.ssid == ssid)
            target = _ssid_text(ssid)
            if not bssids:
                _err(self.errors, _join(path, "ssid"), "no access point has this SSID")
        else:
            bssids, target = (), "every network"
            if action in TARGETED and not named:
                _err(self.errors, _join(path, "ssid"), f"{action} needs an ssid or a bssid")
        passphrase = node.get("passphrase")
        if action == "passphrase":
            if "passphrase" not in node:
                _err(self.errors, _join(path, "passphrase"), "the new key is missing")
            elif ssid is not None or bssids:
                security = next((s.ap.security for s in aps if s.ap.bssid in bssids), None)
                probe = ssid if ssid is not None else b"x"
                try:
                    validate_credentials(probe, passphrase, security)
                except NetworkError as exc:
                    _err(self.errors, _join(path, "passphrase"), exc.detail)
        elif "passphrase" in node:
            _err(self.errors, _join(path, "passphrase"), f"{action} takes no passphrase")
        return TimelineStep(
            after=node.get("after", "online"),
            at_s=float(node["at_s"]),
            action=action,
            bssids=bssids,
            target=target,
            passphrase=passphrase,
            for_s=node.get("for_s"),
        )

    def history(self, node: dict[str, Any]) -> History | None:
        networks = []
        for i, raw in enumerate(node.get("networks", [])):
            net, _ = _good(raw)
            path = f"history.networks[{i}]"
            ssid = self.ssid(net, path)
            if ssid is None:
                continue
            passphrase = net.get("passphrase")
            try:
                validate_credentials(ssid, passphrase, None)
            except NetworkError as exc:
                _err(self.errors, _join(path, "passphrase"), exc.detail)
            networks.append(DefaultCredentials(ssid, passphrase, net.get("hidden", False)))
        seen = [n.ssid for n in networks]
        if len(set(seen)) != len(seen):
            _err(self.errors, "history.networks", "lists a network twice")
        if not networks:
            if "networks" in node:
                _err(self.errors, "history.networks", "lists no network")
            return None
        return History(tuple(networks), node.get("online", True))

    def story(self, node: dict[str, Any]) -> Story:
        phone = None
        if "phone" in node:
            raw, _ = _good(node["phone"])
            ssid = self.ssid(raw, "story.phone")
            if ssid is not None:
                phone = StoryPhone(
                    raw.get("when", "reopen"), ssid, raw.get("passphrase"), raw.get("hidden", False)
                )
        online = node.get("online_ssid")
        return Story(
            sequence=node.get("sequence", ()),
            doors_reopened=node.get("doors_reopened"),
            back_online_within_s=node.get("back_online_within_s"),
            phone_sessions=node.get("phone_sessions"),
            online_ssid=online.encode("utf-8") if online is not None else None,
            associations=node.get("associations"),
            within_s=node.get("within_s", 300.0),
            phone=phone,
        )

    def cloud(self, node: dict[str, Any]) -> CloudBehaviour:
        cloud = CloudBehaviour(**node)
        if cloud.activation == "claim_token_expired" and cloud.mode not in (None, "claim"):
            _err(self.errors, "cloud.mode", "a claim token expires only in claim mode")
        return cloud

    def ssid(self, node: Mapping[str, Any], path: str) -> bytes | None:
        if ("ssid" in node) == ("ssid_hex" in node):
            # both, or neither (a bad value was already reported and dropped)
            if "ssid" in node or not self._reported(path, ("ssid", "ssid_hex")):
                _err(self.errors, _join(path, "ssid"), "give exactly one of ssid or ssid_hex")
            return None
        if "ssid" in node:
            ssid, where = node["ssid"].encode("utf-8"), _join(path, "ssid")
        else:
            where = _join(path, "ssid_hex")
            try:
                ssid = bytes.fromhex(node["ssid_hex"])
            except ValueError:
                _err(self.errors, where, f"not an even number of hex digits: {node['ssid_hex']!r}")
                return None
        if not 1 <= len(ssid) <= 32:
            _err(self.errors, where, f"an SSID is 1 to 32 bytes, this one is {len(ssid)}")
            return None
        return ssid

    def _reported(self, path: str, keys: tuple[str, ...]) -> bool:
        wheres = {_join(path, k) for k in keys}
        return any(e.where in wheres for e in self.errors)

    def credentials(self, node: dict[str, Any], path: str) -> DefaultCredentials | None:
        node, _ = _good(node)
        ssid = self.ssid(node, path)
        if ssid is None:
            return None
        return DefaultCredentials(
            ssid=ssid,
            passphrase=node.get("passphrase"),
            hidden=node.get("hidden", False),
            expect=node.get("expect", Code.OK),
        )

    def access_point(
        self, node: dict[str, Any], path: str, index: int, after: AfterAssociation
    ) -> ScenarioAccessPoint | None:
        node, bad = _good(node)
        ssid = self.ssid(node, path)
        if "security" not in node or "band" in bad:
            return None
        band = Band(node.get("band", str(Band.GHZ_2_4)))
        security = Security(node["security"])
        channel = node.get("channel", _DEFAULT_CHANNEL[band])
        if channel not in _CHANNELS[band]:
            allowed = _CHANNELS[band]
            _err(
                self.errors,
                _join(path, "channel"),
                f"{channel} is not a {band} channel ({allowed[0]}..{allowed[-1]})",
            )
        bssid = node.get("bssid", f"02:00:00:00:{index >> 8:02x}:{index & 0xFF:02x}")
        passphrase = node.get("passphrase")
        if ssid is not None and (security.needs_passphrase or security is Security.OPEN):
            try:
                validate_credentials(ssid, passphrase, security)
            except NetworkError as exc:
                _err(self.errors, _join(path, "passphrase"), exc.detail)
        steering = node.get("band_steering", False)
        if steering and band is not Band.GHZ_2_4:
            _err(
                self.errors,
                _join(path, "band_steering"),
                "band steering holds clients off a 2.4GHz BSS; this one is 5GHz",
            )
        steps = self.after_association(
            node.get("after_association", {}), _join(path, "after_association"), after
        )
        if ssid is None:
            return None
        return ScenarioAccessPoint(
            ap=AccessPoint(
                ssid=ssid,
                bssid=bssid,
                band=band,
                channel=channel,
                rssi=node.get("rssi", -50),
                security=security,
                hidden=node.get("hidden", False),
            ),
            passphrase=passphrase,
            after_association=steps,
            band_steering=steering,
            steering_holdoff_ms=node.get("steering_holdoff_ms", 3000),
            present=node.get("present", True),
        )

    def after_association(
        self, node: dict[str, Any], path: str, base: AfterAssociation
    ) -> AfterAssociation:
        """Steps given here replace the same fields of ``base``; others are inherited."""
        node, _ = _good(node)
        steps = {
            name: self.step(_good(raw)[0], _join(path, name), getattr(base, name))
            for name, raw in node.items()
        }
        return replace(base, **steps)

    def step(self, node: dict[str, Any], path: str, base: _S) -> _S:
        changes = dict(node)
        if "delay_ms" in changes:
            changes["delay_ms"], changes["delay_max_ms"] = changes["delay_ms"]
        step = replace(base, **changes)
        if isinstance(step, CaptivePortalStep):
            if step.login_url is not None and not step.login_url.startswith(
                ("http://", "https://")
            ):
                _err(
                    self.errors,
                    _join(path, "login_url"),
                    f"must be an http:// or https:// URL, not {step.login_url!r}",
                )
            if (step.result == "portal" or step.fail_probability > 0) and not step.login_url:
                _err(self.errors, _join(path, "login_url"), "a portal needs a login_url")
        return step


def _good(node: Any) -> tuple[dict[str, Any], set[str]]:
    """A checked mapping without its bad values, and the keys that were bad."""
    if not isinstance(node, dict):
        return {}, set()
    return {k: v for k, v in node.items() if v is not BAD}, {k for k, v in node.items() if v is BAD}


def _ssid_text(ssid: bytes) -> str:
    try:
        return repr(ssid.decode("utf-8"))
    except UnicodeDecodeError:
        return f"0x{ssid.hex()}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
