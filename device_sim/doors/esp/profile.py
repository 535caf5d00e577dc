"""The ESP personality's section of ``gatt_profile.yaml`` (``personalities.esp``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...errors import ConfigError
from ...profile import Profile
from ...profile.reader import Reader

ENDPOINTS = ("prov-ctrl", "prov-scan", "prov-session", "prov-config", "proto-ver")
DIAG = "device-sim-diag"  # the custom endpoint with device-sim's specific code


@dataclass(frozen=True)
class EspDef:
    proto_ver: str
    service_uuid: str
    endpoints: Mapping[str, str]  # endpoint name -> its characteristic's UUID
    security: int
    sec_patch_ver: int
    username: str
    pop_length: int
    caps: tuple[str, ...]
    scan_page: int
    max_sessions: int
    auth_error_codes: frozenset[str]


def parse_esp(r: Reader, code_names: set[str]) -> EspDef:
    service = r.uuid("service_uuid")
    raw = r.get("endpoints", dict)
    if set(raw) != {*ENDPOINTS, DIAG}:
        raise ConfigError(r.at("endpoints"), f"needs exactly {sorted({*ENDPOINTS, DIAG})}")
    endpoints = {}
    for name, short in raw.items():
        if not isinstance(short, str) or not re.fullmatch(r"[0-9a-f]{4}", short):
            raise ConfigError(r.at(f"endpoints.{name}"), "four lower-case hex digits")
        endpoints[name] = service[:4] + short + service[8:]
    if len(set(endpoints.values())) != len(endpoints):
        raise ConfigError(r.at("endpoints"), "two endpoints share a UUID")
    security = r.get("security", int)
    patch = r.get("sec_patch_ver", int)
    if security not in (0, 1, 2):
        raise ConfigError(r.at("security"), "0, 1 or 2")
    if patch not in (0, 1):
        raise ConfigError(r.at("sec_patch_ver"), "0 or 1")
    codes = r.strings("auth_error_codes")
    for code in codes:
        if code not in code_names:
            raise ConfigError(r.at("auth_error_codes"), f"unknown code {code}")
    out = EspDef(
        r.get("proto_ver", str),
        service,
        endpoints,
        security,
        patch,
        r.get("username", str),
        int(r.positive("pop_length") or 0),
        tuple(r.strings("caps")),
        int(r.positive("scan_page") or 0),
        int(r.positive("max_sessions") or 0),
        frozenset(codes),
    )
    r.done()
    if not 8 <= out.pop_length <= 64:
        raise ConfigError(r.at("pop_length"), "8 to 64")
    return out


def esp_def(profile: Profile) -> EspDef:
    """The parsed ``personalities.esp`` section of ``profile``. Raises ConfigError."""
    return parse_esp(profile.personalities.section("esp"), set(profile.codes))
