"""The simulated network backend: a scenario file plays the Wi-Fi world.

Scan, association, authentication and DHCP are modelled from the scenario (with simulated delays).
Verification is real where that is cheap: the backend serves a connectivity probe over HTTP and
the "cloud" over TLS on 127.0.0.1, with certificates made at start-up, and runs the same
:mod:`device_sim.network.checks` a real backend runs. Only DNS is modelled (the names resolve to
127.0.0.1, or fail), since a bench may have no network at all.

Once the checks pass, the connection is established until the world takes it away: the
scenario's timeline (:mod:`.live`: an access point off, a new passphrase, a lease not renewed)
or a ``link``/``lease`` fault ends it at the link (:meth:`SimulatedBackend.wait_link_loss`), and
DNS or internet outages fail the checks an online device makes
(:meth:`SimulatedBackend.check_connection`).
"""

# Over 500 lines on purpose: one class holds the emulated radio and world (the attempt, the link,
# the access point, the faults, the world's servers); the join, the checks and the connected life
# read and change that one state under one lock. What shares nothing with it lives apart: the
# scenario model (scenario/), the world over time (live.py), runtime faults (faults.py), the checks
# (checks.py).

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import logging
import math
import os
import random
import socket
import ssl
import string
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..codes import Code
from ..errors import ConfigError, NetworkError
from .base import (
    AccessPoint,
    AccessPointConfig,
    Band,
    JoinResult,
    NetworkBackend,
    Phase,
    PhaseCallback,
    Security,
    WorldNote,
    key_mgmts_to_try,
    security_for_join,
    validate_credentials,
)
from .eap import EapMethod, EapSettings
from .faults import DEFAULT_PORTAL_URL, LINK_STEPS, MAX_FAULTS, Fault
from .live import Change, LiveWorld
from .scenario import RESULTS, Scenario, ScenarioAccessPoint, Step, load_scenario
from .scenario.model import RadiusServer

if TYPE_CHECKING:
    from aiohttp import web

    from ..pki import CertificateAuthority
    from .checks import Resolver


def __getattr__(name: str) -> object:
    """``CertificateAuthority`` stays importable from here (tests make their own cloud CAs
    with it) without loading X.509 code into every device."""
    if name == "CertificateAuthority":
        from ..pki import CertificateAuthority

        return CertificateAuthority
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLOUD_HOST",
    "PROBE_HOST",
    "CertificateAuthority",
    "SimulatedBackend",
    "client_ssl_context",
    "server_ssl_context",
]

log = logging.getLogger(__name__)

CLOUD_HOST = "cloud.device-sim.test"
PROBE_HOST = "connectivity-check.device-sim.test"
PROBE_PATH = "/generate_204"
MISMATCH_HOST = "other.device-sim.test"
PREFER_5GHZ_DBM = -70
FRESH_SCAN_S = 5.0  # a join within this long of a scan uses its results
LOOPBACK = {4: "127.0.0.1", 6: "::1"}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass
class _Attempt:
    """One join + verify: its seeded draws, the faults in force when it started, and what the
    join obtained (the address family the checks then use)."""

    number: int
    rng: random.Random
    faults: tuple[Fault, ...]
    family: int = 4
    ssid: bytes | None = None  # the network it joins (faults on another one do not apply)
    notes: dict[str, str] = field(default_factory=dict)

    def step(self, name: str, step: Step) -> tuple[int, str, list[str]]:
        """The step's delay (ms) and result this attempt, and the faults that applied."""
        delay, result = step.draw_delay_ms(self.rng), step.draw_result(self.rng, RESULTS[name][1])
        applied = []
        for fault in self.faults:
            if fault.step != name or not fault.hits(self.ssid):
                continue
            if self.rng.random() >= fault.probability:
                continue
            applied.append(fault.name)
            jitter = self.rng.randint(-fault.jitter_ms, fault.jitter_ms) if fault.jitter_ms else 0
            delay += max(0, fault.delay_ms + jitter)
            if fault.result != RESULTS[name][0]:
                result = fault.result
        return delay, result, applied


@dataclass
class _Link:
    """One established connection: set when the world takes it away, with the loss."""

    sap: ScenarioAccessPoint
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    loss: NetworkError | None = None


# -- TLS contexts ---------------------------------------------------------------------------------


def server_ssl_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS server context for the given certificate and key (ssl only loads them from files)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="device-sim-tls-") as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        context.load_cert_chain(cert_file, key_file)
    return context


