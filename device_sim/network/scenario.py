"""Scenario files: the simulated Wi-Fi world the simulated backend plays.

A scenario is YAML (format in ``scenarios/README.md``), validated here into frozen dataclasses.
Unknown keys, duplicate keys and bad values raise :class:`~device_sim.errors.ConfigError` naming
the place, e.g. ``scenarios/x.yaml: access_points[1].band``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

import device_sim

from ..codes import Code
from ..document import check_document, parse_errors
from ..errors import ConfigError, NetworkError
from .base import AccessPoint, Band, Security, validate_credentials

__all__ = [
    "AfterAssociation",
    "AssociationStep",
    "CaptivePortalStep",
    "DefaultCredentials",
    "DhcpStep",
    "DnsStep",
    "InternetStep",
    "Scenario",
    "ScenarioAccessPoint",
    "TlsStep",
    "list_scenarios",
    "load_scenario",
    "parse_scenario",
    "scenarios_dir",
]

ENV_SCENARIOS = "DEVICE_SIM_SCENARIOS"
DEFAULT_MIN_RSSI_DBM = -85


@dataclass(frozen=True)
class AssociationStep:
    delay_ms: int = 0
    result: str = "ok"  # ok | timeout


@dataclass(frozen=True)
class DhcpStep:
    delay_ms: int = 0
    result: str = "ok"  # ok | timeout
    ip: str = "192.168.1.50"
    gateway: str = "192.168.1.1"
    dns: tuple[str, ...] = ("192.168.1.1",)


@dataclass(frozen=True)
class DnsStep:
    delay_ms: int = 0
    result: str = "ok"  # ok | fail


@dataclass(frozen=True)
class CaptivePortalStep:
    delay_ms: int = 0
    result: str = "none"  # none | portal
    login_url: str | None = None


@dataclass(frozen=True)
class InternetStep:
    delay_ms: int = 0
    result: str = "ok"  # ok | none


@dataclass(frozen=True)
class TlsStep:
    delay_ms: int = 0
    result: str = "ok"  # ok | untrusted | hostname_mismatch | expired


@dataclass(frozen=True)
class AfterAssociation:
    """What happens once a BSS is chosen: association, DHCP and the verify checks."""

    association: AssociationStep = AssociationStep()
    dhcp: DhcpStep = DhcpStep()
    dns: DnsStep = DnsStep()
    captive_portal: CaptivePortalStep = CaptivePortalStep()
    internet: InternetStep = InternetStep()
    tls: TlsStep = TlsStep()


_RESULTS: dict[str, tuple[str, ...]] = {
    "association": ("ok", "timeout"),
    "dhcp": ("ok", "timeout"),
    "dns": ("ok", "fail"),
    "captive_portal": ("none", "portal"),
    "internet": ("ok", "none"),
    "tls": ("ok", "untrusted", "hostname_mismatch", "expired"),
}


@dataclass(frozen=True)
class ScenarioAccessPoint:
    """One simulated BSS: what scans show (``ap``, with its real SSID), its key and behaviour."""

    ap: AccessPoint
    passphrase: str | None = field(repr=False)
    after_association: AfterAssociation


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

    def bsses(self, ssid: bytes) -> list[ScenarioAccessPoint]:
        """Every BSS broadcasting (or hiding) ``ssid``."""
        return [sap for sap in self.access_points if sap.ap.ssid == ssid]


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

    Raises ConfigError when it cannot be found, read or validated.
    """
    text = os.fspath(name_or_path)
    is_path = (
        not isinstance(name_or_path, str)
        or "/" in text
        or os.sep in text
        or text.endswith((".yaml", ".yml"))
    )
    if is_path:
        path = Path(text)
    else:
        if not _NAME_RE.match(text):
            raise ConfigError(f"scenario {text!r}", "not a valid scenario name")
        path = scenarios_dir() / f"{text}.yaml"
        if not path.is_file():
            known = ", ".join(list_scenarios()) or "none"
            raise ConfigError(
                f"scenario {text!r}", f"not found in {scenarios_dir()} (known: {known})"
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
    """Validate already-loaded YAML data into a :class:`Scenario`. Raises ConfigError."""
    check_document(data, source)
    return _Parser(source).scenario(data, expected_name)


_TOP_KEYS = {
    "name",
    "description",
    "default_credentials",
    "access_points",
    "after_association",
    "min_rssi_dbm",
    "scan_delay_ms",
}
_AP_KEYS = {
    "ssid",
    "ssid_hex",
    "hidden",
    "bssid",
    "band",
    "channel",
    "rssi",
    "security",
    "passphrase",
    "after_association",
}
_CRED_KEYS = {"ssid", "ssid_hex", "passphrase", "hidden", "expect"}
_CHANNELS = {Band.GHZ_2_4: range(1, 15), Band.GHZ_5: range(32, 178)}
_DEFAULT_CHANNEL = {Band.GHZ_2_4: 6, Band.GHZ_5: 36}
_BSSID_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_MAX_DELAY_MS = 600_000

_S = TypeVar("_S")


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path}" if path else self.source, problem)

    # primitives
    def mapping(
        self, value: Any, path: str, allowed: set[str], required: tuple[str, ...] = ()
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, "must be a mapping")
        for key in value:
            if key not in allowed:
                raise self.error(
                    _join(path, str(key)), f"unknown key (allowed: {', '.join(sorted(allowed))})"
                )
        for key in required:
            if key not in value:
                raise self.error(_join(path, key), "missing")
        return value

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"must be an integer, not {value!r}")
        if not lo <= value <= hi:
            raise self.error(path, f"must be between {lo} and {hi}, not {value}")
        return value

    def text(self, value: Any, path: str, *, allow_empty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"must be a string (quote it in YAML), not {value!r}")
        if not value and not allow_empty:
            raise self.error(path, "must not be empty")
        return value

    def flag(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"must be true or false, not {value!r}")
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in choices:
            raise self.error(path, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def ip(self, value: Any, path: str) -> str:
        try:
            return str(ipaddress.ip_address(self.text(value, path)))
        except ValueError:
            raise self.error(path, f"not an IP address: {value!r}") from None

    def ssid(self, node: Mapping[str, Any], path: str) -> bytes:
        if ("ssid" in node) == ("ssid_hex" in node):
            raise self.error(_join(path, "ssid"), "give exactly one of ssid or ssid_hex")
        if "ssid" in node:
            ssid = self.text(node["ssid"], _join(path, "ssid")).encode("utf-8")
            where = _join(path, "ssid")
        else:
            where = _join(path, "ssid_hex")
            hex_text = self.text(node["ssid_hex"], where)
            try:
                ssid = bytes.fromhex(hex_text)
            except ValueError:
                raise self.error(where, f"not an even number of hex digits: {hex_text!r}") from None
        if not 1 <= len(ssid) <= 32:
            raise self.error(where, f"an SSID is 1 to 32 bytes, this one is {len(ssid)}")
        return ssid

    def passphrase(self, value: Any, path: str) -> str | None:
        return None if value is None else self.text(value, path, allow_empty=True)

    # structures
    def scenario(self, data: Any, expected_name: str | None) -> Scenario:
        top = self.mapping(
            data, "", _TOP_KEYS, ("name", "description", "default_credentials", "access_points")
        )
        name = self.text(top["name"], "name")
        if expected_name is not None and name != expected_name:
            raise self.error("name", f"must match the file name {expected_name!r}, not {name!r}")
        after = self.after_association(
            top.get("after_association", {}), "after_association", AfterAssociation()
        )
        aps_raw = top["access_points"]
        if not isinstance(aps_raw, list):
            raise self.error("access_points", "must be a list")
        aps = tuple(
            self.access_point(raw, f"access_points[{i}]", i, after) for i, raw in enumerate(aps_raw)
        )
        seen: dict[str, int] = {}
        for i, sap in enumerate(aps):
            if sap.ap.bssid in seen:
                raise self.error(
                    f"access_points[{i}].bssid",
                    f"duplicate of access_points[{seen[sap.ap.bssid]}].bssid",
                )
            seen[sap.ap.bssid] = i
        return Scenario(
            name=name,
            description=self.text(top["description"], "description"),
            source=self.source,
            default_credentials=self.credentials(top["default_credentials"], "default_credentials"),
            access_points=aps,
            after_association=after,
            min_rssi_dbm=self.integer(
                top.get("min_rssi_dbm", DEFAULT_MIN_RSSI_DBM), "min_rssi_dbm", -100, 0
            ),
            scan_delay_ms=self.integer(
                top.get("scan_delay_ms", 0), "scan_delay_ms", 0, _MAX_DELAY_MS
            ),
        )

    def credentials(self, value: Any, path: str) -> DefaultCredentials:
        node = self.mapping(value, path, _CRED_KEYS)
        expect = node.get("expect", "OK")
        if not isinstance(expect, str) or expect not in Code.__members__:
            raise self.error(_join(path, "expect"), f"not a diagnostic code name: {expect!r}")
        return DefaultCredentials(
            ssid=self.ssid(node, path),
            passphrase=self.passphrase(node.get("passphrase"), _join(path, "passphrase")),
            hidden=self.flag(node.get("hidden", False), _join(path, "hidden")),
            expect=Code[expect],
        )

    def access_point(
        self, value: Any, path: str, index: int, after: AfterAssociation
    ) -> ScenarioAccessPoint:
        node = self.mapping(value, path, _AP_KEYS, ("security",))
        ssid = self.ssid(node, path)
        band_raw = node.get("band", str(Band.GHZ_2_4))
        band = Band(self.choice(band_raw, _join(path, "band"), tuple(str(b) for b in Band)))
        security = Security(
            self.choice(node["security"], _join(path, "security"), tuple(str(s) for s in Security))
        )
        channel = self.integer(
            node.get("channel", _DEFAULT_CHANNEL[band]), _join(path, "channel"), 0, 255
        )
        if channel not in _CHANNELS[band]:
            allowed = _CHANNELS[band]
            raise self.error(
                _join(path, "channel"),
                f"{channel} is not a {band} channel ({allowed[0]}..{allowed[-1]})",
            )
        bssid = node.get("bssid", f"02:00:00:00:{index >> 8:02x}:{index & 0xFF:02x}")
        bssid = self.text(bssid, _join(path, "bssid")).lower()
        if not _BSSID_RE.match(bssid):
            raise self.error(
                _join(path, "bssid"), f"not a MAC address like 02:00:00:00:00:01: {bssid!r}"
            )
        passphrase = self.passphrase(node.get("passphrase"), _join(path, "passphrase"))
        if security.needs_passphrase or security is Security.OPEN:
            try:
                validate_credentials(ssid, passphrase, security)
            except NetworkError as exc:
                raise self.error(_join(path, "passphrase"), exc.detail) from None
        return ScenarioAccessPoint(
            ap=AccessPoint(
                ssid=ssid,
                bssid=bssid,
                band=band,
                channel=channel,
                rssi=self.integer(node.get("rssi", -50), _join(path, "rssi"), -100, -10),
                security=security,
                hidden=self.flag(node.get("hidden", False), _join(path, "hidden")),
            ),
            passphrase=passphrase,
            after_association=self.after_association(
                node.get("after_association", {}), _join(path, "after_association"), after
            ),
        )

    def after_association(self, value: Any, path: str, base: AfterAssociation) -> AfterAssociation:
        """Steps given here replace the same fields of ``base``; others are inherited."""
        node = self.mapping(value, path, set(_RESULTS))
        steps = {
            name: self.step(name, raw, _join(path, name), getattr(base, name))
            for name, raw in node.items()
        }
        return replace(base, **steps)

    def step(self, name: str, value: Any, path: str, base: _S) -> _S:
        allowed = {f.name for f in fields(base)}  # type: ignore[arg-type]
        node = self.mapping(value, path, allowed)
        changes: dict[str, Any] = {}
        for key, raw in node.items():
            where = _join(path, key)
            if key == "delay_ms":
                changes[key] = self.integer(raw, where, 0, _MAX_DELAY_MS)
            elif key == "result":
                changes[key] = self.choice(raw, where, _RESULTS[name])
            elif key in ("ip", "gateway"):
                changes[key] = self.ip(raw, where)
            elif key == "dns":
                if not isinstance(raw, list) or not 1 <= len(raw) <= 3:
                    raise self.error(where, "must be a list of 1 to 3 IP addresses")
                changes[key] = tuple(self.ip(v, f"{where}[{i}]") for i, v in enumerate(raw))
            elif key == "login_url":
                url = self.text(raw, where)
                if not url.startswith(("http://", "https://")):
                    raise self.error(where, f"must be an http:// or https:// URL, not {url!r}")
                changes[key] = url
        step = replace(base, **changes)  # type: ignore[type-var]
        if isinstance(step, CaptivePortalStep) and step.result == "portal" and not step.login_url:
            raise self.error(_join(path, "login_url"), "a portal needs a login_url")
        return step


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
