"""The network backend interface: what the onboarding engine asks of Wi-Fi.

One abstract class, :class:`NetworkBackend`, with a simulated implementation (scenario files, for
CI and QA benches) and a NetworkManager one over D-Bus (Raspberry Pi). Both raise the same
:class:`~device_sim.errors.NetworkError` codes, so the engine and the phone see one behaviour.
"""

from __future__ import annotations

import abc
import asyncio
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from ..codes import Code
from ..errors import NetworkError
from ..lifecycle import Component
from ..security.secret import Secret
from .eap import EapSettings

__all__ = [
    "AccessPoint",
    "AccessPointConfig",
    "BackendKind",
    "Band",
    "JoinResult",
    "NetworkBackend",
    "Phase",
    "PhaseCallback",
    "Security",
    "SettingsStore",
    "WorldNote",
    "cannot_join",
    "contradicts",
    "key_mgmts_to_try",
    "security_for_join",
    "validate_credentials",
]


class Band(StrEnum):
    """Wi-Fi frequency band of one BSS."""

    GHZ_2_4 = "2.4GHz"
    GHZ_5 = "5GHz"


class Security(StrEnum):
    """Security mode an access point advertises."""

    OPEN = "open"
    OWE = "owe"  # Enhanced Open (RFC 8110): encrypted, no passphrase
    WEP = "wep"
    WPA2_PSK = "wpa2-psk"
    WPA3_SAE = "wpa3-sae"
    WPA2_WPA3 = "wpa2-wpa3"
    ENTERPRISE = "enterprise"

    @property
    def needs_passphrase(self) -> bool:
        """True for WPA2/WPA3 personal networks."""
        return self in (Security.WPA2_PSK, Security.WPA3_SAE, Security.WPA2_WPA3)

    @property
    def key_mgmts(self) -> tuple[str, ...]:
        """The key managements (NetworkManager's ``key-mgmt`` names, ``none`` for open) an
        access point of this mode accepts: a transition network takes SAE and PSK."""
        return _KEY_MGMTS.get(self, ())


_KEY_MGMTS = {
    Security.OPEN: ("none",),
    Security.OWE: ("owe",),
    Security.WPA2_PSK: ("wpa-psk",),
    Security.WPA3_SAE: ("sae",),
    Security.WPA2_WPA3: ("sae", "wpa-psk"),
    Security.ENTERPRISE: ("wpa-eap",),
}


def contradicts(requested: Security | None, scanned: Security | None) -> bool:
    """The app sent a mode the network's beacons rule out (both known, no key management in
    common): SECURITY_MISMATCH before any try."""
    if requested is None or scanned is None:
        return False
    return not set(requested.key_mgmts) & set(scanned.key_mgmts)


def cannot_join(mode: Security | None, eap: EapSettings | None) -> bool:
    """``mode`` (the scan's or the app's) is one the device cannot join with what it was
    given: WEP, or enterprise without EAP settings (UNSUPPORTED_SECURITY)."""
    return mode is Security.WEP or (mode is Security.ENTERPRISE and eap is None)


def security_for_join(
    label: str,
    requested: Security | None,
    scanned: Security | None,
    eap: EapSettings | None,
    *,
    actual: Security | None = None,
) -> Security | None:
    """The mode a join asks for (``requested``, the app's; enterprise when it sent EAP
    settings), checked before any try against ``scanned`` (what the beacons said; None: a
    hidden or unseen network) and ``actual`` (what the network is, when the backend knows more
    than its beacons: the simulated world; default ``scanned``).

    Raises NetworkError (phase scanning): UNSUPPORTED_SECURITY for WEP, or enterprise without
    EAP settings; SECURITY_MISMATCH when the beacons rule the app's mode out.
    """
    for mode in (actual if actual is not None else scanned, requested):
        if cannot_join(mode, eap):
            raise NetworkError(
                Code.UNSUPPORTED_SECURITY,
                f"{label} uses {mode}, which the device cannot join"
                + (" without EAP settings" if mode is Security.ENTERPRISE else ""),
                raw={"phase": str(Phase.SCANNING), "security": str(mode)},
            )
    if eap is not None:
        requested = Security.ENTERPRISE
    if contradicts(requested, scanned):
        raise NetworkError(
            Code.SECURITY_MISMATCH,
            f"{label} is {scanned}, not the {requested} the app sent",
            raw={
                "phase": str(Phase.SCANNING),
                "security": str(scanned),
                "requested": str(requested),
            },
        )
    return requested