def client_ssl_context(ca_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts only ``ca_pem`` and verifies host names."""
    return ssl.create_default_context(cadata=ca_pem.decode("ascii"))


# The simulated cloud is one per process, as the real one is one for every device: its CA and
# the devices' trust in it are made at the first device's first check, and its server
# certificates (one per verdict and clock shift, re-issued every CLOUD_CERT_REUSE_S: the
# server certificate is valid from an hour before its issue) are shared by every world; each
# world still serves them on its own ports. A fleet's thousand devices thus make one CA, not a
# thousand (a key, two certificates, two SSL contexts and two files each).
CLOUD_CERT_REUSE_S = 1800


@functools.lru_cache(maxsize=1)
def _cloud() -> tuple[CertificateAuthority, ssl.SSLContext]:
    """The simulated cloud's CA and a client context that trusts only it."""
    from ..pki import CertificateAuthority

    ca = CertificateAuthority("device-sim cloud CA")
    return ca, client_ssl_context(ca.cert_pem)


@functools.lru_cache(maxsize=32)
def _cloud_server_context(result: str, shift_s: int, period: int) -> ssl.SSLContext:
    """The cloud's TLS server context presenting ``result``'s certificate, its validity moved by
    ``shift_s`` (``period``: the issue's time slot, part of the cache key only)."""
    ca = _cloud()[0]
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=shift_s)
    if result == "untrusted":
        interceptor = type(ca)("device-sim interceptor CA")
        cert = interceptor.issue(CLOUD_HOST, now=now)
    elif result == "hostname_mismatch":
        cert = ca.issue(MISMATCH_HOST, now=now)
    else:
        cert = ca.issue(CLOUD_HOST, expired=result == "expired", now=now)
    return server_ssl_context(*cert)


# -- the backend ----------------------------------------------------------------------------------


