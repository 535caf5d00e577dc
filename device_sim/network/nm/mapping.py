"""Pure translations between NetworkManager's D-Bus shapes and device-sim's models (no I/O).

* access-point properties -> :class:`~device_sim.network.base.AccessPoint` (security from the
  flags, band and channel from the frequency, RSSI from the strength percentage);
* connection settings (``a{sa{sv}}`` as dbus-fast Variants) for a station join and for the
  SoftAP hotspot;
* a failed activation (device state + state reason) -> diagnostic code and detail.

Nothing here ever puts a passphrase into a detail, ``raw`` dict or log line: :func:`redacted`
gives a printable copy of settings.
"""

from __future__ import annotations

import socket
import struct
import uuid as uuid_mod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from dbus_fast import Variant

from ...codes import Code
from ...errors import NetworkError
from ..base import AccessPoint, AccessPointConfig, Band, Security
from ..eap import EapSettings
from .defs import ApFlags, ApSecurityFlags, DeviceState, DeviceStateReason

__all__ = [
    "CONNECTION_ID_PREFIX",
    "Activation",
    "Outcome",
    "Settings",
    "access_point",
    "band_and_channel",
    "captive_conf",
    "describe",
    "failure_for",
    "hotspot_settings",
    "join_error",
    "lease",
    "nm_raw",
    "redacted",
    "rssi_from_strength",
    "security_from_flags",
    "ssid_label",
    "station_settings",
    "timeout_failure",
]

Settings = dict[str, dict[str, Variant]]
"""Connection settings as NetworkManager takes them (``a{sa{sv}}``)."""

CONNECTION_ID_PREFIX = "device-sim"
_SECRET_KEYS = frozenset({"psk", "wep-key0", "wep-key1", "wep-key2", "wep-key3", "password"})


# -- scan results ---------------------------------------------------------------------------------


def rssi_from_strength(strength: int) -> int:
    """Signal in dBm from NetworkManager's ``Strength`` percentage.

    NetworkManager turns wpa_supplicant's dBm level into a percentage linearly between -100 dBm
    (0 %) and -40 dBm (100 %) (``nm_wifi_utils_level_to_quality``); this is its inverse:
    ``dBm = -100 + 0.6 * strength``, rounded, with the strength clamped to 0..100, so the result
    lies in -100..-40 dBm. Approximate: the percentage has lost the precision.
    """
    strength = min(max(int(strength), 0), 100)
    return round(-100 + 0.6 * strength)


def band_and_channel(frequency_mhz: int) -> tuple[Band, int] | None:
    """Band and channel number of a centre frequency in MHz; None when it is not a Wi-Fi channel.

    2412-2472 MHz are 2.4 GHz channels 1-13, 2484 MHz is channel 14; 5 GHz channels are
    ``(f - 5000) / 5``. :class:`Band` has no 6 GHz member, so 6 GHz BSSes (5955-7115 MHz) are
    reported as ``5GHz`` with their 6 GHz channel number ``(f - 5950) / 5``.
    """
    f = int(frequency_mhz)
    if f == 2484:
        return Band.GHZ_2_4, 14
    if 2412 <= f <= 2472 and (f - 2407) % 5 == 0:
        return Band.GHZ_2_4, (f - 2407) // 5
    if 5000 < f < 5950 and f % 5 == 0:
        return Band.GHZ_5, (f - 5000) // 5
    if 5950 < f <= 7125 and (f - 5950) % 5 == 0:
        return Band.GHZ_5, (f - 5950) // 5  # 6 GHz: no Band of its own (see the docstring)
    return None