def key_mgmts_to_try(
    security: Security | None,
    passphrase: str | None,
    scanned: Security | None,
    eap: EapSettings | None = None,
) -> tuple[str, ...]:
    """What a join tries, in order: ``wpa-eap`` with EAP settings; the mode the app sent; else
    the mode the scan saw; else (a hidden network, whose beacons say nothing) SAE then PSK with
    a passphrase, Enhanced Open then open without one. The strongest first: a WPA3 network is
    never joined as WPA2 by default, and a transition network is joined with SAE."""
    if eap is not None:
        return Security.ENTERPRISE.key_mgmts
    chosen = security if security is not None else scanned
    if chosen is not None:
        return chosen.key_mgmts
    return ("sae", "wpa-psk") if passphrase else ("owe", "none")


class SettingsStore(Protocol):
    """The small key-value store a backend may keep its own records in (the NetworkManager
    backend's ledger of the connections it made). The device store is one; a backend never
    gets the whole store."""

    def setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str) -> None: ...


class Phase(StrEnum):
    """Phase names passed to a :data:`PhaseCallback`, in the order a join + verify runs them."""

    SCANNING = "scanning"
    ASSOCIATING = "associating"
    AUTHENTICATING = "authenticating"
    DHCP = "dhcp"
    DNS = "dns"
    CAPTIVE_PORTAL = "captive_portal"
    INTERNET = "internet"
    CLOCK = "clock"  # network time before TLS (a device without a clock waits for it)
    TLS = "tls"


WorldNote = Callable[[str, dict[str, Any]], None]
"""Told what changed in a backend's world (``detail``, ``data``): the simulated world's timeline
(an access point off or back, a lease not renewed), a link fault. The engine makes each an
event."""

PhaseCallback = Callable[[str, dict[str, Any]], None]
"""Called synchronously at the start of each phase with the phase name (a :class:`Phase`, which
is a ``str``) and a small JSON-able detail dict. The detail never holds the passphrase."""


class BackendKind(StrEnum):
    """Which :class:`NetworkBackend` :func:`device_sim.network.create_backend` builds."""

    SIMULATED = "simulated"
    NETWORK_MANAGER = "networkmanager"


@dataclass(frozen=True)
class AccessPoint:
    """One BSS as a scan reports it. Hidden APs carry ``ssid=b""`` in scan results."""

    ssid: bytes
    bssid: str
    band: Band
    channel: int
    rssi: int
    security: Security
    hidden: bool

    @property
    def ssid_text(self) -> str | None:
        """The SSID as text when it is valid UTF-8 (and not empty), else None."""
        if not self.ssid:
            return None
        try:
            return self.ssid.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def to_wire(self) -> dict[str, Any]:
        """The SCAN_RESULT entry for this BSS (see ``gatt_profile.yaml``)."""
        return {
            "ssid_hex": self.ssid.hex(),
            "ssid": self.ssid_text,
            "hidden": self.hidden,
            "rssi": self.rssi,
            "band": str(self.band),
            "channel": self.channel,
            "security": str(self.security),
        }


@dataclass(frozen=True)
class JoinResult:
    """What a successful join obtained: the BSS and the DHCP lease."""

    ssid: bytes
    bssid: str
    band: Band
    ip: str
    gateway: str
    dns: tuple[str, ...]