class SimulatedBackend(NetworkBackend):
    """A :class:`NetworkBackend` whose world is a :class:`Scenario`.

    ``zero_delay`` skips every simulated delay; ``time_scale`` multiplies them (0.5: twice as
    fast).
    ``check_timeout`` bounds each real check in :meth:`verify`, in seconds.
    """

    concurrent_ap = True  # the emulated radio does AP and station at once (APSTA)

    def __init__(
        self,
        scenario: Scenario | str | os.PathLike[str],
        *,
        zero_delay: bool = False,
        time_scale: float = 1.0,
        check_timeout: float = 5.0,
        seed: int | None = None,
    ) -> None:
        if (
            not isinstance(time_scale, int | float)
            or not math.isfinite(time_scale)
            or time_scale < 0
        ):
            raise ConfigError(
                "simulated backend: time_scale", f"must be a number >= 0, not {time_scale!r}"
            )
        if not isinstance(check_timeout, int | float) or not 0 < check_timeout <= 300:
            raise ConfigError(
                "simulated backend: check_timeout",
                f"must be between 0 and 300 seconds, not {check_timeout!r}",
            )
        self._scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self._zero_delay = zero_delay
        self._time_scale = float(time_scale)
        self._check_timeout = float(check_timeout)
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._connected: ScenarioAccessPoint | None = None
        self._saved: dict[bytes, str | None] = {}
        self._internet_port = 0
        self._refusing_port = 0
        self._tls_ports: dict[str, int] = {}
        self._cloud_ca: CertificateAuthority | None = None
        self._world_start: asyncio.Future[None] | None = None  # the servers' start under way
        self._under_way: set[asyncio.Future[Any]] = set()  # its servers' starts and undos
        self._device_ssl: ssl.SSLContext | None = None
        self._ap: AccessPointConfig | None = None
        self._seed = self._scenario.seed if seed is None else int(seed)
        self._attempts = 0
        self._attempt: _Attempt | None = None
        self._faults: dict[str, Fault] = {}
        self._portal_url: str | None = None  # what the probe answers this attempt
        self._probe_ports: dict[int, int] = {}
        self._refusing_ports: dict[int, int] = {}
        self._tls_servers: dict[tuple[str, int, int], int] = {}
        self._live = LiveWorld(self._scenario, self._time_scale)
        self._live.changed = self._world_changed
        # The connection established last: kept once lost (a watcher that comes late still
        # hears of it), dropped by the device's own doings (a join, a disconnect, its AP).
        self._link: _Link | None = None
        self._note: WorldNote = lambda detail, data: None
        self._life_rng = random.Random(f"{self._seed}:life")  # faults on a live connection
        self._scanned_at = -FRESH_SCAN_S

    # -- faults (device-sim ctl fault): effective from the next attempt
    @property
    def faults(self) -> list[Fault]:
        return list(self._faults.values())

    def add_fault(self, fault: Fault) -> bool:
        """Add or replace (by name) a fault; True when it replaced one."""
        replaced = fault.name in self._faults
        if not replaced and len(self._faults) >= MAX_FAULTS:
            raise NetworkError(
                Code.INVALID_STATE, f"at most {MAX_FAULTS} faults at once; remove one first"
            )
        self._faults[fault.name] = fault
        if fault.step in LINK_STEPS and fault.result != "ok":
            self._hit_by(fault)
        return replaced

    def remove_fault(self, name: str) -> Fault | None:
        return self._faults.pop(name, None)

    def _hit_by(self, fault: Fault) -> None:
        """A link or lease fault arrives: an established connection ends at once."""
        link = self._live_link()
        if link is None or not fault.hits(link.sap.ap.ssid):
            return
        if self._life_rng.random() >= fault.probability:
            return
        if fault.step == "link":
            self._lose(Code.LINK_LOST, f"deauthenticated by the access point (fault {fault.name})")
        else:
            self._lose(Code.LEASE_LOST, f"the DHCP lease was not renewed (fault {fault.name})")

    def _faulted(self, step: str, ssid: bytes | None = None) -> Fault | None:
        """A fault in force on ``step`` (and network ``ssid``) that hits now (each drawn with
        its probability)."""
        for fault in self._faults.values():
            hit = fault.step == step and fault.result != "ok" and fault.hits(ssid)
            if hit and self._life_rng.random() < fault.probability:
                return fault
        return None

    # -- properties
    @property
    def name(self) -> str:
        return f"simulated:{self._scenario.name}"

    @property
    def scenario(self) -> Scenario:
        return self._scenario

    @property
    def connected(self) -> AccessPoint | None:
        """The BSS joined last (None after a failure, disconnect or reset)."""
        return self._connected.ap if self._connected else None

    @property
    def saved_networks(self) -> tuple[bytes, ...]:
        """SSIDs of the networks joined successfully since start or the last :meth:`forget_all`."""
        return tuple(self._saved)

    @property
    def cloud_ca_pem(self) -> bytes:
        """The CA the device trusts for the cloud (after start)."""
        return self._started().cert_pem

    # -- lifecycle
    async def start(self) -> None:
        """Ready to join. The world's cloud CA and its servers (the probe, the refusing ports,
        the cloud's TLS) are made at their first use, so an idle device makes no certificate
        and loads no HTTP server."""
        if self._stack is not None:
            return
        async with AsyncExitStack() as stack:
            stack.callback(self._reset_ports)
            stack.callback(self._live.stop)
            self._stack = stack.pop_all()
        self._live.play("boot")

    async def _serve_world(self) -> None:
        """The probe on IPv4 and IPv6 loopback and a refusing port each, once. Started whole
        (see :func:`_whole`): a check cancelled meanwhile leaves the start to finish, and the
        servers belong to the backend's stack, or are closed if it stopped meanwhile."""
        if self._probe_ports:
            return
        stack = self._stack
        assert stack is not None
        if self._world_start is None or self._world_start.done():  # else: join the one under way
            self._world_start = asyncio.ensure_future(self._start_world(stack))
        await _whole(self._world_start, _nothing, self._under_way)

    async def _start_world(self, stack: AsyncExitStack) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get(PROBE_PATH, self._serve_probe)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ports: dict[int, int] = {}
        try:
            # The probe and the cloud on IPv4 and IPv6 loopback: an IPv6-only network's checks
            # really go over IPv6 (its NAT64 reaching the IPv4 cloud is loopback here).
            for family, host in LOOPBACK.items():
                await web.TCPSite(runner, host, 0).start()
                (address,) = [a for a in runner.addresses if a[0] == host]
                ports[family] = int(address[1])
            if self._stack is not stack:  # stopped meanwhile: its stack has closed already
                raise _stopped()
        except BaseException:
            await runner.cleanup()  # its first cleanup: every site it started is closed
            raise
        stack.push_async_callback(runner.cleanup)
        for family, host in LOOPBACK.items():
            # Bound but never listening: connections to it are refused ("no internet").
            refusing = socket.socket(
                socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_STREAM
            )
            stack.callback(refusing.close)
            refusing.bind((host, 0))
            self._refusing_ports[family] = int(refusing.getsockname()[1])
        self._probe_ports = ports
        log.debug("%s serving: probe ports %s", self.name, self._probe_ports)

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        self._connected = None
        self._link = None
        self._ap = None
        await _settle(self._under_way)
        if stack is not None:
            await stack.aclose()

    def _reset_ports(self) -> None:
        self._probe_ports, self._refusing_ports, self._tls_servers = {}, {}, {}
        self._world_start = None
        self._cloud_ca = None
        self._device_ssl = None

    async def _tls_port(self, result: str, shift_s: int, family: int) -> int:
        """The port of a TLS server presenting ``result``'s certificate, its validity moved by
        ``shift_s`` (a device clock ``skew`` off sees the real certificate as one issued at
        real time - skew: the same verdict, by the host's clock OpenSSL uses). Made once."""
        key = (result, shift_s, family)
        if key in self._tls_servers:
            return self._tls_servers[key]
        stack = self._stack
        self._started()
        assert stack is not None
        context = _cloud_server_context(result, shift_s, int(time.time() // CLOUD_CERT_REUSE_S))
        server = await _whole(
            asyncio.start_server(
                self._serve_tls,
                LOOPBACK[family],
                0,
                ssl=context,
                ssl_handshake_timeout=self._check_timeout,
            ),
            _close_server,
            self._under_way,
        )
        if self._stack is not stack:  # stopped meanwhile: its stack has closed already
            await _close_server(server)
            raise _stopped()
        stack.push_async_callback(_close_server, server)
        self._tls_servers[key] = int(server.sockets[0].getsockname()[1])
        return self._tls_servers[key]

    def _started(self) -> CertificateAuthority:
        """The world's cloud CA, made at its first use (an idle device makes none)."""
        if self._stack is None:
            raise NetworkError(
                Code.INTERNAL_ERROR,
                "the simulated backend is not started (use 'async with backend:')",
            )
        if self._cloud_ca is None:
            self._cloud_ca, self._device_ssl = _cloud()
        return self._cloud_ca

    # -- servers
    async def _serve_probe(self, request: web.Request) -> web.Response:
        from aiohttp import web  # loaded already: this server runs on it

        if self._portal_url:
            return web.Response(status=302, headers={"Location": self._portal_url})
        return web.Response(status=204)

    async def _serve_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self._check_timeout):
                await writer.wait_closed()

    # -- NetworkBackend

    async def start_access_point(self, config: AccessPointConfig) -> None:
        """The simulated AP: the radio changes mode; the door serves HTTP on loopback or netns."""
        self._started()
        if not config.concurrent:
            # The station goes down with the mode change: our own doing, not a lost link.
            self._connected, self._link = None, None
        self._ap = config
        log.info("radio: access point %r up", config)

    async def stop_access_point(self) -> None:
        if self._ap is not None:
            log.info("radio: access point %r down", self._ap)
        self._ap = None

    async def scan(self) -> list[AccessPoint]:
        """What the device's radio hears: BSSes on its bands, at their RSSI plus its antenna
        offset."""
        self._started()
        self._radio_free("scan")
        await self._sleep(self._scenario.scan_delay_ms)
        self._scanned_at = asyncio.get_running_loop().time()
        world, bands = self._scenario, self._scenario.device.bands
        seen = [
            replace(sap.ap, ssid=b"" if sap.ap.hidden else sap.ap.ssid, rssi=world.heard_rssi(sap))
            for sap in world.access_points
            if sap.ap.band in bands and self._live.on_air(sap)
        ]
        return sorted(seen, key=lambda ap: ap.rssi, reverse=True)

    def _new_attempt(self) -> _Attempt:
        """Each attempt draws from its own generator, seeded by the scenario's seed and the
        attempt's number: the same seed replays the same sequence of attempts."""
        self._attempts += 1
        rng = random.Random(f"{self._seed}:{self._attempts}")
        attempt = _Attempt(self._attempts, rng, tuple(self._faults.values()))
        self._attempt = attempt
        return attempt

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
        self._connected, self._link = None, None  # joining leaves the current network first
        self._portal_url = None
        attempt = self._new_attempt()
        attempt.ssid = ssid
        detail: dict[str, Any] = {"ssid_hex": ssid.hex(), "hidden": hidden}
        if attempt.faults:
            detail["faults"] = [f.name for f in attempt.faults]
        # A scan of the last few seconds is what the radio joins from (wpa_supplicant's
        # scan results); otherwise the join scans first.
        fresh = asyncio.get_running_loop().time() - self._scanned_at < FRESH_SCAN_S
        _emit(on_phase, Phase.SCANNING, {**detail, "cached": True} if fresh else detail)
        if not fresh:
            await self._sleep(self._scenario.scan_delay_ms)
        candidates = self._candidates(ssid, hidden)
        first = candidates[0].ap
        # A hidden network's beacons say nothing of its security: the device learns it only
        # by trying (SAE, then PSK), unless the app sent it.
        scanned = None if first.hidden else first.security
        security = security_for_join(_show(ssid), security, scanned, eap, actual=first.security)
        validate_credentials(ssid, passphrase, security or scanned)
        tries = key_mgmts_to_try(security, passphrase, scanned, eap)
        # A mesh or a dual-band router: when one BSS does not answer or gives no lease, the
        # device blocks it for this attempt and tries the next best, as wpa_supplicant does.
        failed_on: list[str] = []
        last: NetworkError | None = None
        for sap in candidates:
            try:
                result = await self._join_bss(
                    sap, ssid, (passphrase, eap), tries, attempt, failed_on, on_phase
                )
            except NetworkError as exc:
                if exc.code not in (Code.ASSOCIATION_TIMEOUT, Code.NO_DHCP_LEASE):
                    raise
                last = exc
                failed_on.append(sap.ap.bssid)
                log.info("join: %s failed (%s); next BSS", sap.ap.bssid, exc.code.name)
                continue
            self._saved[ssid] = passphrase
            return result
        assert last is not None
        raise last

    async def _authenticate(
        self,
        sap: ScenarioAccessPoint,
        secret: tuple[str | None, EapSettings | None],
        tries: tuple[str, ...],
        on_phase: PhaseCallback | None,
    ) -> None:
        """The key managements ``tries`` against the BSS in turn (a hidden network of unknown
        security: SAE, then PSK), each an ``authenticating`` event, until one is accepted.
        Raises NetworkError: WRONG_CREDENTIALS (an accepted key management, the wrong
        passphrase), SECURITY_MISMATCH (none accepted: the world knows the network's mode)."""
        ap = sap.ap
        passphrase, eap = secret
        for key_mgmt in tries:
            detail = {"security": str(ap.security), "key_mgmt": key_mgmt, "bssid": ap.bssid}
            _emit(
                on_phase,
                Phase.AUTHENTICATING,
                detail if eap is None else {**detail, "eap": eap.public()},
            )
            if key_mgmt not in ap.security.key_mgmts:
                log.info("join: %s does not take key-mgmt %s", ap.bssid, key_mgmt)
                continue
            if eap is not None:
                from .radius import authenticate  # lazy: cryptography, for enterprise joins only

                server = sap.radius or RadiusServer(methods=(EapMethod.PEAP, EapMethod.TTLS))
                code, why = authenticate(server, eap)
                if code is not Code.OK:
                    raise _fail(code, Phase.AUTHENTICATING, f"{ap.bssid}: {why}", bssid=ap.bssid)
                return
            # PBKDF2 frees the GIL: in a thread, a fleet's joins derive keys on another core
            # while the event loop serves the other devices.
            expected = self._live.key(sap)
            if not await asyncio.to_thread(_passphrase_matches, ap, key_mgmt, expected, passphrase):
                how = "SAE authentication" if key_mgmt == "sae" else "4-way handshake"
                raise _fail(
                    Code.WRONG_CREDENTIALS,
                    Phase.AUTHENTICATING,
                    f"{ap.bssid} rejected the passphrase ({how} failed)",
                    bssid=ap.bssid,
                )
            return
        raise _fail(
            Code.SECURITY_MISMATCH,
            Phase.AUTHENTICATING,
            f"{ap.bssid} is {ap.security}: it refused {', '.join(tries)}",
            bssid=ap.bssid,
            security=str(ap.security),
            tried=list(tries),
        )

    def _candidates(self, ssid: bytes, hidden: bool) -> list[ScenarioAccessPoint]:
        """The BSSes of ``ssid`` the device may try, best first: on its bands, the preferred
        band first (5 GHz when heard at -70 dBm or better, or when band steering holds the
        device off 2.4 GHz), then 2.4 GHz, then a weak 5 GHz, each by signal. Those below the
        floor only if nothing is above."""
        world = self._scenario
        matching = [sap for sap in world.bsses(ssid) if self._live.on_air(sap)]
        visible = [sap for sap in matching if hidden or not sap.ap.hidden]
        usable = [sap for sap in visible if sap.ap.band in world.device.bands]
        if not usable:
            if visible:  # heard, but only on a band the radio cannot use
                raise _fail(
                    Code.NETWORK_5GHZ_ONLY,
                    Phase.SCANNING,
                    f"{_show(ssid)} is only on 5GHz; the device's radio uses "
                    f"{', '.join(map(str, world.device.bands))}",
                    ssid_hex=ssid.hex(),
                    bands=sorted({str(sap.ap.band) for sap in visible}),
                )
            hint = " (it is hidden: join with hidden=true)" if matching else ""
            raise _fail(
                Code.NETWORK_NOT_FOUND,
                Phase.SCANNING,
                f"no access point with SSID {_show(ssid)} was seen{hint}",
                ssid_hex=ssid.hex(),
            )
        steered = any(sap.band_steering for sap in usable)

        def preference(sap: ScenarioAccessPoint) -> tuple[int, int]:
            heard = world.heard_rssi(sap)
            five = sap.ap.band is Band.GHZ_5 and heard >= world.min_rssi_dbm
            preferred = five and (steered or heard >= PREFER_5GHZ_DBM)
            rank = 0 if preferred else 1 if sap.ap.band is Band.GHZ_2_4 else 2
            return (rank, -heard)

        ordered = sorted(usable, key=preference)
        strong = [sap for sap in ordered if world.heard_rssi(sap) >= world.min_rssi_dbm]
        return strong or ordered[:1]

    # Over 80 lines on purpose: one BSS's association, authentication and DHCP in order, each drawn
    # from the attempt's generator with its faults.
    async def _join_bss(
        self,
        sap: ScenarioAccessPoint,
        ssid: bytes,
        secret: tuple[str | None, EapSettings | None],
        tries: tuple[str, ...],
        attempt: _Attempt,
        failed_on: list[str],
        on_phase: PhaseCallback | None,
    ) -> JoinResult:
        world, ap, steps = self._scenario, sap.ap, sap.after_association
        heard = world.heard_rssi(sap)
        detail: dict[str, Any] = {
            "bssid": ap.bssid,
            "band": str(ap.band),
            "channel": ap.channel,
            "rssi": heard,
        }
        if failed_on:
            detail["after_failing"] = list(failed_on)
        delay, result, faults = attempt.step("association", steps.association)
        if sap.band_steering and Band.GHZ_5 not in world.device.bands:
            # The router ignores a 2.4 GHz-only client for a while, hoping it tries 5 GHz.
            delay += sap.steering_holdoff_ms
            detail["band_steering_holdoff_ms"] = sap.steering_holdoff_ms
        _emit(on_phase, Phase.ASSOCIATING, _with_faults(detail, faults))
        await self._sleep(delay)
        why = None
        if heard < world.min_rssi_dbm:
            why = f"no answer from {ap.bssid}: signal {heard} dBm is below {world.min_rssi_dbm} dBm"
        elif result == "timeout":
            why = f"association with {ap.bssid} timed out"
        elif (deauth := self._faulted("link", ap.ssid)) is not None:
            why = f"{ap.bssid} deauthenticated the device during association (fault {deauth.name})"
        if why is not None:
            raise _fail(
                Code.ASSOCIATION_TIMEOUT, Phase.ASSOCIATING, why, rssi=heard, bssid=ap.bssid
            )

        await self._authenticate(sap, secret, tries, on_phase)

        dhcp = steps.dhcp
        delay, result, faults = attempt.step("dhcp", dhcp)
        _emit(
            on_phase,
            Phase.DHCP,
            _with_faults({"bssid": ap.bssid, "addressing": dhcp.addressing}, faults),
        )
        await self._sleep(delay)
        if dhcp.addressing == "ipv6-only" and not world.device.ipv6:
            raise _fail(
                Code.IPV6_ONLY_NETWORK,
                Phase.DHCP,
                f"{ap.bssid} sends IPv6 router advertisements but no DHCPv4 server answers, "
                "and the device's stack needs IPv4",
                bssid=ap.bssid,
            )
        leased = self._live.out("lease", ap.bssid) or self._faulted("lease", ap.ssid)
        if result == "timeout" or leased:
            raise _fail(
                Code.NO_DHCP_LEASE,
                Phase.DHCP,
                f"associated with {ap.bssid} but no DHCP server answered",
                bssid=ap.bssid,
            )
        six = dhcp.addressing == "ipv6-only" or (dhcp.addressing == "dual" and world.device.ipv6)
        attempt.family = 6 if six else 4
        self._connected = sap
        return JoinResult(
            ssid=ssid,
            bssid=ap.bssid,
            band=ap.band,
            ip=dhcp.ip6 if dhcp.addressing == "ipv6-only" else dhcp.ip,
            gateway=dhcp.gateway,
            dns=dhcp.dns,
        )

    async def verify(self, *, on_phase: PhaseCallback | None = None) -> None:
        async with self._lock:
            self._started()
            await self._serve_world()
            sap, attempt = self._connected, self._attempt
            if sap is None or attempt is None:
                raise _fail(Code.NO_INTERNET, Phase.DNS, "not connected to a network")
            probe_ips, cloud_ips = await self._check_dns(sap, attempt, on_phase)
            await self._check_reach(sap, attempt, probe_ips, on_phase)
            clock, skew_s, ntp = await self._check_clock(sap, attempt, on_phase)
            await self._check_cloud(sap, attempt, cloud_ips, (clock, skew_s, ntp), on_phase)
            # Established: from now on the world may take it away.
            self._link = _Link(sap)
            self._live.play("online")

    @staticmethod
    def _routable(sap: ScenarioAccessPoint) -> bool:
        """IPv6-only: the names resolve through DNS64 when the network has NAT64; without it
        the cloud's A records lead nowhere (the device has no IPv4 route)."""
        dhcp = sap.after_association.dhcp
        return dhcp.addressing != "ipv6-only" or dhcp.nat64

    async def _check_dns(
        self, sap: ScenarioAccessPoint, attempt: _Attempt, on_phase: PhaseCallback | None
    ) -> tuple[list[str], list[str]]:
        from .checks import check_dns

        family = attempt.family
        delay, dns_result, faults = attempt.step("dns", sap.after_association.dns)
        if self._live.out("dns", sap.ap.bssid):
            dns_result = "fail"
        _emit(
            on_phase,
            Phase.DNS,
            _with_faults({"hosts": [PROBE_HOST, CLOUD_HOST], "ipv": family}, faults),
        )
        await self._sleep(delay)
        address = LOOPBACK[family] if self._routable(sap) else LOOPBACK[4]
        resolver = _resolver(dns_result, address)
        timeout = self._check_timeout
        probe_ips = await check_dns(PROBE_HOST, resolver=resolver, timeout=timeout)
        cloud_ips = await check_dns(CLOUD_HOST, resolver=resolver, timeout=timeout)
        return probe_ips, cloud_ips

    async def _check_reach(
        self,
        sap: ScenarioAccessPoint,
        attempt: _Attempt,
        probe_ips: list[str],
        on_phase: PhaseCallback | None,
    ) -> None:
        """The captive-portal probe, then the internet."""
        from .checks import check_captive_portal, check_internet

        steps, family, routable = sap.after_association, attempt.family, self._routable(sap)
        delay, portal_result, faults = attempt.step("captive_portal", steps.captive_portal)
        internet_delay, internet_result, internet_faults = attempt.step("internet", steps.internet)
        if self._live.out("internet", sap.ap.bssid):
            internet_result = "none"
        portal = portal_result == "portal"
        self._portal_url = (
            (steps.captive_portal.login_url or DEFAULT_PORTAL_URL) if portal else None
        )
        # A portal answers locally; otherwise the probe needs the internet (and a route).
        reachable = portal or (internet_result == "ok" and routable)
        port = (self._probe_ports if reachable else self._refusing_ports)[family]
        host = probe_ips[0]
        url = (
            f"http://[{host}]:{port}{PROBE_PATH}"
            if ":" in host
            else f"http://{host}:{port}{PROBE_PATH}"
        )
        _emit(on_phase, Phase.CAPTIVE_PORTAL, _with_faults({"url": url}, faults))
        await self._sleep(delay)
        if not routable:
            raise _fail(
                Code.NO_INTERNET,
                Phase.CAPTIVE_PORTAL,
                f"{CLOUD_HOST} has only IPv4 addresses and the IPv6-only network has no "
                "NAT64 to reach them",
                reason="no NAT64",
            )
        await check_captive_portal(url, timeout=self._check_timeout)
        _emit(on_phase, Phase.INTERNET, _with_faults({"host": host, "port": port}, internet_faults))
        await self._sleep(internet_delay)
        await check_internet(probe_ips, port, timeout=self._check_timeout)

    async def _check_clock(
        self, sap: ScenarioAccessPoint, attempt: _Attempt, on_phase: PhaseCallback | None
    ) -> tuple[str, int, str]:
        """Network time: a device sets its clock (SNTP) before it trusts a certificate. If time
        does not answer, it keeps its RTC's (maybe skewed) time, or none at all. Returns the
        clock's source, its skew in s and what network time did."""
        delay, ntp_result, faults = attempt.step("ntp", sap.after_association.ntp)
        device = self._scenario.device
        if ntp_result == "ok":
            clock, skew_s = "ntp", 0
        elif device.rtc:
            clock, skew_s = "rtc", device.clock_skew_s
        else:
            clock = "unset"
            skew_s = -int((dt.datetime.now(dt.UTC) - EPOCH).total_seconds())
        _emit(
            on_phase,
            Phase.CLOCK,
            _with_faults({"ntp": ntp_result, "clock": clock, "skew_s": skew_s}, faults),
        )
        await self._sleep(delay)
        return clock, skew_s, ntp_result

    async def _check_cloud(
        self,
        sap: ScenarioAccessPoint,
        attempt: _Attempt,
        cloud_ips: list[str],
        time: tuple[str, int, str],
        on_phase: PhaseCallback | None,
    ) -> None:
        """TLS to the cloud, at the device's own date."""
        from .checks import check_tls

        assert self._device_ssl is not None
        clock, skew_s, ntp_result = time
        delay, tls_result, faults = attempt.step("tls", sap.after_association.tls)
        tls_port = await self._tls_port(tls_result, -skew_s, attempt.family)
        _emit(
            on_phase,
            Phase.TLS,
            _with_faults({"host": CLOUD_HOST, "port": tls_port, "clock": clock}, faults),
        )
        await self._sleep(delay)
        try:
            await check_tls(
                cloud_ips,
                tls_port,
                ssl_context=self._device_ssl,
                server_hostname=CLOUD_HOST,
                timeout=self._check_timeout,
            )
        except NetworkError as exc:
            if exc.code is Code.TLS_CERTIFICATE_DATE and clock == "unset":
                raise _fail(
                    Code.CLOCK_NOT_SET,
                    Phase.TLS,
                    "the device has no clock (no RTC) and network time did not answer: "
                    f"at 1970-01-01 the cloud's certificate is not valid yet ({exc.detail})",
                    ntp=ntp_result,
                ) from None
            raise

    async def disconnect(self) -> None:
        self._connected, self._link = None, None

    async def forget_all(self) -> None:
        self._connected, self._link = None, None
        self._saved.clear()

    # -- the connected life
    def watch_world(self, note: WorldNote) -> None:
        self._note = note

    async def wait_link_loss(self) -> NetworkError:
        link = self._link
        if link is None:
            return await super().wait_link_loss()  # nothing established: nothing to lose
        await link.lost.wait()
        assert link.loss is not None
        return link.loss

    async def check_connection(self) -> None:
        """DNS and the internet over the established connection, as :meth:`verify` checks
        them (the modelled resolver, a real TCP connection to the probe or a refusing port)."""
        from .checks import check_dns, check_internet

        link, attempt = self._live_link(), self._attempt
        if link is None:
            raise NetworkError(Code.LINK_LOST, "not connected to a network")
        self._started()
        await self._serve_world()
        bssid = link.sap.ap.bssid
        family = attempt.family if attempt is not None else 4
        ssid = link.sap.ap.ssid
        dns_out = self._live.out("dns", bssid) or self._faulted("dns", ssid) is not None
        resolver = _resolver("fail" if dns_out else "ok", LOOPBACK[family])
        try:
            ips = await check_dns(PROBE_HOST, resolver=resolver, timeout=self._check_timeout)
        except NetworkError as exc:
            raise NetworkError(
                Code.DNS_LOST, f"{exc.detail} (still associated with {bssid})", raw=exc.raw
            ) from None
        internet_out = (
            self._live.out("internet", bssid) or self._faulted("internet", ssid) is not None
        )
        port = (self._refusing_ports if internet_out else self._probe_ports)[family]
        try:
            await check_internet(ips, port, timeout=self._check_timeout)
        except NetworkError as exc:
            raise NetworkError(
                Code.INTERNET_LOST, f"{exc.detail} (still associated with {bssid})", raw=exc.raw
            ) from None

    def _live_link(self) -> _Link | None:
        link = self._link
        return link if link is not None and not link.lost.is_set() else None

    def _lose(self, code: Code, detail: str) -> None:
        """The established connection ends (the world's doing): tell whoever waits."""
        link = self._live_link()
        if link is None:
            return
        self._connected = None
        link.loss = NetworkError(code, detail, raw={"bssid": link.sap.ap.bssid})
        log.info("connection to %s lost: %s", link.sap.ap.bssid, detail)
        link.lost.set()

    def _world_changed(self, change: Change) -> None:
        self._note(f"world: {change.describe()}", change.data())
        link = self._live_link()
        if link is None:
            return
        step, bssid = change.step, link.sap.ap.bssid
        hits = not step.bssids or bssid in step.bssids
        gone = (step.action == "ap_off" and not change.undone) or (
            step.action == "ap_on" and change.undone
        )
        if hits and gone:
            self._lose(Code.LINK_LOST, f"the access point {bssid} went off the air")
        elif hits and step.action == "passphrase":
            self._lose(
                Code.LINK_LOST,
                f"{bssid} restarted its Wi-Fi with another passphrase and disconnected the device",
            )
        elif hits and step.action == "lease" and not change.undone:
            self._lose(Code.LEASE_LOST, f"the DHCP server on {bssid} did not renew the lease")

    async def _sleep(self, delay_ms: int) -> None:
        """Simulated time passing (the world's latency), not synchronisation."""
        if self._zero_delay or delay_ms <= 0 or self._time_scale == 0:
            return
        await asyncio.sleep(delay_ms / 1000 * self._time_scale)


# -- helpers --------------------------------------------------------------------------------------


async def _whole(
    start: Awaitable[_T], undo: Callable[[_T], Awaitable[None]], under_way: set[asyncio.Future[Any]]
) -> _T:
    """``start`` (a server's), which a cancel cannot cut in half: asyncio's create_server,
    cancelled at its last step (the device stopping while it checks), drops a listening
    server unclosed. On a cancel the start runs to its end and ``undo`` closes what it made.
    The start and its undo are kept in ``under_way`` (its backend's, for :func:`_settle`)."""
    task = asyncio.ensure_future(start)
    under_way.add(task)
    task.add_done_callback(under_way.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:

        def made(done: asyncio.Future[_T]) -> None:
            if not done.cancelled() and done.exception() is None:
                closing = asyncio.ensure_future(undo(done.result()))
                under_way.add(closing)
                closing.add_done_callback(under_way.discard)

        task.add_done_callback(made)
        raise


async def _nothing(_made: None) -> None:
    """What undoes a start that cleans up after itself."""


_T = TypeVar("_T")


async def _settle(under_way: set[asyncio.Future[Any]]) -> None:
    """Wait for a stopping backend's starts and undos under way: they see the stop and close
    what they made (left to the loop's shutdown, a cancel would cut them in half)."""
    for _ in range(3):  # a start's end may begin an undo
        pending = [f for f in under_way if not f.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=5)


def _stopped() -> NetworkError:
    """A world's server was made while the backend stopped: it is closed, not left open."""
    return NetworkError(Code.INTERNAL_ERROR, "the simulated backend stopped during the check")


async def _close_server(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


def _emit(on_phase: PhaseCallback | None, phase: Phase, detail: dict[str, Any]) -> None:
    log.debug("phase %s %s", phase, detail)
    if on_phase is not None:
        on_phase(phase, detail)


def _fail(code: Code, phase: Phase, detail: str, **raw: Any) -> NetworkError:
    return NetworkError(code, detail, raw={"phase": str(phase), **raw})


def _show(ssid: bytes) -> str:
    try:
        return repr(ssid.decode("utf-8"))
    except UnicodeDecodeError:
        return f"0x{ssid.hex()}"


def _resolver(result: str, address: str) -> Resolver:
    async def resolve(host: str) -> list[str]:
        if result == "fail":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host in (CLOUD_HOST, PROBE_HOST):
            return [address]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


def _with_faults(detail: dict[str, Any], faults: list[str]) -> dict[str, Any]:
    return {**detail, "faults": faults} if faults else detail


def _psk(secret: str, ssid: bytes) -> bytes:
    """The WPA2 pairwise master key: a raw 64-hex key as is, else PBKDF2 of the passphrase."""
    if len(secret) == 64 and all(c in string.hexdigits for c in secret):
        return bytes.fromhex(secret)
    return hashlib.pbkdf2_hmac("sha1", secret.encode("ascii"), ssid, 4096, 32)


def _passphrase_matches(
    ap: AccessPoint, key_mgmt: str, expected: str | None, given: str | None
) -> bool:
    if key_mgmt in ("none", "owe"):
        return True
    if expected is None or given is None:
        return False
    if key_mgmt == "sae":  # SAE uses the password itself; a raw PSK cannot work
        return hmac.compare_digest(expected.encode(), given.encode())
    return hmac.compare_digest(_world_psk(expected, ap.ssid), _psk(given, ap.ssid))


@functools.lru_cache(maxsize=256)
def _world_psk(secret: str, ssid: bytes) -> bytes:
    """The world's own AP key, derived once per process (a fleet's devices share their worlds'
    networks); the phone's passphrase is derived on every attempt and never kept."""
    return _psk(secret, ssid)