def security_from_flags(flags: int, wpa_flags: int, rsn_flags: int) -> Security:
    """The security mode an AP advertises, from its ``Flags``, ``WpaFlags`` and ``RsnFlags``.

    802.1X (or Suite-B) key management -> enterprise; SAE and PSK -> wpa2-wpa3 (transition);
    SAE -> wpa3-sae; PSK -> wpa2-psk; OWE -> owe (Enhanced Open), the open BSS of an OWE
    transition pair -> open; no WPA/RSN flags: PRIVACY -> wep, else open.
    """
    sec = ApSecurityFlags(int(wpa_flags) | int(rsn_flags))
    if sec & (ApSecurityFlags.KEY_MGMT_802_1X | ApSecurityFlags.KEY_MGMT_EAP_SUITE_B_192):
        return Security.ENTERPRISE
    sae, psk = sec & ApSecurityFlags.KEY_MGMT_SAE, sec & ApSecurityFlags.KEY_MGMT_PSK
    if sae and psk:
        return Security.WPA2_WPA3
    if sae:
        return Security.WPA3_SAE
    if psk:
        return Security.WPA2_PSK
    if sec & ApSecurityFlags.KEY_MGMT_OWE:
        return Security.OWE
    if sec & ApSecurityFlags.KEY_MGMT_OWE_TM:
        return Security.OPEN  # the open half of an OWE transition pair: joined as open
    if sec == ApSecurityFlags.NONE and not int(flags) & ApFlags.PRIVACY:
        return Security.OPEN
    if sec == ApSecurityFlags.NONE:
        return Security.WEP
    return Security.ENTERPRISE  # only ciphers, no key management we know: we cannot join it


def access_point(props: Mapping[str, Any]) -> AccessPoint | None:
    """An :class:`AccessPoint` from one AP's properties (values already unwrapped).

    An empty ``Ssid`` is a hidden network (``ssid=b""``, ``hidden=True``). Returns None when the
    frequency is no Wi-Fi channel (NetworkManager briefly reports 0 for a vanishing BSS).
    """
    where = band_and_channel(int(props.get("Frequency", 0)))
    if where is None:
        return None
    ssid = bytes(props.get("Ssid", b""))
    return AccessPoint(
        ssid=ssid,
        bssid=str(props.get("HwAddress", "")).lower(),
        band=where[0],
        channel=where[1],
        rssi=rssi_from_strength(int(props.get("Strength", 0))),
        security=security_from_flags(
            int(props.get("Flags", 0)), int(props.get("WpaFlags", 0)), int(props.get("RsnFlags", 0))
        ),
        hidden=not ssid,
    )


# -- connection settings --------------------------------------------------------------------------


def ssid_label(ssid: bytes) -> str:
    """The SSID as text when it is printable UTF-8, else ``0x`` + hex (for ids and details)."""
    try:
        text = ssid.decode("utf-8")
    except UnicodeDecodeError:
        return f"0x{ssid.hex()}"
    return text if text.isprintable() else f"0x{ssid.hex()}"


def station_settings(
    ssid: bytes,
    passphrase: str | None,
    key_mgmt: str,
    *,
    hidden: bool = False,
    uuid: str | None = None,
    eap: EapSettings | None = None,
    files: Mapping[str, Path] | None = None,
) -> Settings:
    """Settings that join ``ssid`` as a station, with DHCP for IPv4 and automatic IPv6.

    ``key_mgmt`` is NetworkManager's ``802-11-wireless-security.key-mgmt``: ``sae`` (WPA3
    personal), ``wpa-psk`` (WPA2, and a transition network joined as WPA2; it also takes a
    64-hex raw key), ``owe`` (Enhanced Open: the section without a key) or ``none`` (open: no
    security section). Which one a join tries is :func:`~device_sim.network.base.
    key_mgmts_to_try`'s choice. ``hidden`` sets ``802-11-wireless.hidden``: NetworkManager then
    sends directed probe requests for the SSID; it does not learn a hidden network's security
    from them, so the key management must be given.
    ``connection.id`` is ``device-sim <ssid>`` so people can tell the profile apart in ``nmcli``.
    Autoconnect is off: the device's engine owns reconnecting (see :mod:`.backend`).
    ``wpa-eap`` (enterprise) takes ``eap`` and the certificate ``files`` it was written to
    (:func:`eap_settings`).
    """
    if key_mgmt not in ("none", "owe", "sae", "wpa-psk", "wpa-eap"):
        raise ValueError(f"unknown key management {key_mgmt!r}")
    settings: Settings = {
        "connection": {
            "id": Variant("s", f"{CONNECTION_ID_PREFIX} {ssid_label(ssid)}"),
            "uuid": Variant("s", uuid or str(uuid_mod.uuid4())),
            "type": Variant("s", "802-11-wireless"),
            "autoconnect": Variant("b", False),
        },
        "802-11-wireless": {
            "ssid": Variant("ay", bytes(ssid)),
            "mode": Variant("s", "infrastructure"),
        },
        "ipv4": {"method": Variant("s", "auto")},
        "ipv6": {"method": Variant("s", "auto")},
    }
    if hidden:
        settings["802-11-wireless"]["hidden"] = Variant("b", True)
    if key_mgmt == "wpa-eap":
        if eap is None:
            raise ValueError("wpa-eap needs the EAP settings")
        settings["802-11-wireless-security"] = {"key-mgmt": Variant("s", "wpa-eap")}
        settings["802-1x"] = eap_settings(eap, files or {})
    elif key_mgmt == "owe":
        settings["802-11-wireless-security"] = {"key-mgmt": Variant("s", "owe")}
    elif key_mgmt != "none" and passphrase:
        settings["802-11-wireless-security"] = {
            "key-mgmt": Variant("s", key_mgmt),
            "psk": Variant("s", passphrase),
        }
    return settings