@dataclass(frozen=True)
class AccessPointConfig:
    """The device's own temporary access point (the SoftAP door).

    ``passphrase`` None means an open AP (only when configured so; the door logs it loudly).
    ``address`` is the device's IPv4 on the AP (the NetworkManager hotspot's shared address).
    """

    ssid: str
    passphrase: Secret | None
    band: Band = Band.GHZ_2_4
    channel: int = 6
    address: str = "192.168.4.1"
    # The AP stays up while the station joins (an ESP32's APSTA mode): the radio does both.
    concurrent: bool = False

    def __repr__(self) -> str:
        return (
            f"AccessPointConfig(ssid={self.ssid!r}, "
            f"{'open' if self.passphrase is None else 'wpa2-psk'}, {self.band} ch {self.channel})"
        )


_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))
_HEX = frozenset(string.hexdigits)


def validate_credentials(ssid: bytes, passphrase: str | None, security: Security | None) -> None:
    """Check SSID and passphrase against 802.11 limits before any join is tried.

    ``security`` is the mode from the scan, or None when unknown (e.g. a hidden network); then a
    passphrase, if given, must have the WPA format. Open networks take no passphrase (None or "").
    WEP and enterprise passphrases are not checked: joining them fails with UNSUPPORTED_SECURITY.

    Raises NetworkError(INVALID_CREDENTIALS_FORMAT); the detail never contains the passphrase.
    """

    def bad(detail: str) -> NetworkError:
        return NetworkError(Code.INVALID_CREDENTIALS_FORMAT, detail)

    if not isinstance(ssid, bytes | bytearray):
        raise bad("the SSID must be bytes")
    if not 1 <= len(ssid) <= 32:
        raise bad(f"the SSID must be 1 to 32 bytes long, not {len(ssid)}")
    if passphrase is not None and not isinstance(passphrase, str):
        raise bad("the passphrase must be text")
    if security in (Security.WEP, Security.ENTERPRISE):
        return  # no passphrase rules: refused (WEP), or the password is in the EAP settings
    if security in (Security.OPEN, Security.OWE):
        if passphrase:
            raise bad(
                f"an {'Enhanced Open' if security is Security.OWE else 'open'} network "
                "takes no passphrase"
            )
        return
    if not passphrase:
        if security is None:
            return  # unknown security and no passphrase: could be an open network
        raise bad(f"a {security} network needs a passphrase")
    if len(passphrase) == 64:
        if not _HEX.issuperset(passphrase):
            raise bad("a 64-character key must be hexadecimal (a raw PSK)")
        return
    if not 8 <= len(passphrase) <= 63:
        raise bad(f"a WPA passphrase must be 8 to 63 characters long, not {len(passphrase)}")
    if not _PRINTABLE_ASCII.issuperset(passphrase):
        raise bad("a WPA passphrase may only contain printable ASCII characters")


