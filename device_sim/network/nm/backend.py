"""The NetworkManager network backend: real Wi-Fi on a Raspberry Pi (or any NetworkManager host).

Joins go through ``AddAndActivateConnection2`` with ``persist=memory``: the profile lives only in
NetworkManager's memory until :meth:`~NetworkManagerBackend.verify` succeeds and saves it, so a
wrong passphrase or a captive network leaves nothing behind. The backend follows the Wi-Fi
device's ``StateChanged`` signal and maps NetworkManager's failure reasons to diagnostic codes
(:func:`.mapping.failure_for`). Every connection it creates is recorded (:mod:`.profiles`: in the
device store under ``nm.connections`` when one is given), and
:meth:`~NetworkManagerBackend.forget_all` deletes exactly those: a user's own profiles are never
touched. The Wi-Fi device itself is read in :mod:`.device`, the access point run by :mod:`.hotspot`.

After the checks, the established connection is watched over D-Bus (:mod:`.link`): the device's
and the active connection's ``StateChanged`` tell a dropped link or an expired lease. The saved
networks are NetworkManager profiles, one per SSID, their ``autoconnect-priority`` in the
device's order (:meth:`~NetworkManagerBackend.keep_networks`), with autoconnect off: the
engine, not NetworkManager, decides when to reconnect (it shares the radio with the access point
and knows when a phone is setting the device up).
"""

# Over 500 lines on purpose: the NetworkManager backend's NetworkBackend methods, each a sequence of
# D-Bus calls and their error mapping; its parts live beside it (client, device, mapping, profiles,
# hotspot, link).

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import uuid as uuid_mod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbus_fast.errors import AuthError, DBusError

from ...codes import Code
from ...errors import ConfigError, NetworkError
from ...security.secret import Secret
from ..base import (
    AccessPoint,
    AccessPointConfig,
    JoinResult,
    NetworkBackend,
    Phase,
    PhaseCallback,
    Security,
    key_mgmts_to_try,
    security_for_join,
    validate_credentials,
)
from ..checks import Resolver, check_dns, check_tls, system_resolver
from ..eap import EapSettings
from . import device, hotspot, mapping, profiles
from .client import NMClient, translate
from .defs import (
    DEVICE_IFACE,
    ERR_NAME_HAS_NO_OWNER,
    ERR_SERVICE_UNKNOWN,
    MANAGER_IFACE,
    MANAGER_PATH,
    Connectivity,
    DeviceState,
)
from .hotspot import CAPTIVE_CONF_NAME, DEFAULT_CAPTIVE_API_URL, DEFAULT_DNSMASQ_SHARED_DIR
from .link import LinkWatch
from .profiles import STORE_KEY, Profile

if TYPE_CHECKING:
    from ..base import SettingsStore

__all__ = ["CAPTIVE_CONF_NAME", "DEFAULT_DNSMASQ_SHARED_DIR", "STORE_KEY", "NetworkManagerBackend"]