EAP_FILES = {"ca_cert": "ca.pem", "client_cert": "client.pem", "private_key": "client.key"}
"""The files an enterprise profile's certificates are written to (mode 0600), by field."""


def file_path(path: Path) -> bytes:
    """A certificate setting's path scheme: ``file://`` + the absolute path + NUL."""
    return b"file://" + bytes(path.resolve()) + b"\0"


def eap_settings(eap: EapSettings, files: Mapping[str, Path]) -> dict[str, Variant]:
    """The ``802-1x`` setting for ``eap``, its certificates and key named by path (``files``,
    keys of :data:`EAP_FILES`: NetworkManager reads them when it activates).

    ``eap`` (as) the method; ``identity`` and ``anonymous-identity``; PEAP and TTLS:
    ``password`` (a secret: NetworkManager keeps it in its secret store) and ``phase2-auth``;
    the server check: ``ca-cert`` when a CA certificate was sent, else ``system-ca-certs`` (the
    system store), and ``domain-suffix-match``; EAP-TLS: ``client-cert`` and ``private-key``,
    and ``private-key-password-flags`` 4 (not required: the key file is not encrypted).
    """
    out: dict[str, Variant] = {
        "eap": Variant("as", [str(eap.method)]),
        "identity": Variant("s", eap.identity),
    }
    if eap.anonymous_identity:
        out["anonymous-identity"] = Variant("s", eap.anonymous_identity)
    if eap.password is not None:
        out["password"] = Variant("s", eap.password.reveal())
    if eap.phase2 is not None:
        out["phase2-auth"] = Variant("s", str(eap.phase2))
    if "ca_cert" in files:
        out["ca-cert"] = Variant("ay", file_path(files["ca_cert"]))
    else:
        out["system-ca-certs"] = Variant("b", True)
    if eap.domain:
        out["domain-suffix-match"] = Variant("s", eap.domain)
    if "client_cert" in files and "private_key" in files:
        out["client-cert"] = Variant("ay", file_path(files["client_cert"]))
        out["private-key"] = Variant("ay", file_path(files["private_key"]))
        out["private-key-password-flags"] = Variant("u", 4)
    return out