class NetworkBackend(Component):
    """Joins Wi-Fi and verifies the connection; an async context manager.

    ``async with backend:`` starts its resources (D-Bus connection, simulated servers) and stops
    them again, even after a failure. Every failure is a NetworkError carrying a diagnostic code.
    A backend sets ``_lock`` (one radio: one join, scan or AP change at a time) and ``_ap``.
    """

    concurrent_ap = False  # it can run an access point and a station at once
    _lock: asyncio.Lock
    _ap: AccessPointConfig | None

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short backend name for logs and status, e.g. ``simulated:typical-home``."""

    @abc.abstractmethod
    async def scan(self) -> list[AccessPoint]:
        """Scan and return the BSSes seen, strongest first; hidden ones with ``ssid=b""``."""

    async def join(
        self,
        ssid: bytes,
        passphrase: str | None,
        *,
        hidden: bool = False,
        security: Security | None = None,
        eap: EapSettings | None = None,
        on_phase: PhaseCallback | None = None,
    ) -> JoinResult:
        """Join ``ssid``; ``hidden=True`` probes for a network that does not broadcast its SSID.
        ``security``: the mode the app sent (None: the scan's, or for a hidden network SAE then
        PSK, Enhanced Open then open; see :func:`key_mgmts_to_try`). ``eap``: an enterprise
        network's sign-in (checked by :func:`~device_sim.network.eap.check_eap`).

        Raises NetworkError with WRONG_CREDENTIALS, NETWORK_NOT_FOUND, ASSOCIATION_TIMEOUT,
        NO_DHCP_LEASE, UNSUPPORTED_SECURITY, INVALID_CREDENTIALS_FORMAT, JOIN_FAILED or an
        EAP_ code (an enterprise network's sign-in); and
        INTERNAL_ERROR before it is started or while its radio is an access point.
        """
        ssid = bytes(ssid)
        async with self._lock:
            self._started()
            self._radio_free("join")
            return await self._join(
                ssid, passphrase, hidden=hidden, security=security, eap=eap, on_phase=on_phase
            )

    @abc.abstractmethod
    async def _join(
        self,
        ssid: bytes,
        passphrase: str | None,
        *,
        hidden: bool,
        security: Security | None,
        eap: EapSettings | None,
        on_phase: PhaseCallback | None,
    ) -> JoinResult:
        """The backend's own join, under its lock, started and with the radio free."""

    @abc.abstractmethod
    def _started(self) -> object:
        """What the backend runs on (raises NetworkError(INTERNAL_ERROR) before it starts)."""

    def _radio_free(self, what: str) -> None:
        """One radio, as on most hardware: the SoftAP door must take its AP down first, unless
        it asked for a concurrent AP (AP and station at once, an ESP32's APSTA mode) and the
        backend can do both. Raises NetworkError(INTERNAL_ERROR)."""
        ap = self._ap
        if ap is not None and not (ap.concurrent and self.concurrent_ap):
            raise NetworkError(
                Code.INTERNAL_ERROR, f"cannot {what}: the radio is the access point {ap.ssid!r}"
            )

    @abc.abstractmethod
    async def verify(self, *, on_phase: PhaseCallback | None = None) -> None:
        """Check the joined network: DNS, captive portal, internet, TLS to the cloud.

        Raises NetworkError with DNS_FAILURE, CAPTIVE_PORTAL, NO_INTERNET,
        TLS_VERIFICATION_FAILED or CLOUD_UNREACHABLE.
        """

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Leave the current network, if any."""

    @abc.abstractmethod
    async def forget_all(self) -> None:
        """Factory reset: disconnect and drop every saved network."""

    # The connected life after a successful verify (core/life.py).
    async def wait_link_loss(self) -> NetworkError:
        """Wait while the connection the last successful :meth:`verify` established holds at
        the link; return the error that ended it: LINK_LOST (the access point went away or
        disconnected the device) or LEASE_LOST (the DHCP lease was not renewed). Its own
        doings (a :meth:`disconnect`, a new :meth:`join`, the access point coming up) are not
        losses. The engine cancels the wait when it stops watching. A backend that cannot
        tell waits forever (the engine's checks still find a dead connection)."""
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def check_connection(self) -> None:
        """While online: name resolution and the internet still answer. Raises
        NetworkError(DNS_LOST, INTERNET_LOST), LINK_LOST when there is no connection."""

    async def keep_networks(self, saved: Sequence[bytes]) -> None:
        """The device's saved networks changed (SSIDs, most recent first). A backend that keeps
        its own profiles (NetworkManager) keeps these, in this order, and drops the others it
        made. Raises NetworkError(INTERNAL_ERROR) when it cannot."""

    def watch_world(self, note: WorldNote) -> None:
        """Tell ``note`` what changes in this backend's world from now on (nothing by
        default)."""

    # The radio as an access point (the SoftAP door). One radio: no scan or join while it is up.
    async def start_access_point(self, config: AccessPointConfig) -> None:
        """Bring the access point up. Raises NetworkError(SOFTAP_UNAVAILABLE) when it cannot."""
        raise NetworkError(Code.SOFTAP_UNAVAILABLE, f"{self.name} cannot run an access point")

    async def stop_access_point(self) -> None:
        """Take the access point down (no-op when it is not up)."""

    @property
    def access_point(self) -> AccessPointConfig | None:
        """The access point that is up, or None."""
        return self._ap