log = logging.getLogger(__name__)


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

    def __init__(
        self,
        store: SettingsStore | None = None,
        *,
        interface: str | None = None,
        scan_timeout: float = 10.0,
        cloud_host: str = "device-sim.example",
        cloud_port: int = 443,
        cloud_ca: Path | None = None,
        dns_names: Sequence[str] | None = None,
        check_timeout: float = 5.0,
        resolver: Resolver = system_resolver,
        join_timeout: float = 90.0,
        dnsmasq_shared_dir: Path | None = DEFAULT_DNSMASQ_SHARED_DIR,
        captive_api_url: str = DEFAULT_CAPTIVE_API_URL,
        bus_address: str | None = None,
        cert_dir: Path | None = None,
    ) -> None:
        for field, value, high in (
            ("scan_timeout", scan_timeout, 120),
            ("check_timeout", check_timeout, 300),
            ("join_timeout", join_timeout, 600),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value <= high
            ):
                raise ConfigError(
                    f"networkmanager backend: {field}",
                    f"must be between 0 and {high} seconds, not {value!r}",
                )
        if not isinstance(cloud_port, int) or not 0 < cloud_port < 65536:
            raise ConfigError(
                "networkmanager backend: cloud_port", f"{cloud_port!r} not in 1..65535"
            )
        if not cloud_host:
            raise ConfigError("networkmanager backend: cloud_host", "must not be empty")
        if '"' in captive_api_url or "{address}" not in captive_api_url:
            raise ConfigError(
                "networkmanager backend: captive_api_url",
                f"{captive_api_url!r} needs '{{address}}' and no quotes",
            )
        self._ledger = profiles.Ledger(store, self._started)
        self._interface = interface
        self._scan_timeout = float(scan_timeout)
        self._join_timeout = float(join_timeout)
        self._check_timeout = float(check_timeout)
        self._cloud_host, self._cloud_port = cloud_host, cloud_port
        self._cloud_ca = Path(cloud_ca) if cloud_ca is not None else None
        self._dns_names = list(dict.fromkeys([cloud_host, *(dns_names or ())]))
        self._resolver = resolver
        self._captive = hotspot.CaptiveConf(dnsmasq_shared_dir, captive_api_url)
        self._bus_address = bus_address
        self._cert_dir = cert_dir  # enterprise profiles' certificate files, one folder each
        self._client: NMClient | None = None
        self._ssl: ssl.SSLContext | None = None
        self._device = ""
        self._iface = interface or ""
        self.version = ""
        self._lock = asyncio.Lock()
        self._seen: dict[bytes, AccessPoint] = {}  # strongest BSS per SSID in the last scan
        self._current: Profile | None = None  # the station profile joined last
        self._ap: AccessPointConfig | None = None
        self._ap_profile: Profile | None = None
        self._link: LinkWatch | None = None  # the established connection, watched

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"networkmanager:{self._iface or 'wifi'}"

    @property
    def device_path(self) -> str:
        """The Wi-Fi device's D-Bus object path (after start)."""
        return self._device

    async def start(self) -> None:
        """Connect, read NetworkManager's version and find the Wi-Fi device.

        Raises ConfigError for an unreadable ``cloud_ca``; TransportError when the bus or
        NetworkManager cannot be reached, permission is refused or there is no such Wi-Fi device.
        """
        if self._client is not None:
            return
        try:
            self._ssl = ssl.create_default_context(
                cafile=str(self._cloud_ca) if self._cloud_ca else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "networkmanager backend: cloud_ca", f"cannot load {self._cloud_ca}: {exc}"
            ) from None
        client = NMClient(self._bus_address)
        try:
            await client.connect()
            self.version = str(await client.get(MANAGER_PATH, MANAGER_IFACE, "Version"))
            self._device, self._iface = await device.find_device(client, self._interface)
        except BaseException as exc:
            await client.close()
            if isinstance(exc, DBusError | OSError | EOFError | AuthError):
                raise translate(
                    exc, doing="starting the NetworkManager backend", interface=self._interface
                ) from None
            raise
        self._client = client
        log.info("%s: NetworkManager %s, device %s", self.name, self.version, self._device)
        try:
            await self._tidy_ledger(client)
        except BaseException:
            await self.stop()
            raise

    async def _tidy_ledger(self, client: NMClient) -> None:
        """What a previous run left: in-memory profiles of a run killed mid-join (or with its
        access point up), ours since they were recorded before NetworkManager made them, are
        deleted; a name in the ledger whose profile NetworkManager no longer has (a run killed
        between deleting it and forgetting it) is forgotten. Raises TransportError."""
        for stale in self._ledger.all():
            if not stale.saved:
                log.info("deleting a profile a previous run left unsaved (%s)", stale.purpose)
                await self._ledger.discard(stale)
                continue
            try:
                gone = await profiles.resolve(client, stale) is None
            except (DBusError, OSError, EOFError) as exc:
                raise translate(exc, doing="reading device-sim's profiles") from None
            if gone:
                log.info("NetworkManager no longer has profile %s: forgotten", stale.uuid)
                self._ledger.remove(stale.uuid)
        self._prune_cert_files()

    def _write_cert_files(self, uuid: str, eap: EapSettings) -> dict[str, Path]:
        """The certificates and key of an enterprise profile, each a file of mode 0600 in a
        0700 folder named by the profile's UUID (NetworkManager reads them by path). Raises
        NetworkError(INTERNAL_ERROR) without a folder, or when the files cannot be written."""
        if self._cert_dir is None:
            raise NetworkError(
                Code.INTERNAL_ERROR, f"{self.name} has no folder for certificate files (cert_dir)"
            )
        folder = self._cert_dir / uuid
        files: dict[str, Path] = {}
        try:
            self._cert_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700)
            for field, name in mapping.EAP_FILES.items():
                value = getattr(eap, field)
                if value is None:
                    continue
                data = value.reveal().encode() if isinstance(value, Secret) else bytes(value)
                path = folder / name
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                files[field] = path
        except OSError as exc:
            _shred_folder(folder)
            raise NetworkError(
                Code.INTERNAL_ERROR, f"cannot write the certificate files: {exc.strerror}"
            ) from None
        return files

    def _prune_cert_files(self) -> None:
        """The certificate folders of profiles no longer ours (deleted, or left by a run killed
        before it could delete them): overwritten, then removed."""
        if self._cert_dir is None or not self._cert_dir.is_dir():
            return
        ours = {profile.uuid for profile in self._ledger.all()}
        for folder in self._cert_dir.iterdir():
            if folder.name not in ours:
                _shred_folder(folder)

    async def stop(self) -> None:
        """Take the access point down (best effort) and disconnect from the bus."""
        await self._end_link()
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
            raise NetworkError(
                Code.INTERNAL_ERROR, f"{self.name} is not started (use 'async with backend:')"
            )
        return self._client

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
        aps = await device.scan(
            self._started(), self._device, timeout=self._scan_timeout, version=self.version
        )
        self._seen = {}
        for ap in aps:
            if ap.ssid:
                self._seen.setdefault(ap.ssid, ap)
        return aps

    # -- join -----------------------------------------------------------------------------------
    # Over 80 lines on purpose: the join's phases in order (scan, profile, activate, the states
    # NetworkManager reports), each with its own error mapping.
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
        """Join ``ssid`` with an in-memory profile (under the lock, the radio free): with each
        key management :func:`key_mgmts_to_try` gives in turn while the network refuses it (a
        hidden network of unknown security: SAE, then PSK)."""
        client = self._started()
        label = mapping.ssid_label(ssid)
        _emit(on_phase, Phase.SCANNING, {"ssid_hex": ssid.hex(), "hidden": hidden})
        seen = self._seen.get(ssid)
        if seen is None and not hidden:
            await self._scan_locked()
            if (seen := self._seen.get(ssid)) is None:
                raise _fail(
                    Code.NETWORK_NOT_FOUND,
                    Phase.SCANNING,
                    f"no access point with SSID {label} was seen (if it is hidden, "
                    f"join with hidden=true)",
                    ssid_hex=ssid.hex(),
                )
        scanned = seen.security if seen is not None else None
        security = security_for_join(label, security, scanned, eap)
        if security is not None and scanned is not None:  # the beacons say all the app did
            security = None if set(scanned.key_mgmts) <= set(security.key_mgmts) else security
        validate_credentials(ssid, passphrase, security or scanned)
        await self._drop_current()
        tries = key_mgmts_to_try(security, passphrase, scanned, eap)
        if scanned is not None and security is not None:  # both known: what both accept
            tries = tuple(k for k in tries if k in scanned.key_mgmts)
        profile, outcome = None, None
        for number, key_mgmt in enumerate(tries, 1):
            profile, outcome = await self._activate_station(
                client, ssid, (passphrase, eap), key_mgmt, hidden, seen, on_phase
            )
            if outcome.ok:
                break
            await self._ledger.discard(profile)
            self._prune_cert_files()
            error = mapping.join_error(
                outcome,
                ssid=ssid,
                scan_security=scanned,
                timeout=self._join_timeout,
                enterprise=eap is not None,
            )
            # wpa_supplicant finds no BSS of a hidden SSID with another key management ("not
            # found"), or fails its handshake (a wrong password): both mean "try the next".
            retry = (Code.WRONG_CREDENTIALS, Code.JOIN_FAILED, Code.NETWORK_NOT_FOUND)
            if number < len(tries) and error.code in retry:
                log.info("joining %s as %s failed (%s); next: %s", label, key_mgmt,
                         error.code.name, tries[number])  # fmt: skip
                continue
            if len(tries) > 1:
                error = NetworkError(
                    error.code,
                    f"{error.detail} (tried {', then '.join(tries)}: a hidden network's "
                    "security is not in its beacons, so a wrong password and a wrong security "
                    "look the same; the app can send the security)",
                    raw=error.raw,
                )
            log.info("joining %s failed: %s", label, error.detail)
            raise error
        assert profile is not None and outcome is not None and outcome.ok
        try:
            result = await device.join_result(client, self._device, ssid, seen)
        except BaseException as exc:
            await self._ledger.discard(profile)
            self._prune_cert_files()
            if isinstance(exc, DBusError | OSError | EOFError):
                raise translate(
                    exc, doing=f"reading the lease on {label}", code=Code.JOIN_FAILED
                ) from None
            raise
        self._current = profile
        log.info("joined %s: %s via %s", label, result.ip, result.gateway or "no gateway")
        return result

    async def _activate_station(
        self,
        client: Any,
        ssid: bytes,
        secret: tuple[str | None, EapSettings | None],
        key_mgmt: str,
        hidden: bool,
        seen: AccessPoint | None,
        on_phase: PhaseCallback | None,
    ) -> tuple[Any, mapping.Outcome]:
        """One activation of a station profile with ``key_mgmt``: its profile and outcome.
        An enterprise profile's certificates are written first, under the profile's UUID."""
        label = mapping.ssid_label(ssid)
        passphrase, eap = secret
        uuid = str(uuid_mod.uuid4())
        files = self._write_cert_files(uuid, eap) if eap is not None else None
        settings = mapping.station_settings(
            ssid, passphrase, key_mgmt, hidden=hidden, uuid=uuid, eap=eap, files=files
        )
        log.info("joining %s (key-mgmt %s%s)", label, key_mgmt, ", hidden" if hidden else "")
        _emit(
            on_phase,
            Phase.ASSOCIATING,
            {
                "bssid": seen.bssid,
                "band": str(seen.band),
                "channel": seen.channel,
                "rssi": seen.rssi,
                "key_mgmt": key_mgmt,
            }
            if seen
            else {"ssid_hex": ssid.hex(), "hidden": True, "key_mgmt": key_mgmt},
        )
        emitted: set[int] = set()

        def on_state(state: int) -> None:
            phase = {
                DeviceState.NEED_AUTH: Phase.AUTHENTICATING,
                DeviceState.IP_CONFIG: Phase.DHCP,
            }.get(DeviceState(state))
            if phase is not None and state not in emitted:
                emitted.add(state)
                _emit(on_phase, phase, {"nm_state": DeviceState(state).name})

        return await profiles.activate(
            client,
            self._ledger,
            settings,
            "station",
            ssid,
            on_state,
            device=self._device,
            iface=self._iface,
            timeout=self._join_timeout,
            doing=f"joining {label}",
            code=Code.JOIN_FAILED,
        )

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
                    raise _fail(
                        Code.NO_INTERNET,
                        Phase.CAPTIVE_PORTAL,
                        f"the Wi-Fi connection dropped (NetworkManager: "
                        f"{mapping.describe(state, 0).split(', ')[0]})",
                    )
                _emit(on_phase, Phase.CAPTIVE_PORTAL, {"check": "networkmanager"})
            except (DBusError, OSError, EOFError) as exc:
                raise translate(exc, doing="checking connectivity", code=Code.NO_INTERNET) from None
            connectivity = await self._connectivity_now(client, Code.NO_INTERNET)
            raw = {"nm_connectivity": connectivity.name}
            if connectivity == Connectivity.PORTAL:
                raise _fail(
                    Code.CAPTIVE_PORTAL,
                    Phase.CAPTIVE_PORTAL,
                    "NetworkManager's connectivity check found a captive portal: the "
                    "network wants a sign-in page first",
                    **raw,
                )
            _emit(on_phase, Phase.INTERNET, {"connectivity": connectivity.name})
            if connectivity in (Connectivity.NONE, Connectivity.LIMITED):
                raise _fail(
                    Code.NO_INTERNET,
                    Phase.INTERNET,
                    f"NetworkManager reports connectivity {connectivity.name}: the "
                    f"network does not reach the internet",
                    **raw,
                )
            if connectivity == Connectivity.UNKNOWN:
                log.info(
                    "connectivity UNKNOWN (NetworkManager's check disabled?); relying on "
                    "the DNS and TLS checks"
                )
            _emit(on_phase, Phase.DNS, {"hosts": list(self._dns_names)})
            addresses: list[str] = []
            for host in self._dns_names:
                found = await check_dns(host, resolver=self._resolver, timeout=timeout)
                addresses = addresses or found
            _emit(on_phase, Phase.TLS, {"host": self._cloud_host, "port": self._cloud_port})
            assert self._ssl is not None
            await check_tls(
                addresses,
                self._cloud_port,
                ssl_context=self._ssl,
                server_hostname=self._cloud_host,
                timeout=timeout,
            )
            await profiles.save(client, self._ledger, profile)
            label = mapping.ssid_label(bytes.fromhex(profile.ssid_hex))
            try:
                self._link = await LinkWatch.start(client, self._device, label)
            except (DBusError, OSError, EOFError) as exc:
                raise translate(
                    exc, doing="watching the connection", code=Code.JOIN_FAILED
                ) from None

    # -- the connected life -----------------------------------------------------------------
    async def wait_link_loss(self) -> NetworkError:
        """Until NetworkManager reports the watched connection gone (LINK_LOST, LEASE_LOST)."""
        link = self._link
        if link is None:
            return await super().wait_link_loss()
        loss = await link.wait()
        if self._link is link:
            self._current = None  # NetworkManager took it down: nothing of ours to deactivate
        return loss

    async def check_connection(self) -> None:
        """NetworkManager's connectivity check, then DNS of the cloud's name. Raises
        NetworkError(INTERNET_LOST, DNS_LOST; LINK_LOST when no connection is watched)."""
        link = self._link
        if link is None or link.lost.is_set():
            raise NetworkError(Code.LINK_LOST, "not connected to a network")
        connectivity = await self._connectivity_now(self._started(), Code.INTERNET_LOST)
        if connectivity in (Connectivity.NONE, Connectivity.LIMITED, Connectivity.PORTAL):
            raise NetworkError(
                Code.INTERNET_LOST,
                f"NetworkManager reports connectivity {connectivity.name} on {link.label} "
                "(still associated)",
                raw={"nm_connectivity": connectivity.name},
            )
        try:
            await check_dns(self._cloud_host, resolver=self._resolver, timeout=self._check_timeout)
        except NetworkError as exc:
            raise NetworkError(
                Code.DNS_LOST, f"{exc.detail} (still associated with {link.label})", raw=exc.raw
            ) from None

    async def keep_networks(self, saved: Sequence[bytes]) -> None:
        """Our station profiles: one per saved SSID, ``autoconnect-priority`` highest for the
        most recent; the others we made are deleted. Raises NetworkError(INTERNAL_ERROR)."""
        async with self._lock:
            client = self._started()
            try:
                current = self._current.uuid if self._current is not None else None
                await profiles.keep(client, self._ledger, [s.hex() for s in saved], current)
            except (DBusError, OSError, EOFError) as exc:
                raise translate(
                    exc, doing="keeping the saved networks' profiles", code=Code.INTERNAL_ERROR
                ) from None
            finally:
                self._prune_cert_files()

    async def _end_link(self) -> None:
        """Our own doing from here on (a join, a disconnect, the access point): not a loss."""
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    async def _connectivity_now(self, client: NMClient, code: Code) -> Connectivity:
        """NetworkManager's connectivity (UNKNOWN for a value it added later). Raises
        NetworkError(``code``) when NetworkManager cannot be asked."""
        try:
            value = await self._connectivity(client)
        except (DBusError, OSError, EOFError) as exc:
            raise translate(exc, doing="checking connectivity", code=code) from None
        try:
            return Connectivity(value)
        except ValueError:
            return Connectivity.UNKNOWN

    async def _connectivity(self, client: NMClient) -> int:
        """A fresh connectivity check; NetworkManager's last result when it is refused (polkit).

        Raises DBusError when NetworkManager is gone.
        """
        try:
            return int((await client.call(MANAGER_PATH, MANAGER_IFACE, "CheckConnectivity"))[0])
        except DBusError as exc:
            if exc.type in (ERR_SERVICE_UNKNOWN, ERR_NAME_HAS_NO_OWNER):
                raise
            log.info(
                "CheckConnectivity refused (%s: %s); using NetworkManager's last result",
                exc.type,
                exc.text,
            )
        return int(await client.get(MANAGER_PATH, MANAGER_IFACE, "Connectivity"))

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
                    await profiles.delete(client, profile)
                except (DBusError, OSError, EOFError) as exc:
                    raise translate(
                        exc,
                        doing="deleting device-sim's network profiles",
                        code=Code.INTERNAL_ERROR,
                    ) from None
                self._ledger.remove(profile.uuid)
            self._prune_cert_files()
            self._seen = {}

    async def _drop_current(self) -> None:
        await self._end_link()
        profile, self._current = self._current, None
        if profile is None:
            return
        client = self._started()
        with contextlib.suppress(DBusError, OSError, EOFError):
            await profiles.deactivate(client, self._device, profile)
        if not profile.saved:
            await self._ledger.discard(profile)
            self._prune_cert_files()

    # -- access point ---------------------------------------------------------------------------
    async def start_access_point(self, config: AccessPointConfig) -> None:
        """NetworkManager hotspot (shared IPv4) plus the captive DNS/DHCP file for its dnsmasq.

        Raises NetworkError(SOFTAP_UNAVAILABLE) when the device cannot be an AP, the file cannot
        be written, or NetworkManager refuses or fails to start it.
        """
        if config.concurrent:
            raise NetworkError(
                Code.SOFTAP_UNAVAILABLE,
                "the NetworkManager backend runs the access point or the station, not both "
                "(turn softap.concurrent off)",
            )
        async with self._lock:
            client = self._started()
            if self._ap == config and self._ap_profile is not None:
                return
            await self._stop_ap_locked()
            await hotspot.require_ap_mode(client, self._device)
            await self._drop_current()  # the station goes for the AP: our doing, not a loss
            conf = self._captive.write(config)
            try:
                profile = await hotspot.activate(
                    client,
                    self._ledger,
                    config,
                    device=self._device,
                    iface=self._iface,
                    timeout=self._join_timeout,
                )
            except BaseException:
                if conf is not None:
                    self._captive.remove()
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
                await profiles.deactivate(self._client, self._device, profile)
            await self._ledger.discard(profile)
        self._captive.remove()
        if config is not None:
            log.info("radio: access point %r down", config)


def _shred_folder(folder: Path) -> None:
    """Overwrite each file of ``folder`` with zeros, then remove it all (as well as a file
    system allows: flash wear-levelling or a copy-on-write file system may keep old blocks)."""
    if not folder.is_dir() or folder.is_symlink():
        with contextlib.suppress(OSError):
            folder.unlink()
        return
    for path in folder.iterdir():
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                size = path.stat().st_size
                with path.open("r+b") as out:
                    out.write(b"\0" * size)
                    out.flush()
                    os.fsync(out.fileno())
            path.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _emit(on_phase: PhaseCallback | None, phase: Phase, detail: dict[str, Any]) -> None:
    log.debug("phase %s %s", phase, detail)
    if on_phase is not None:
        on_phase(phase, detail)


def _fail(code: Code, phase: Phase, detail: str, **raw: Any) -> NetworkError:
    return NetworkError(code, detail, raw={"phase": str(phase), **raw})
