"""The declarative model of scenario files (:data:`MODEL`, on :mod:`device_sim.schema`): the
kinds only scenarios have (delays, BSSIDs, bands, code names, event sequences), every section,
and the JSON Schema the model writes (:func:`json_schema`, for editor completion)."""

from __future__ import annotations

import json
import re
from typing import Any

from ...codes import Code
from ...schema import (
    BAD,
    Errors,
    Kind,
    List_,
    Mapping_,
    choice,
    err,
    flag,
    integer,
    ip_address,
    ip_list,
    number,
    text,
)
from ..base import Band, Security
from ..eap import EapMethod, Phase2
from .model import (
    _MAX_DELAY_MS,
    CLOUD_BEHAVIOURS,
    ISSUERS,
    RESULTS,
    TIMELINE_ACTIONS,
)


def delay(doc: str) -> Kind:
    """An int (ms) or a range ``[lo, hi]`` drawn uniformly each attempt."""

    def check(v: Any, path: str, errors: Errors) -> Any:
        def one(x: Any) -> Any:
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= _MAX_DELAY_MS:
                return err(errors, path, f"must be between 0 and {_MAX_DELAY_MS} ms, not {x!r}")
            return x

        if isinstance(v, list):
            if len(v) != 2:
                return err(errors, path, f"a range is [low, high], not {v!r}")
            lo, hi = one(v[0]), one(v[1])
            if lo is BAD or hi is BAD:
                return BAD
            if lo > hi:
                return err(errors, path, f"the range's low end {lo} is above its high end {hi}")
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

    def check(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, str) or not re.match(pattern, v):
            return err(errors, path, f"not a MAC address like 02:00:00:00:00:01: {v!r}")
        return v.lower()

    return Kind(doc, None, check, {"type": "string", "pattern": pattern})


def code_name(doc: str) -> Kind:
    def check(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, str) or v not in Code.__members__:
            return err(errors, path, f"not a diagnostic code name: {v!r}")
        return Code[v]

    return Kind(doc, "OK", check, {"enum": list(Code.__members__)})


def band_list(doc: str) -> Kind:
    bands = tuple(str(b) for b in Band)

    def check(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, list) or not v:
            return err(errors, path, f"must be a non-empty list of bands ({', '.join(bands)})")
        if len(set(map(str, v))) != len(v):
            return err(errors, path, f"lists a band twice: {v!r}")
        out = []
        for i, b in enumerate(v):
            if b not in bands:
                return err(errors, f"{path}[{i}]", f"must be one of {', '.join(bands)}, not {b!r}")
            out.append(Band(b))
        return tuple(out)

    schema = {"type": "array", "uniqueItems": True, "minItems": 1, "items": {"enum": list(bands)}}
    return Kind(doc, list(bands), check, schema)


_PHASE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}(:[A-Z][A-Z0-9_]*)?$")


def sequence_kind(doc: str) -> Kind:
    """A list of ``phase`` or ``phase:CODE_NAME`` strings (the code a known one)."""

    def check(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, list) or len(v) > 64:
            return err(errors, path, "must be a list of at most 64 phase names")
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, str) or not _PHASE_RE.match(item):
                return err(errors, f"{path}[{i}]", f"not `phase` or `phase:CODE`: {item!r}")
            code = item.partition(":")[2]
            if code and code not in Code.__members__:
                return err(errors, f"{path}[{i}]", f"not a diagnostic code name: {code!r}")
            out.append(item)
        return tuple(out)

    schema = {
        "type": "array",
        "maxItems": 64,
        "items": {"type": "string", "pattern": _PHASE_RE.pattern},
    }
    return Kind(doc, None, check, schema)


def methods_kind(doc: str) -> Kind:
    """A non-empty list of EAP method names, each once."""
    names = tuple(str(m) for m in EapMethod)

    def check(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, list) or not v or len(set(v)) != len(v):
            return err(errors, path, f"must be a list of distinct EAP methods ({', '.join(names)})")
        for i, item in enumerate(v):
            if item not in names:
                return err(
                    errors, f"{path}[{i}]", f"must be one of {', '.join(names)}, not {item!r}"
                )
        return tuple(EapMethod(m) for m in v)

    schema = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": list(names)}}
    return Kind(doc, None, check, schema)


_RADIUS = Mapping_(
    "an enterprise (802.1X) BSS's authentication server (security: enterprise)",
    {
        "methods": methods_kind("the EAP methods it offers (peap, ttls, tls)"),
        "issuer": choice(
            "who issued its certificate: world (the organisation's CA, which the app must send), "
            "public (a CA of the device's system store: a domain alone checks it), other (a CA "
            "nobody trusts: an old or impostor server)",
            ISSUERS,
            "world",
        ),
        "name": text("its certificate's DNS name (what domain-suffix-match checks)"),
        "accounts": List_(
            "the accounts it knows",
            Mapping_(
                "one account",
                {
                    "identity": text("the user name (inner identity), e.g. alice@corp.example"),
                    "password": text(
                        "its password (PEAP, TTLS); absent: a certificate-only account (EAP-TLS)"
                    ),
                },
                required=("identity",),
            ),
            max_items=64,
        ),
    },
    required=("methods",),
)
_EAP_CREDENTIALS = Mapping_(
    "the enterprise sign-in the phone sends (security: enterprise networks)",
    {
        "method": choice("the EAP method", tuple(str(m) for m in EapMethod)),
        "phase2": choice("PEAP/TTLS's inner method", tuple(str(p) for p in Phase2)),
        "identity": text("the user name"),
        "anonymous_identity": text(
            "the outer identity sent in clear (e.g. anonymous@corp.example)"
        ),
        "password": text("the account's password (PEAP, TTLS)"),
        "ca_cert": choice(
            "the CA certificate the phone sends: one of the world's CAs, or none (then a domain "
            "is needed: the device checks the server against its system store)",
            (*ISSUERS, "none"),
            "world",
        ),
        "domain": text("the server domain to match (domain-suffix-match)"),
        "client_cert": choice(
            "EAP-TLS: a client certificate from the world's CA for the identity, valid or expired",
            ("valid", "expired"),
        ),
    },
    required=("method", "identity"),
)


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
        "eap": _RADIUS,
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
            "eap": _EAP_CREDENTIALS,
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