def hotspot_settings(
    config: AccessPointConfig, *, uuid: str | None = None, interface: str | None = None
) -> Settings:
    """Settings for the device's own access point (NetworkManager "shared" mode).

    NetworkManager gives the device ``config.address``/24 and runs dnsmasq for DHCP and DNS.
    WPA2-PSK (RSN, CCMP only) with ``config.passphrase``, or open when it is None.
    """
    wireless: dict[str, Variant] = {
        "ssid": Variant("ay", config.ssid.encode("utf-8")),
        "mode": Variant("s", "ap"),
        "band": Variant("s", "a" if config.band is Band.GHZ_5 else "bg"),
        "channel": Variant("u", int(config.channel)),
    }
    connection: dict[str, Variant] = {
        "id": Variant("s", f"{CONNECTION_ID_PREFIX} hotspot {config.ssid}"),
        "uuid": Variant("s", uuid or str(uuid_mod.uuid4())),
        "type": Variant("s", "802-11-wireless"),
        "autoconnect": Variant("b", False),
    }
    if interface:
        connection["interface-name"] = Variant("s", interface)
    settings: Settings = {
        "connection": connection,
        "802-11-wireless": wireless,
        "ipv4": {
            "method": Variant("s", "shared"),
            "address-data": Variant(
                "aa{sv}", [{"address": Variant("s", config.address), "prefix": Variant("u", 24)}]
            ),
        },
        "ipv6": {"method": Variant("s", "ignore")},
    }
    if config.passphrase is not None:
        settings["802-11-wireless-security"] = {
            "key-mgmt": Variant("s", "wpa-psk"),
            "psk": Variant("s", config.passphrase.reveal()),
            "proto": Variant("as", ["rsn"]),
            "pairwise": Variant("as", ["ccmp"]),
            "group": Variant("as", ["ccmp"]),
        }
    return settings


