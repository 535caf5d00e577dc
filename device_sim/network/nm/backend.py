"""The NetworkManager network backend: real Wi-Fi on a Raspberry Pi (or any NetworkManager host).

Joins go through ``AddAndActivateConnection2`` with ``persist=memory``: the profile lives only in
NetworkManager's memory until :meth:`~NetworkManagerBackend.verify` succeeds and saves it, so a
wrong passphrase or a captive network leaves nothing behind. The backend follows the Wi-Fi
device's ``StateChanged`` signal and maps NetworkManager's failure reasons to diagnostic codes
(:func:`.mapping.failure_for`). Every connection it creates is recorded (in the device store under
``nm.connections`` when one is given), and :meth:`~NetworkManagerBackend.forget_all` deletes
exactly those: a user's own profiles are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbus_fast import Message, Variant
from dbus_fast.errors import AuthError, DBusError

from ...codes import Code
from ...errors import ConfigError, NetworkError, TransportError
from ..base import (AccessPoint, AccessPointConfig, Band, JoinResult, NetworkBackend, Phase,
                    PhaseCallback, validate_credentials)
from ..checks import Resolver, check_dns, check_tls, system_resolver
from . import mapping
from .client import NMClient, translate
from .defs import (ACTIVE_IFACE, AP_IFACE, CONNECTION_IFACE, DEVICE_IFACE, ERR_ACCESS_DENIED,
                   ERR_NAME_HAS_NO_OWNER, ERR_NM_PERMISSION_DENIED, ERR_NM_UNKNOWN_DEVICE,
                   ERR_SERVICE_UNKNOWN, IP4_CONFIG_IFACE, MANAGER_IFACE, MANAGER_PATH, PROPS_IFACE,
                   SETTINGS_IFACE, SETTINGS_PATH, WIRELESS_IFACE, Connectivity, DeviceState,
                   DeviceType, WifiCapabilities)

if TYPE_CHECKING:
    from ...store import DeviceStore

__all__ = ["CAPTIVE_CONF_NAME", "DEFAULT_DNSMASQ_SHARED_DIR", "STORE_KEY", "NetworkManagerBackend"]

log = logging.getLogger(__name__)

STORE_KEY = "nm.connections"
DEFAULT_DNSMASQ_SHARED_DIR = Path("/etc/NetworkManager/dnsmasq-shared.d")
CAPTIVE_CONF_NAME = "device-sim-captive.conf"
DEFAULT_CAPTIVE_API_URL = "http://{address}/captive-portal/api"
_FATAL = frozenset({ERR_ACCESS_DENIED, ERR_NM_PERMISSION_DENIED, ERR_SERVICE_UNKNOWN,
                    ERR_NAME_HAS_NO_OWNER})


@dataclass
class _Profile:
    """One NetworkManager connection device-sim created (``purpose``: station or hotspot)."""

    uuid: str
    path: str
    ssid_hex: str
    purpose: str
    saved: bool = False


class _Ledger:
    """The connections device-sim created: in the store under :data:`STORE_KEY`, else memory."""

    def __init__(self, store: DeviceStore | None) -> None:
        self._store = store
        self._memory: list[_Profile] = []

    def all(self) -> list[_Profile]:
        if self._store is None:
            return list(self._memory)
        raw = self._store.setting(STORE_KEY)
        try:
            return [_Profile(**entry) for entry in json.loads(raw or "[]")]
        except (ValueError, TypeError):
            log.warning("the store's %s is unreadable; starting a new list", STORE_KEY)
            return []

    def _write(self, profiles: list[_Profile]) -> None:
        if self._store is None:
            self._memory = profiles
        else:
            self._store.set_setting(STORE_KEY, json.dumps([asdict(p) for p in profiles]))

    def put(self, profile: _Profile) -> None:
        self._write([p for p in self.all() if p.uuid != profile.uuid] + [profile])

    def remove(self, uuid: str) -> None:
        self._write([p for p in self.all() if p.uuid != uuid])


class NetworkManagerBackend(NetworkBackend):
    """A :class:`NetworkBackend` driving NetworkManager over the system D-Bus.

    ``interface`` picks the Wi-Fi device (default: the first managed one). ``scan_timeout`` bounds
    the wait for fresh scan results, ``join_timeout`` an activation, ``check_timeout`` each check
    in :meth:`verify`, which resolves ``cloud_host`` (and ``dns_names``) with ``resolver`` and
    completes a TLS handshake with ``cloud_host:cloud_port`` trusting ``cloud_ca`` (a PEM file; the
    system store when None). While the access point is up, ``dnsmasq_shared_dir`` (None: off)
    holds a file that makes NetworkManager's dnsmasq answer every DNS name with the AP address
    and hand out ``captive_api_url`` (``{address}`` filled in) as DHCP option 114.
    ``bus_address`` None means the system bus (honouring ``DBUS_SYSTEM_BUS_ADDRESS``).

    Raises ConfigError for bad options.
    """

    def __init__(self, store: DeviceStore | None = None, *, interface: str | None = None,
                 scan_timeout: float = 10.0, cloud_host: str = "device-sim.example",
                 cloud_port: int = 443, cloud_ca: Path | None = None,
                 dns_names: Sequence[str] | None = None, check_timeout: float = 5.0,
                 resolver: Resolver = system_resolver, join_timeout: float = 90.0,
                 dnsmasq_shared_dir: Path | None = DEFAULT_DNSMASQ_SHARED_DIR,
                 captive_api_url: str = DEFAULT_CAPTIVE_API_URL,
                 bus_address: str | None = None) -> None:
        for field, value, high in (("scan_timeout", scan_timeout, 120),
                                   ("check_timeout", check_timeout, 300),
                                   ("join_timeout", join_timeout, 600)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 < value <= high:
                raise ConfigError(f"networkmanager backend: {field}",
                                  f"must be between 0 and {high} seconds, not {value!r}")
        if not isinstance(cloud_port, int) or not 0 < cloud_port < 65536:
            raise ConfigError("networkmanager backend: cloud_port",
                              f"{cloud_port!r} not in 1..65535")
        if not cloud_host:
            raise ConfigError("networkmanager backend: cloud_host", "must not be empty")
        if '"' in captive_api_url or "{address}" not in captive_api_url:
            raise ConfigError("networkmanager backend: captive_api_url",
                              f"{captive_api_url!r} needs '{{address}}' and no quotes")
        self._ledger = _Ledger(store)
        self._interface = interface
        self._scan_timeout = float(scan_timeout)
        self._join_timeout = float(join_timeout)
        self._check_timeout = float(check_timeout)
        self._cloud_host, self._cloud_port = cloud_host, cloud_port
        self._cloud_ca = Path(cloud_ca) if cloud_ca is not None else None
        self._dns_names = list(dict.fromkeys([cloud_host, *(dns_names or ())]))
        self._resolver = resolver
        self._dnsmasq_dir = Path(dnsmasq_shared_dir) if dnsmasq_shared_dir is not None else None
        self._captive_api_url = captive_api_url
        self._bus_address = bus_address
        self._client: NMClient | None = None
        self._ssl: ssl.SSLContext | None = None
        self._device = ""
        self._iface = interface or ""
        self.version = ""
        self._lock = asyncio.Lock()
        self._seen: dict[bytes, AccessPoint] = {}  # strongest BSS per SSID in the last scan
        self._current: _Profile | None = None       # the station profile joined last
        self._ap: AccessPointConfig | None = None
        self._ap_profile: _Profile | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"networkmanager:{self._iface or 'wifi'}"

    @property
    def device_path(self) -> str:
        """The Wi-Fi device's D-Bus object path (after start)."""
        return self._device

    @property
    def access_point(self) -> AccessPointConfig | None:
        return self._ap

    async def start(self) -> None:
        """Connect, read NetworkManager's version and find the Wi-Fi device.

        Raises ConfigError for an unreadable ``cloud_ca``; TransportError when the bus or
        NetworkManager cannot be reached, permission is refused or there is no such Wi-Fi device.
        """
        if self._client is not None:
            return
        try:
            self._ssl = ssl.create_default_context(
                cafile=str(self._cloud_ca) if self._cloud_ca else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("networkmanager backend: cloud_ca",
                              f"cannot load {self._cloud_ca}: {exc}") from None
        client = NMClient(self._bus_address)
        try:
            await client.connect()
            self.version = str(await client.get(MANAGER_PATH, MANAGER_IFACE, "Version"))
            self._device, self._iface = await self._find_device(client)
        except BaseException as exc:
            await client.close()
            if isinstance(exc, DBusError | OSError | EOFError | AuthError):
                raise translate(exc, doing="starting the NetworkManager backend",
                                interface=self._interface) from None
            raise
        self._client = client
        log.info("%s: NetworkManager %s, device %s", self.name, self.version, self._device)

    async def _find_device(self, client: NMClient) -> tuple[str, str]:
        """(device path, interface name). Raises TransportError, DBusError."""
        found = []
        for path in (await client.call(MANAGER_PATH, MANAGER_IFACE, "GetDevices"))[0]:
            props = await client.get_all(path, DEVICE_IFACE)
            found.append((str(path), str(props.get("Interface", "")),
                          int(props.get("DeviceType", 0)), int(props.get("State", 0))))
        for path, iface, kind, state in found:
            if self._interface is None:
                if kind == DeviceType.WIFI and state != DeviceState.UNMANAGED:
                    return path, iface
                continue
            if iface != self._interface:
                continue
            if kind != DeviceType.WIFI:
                raise TransportError(f"{iface} is not a Wi-Fi device (NetworkManager type {kind}); "
                                     f"see `nmcli device`", code=Code.INTERNAL_ERROR)
            if state != DeviceState.UNMANAGED:
                return path, iface
        if self._interface is not None:
            raise translate(DBusError(ERR_NM_UNKNOWN_DEVICE, self._interface),
                            doing="starting the NetworkManager backend", interface=self._interface)
        raise TransportError("NetworkManager manages no Wi-Fi device; see `nmcli device`",
                             code=Code.INTERNAL_ERROR)

    async def stop(self) -> None:
        """Take the access point down (best effort) and disconnect from the bus."""
        if self._ap_profile is not None:
            with contextlib.suppress(Exception):
                async with self._lock:
                    await self._stop_ap_locked()
        client, self._client = self._client, None
        self._current = None
        if client is not None:
            await client.close()

    def _started(self) -> NMClient:
        if self._client is None:
            raise NetworkError(Code.INTERNAL_ERROR, f"{self.name} is not started "
                                                    "(use 'async with backend:')")
        return self._client

    def _radio_free(self, what: str) -> None:
        if self._ap is not None:
            raise NetworkError(Code.INTERNAL_ERROR,
                               f"cannot {what}: the radio is the access point {self._ap.ssid!r}")

    # -- scan -----------------------------------------------------------------------------------
    async def scan(self) -> list[AccessPoint]:
        """Scan and return the BSSes, strongest first.

        Raises NetworkError(INTERNAL_ERROR) when NetworkManager is gone or refuses permission.
        """
        async with self._lock:
            self._started()
            self._radio_free("scan")
            return await self._scan_locked()

    async def _scan_locked(self) -> list[AccessPoint]:
        client, dev = self._started(), self._device
        seen: list[int] = []
        changed = asyncio.Event()

        def on_props(msg: Message) -> None:
            if msg.body and msg.body[0] == WIRELESS_IFACE and "LastScan" in msg.body[1]:
                seen.append(int(msg.body[1]["LastScan"].value))
                changed.set()

        try:
            unsubscribe = await client.subscribe(dev, PROPS_IFACE, "PropertiesChanged", on_props)
            try:
                await self._request_scan(client, seen, changed)
            finally:
                await unsubscribe()
            paths = (await client.call(dev, WIRELESS_IFACE, "GetAllAccessPoints"))[0]
            aps = []
            for path in paths:
                try:
                    props = await client.get_all(path, AP_IFACE)
                except DBusError as exc:
                    if exc.type in _FATAL:
                        raise
                    continue  # the BSS vanished between the list and the read
                if (ap := mapping.access_point(props)) is not None:
                    aps.append(ap)
        except (DBusError, OSError, EOFError) as exc:
            raise translate(exc, doing="scanning", code=Code.INTERNAL_ERROR) from None
        aps.sort(key=lambda ap: ap.rssi, reverse=True)
        self._seen = {}
        for ap in aps:
            if ap.ssid:
                self._seen.setdefault(ap.ssid, ap)
        log.debug("scan: %d BSSes", len(aps))
        return aps

    async def _request_scan(self, client: NMClient, seen: list[int],
                            changed: asyncio.Event) -> None:
        """RequestScan, then wait for LastScan to change; fall back to the known list."""
        try:
            before = int(await client.get(self._device, WIRELESS_IFACE, "LastScan"))
        except DBusError as exc:
            if exc.type in _FATAL:
                raise
            before = None  # NetworkManager < 1.12 has no LastScan: nothing to wait for
        try:
            await client.call(self._device, WIRELESS_IFACE, "RequestScan", "a{sv}", [{}])
        except DBusError as exc:
            if exc.type in _FATAL:
                raise
            log.info("scan: NetworkManager refused a new scan (%s: %s); using the access points "
                     "it already knows", exc.type, exc.text)
            return
        if before is None:
            log.info("scan: NetworkManager %s reports no LastScan; using the access points it "
                     "already knows", self.version)
            return
        try:
            async with asyncio.timeout(self._scan_timeout):
                while not any(value != before for value in seen):
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            log.info("scan: no new results within %g s; using the access points NetworkManager "
                     "already knows", self._scan_timeout)

    # -- join -----------------------------------------------------------------------------------
    async def join(self, ssid: bytes, passphrase: str | None, *, hidden: bool = False,
                   on_phase: PhaseCallback | None = None) -> JoinResult:
        """Join ``ssid`` with an in-memory profile; see :class:`NetworkBackend` for the codes."""
        ssid = bytes(ssid)
        async with self._lock:
            client = self._started()
            self._radio_free("join")
            label = mapping.ssid_label(ssid)
            _emit(on_phase, Phase.SCANNING, {"ssid_hex": ssid.hex(), "hidden": hidden})
            seen = self._seen.get(ssid)
            if seen is None and not hidden:
                await self._scan_locked()
                if (seen := self._seen.get(ssid)) is None:
                    raise _fail(Code.NETWORK_NOT_FOUND, Phase.SCANNING,
                                f"no access point with SSID {label} was seen (if it is hidden, "
                                f"join with hidden=true)", ssid_hex=ssid.hex())
            security = seen.security if seen is not None else None
            if security is not None and not security.supported:
                raise _fail(Code.UNSUPPORTED_SECURITY, Phase.SCANNING,
                            f"{label} uses {security}, which the device cannot join",
                            security=str(security))
            validate_credentials(ssid, passphrase, security)
            await self._drop_current()
            settings = mapping.station_settings(ssid, passphrase, security, hidden=hidden)
            log.info("joining %s (%s%s)", label, security or "security unknown",
                     ", hidden" if hidden else "")
            _emit(on_phase, Phase.ASSOCIATING,
                  {"bssid": seen.bssid, "band": str(seen.band), "channel": seen.channel,
                   "rssi": seen.rssi} if seen else {"ssid_hex": ssid.hex(), "hidden": True})
            emitted: set[int] = set()

            def on_state(state: int) -> None:
                phase = {DeviceState.NEED_AUTH: Phase.AUTHENTICATING,
                         DeviceState.IP_CONFIG: Phase.DHCP}.get(DeviceState(state))
                if phase is not None and state not in emitted:
                    emitted.add(state)
                    _emit(on_phase, phase, {"nm_state": DeviceState(state).name})

            profile, outcome = await self._activate(settings, "station", ssid, on_state,
                                                    doing=f"joining {label}", code=Code.JOIN_FAILED)
            if not outcome.ok:
                await self._discard(profile)
                error = mapping.join_error(outcome, ssid=ssid, scan_security=security,
                                           timeout=self._join_timeout)
                log.info("joining %s failed: %s", label, error.detail)
                raise error
            try:
                result = await self._join_result(client, ssid, seen)
            except BaseException as exc:
                await self._discard(profile)
                if isinstance(exc, DBusError | OSError | EOFError):
                    raise translate(exc, doing=f"reading the lease on {label}",
                                    code=Code.JOIN_FAILED) from None
                raise
            self._current = profile
            log.info("joined %s: %s via %s", label, result.ip, result.gateway or "no gateway")
            return result

    async def _activate(self, settings: mapping.Settings, purpose: str, ssid: bytes,
                        on_state: Callable[[int], None], *, doing: str,
                        code: Code) -> tuple[_Profile, mapping.Outcome]:
        """AddAndActivateConnection2 (persist=memory), recorded, followed to its end.

        Raises NetworkError(code) when NetworkManager refuses the request.
        """
        client = self._started()
        events: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
        try:
            unsubscribe = await client.subscribe(
                self._device, DEVICE_IFACE, "StateChanged",
                lambda msg: events.put_nowait((int(msg.body[0]), int(msg.body[1]),
                                               int(msg.body[2]))))
            # Recorded by UUID first: a cancelled call still leaves nothing behind.
            profile = _Profile(settings["connection"]["uuid"].value, "", ssid.hex(), purpose)
            self._ledger.put(profile)
            try:
                path, _active, _ = await client.call(
                    MANAGER_PATH, MANAGER_IFACE, "AddAndActivateConnection2", "a{sa{sv}}ooa{sv}",
                    [settings, self._device, "/", {"persist": Variant("s", "memory")}])
                profile.path = str(path)
                self._ledger.put(profile)
                return profile, await self._follow(events, on_state)
            except BaseException:
                await self._discard(profile)
                raise
            finally:
                await unsubscribe()
        except (DBusError, OSError, EOFError) as exc:
            raise translate(exc, doing=doing, code=code, interface=self._iface) from None

    async def _follow(self, events: asyncio.Queue[tuple[int, int, int]],
                      on_state: Callable[[int], None]) -> mapping.Outcome:
        """Read device StateChanged events until the activation ends or the timeout."""
        activation = mapping.Activation()
        try:
            async with asyncio.timeout(self._join_timeout):
                while activation.outcome is None:
                    new, old, reason = await events.get()
                    log.debug("device %s: %s -> %s", self._iface, old,
                              mapping.describe(new, reason))
                    if activation.feed(new, old, reason):
                        on_state(new)
                return activation.outcome
        except TimeoutError:
            return activation.timed_out()

    async def _join_result(self, client: NMClient, ssid: bytes,
                           seen: AccessPoint | None) -> JoinResult:
        """The lease and BSS of the activated device. Raises NetworkError(NO_DHCP_LEASE)."""
        ip4 = str(await client.get(self._device, DEVICE_IFACE, "Ip4Config"))
        props = await client.get_all(ip4, IP4_CONFIG_IFACE) if ip4 != "/" else {}
        ip, gateway, dns = mapping.lease(props)
        if not ip:
            raise NetworkError(Code.NO_DHCP_LEASE, f"{mapping.ssid_label(ssid)} is connected but "
                               f"gave no IPv4 address", raw={"ssid_hex": ssid.hex()})
        bssid, band = (seen.bssid, seen.band) if seen else ("", Band.GHZ_2_4)
        with contextlib.suppress(DBusError):
            ap_path = str(await client.get(self._device, WIRELESS_IFACE, "ActiveAccessPoint"))
            if ap_path != "/" and (ap := mapping.access_point(
                    await client.get_all(ap_path, AP_IFACE))) is not None:
                bssid, band = ap.bssid, ap.band
        return JoinResult(ssid=ssid, bssid=bssid, band=band, ip=ip, gateway=gateway, dns=dns)

    # -- verify ---------------------------------------------------------------------------------
    async def verify(self, *, on_phase: PhaseCallback | None = None) -> None:
        """NetworkManager's connectivity check, then DNS and TLS to the cloud; then save.

        Raises NetworkError(CAPTIVE_PORTAL, NO_INTERNET, DNS_FAILURE, TLS_VERIFICATION_FAILED,
        CLOUD_UNREACHABLE), or JOIN_FAILED when the profile cannot be saved.
        """
        async with self._lock:
            client = self._started()
            profile, timeout = self._current, self._check_timeout
            if profile is None:
                raise _fail(Code.NO_INTERNET, Phase.CAPTIVE_PORTAL, "not connected to a network")
            try:
                state = int(await client.get(self._device, DEVICE_IFACE, "State"))
                if state != DeviceState.ACTIVATED:
                    raise _fail(Code.NO_INTERNET, Phase.CAPTIVE_PORTAL,
                                f"the Wi-Fi connection dropped (NetworkManager: "
                                f"{mapping.describe(state, 0).split(', ')[0]})")
                _emit(on_phase, Phase.CAPTIVE_PORTAL, {"check": "networkmanager"})
                value = await self._connectivity(client)
            except (DBusError, OSError, EOFError) as exc:
                raise translate(exc, doing="checking connectivity", code=Code.NO_INTERNET) from None
            try:
                connectivity = Connectivity(value)
            except ValueError:
                connectivity = Connectivity.UNKNOWN
            raw = {"nm_connectivity": connectivity.name}
            if connectivity == Connectivity.PORTAL:
                raise _fail(Code.CAPTIVE_PORTAL, Phase.CAPTIVE_PORTAL,
                            "NetworkManager's connectivity check found a captive portal: the "
                            "network wants a sign-in page first", **raw)
            _emit(on_phase, Phase.INTERNET, {"connectivity": connectivity.name})
            if connectivity in (Connectivity.NONE, Connectivity.LIMITED):
                raise _fail(Code.NO_INTERNET, Phase.INTERNET,
                            f"NetworkManager reports connectivity {connectivity.name}: the "
                            f"network does not reach the internet", **raw)
            if connectivity == Connectivity.UNKNOWN:
                log.info("connectivity UNKNOWN (NetworkManager's check disabled?); relying on "
                         "the DNS and TLS checks")
            _emit(on_phase, Phase.DNS, {"hosts": list(self._dns_names)})
            addresses: list[str] = []
            for host in self._dns_names:
                found = await check_dns(host, resolver=self._resolver, timeout=timeout)
                addresses = addresses or found
            _emit(on_phase, Phase.TLS, {"host": self._cloud_host, "port": self._cloud_port})
            assert self._ssl is not None
            await check_tls(addresses[0], self._cloud_port, ssl_context=self._ssl,
                            server_hostname=self._cloud_host, timeout=timeout)
            await self._save(client, profile)

    async def _connectivity(self, client: NMClient) -> int:
        """A fresh connectivity check; NetworkManager's last result when it is refused (polkit).

        Raises DBusError when NetworkManager is gone.
        """
        try:
            return int((await client.call(MANAGER_PATH, MANAGER_IFACE, "CheckConnectivity"))[0])
        except DBusError as exc:
            if exc.type in (ERR_SERVICE_UNKNOWN, ERR_NAME_HAS_NO_OWNER):
                raise
            log.info("CheckConnectivity refused (%s: %s); using NetworkManager's last result",
                     exc.type, exc.text)
        return int(await client.get(MANAGER_PATH, MANAGER_IFACE, "Connectivity"))

    async def _save(self, client: NMClient, profile: _Profile) -> None:
        """Persist the verified profile; drop every older device-sim station profile.

        Re-onboarding moves the device to one network: a profile device-sim made for the old
        one would let NetworkManager wander back to it. Profiles the user made are not touched.
        """
        try:
            await client.call(profile.path, CONNECTION_IFACE, "Save")
        except (DBusError, OSError, EOFError) as exc:
            raise translate(exc, doing="saving the network profile",
                            code=Code.JOIN_FAILED) from None
        profile.saved = True
        self._ledger.put(profile)
        for old in self._ledger.all():
            if old.purpose == "station" and old.uuid != profile.uuid:
                await self._discard(old)
        log.info("saved the profile for %s", mapping.ssid_label(bytes.fromhex(profile.ssid_hex)))

    # -- leaving --------------------------------------------------------------------------------
    async def disconnect(self) -> None:
        """Deactivate the profile joined last; one not yet verified (unsaved) is also deleted."""
        async with self._lock:
            if self._client is not None:
                await self._drop_current()

    async def forget_all(self) -> None:
        """Take the AP down, disconnect, and delete every connection device-sim created.

        Raises NetworkError(INTERNAL_ERROR) when NetworkManager refuses or is gone.
        """
        async with self._lock:
            client = self._started()
            await self._stop_ap_locked()
            await self._drop_current()
            for profile in self._ledger.all():
                try:
                    await self._delete(client, profile)
                except (DBusError, OSError, EOFError) as exc:
                    raise translate(exc, doing="deleting device-sim's network profiles",
                                    code=Code.INTERNAL_ERROR) from None
                self._ledger.remove(profile.uuid)
            self._seen = {}

    async def _drop_current(self) -> None:
        profile, self._current = self._current, None
        if profile is None:
            return
        client = self._started()
        with contextlib.suppress(DBusError, OSError, EOFError):
            await self._deactivate(client, profile)
        if not profile.saved:
            await self._discard(profile)

    async def _deactivate(self, client: NMClient, profile: _Profile) -> None:
        """Deactivate ``profile`` if it is what the device runs. Raises DBusError."""
        active = str(await client.get(self._device, DEVICE_IFACE, "ActiveConnection"))
        if active != "/" and str(await client.get(active, ACTIVE_IFACE, "Connection")) \
                == profile.path:
            await client.call(MANAGER_PATH, MANAGER_IFACE, "DeactivateConnection", "o", [active])

    async def _delete(self, client: NMClient, profile: _Profile) -> None:
        """Delete ``profile`` (found by UUID, else its recorded path). Raises DBusError."""
        path = profile.path
        try:
            path = str((await client.call(SETTINGS_PATH, SETTINGS_IFACE, "GetConnectionByUuid",
                                          "s", [profile.uuid]))[0])
        except DBusError as exc:
            if exc.type in _FATAL:
                raise
        if not path:
            return  # NetworkManager never made it
        try:
            await client.call(path, CONNECTION_IFACE, "Delete")
        except DBusError as exc:
            if exc.type in _FATAL:
                raise
            log.debug("profile %s already gone (%s)", profile.uuid, exc.type)

    async def _discard(self, profile: _Profile) -> None:
        """Best-effort delete after a failure (the failure is the error that matters)."""
        try:
            await self._delete(self._started(), profile)
        except Exception as exc:  # noqa: BLE001 - logged; never masks the original failure
            log.warning("could not delete profile %s: %s", profile.uuid, exc)
            return
        self._ledger.remove(profile.uuid)

    # -- access point ---------------------------------------------------------------------------
    async def start_access_point(self, config: AccessPointConfig) -> None:
        """NetworkManager hotspot (shared IPv4) plus the captive DNS/DHCP file for its dnsmasq.

        Raises NetworkError(SOFTAP_UNAVAILABLE) when the device cannot be an AP, the file cannot
        be written, or NetworkManager refuses or fails to start it.
        """
        async with self._lock:
            client = self._started()
            if self._ap == config and self._ap_profile is not None:
                return
            await self._stop_ap_locked()
            try:
                caps = int(await client.get(self._device, WIRELESS_IFACE, "WirelessCapabilities"))
            except (DBusError, OSError, EOFError) as exc:
                raise translate(exc, doing="starting the access point",
                                code=Code.SOFTAP_UNAVAILABLE) from None
            if not caps & WifiCapabilities.AP:
                raise NetworkError(Code.SOFTAP_UNAVAILABLE,
                                   "this Wi-Fi device cannot be an access point",
                                   raw={"wireless_capabilities": caps})
            await self._drop_current()
            conf = self._write_captive_conf(config)
            try:
                settings = mapping.hotspot_settings(config, interface=self._iface)
                profile, outcome = await self._activate(
                    settings, "hotspot", config.ssid.encode(), lambda state: None,
                    doing=f"starting the access point {config.ssid!r}",
                    code=Code.SOFTAP_UNAVAILABLE)
                if not outcome.ok:
                    await self._discard(profile)
                    raise NetworkError(Code.SOFTAP_UNAVAILABLE, f"NetworkManager could not start "
                                       f"the access point {config.ssid!r} (NetworkManager: "
                                       f"{mapping.describe(outcome.state, outcome.reason)})",
                                       raw=mapping.nm_raw(outcome.state, outcome.reason))
            except BaseException:
                if conf is not None:
                    self._remove_captive_conf()
                raise
            self._ap, self._ap_profile = config, profile
            log.info("radio: access point %r up", config)

    async def stop_access_point(self) -> None:
        """Deactivate and delete the hotspot profile and remove the captive file (no-op if down)."""
        async with self._lock:
            await self._stop_ap_locked()

    async def _stop_ap_locked(self) -> None:
        profile, config = self._ap_profile, self._ap
        self._ap = self._ap_profile = None
        if profile is not None and self._client is not None:
            with contextlib.suppress(DBusError, OSError, EOFError):
                await self._deactivate(self._client, profile)
            await self._discard(profile)
        self._remove_captive_conf()
        if config is not None:
            log.info("radio: access point %r down", config)

    def _remove_captive_conf(self) -> None:
        if self._dnsmasq_dir is None:
            return
        path = self._dnsmasq_dir / CAPTIVE_CONF_NAME
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove %s: %s", path, exc)

    def _write_captive_conf(self, config: AccessPointConfig) -> Path | None:
        """Write the dnsmasq-shared file. Raises NetworkError(SOFTAP_UNAVAILABLE)."""
        try:
            address = str(ipaddress.IPv4Address(config.address))
        except ValueError:
            raise NetworkError(Code.SOFTAP_UNAVAILABLE,
                               f"the access point address {config.address!r} is not IPv4") from None
        if self._dnsmasq_dir is None:
            return None
        path = self._dnsmasq_dir / CAPTIVE_CONF_NAME
        text = mapping.captive_conf(address, self._captive_api_url.format(address=address))
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            self._dnsmasq_dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise NetworkError(Code.SOFTAP_UNAVAILABLE,
                               f"cannot write {path}: {exc.strerror or exc}; run device-sim as "
                               f"root or set dnsmasq_shared_dir", raw={"path": str(path)}) from None
        return path


def _emit(on_phase: PhaseCallback | None, phase: Phase, detail: dict[str, Any]) -> None:
    log.debug("phase %s %s", phase, detail)
    if on_phase is not None:
        on_phase(phase, detail)


def _fail(code: Code, phase: Phase, detail: str, **raw: Any) -> NetworkError:
    return NetworkError(code, detail, raw={"phase": str(phase), **raw})
