"""The ``softap`` section of ``gatt_profile.yaml``: the Wi-Fi access point door and its HTTP API.

Parsed by :func:`parse_softap` into frozen dataclasses; :mod:`device_sim.profile` re-exports them.
Raises :class:`~device_sim.errors.ConfigError` naming the bad place, like the rest of the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..codes import Code
from ..errors import ConfigError
from .reader import Reader


@dataclass(frozen=True)
class EndpointDef:
    method: str
    path: str
    listeners: tuple[str, ...]
    request: str
    response: str
    description: str


@dataclass(frozen=True)
class ProbeDef:
    os: str
    path: str
    status: int
    content_type: str
    body: str


@dataclass(frozen=True)
class HttpDef:
    message_content_type: str
    messages_content_type: str
    max_json_bytes: int
    body_timeout_ms: int
    long_poll_max_ms: int
    session_cookie: str
    status_for_code: Mapping[str, int]
    endpoints: tuple[EndpointDef, ...]

    def status(self, code: Code | str) -> int:
        """The HTTP status answering a coded error (400 unless the profile says otherwise)."""
        name = code if isinstance(code, str) else code.name
        return self.status_for_code.get(name, 400)


@dataclass(frozen=True)
class SoftApDef:
    ssid_pattern: str
    passphrase_length: int
    ap_address: str
    http: HttpDef
    captive_modes: tuple[str, ...]
    probes: tuple[ProbeDef, ...]


_ENDPOINT_KINDS = {
    "request": {"message", "json", "none"},
    "response": {"messages", "json", "captive-json", "html"},
}


def parse_softap(r: Reader, code_names: set[str]) -> SoftApDef:
    h = r.child("http")
    statuses = h.get("status_for_code", dict)
    for name, status in statuses.items():
        if name not in code_names:
            raise ConfigError(h.at(f"status_for_code.{name}"), "unknown code")
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ConfigError(h.at(f"status_for_code.{name}"), "must be an HTTP error status")
    endpoints: list[EndpointDef] = []
    for i, item in enumerate(h.get("endpoints", list)):
        e = Reader(item, h.at(f"endpoints[{i}]"))
        ep = EndpointDef(
            e.get("method", str),
            e.get("path", str),
            tuple(e.strings("listeners")),
            e.get("request", str),
            e.get("response", str),
            e.get("description", str),
        )
        if ep.method not in ("GET", "POST") or not ep.path.startswith("/"):
            raise ConfigError(e.where, f"bad endpoint {ep.method} {ep.path}")
        if not set(ep.listeners) <= {"ap", "lan"} or not ep.listeners:
            raise ConfigError(e.at("listeners"), "a non-empty subset of [ap, lan]")
        for key, allowed in _ENDPOINT_KINDS.items():
            if getattr(ep, key) not in allowed:
                raise ConfigError(e.at(key), f"one of {sorted(allowed)}")
        e.done()
        endpoints.append(ep)
    http = HttpDef(
        h.get("message_content_type", str),
        h.get("messages_content_type", str),
        int(h.positive("max_json_bytes") or 0),
        int(h.positive("body_timeout_ms") or 0),
        int(h.positive("long_poll_max_ms") or 0),
        h.get("session_cookie", str),
        dict(statuses),
        tuple(endpoints),
    )
    h.done()
    probes: list[ProbeDef] = []
    for i, item in enumerate(r.get("probes", list)):
        p = Reader(item, r.at(f"probes[{i}]"))
        probes.append(
            ProbeDef(
                p.get("os", str),
                p.get("path", str),
                p.get("status", int),
                p.get("content_type", str),
                p.get("body", str),
            )
        )
        p.done()
    soft = SoftApDef(
        r.get("ssid_pattern", str),
        int(r.positive("passphrase_length") or 0),
        r.get("ap_address", str),
        http,
        tuple(r.strings("captive_modes")),
        tuple(probes),
    )
    if "{short_id}" not in soft.ssid_pattern:
        raise ConfigError(r.at("ssid_pattern"), "must contain {short_id}")
    if not 8 <= soft.passphrase_length <= 63:
        raise ConfigError(r.at("passphrase_length"), "a WPA2 passphrase has 8 to 63 characters")
    if set(soft.captive_modes) != {"app", "portal"}:
        raise ConfigError(r.at("captive_modes"), "this build implements [app, portal]")
    r.done()
    return soft