def redacted(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A printable copy of settings with every secret replaced by ``"<redacted>"``."""
    out: dict[str, dict[str, Any]] = {}
    for group, values in settings.items():
        out[group] = {}
        for key, value in values.items():
            plain = value.value if isinstance(value, Variant) else value
            out[group][key] = "<redacted>" if key in _SECRET_KEYS else plain
    return out


# -- failures -------------------------------------------------------------------------------------


def _name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return f"UNKNOWN_{int(value)}"


def describe(state: int, reason: int) -> str:
    """``state NEED_AUTH (60), reason NO_SECRETS (7)``: NetworkManager's numbers, named."""
    return (
        f"state {_name(DeviceState, state)} ({int(state)}), "
        f"reason {_name(DeviceStateReason, reason)} ({int(reason)})"
    )


def nm_raw(state: int, reason: int) -> dict[str, Any]:
    """The raw NetworkManager state and reason for an error's ``raw`` dict."""
    return {
        "nm_state": _name(DeviceState, state),
        "nm_state_value": int(state),
        "nm_reason": _name(DeviceStateReason, reason),
        "nm_reason_value": int(reason),
    }


_DHCP_REASONS = frozenset(
    {
        DeviceStateReason.IP_CONFIG_UNAVAILABLE,
        DeviceStateReason.IP_CONFIG_EXPIRED,
        DeviceStateReason.DHCP_START_FAILED,
        DeviceStateReason.DHCP_ERROR,
        DeviceStateReason.DHCP_FAILED,
    }
)


def failure_for(
    state: int,
    reason: int,
    *,
    ssid: bytes,
    scan_security: Security | None,
    need_auth_seen: bool = False,
    enterprise: bool = False,
) -> tuple[Code, str]:
    """The diagnostic code and detail for an activation that failed from ``state`` with ``reason``.

    ``state`` is the device state the failure left (the StateChanged "old" state);
    ``need_auth_seen`` tells whether the activation passed through NEED_AUTH before it;
    ``scan_security`` is what the last scan said about ``ssid`` (None: not seen).

    * NO_SECRETS or SUPPLICANT_DISCONNECT in or after NEED_AUTH -> WRONG_CREDENTIALS;
    * SSID_NOT_FOUND -> NETWORK_NOT_FOUND, but WRONG_CREDENTIALS when the scan showed a WPA3-SAE
      network of that name (wpa_supplicant disables a network after failed SAE authentication,
      which NetworkManager reports as "SSID not found");
    * SUPPLICANT_TIMEOUT -> ASSOCIATION_TIMEOUT;
    * IP_CONFIG_UNAVAILABLE, IP_CONFIG_EXPIRED, DHCP_START_FAILED/ERROR/FAILED -> NO_DHCP_LEASE;
    * anything else -> JOIN_FAILED.

    An enterprise join (``enterprise``, key-mgmt wpa-eap) maps the supplicant's failures
    itself: NO_SECRETS or SUPPLICANT_DISCONNECT in or after NEED_AUTH -> EAP_CREDENTIALS_REJECTED
    (NetworkManager cannot tell a wrong password, an unknown identity and an untrusted server
    certificate apart, and the detail says so), SUPPLICANT_CONFIG_FAILED ->
    EAP_SETTINGS_INVALID (wpa_supplicant refused the settings or could not read a file).

    The detail always ends with NetworkManager's state and reason, named and numbered.
    """
    nm = f"(NetworkManager: {describe(state, reason)})"
    name = ssid_label(ssid)
    in_auth = need_auth_seen or state == DeviceState.NEED_AUTH
    if enterprise:
        if reason in (DeviceStateReason.NO_SECRETS, DeviceStateReason.SUPPLICANT_DISCONNECT) and (
            in_auth or reason == DeviceStateReason.NO_SECRETS
        ):
            return (
                Code.EAP_CREDENTIALS_REJECTED,
                f"{name}'s 802.1X sign-in failed: the password or identity was rejected, or the "
                f"server's certificate was not trusted (NetworkManager reports these alike) {nm}",
            )
        if reason == DeviceStateReason.SUPPLICANT_CONFIG_FAILED:
            return (
                Code.EAP_SETTINGS_INVALID,
                f"wpa_supplicant refused {name}'s 802.1X settings or could not read a "
                f"certificate file {nm}",
            )
    if (
        reason in (DeviceStateReason.NO_SECRETS, DeviceStateReason.SUPPLICANT_DISCONNECT)
        and in_auth
    ):
        return Code.WRONG_CREDENTIALS, f"{name} rejected the passphrase {nm}"
    if reason == DeviceStateReason.SSID_NOT_FOUND:
        if scan_security is Security.WPA3_SAE:
            return (
                Code.WRONG_CREDENTIALS,
                f"{name} is a WPA3 network, which reports a wrong password as 'network not "
                f"found'; the scan saw it, so the passphrase is most likely wrong {nm}",
            )
        return Code.NETWORK_NOT_FOUND, f"no access point with SSID {name} answered {nm}"
    if reason == DeviceStateReason.SUPPLICANT_TIMEOUT:
        return (
            Code.ASSOCIATION_TIMEOUT,
            f"{name} did not complete association in time (weak signal?) {nm}",
        )
    if reason in _DHCP_REASONS:
        return Code.NO_DHCP_LEASE, f"associated with {name} but got no IPv4 address (DHCP) {nm}"
    if reason == DeviceStateReason.SUPPLICANT_DISCONNECT:
        return (
            Code.JOIN_FAILED,
            f"{name} disconnected during association (a wrong passphrase or a weak signal) {nm}",
        )
    return Code.JOIN_FAILED, f"joining {name} failed {nm}"


def timeout_failure(state: int, *, ssid: bytes, timeout: float) -> tuple[Code, str]:
    """Code and detail when NetworkManager neither activated nor failed within ``timeout`` s.

    Stuck in IP_CONFIG -> NO_DHCP_LEASE; in PREPARE or CONFIG (association) ->
    ASSOCIATION_TIMEOUT; otherwise JOIN_FAILED.
    """
    nm = f"(NetworkManager: last {describe(state, DeviceStateReason.NONE).split(', ')[0]})"
    name = ssid_label(ssid)
    if state == DeviceState.IP_CONFIG:
        return Code.NO_DHCP_LEASE, f"no IPv4 address from {name} within {timeout:g} s {nm}"
    if state in (DeviceState.PREPARE, DeviceState.CONFIG):
        return Code.ASSOCIATION_TIMEOUT, f"{name} did not associate within {timeout:g} s {nm}"
    return Code.JOIN_FAILED, f"joining {name} did not finish within {timeout:g} s {nm}"


def join_error(
    outcome: Outcome,
    *,
    ssid: bytes,
    scan_security: Security | None,
    timeout: float,
    enterprise: bool = False,
) -> NetworkError:
    """The NetworkError for a failed (or timed-out) station activation; raw holds NM's numbers."""
    if outcome.timed_out:
        code, detail = timeout_failure(outcome.state, ssid=ssid, timeout=timeout)
    else:
        code, detail = failure_for(
            outcome.state,
            outcome.reason,
            ssid=ssid,
            scan_security=scan_security,
            need_auth_seen=outcome.need_auth,
            enterprise=enterprise,
        )
    return NetworkError(
        code, detail, raw={"ssid_hex": ssid.hex(), **nm_raw(outcome.state, outcome.reason)}
    )


# -- following an activation ----------------------------------------------------------------------

_ACTIVATING = frozenset(
    {
        DeviceState.PREPARE,
        DeviceState.CONFIG,
        DeviceState.NEED_AUTH,
        DeviceState.IP_CONFIG,
        DeviceState.IP_CHECK,
        DeviceState.SECONDARIES,
    }
)


@dataclass(frozen=True)
class Outcome:
    """How an activation ended: ``state`` is the state a failure left (or the last one seen)."""

    ok: bool
    state: int = 0
    reason: int = 0
    need_auth: bool = False
    timed_out: bool = False


class Activation:
    """Reads a device's ``StateChanged(new, old, reason)`` events for one activation.

    Events before the activation starts (PREPARE or a later activating state), e.g. the previous
    connection going down, are ignored. ACTIVATED ends it well; FAILED, or DISCONNECTED after the
    start, ends it badly.
    """

    def __init__(self) -> None:
        self.started = False
        self.need_auth = False
        self.last: int = DeviceState.UNKNOWN
        self.outcome: Outcome | None = None

    def feed(self, new: int, old: int, reason: int) -> bool:
        """Take one event; True when it belongs to the activation (then check :attr:`outcome`)."""
        if self.outcome is not None:
            return False
        self.started = self.started or new in _ACTIVATING
        if not self.started:
            return False
        self.last = new
        self.need_auth = self.need_auth or new == DeviceState.NEED_AUTH
        if new == DeviceState.ACTIVATED:
            self.outcome = Outcome(True)
        elif new in (DeviceState.FAILED, DeviceState.DISCONNECTED):
            self.outcome = Outcome(False, old, reason, self.need_auth)
        return True

    def timed_out(self) -> Outcome:
        """The outcome when no end came in time."""
        return Outcome(False, self.last, DeviceStateReason.NONE, self.need_auth, timed_out=True)


# -- IP configuration and the captive DNS file ----------------------------------------------------


def _ipv4(value: int) -> str:
    """NetworkManager's legacy u32 IPv4 (network byte order in memory) as dotted text."""
    return socket.inet_ntoa(struct.pack("=I", int(value)))


def lease(props: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """(address, gateway, DNS servers) from IP4Config properties (unwrapped); "" when absent.

    Reads ``AddressData``/``NameserverData`` (NetworkManager >= 1.14), else the legacy
    ``Addresses``/``Nameservers`` (u32 in network byte order).
    """
    ip = next((str(a["address"]) for a in props.get("AddressData", []) if "address" in a), "")
    ip = ip or next((_ipv4(a[0]) for a in props.get("Addresses", []) if a), "")
    dns = tuple(str(d["address"]) for d in props.get("NameserverData", []) if "address" in d)
    dns = dns or tuple(_ipv4(n) for n in props.get("Nameservers", []))
    return ip, str(props.get("Gateway", "")), dns


def captive_conf(address: str, api_url: str) -> str:
    """dnsmasq lines for NetworkManager's shared-mode dnsmasq: every DNS name answers
    ``address``; DHCP hands out ``api_url`` as option 114 (RFC 8910 captive-portal API)."""
    return (
        "# written by device-sim while its setup access point is up; removed after\n"
        f'address=/#/{address}\ndhcp-option=114,"{api_url}"\n'
    )
