"""Scenario files: :func:`load_scenario` finds and reads one (checked by :data:`.spec.MODEL`),
:func:`parse_scenario` builds the :class:`~.model.Scenario` and checks what a schema cannot (the
channel against the band, the passphrase against the security mode, unique BSSIDs)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import device_sim

from ...codes import Code
from ...document import check_document
from ...errors import ConfigError, ConfigErrors, NetworkError
from ...schema import (
    BAD,
    Errors,
    err,
    good,
    join_path,
    load_yaml,
)
from ..base import AccessPoint, Band, Security, validate_credentials
from ..eap import EapMethod, Phase2
from .model import (
    DEFAULT_MIN_RSSI_DBM,
    ENV_SCENARIOS,
    TARGETED,
    AfterAssociation,
    CaptivePortalStep,
    CloudBehaviour,
    DefaultCredentials,
    DeviceRadio,
    EapRecipe,
    History,
    RadiusAccount,
    RadiusServer,
    Scenario,
    ScenarioAccessPoint,
    Step,
    Story,
    StoryPhone,
    TimelineStep,
)
from .spec import (
    MODEL,
)

# -- locating files -------------------------------------------------------------------------------


def scenarios_dir() -> Path:
    """Where bare scenario names resolve: ``$DEVICE_SIM_SCENARIOS``, or the shipped ones (the
    package's ``data/scenarios``, a link to the repo's ``scenarios/`` in a checkout)."""
    env = os.environ.get(ENV_SCENARIOS)
    if env:
        return Path(env)
    return Path(device_sim.__file__).resolve().parent / "data" / "scenarios"


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
        key = (str(path.resolve()), source, hashlib.sha256(path.read_bytes()).digest())
    except OSError:
        key = None  # load_yaml says why
    if key is not None and key in _parsed:
        return _parsed[key]
    scenario = parse_scenario(load_yaml(path, source), source, expected_name=path.stem)
    if key is not None:
        if len(_parsed) >= _PARSED_MAX:
            _parsed.pop(next(iter(_parsed)))
        _parsed[key] = scenario
    return scenario


# Scenarios are frozen: a fleet's thousand devices of one world share one parse of its file
# (the file is read each time: other bytes are parsed again).
_parsed: dict[tuple[str, str, bytes], Scenario] = {}
_PARSED_MAX = 64


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


# -- validation -----------------------------------------------------------------------------------


def parse_scenario(data: Any, source: str, *, expected_name: str | None = None) -> Scenario:
    """Validate already-loaded YAML data into a :class:`Scenario`.

    Raises ConfigErrors listing every problem (``where`` and ``problem`` are the first's)."""
    check_document(data, source)
    errors: Errors = []
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

    def __init__(self, errors: Errors) -> None:
        self.errors = errors

    def scenario(self, top: dict[str, Any], expected_name: str | None) -> Scenario | None:
        top, _ = good(top)
        name = top.get("name")
        if expected_name is not None and name is not None and name != expected_name:
            err(self.errors, "name", f"must match the file name {expected_name!r}, not {name!r}")
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
                err(
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
        device, _ = good(top.get("device", {}))
        clock, _ = good(device.get("clock", {}))
        cloud = self.cloud(good(top.get("cloud", {}))[0])
        good_aps = [sap for sap in aps if sap is not None]
        timeline = tuple(
            step
            for i, raw in enumerate(top.get("timeline", []))
            if (step := self.timeline_step(good(raw)[0], f"timeline[{i}]", good_aps))
        )
        history = self.history(good(top["history"])[0]) if "history" in top else None
        story = self.story(good(top["story"])[0]) if "story" in top else None
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
                err(self.errors, join_path(path, "bssid"), "no access point has this bssid")
        elif ssid is not None:
            bssids = tuple(s.ap.bssid for s in aps if s.ap.ssid == ssid)
            target = _ssid_text(ssid)
            if not bssids:
                err(self.errors, join_path(path, "ssid"), "no access point has this SSID")
        else:
            bssids, target = (), "every network"
            if action in TARGETED and not named:
                err(self.errors, join_path(path, "ssid"), f"{action} needs an ssid or a bssid")
        passphrase = node.get("passphrase")
        if action == "passphrase":
            if "passphrase" not in node:
                err(self.errors, join_path(path, "passphrase"), "the new key is missing")
            elif ssid is not None or bssids:
                security = next((s.ap.security for s in aps if s.ap.bssid in bssids), None)
                probe = ssid if ssid is not None else b"x"
                try:
                    validate_credentials(probe, passphrase, security)
                except NetworkError as exc:
                    err(self.errors, join_path(path, "passphrase"), exc.detail)
        elif "passphrase" in node:
            err(self.errors, join_path(path, "passphrase"), f"{action} takes no passphrase")
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
            net, _ = good(raw)
            path = f"history.networks[{i}]"
            ssid = self.ssid(net, path)
            if ssid is None:
                continue
            passphrase = net.get("passphrase")
            try:
                validate_credentials(ssid, passphrase, None)
            except NetworkError as exc:
                err(self.errors, join_path(path, "passphrase"), exc.detail)
            networks.append(DefaultCredentials(ssid, passphrase, net.get("hidden", False)))
        seen = [n.ssid for n in networks]
        if len(set(seen)) != len(seen):
            err(self.errors, "history.networks", "lists a network twice")
        if not networks:
            if "networks" in node:
                err(self.errors, "history.networks", "lists no network")
            return None
        return History(tuple(networks), node.get("online", True))

    def story(self, node: dict[str, Any]) -> Story:
        phone = None
        if "phone" in node:
            raw, _ = good(node["phone"])
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
            err(self.errors, "cloud.mode", "a claim token expires only in claim mode")
        return cloud

    def ssid(self, node: Mapping[str, Any], path: str) -> bytes | None:
        if ("ssid" in node) == ("ssid_hex" in node):
            # both, or neither (a bad value was already reported and dropped)
            if "ssid" in node or not self._reported(path, ("ssid", "ssid_hex")):
                err(self.errors, join_path(path, "ssid"), "give exactly one of ssid or ssid_hex")
            return None
        if "ssid" in node:
            ssid, where = node["ssid"].encode("utf-8"), join_path(path, "ssid")
        else:
            where = join_path(path, "ssid_hex")
            try:
                ssid = bytes.fromhex(node["ssid_hex"])
            except ValueError:
                err(self.errors, where, f"not an even number of hex digits: {node['ssid_hex']!r}")
                return None
        if not 1 <= len(ssid) <= 32:
            err(self.errors, where, f"an SSID is 1 to 32 bytes, this one is {len(ssid)}")
            return None
        return ssid

    def _reported(self, path: str, keys: tuple[str, ...]) -> bool:
        wheres = {join_path(path, k) for k in keys}
        return any(e.where in wheres for e in self.errors)

    def credentials(self, node: dict[str, Any], path: str) -> DefaultCredentials | None:
        node, _ = good(node)
        ssid = self.ssid(node, path)
        if ssid is None:
            return None
        eap = (
            self.eap_recipe(good(node["eap"])[0], join_path(path, "eap")) if "eap" in node else None
        )
        if eap is not None and node.get("passphrase") is not None:
            err(self.errors, join_path(path, "passphrase"), "an enterprise sign-in takes none")
        return DefaultCredentials(
            ssid=ssid,
            passphrase=node.get("passphrase"),
            hidden=node.get("hidden", False),
            expect=node.get("expect", Code.OK),
            eap=eap,
        )

    def eap_recipe(self, node: dict[str, Any], path: str) -> EapRecipe | None:
        if "method" not in node or "identity" not in node:
            return None
        method = EapMethod(node["method"])
        tls = method is EapMethod.TLS
        if tls != ("client_cert" in node):
            err(self.errors, join_path(path, "client_cert"), "EAP-TLS, and only EAP-TLS, has one")
        if tls == ("password" in node):
            err(self.errors, join_path(path, "password"), "PEAP and TTLS, not EAP-TLS, have one")
        return EapRecipe(
            method=method,
            identity=node["identity"],
            phase2=Phase2(node["phase2"]) if "phase2" in node else None,
            anonymous_identity=node.get("anonymous_identity"),
            password=node.get("password"),
            ca_cert=node.get("ca_cert", "world"),
            domain=node.get("domain"),
            client_cert=node.get("client_cert"),
        )

    def radius(self, node: dict[str, Any], path: str, security: Security) -> RadiusServer | None:
        if security is not Security.ENTERPRISE:
            err(
                self.errors,
                path,
                f"only an enterprise BSS has an authentication server, not {security}",
            )
        if "methods" not in node:
            return None
        accounts = tuple(
            RadiusAccount(a["identity"], a.get("password"))
            for raw in node.get("accounts", [])
            if "identity" in (a := good(raw)[0])
        )
        return RadiusServer(
            methods=node["methods"],
            issuer=node.get("issuer", "world"),
            name=node.get("name", RadiusServer.name),
            accounts=accounts,
        )

    def access_point(
        self, node: dict[str, Any], path: str, index: int, after: AfterAssociation
    ) -> ScenarioAccessPoint | None:
        node, bad = good(node)
        ssid = self.ssid(node, path)
        if "security" not in node or "band" in bad:
            return None
        band = Band(node.get("band", str(Band.GHZ_2_4)))
        security = Security(node["security"])
        channel = node.get("channel", _DEFAULT_CHANNEL[band])
        if channel not in _CHANNELS[band]:
            allowed = _CHANNELS[band]
            err(
                self.errors,
                join_path(path, "channel"),
                f"{channel} is not a {band} channel ({allowed[0]}..{allowed[-1]})",
            )
        bssid = node.get("bssid", f"02:00:00:00:{index >> 8:02x}:{index & 0xFF:02x}")
        passphrase = node.get("passphrase")
        if ssid is not None and (security.needs_passphrase or security is Security.OPEN):
            try:
                validate_credentials(ssid, passphrase, security)
            except NetworkError as exc:
                err(self.errors, join_path(path, "passphrase"), exc.detail)
        steering = node.get("band_steering", False)
        if steering and band is not Band.GHZ_2_4:
            err(
                self.errors,
                join_path(path, "band_steering"),
                "band steering holds clients off a 2.4GHz BSS; this one is 5GHz",
            )
        steps = self.after_association(
            node.get("after_association", {}), join_path(path, "after_association"), after
        )
        radius = (
            self.radius(good(node["eap"])[0], join_path(path, "eap"), security)
            if "eap" in node
            else None
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
            radius=radius,
        )

    def after_association(
        self, node: dict[str, Any], path: str, base: AfterAssociation
    ) -> AfterAssociation:
        """Steps given here replace the same fields of ``base``; others are inherited."""
        node, _ = good(node)
        steps = {
            name: self.step(good(raw)[0], join_path(path, name), getattr(base, name))
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
                err(
                    self.errors,
                    join_path(path, "login_url"),
                    f"must be an http:// or https:// URL, not {step.login_url!r}",
                )
            if (step.result == "portal" or step.fail_probability > 0) and not step.login_url:
                err(self.errors, join_path(path, "login_url"), "a portal needs a login_url")
        return step


def _ssid_text(ssid: bytes) -> str:
    try:
        return repr(ssid.decode("utf-8"))
    except UnicodeDecodeError:
        return f"0x{ssid.hex()}"
