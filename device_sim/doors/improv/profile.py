"""The Improv personality's section of ``gatt_profile.yaml`` (``personalities.improv``).

It holds the Improv service's UUIDs, byte tables and timeouts. :func:`improv_def` parses it
from a loaded profile; a bad value raises :class:`~device_sim.errors.ConfigError` naming the
place, like the rest of the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...codes import Code
from ...errors import ConfigError
from ...profile import Profile
from ...profile.reader import Reader


@dataclass(frozen=True)
class ImprovDef:
    spec_revision: str
    service_uuid: str
    service_data_uuid: str
    characteristics: Mapping[str, str]
    diagnostics_service_uuid: str
    states: Mapping[str, int]
    errors: Mapping[str, int]
    commands: Mapping[str, int]
    capabilities: Mapping[str, int]
    authorization: str
    authorization_timeout_ms: int
    reassembly_timeout_ms: int
    redirect_url: str
    error_for_code: Mapping[str, str]

    def error_for(self, code: Code | str) -> int:
        """The Improv error byte reporting one of the engine's codes."""
        name = code if isinstance(code, str) else code.name
        return self.errors[self.error_for_code.get(name, "unable_to_connect")]


_IMPROV_KEYS = {
    "characteristics": {"state", "error", "rpc_command", "rpc_result", "capabilities"},
    "states": {"authorization_required", "authorized", "provisioning", "provisioned"},
    "errors": {
        "none",
        "invalid_rpc_packet",
        "unknown_rpc_command",
        "unable_to_connect",
        "not_authorized",
        "bad_hostname",
        "unknown",
    },
    "commands": {
        "wifi_settings",
        "identify",
        "device_info",
        "scan_wifi",
        "hostname",
        "device_name",
    },
    "capabilities": {"identify", "device_info", "scan_wifi", "hostname", "device_name"},
}


def parse_improv(r: Reader, code_names: set[str]) -> ImprovDef:
    tables: dict[str, dict[str, Any]] = {}
    for key, names in _IMPROV_KEYS.items():
        table = r.get(key, dict)
        if set(table) != names:
            raise ConfigError(r.at(key), f"needs exactly {sorted(names)}")
        kind = str if key == "characteristics" else int
        for name, value in table.items():
            if kind is int:
                bad = isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255
            else:
                bad = not isinstance(value, str)
            if bad:
                raise ConfigError(r.at(f"{key}.{name}"), f"bad value {value!r}")
        if key == "characteristics":
            table = {
                name: Reader({"u": v}, r.at(f"{key}.{name}")).uuid("u") for name, v in table.items()
            }
        tables[key] = table
    folded = r.get("error_for_code", dict)
    for name, err in folded.items():
        if name not in code_names or not isinstance(err, str) or err not in tables["errors"]:
            raise ConfigError(r.at(f"error_for_code.{name}"), "unknown code or Improv error")
    auth = r.get("authorization", str)
    if auth not in ("none", "required"):
        raise ConfigError(r.at("authorization"), "none or required")
    out = ImprovDef(
        r.get("spec_revision", str),
        r.uuid("service_uuid"),
        r.uuid("service_data_uuid"),
        tables["characteristics"],
        r.uuid("diagnostics_service_uuid"),
        tables["states"],
        tables["errors"],
        tables["commands"],
        tables["capabilities"],
        auth,
        int(r.positive("authorization_timeout_ms") or 0),
        int(r.positive("reassembly_timeout_ms") or 0),
        r.get("redirect_url", str),
        dict(folded),
    )
    r.done()
    return out


def improv_def(profile: Profile) -> ImprovDef:
    """The parsed ``personalities.improv`` section of ``profile``. Raises ConfigError."""
    return parse_improv(profile.personalities.section("improv"), set(profile.codes))
