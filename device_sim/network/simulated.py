"""The simulated network backend: a scenario file plays the Wi-Fi world.

Scan, association, authentication and DHCP are modelled from the scenario (with simulated delays).
Verification is real where that is cheap: the backend serves a connectivity probe over HTTP and
the "cloud" over TLS on 127.0.0.1, with certificates made at start-up, and runs the same
:mod:`device_sim.network.checks` a real backend runs. Only DNS is modelled (the names resolve to
127.0.0.1, or fail), since a bench may have no network at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import os
import socket
import ssl
import string
import tempfile
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from ..codes import Code
from ..errors import ConfigError, NetworkError
from ..pki import CertificateAuthority  # re-exported: tests make their own cloud CAs with it
from .base import (
    AccessPoint,
    AccessPointConfig,
    Band,
    JoinResult,
    NetworkBackend,
    Phase,
    PhaseCallback,
    Security,
    validate_credentials,
)
from .checks import Resolver, check_captive_portal, check_dns, check_internet, check_tls
from .scenario import DnsStep, Scenario, ScenarioAccessPoint, load_scenario

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


# -- the backend ----------------------------------------------------------------------------------


class SimulatedBackend(NetworkBackend):
    """A :class:`NetworkBackend` whose world is a :class:`Scenario`.

    ``zero_delay`` skips every simulated delay; ``time_scale`` multiplies them (0.5: twice as
    fast).
    ``check_timeout`` bounds each real check in :meth:`verify`, in seconds.
    """

    def __init__(
        self,
        scenario: Scenario | str | os.PathLike[str],
        *,
        zero_delay: bool = False,
        time_scale: float = 1.0,
        check_timeout: float = 5.0,
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
        self._device_ssl: ssl.SSLContext | None = None
        self._ap: AccessPointConfig | None = None

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
        if self._stack is not None:
            return
        async with AsyncExitStack() as stack:
            stack.callback(self._reset_ports)
            self._cloud_ca = CertificateAuthority("device-sim cloud CA")
            app = web.Application()
            app.router.add_get(PROBE_PATH, self._serve_probe)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self._internet_port = int(runner.addresses[0][1])
            # Bound but never listening: connections to it are refused ("no internet").
            refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            stack.callback(refusing.close)
            refusing.bind(("127.0.0.1", 0))
            self._refusing_port = int(refusing.getsockname()[1])
            interceptor: CertificateAuthority | None = None
            for result in sorted(self._tls_results()):
                if result == "untrusted":
                    interceptor = interceptor or CertificateAuthority("device-sim interceptor CA")
                    cert = interceptor.issue(CLOUD_HOST)
                elif result == "hostname_mismatch":
                    cert = self._cloud_ca.issue(MISMATCH_HOST)
                else:
                    cert = self._cloud_ca.issue(CLOUD_HOST, expired=result == "expired")
                server = await asyncio.start_server(
                    self._serve_tls,
                    "127.0.0.1",
                    0,
                    ssl=server_ssl_context(*cert),
                    ssl_handshake_timeout=self._check_timeout,
                )
                stack.push_async_callback(_close_server, server)
                self._tls_ports[result] = int(server.sockets[0].getsockname()[1])
            self._device_ssl = client_ssl_context(self._cloud_ca.cert_pem)
            self._stack = stack.pop_all()
        log.debug(
            "%s started: probe port %d, tls ports %s",
            self.name,
            self._internet_port,
            self._tls_ports,
        )

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        self._connected = None
        self._ap = None
        if stack is not None:
            await stack.aclose()

    def _reset_ports(self) -> None:
        self._internet_port = self._refusing_port = 0
        self._tls_ports = {}
        self._cloud_ca = None
        self._device_ssl = None

    def _tls_results(self) -> set[str]:
        return {self._scenario.after_association.tls.result} | {
            sap.after_association.tls.result for sap in self._scenario.access_points
        }

    def _started(self) -> CertificateAuthority:
        if self._stack is None or self._cloud_ca is None:
            raise NetworkError(
                Code.INTERNAL_ERROR,
                "the simulated backend is not started (use 'async with backend:')",
            )
        return self._cloud_ca

    # -- servers
    async def _serve_probe(self, request: web.Request) -> web.Response:
        sap = self._connected
        portal = sap.after_association.captive_portal if sap else None
        if portal is not None and portal.result == "portal" and portal.login_url:
            return web.Response(status=302, headers={"Location": portal.login_url})
        return web.Response(status=204)

    async def _serve_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self._check_timeout):
                await writer.wait_closed()

    # -- NetworkBackend
    def _radio_free(self, what: str) -> None:
        # One radio, as on most hardware: the SoftAP door must take its AP down first, unless
        # it asked for a concurrent AP (AP and station at once, an ESP32's APSTA mode).
        if self._ap is not None and not self._ap.concurrent:
            raise NetworkError(
                Code.INTERNAL_ERROR,
                f"cannot {what}: the radio is the access point {self._ap.ssid!r}",
            )

    @property
    def access_point(self) -> AccessPointConfig | None:
        return self._ap

    async def start_access_point(self, config: AccessPointConfig) -> None:
        """The simulated AP: the radio changes mode; the door serves HTTP on loopback or netns."""
        self._started()
        if not config.concurrent:
            self._connected = None  # the station goes down with the mode change
        self._ap = config
        log.info("radio: access point %r up", config)

    async def stop_access_point(self) -> None:
        if self._ap is not None:
            log.info("radio: access point %r down", self._ap)
        self._ap = None

    async def scan(self) -> list[AccessPoint]:
        self._started()
        self._radio_free("scan")
        await self._sleep(self._scenario.scan_delay_ms)
        seen = [
            replace(sap.ap, ssid=b"") if sap.ap.hidden else sap.ap
            for sap in self._scenario.access_points
        ]
        return sorted(seen, key=lambda ap: ap.rssi, reverse=True)

    async def join(
        self,
        ssid: bytes,
        passphrase: str | None,
        *,
        hidden: bool = False,
        on_phase: PhaseCallback | None = None,
    ) -> JoinResult:
        ssid = bytes(ssid)
        async with self._lock:
            self._started()
            self._radio_free("join")
            self._connected = None  # joining leaves the current network first
            _emit(on_phase, Phase.SCANNING, {"ssid_hex": ssid.hex(), "hidden": hidden})
            await self._sleep(self._scenario.scan_delay_ms)
            sap = self._choose_bss(ssid, hidden)
            ap, steps = sap.ap, sap.after_association
            if not ap.security.supported:
                raise _fail(
                    Code.UNSUPPORTED_SECURITY,
                    Phase.SCANNING,
                    f"{_show(ssid)} uses {ap.security}, which the device cannot join",
                    security=str(ap.security),
                )
            validate_credentials(ssid, passphrase, ap.security)

            _emit(
                on_phase,
                Phase.ASSOCIATING,
                {"bssid": ap.bssid, "band": str(ap.band), "channel": ap.channel, "rssi": ap.rssi},
            )
            await self._sleep(steps.association.delay_ms)
            if ap.rssi < self._scenario.min_rssi_dbm:
                raise _fail(
                    Code.ASSOCIATION_TIMEOUT,
                    Phase.ASSOCIATING,
                    f"no answer from {ap.bssid}: signal {ap.rssi} dBm is below "
                    f"{self._scenario.min_rssi_dbm} dBm",
                    rssi=ap.rssi,
                    bssid=ap.bssid,
                )
            if steps.association.result == "timeout":
                raise _fail(
                    Code.ASSOCIATION_TIMEOUT,
                    Phase.ASSOCIATING,
                    f"association with {ap.bssid} timed out",
                    rssi=ap.rssi,
                    bssid=ap.bssid,
                )

            _emit(on_phase, Phase.AUTHENTICATING, {"security": str(ap.security)})
            if not _passphrase_matches(ap, sap.passphrase, passphrase):
                how = (
                    "SAE authentication" if ap.security is Security.WPA3_SAE else "4-way handshake"
                )
                raise _fail(
                    Code.WRONG_CREDENTIALS,
                    Phase.AUTHENTICATING,
                    f"{ap.bssid} rejected the passphrase ({how} failed)",
                    bssid=ap.bssid,
                )

            _emit(on_phase, Phase.DHCP, {"bssid": ap.bssid})
            await self._sleep(steps.dhcp.delay_ms)
            if steps.dhcp.result == "timeout":
                raise _fail(
                    Code.NO_DHCP_LEASE,
                    Phase.DHCP,
                    f"associated with {ap.bssid} but no DHCP server answered",
                    bssid=ap.bssid,
                )

            self._connected = sap
            self._saved[ssid] = passphrase
            return JoinResult(
                ssid=ssid,
                bssid=ap.bssid,
                band=ap.band,
                ip=steps.dhcp.ip,
                gateway=steps.dhcp.gateway,
                dns=steps.dhcp.dns,
            )

    def _choose_bss(self, ssid: bytes, hidden: bool) -> ScenarioAccessPoint:
        matching = self._scenario.bsses(ssid)
        visible = [sap for sap in matching if hidden or not sap.ap.hidden]
        if not visible:
            hint = " (it is hidden: join with hidden=true)" if matching else ""
            raise _fail(
                Code.NETWORK_NOT_FOUND,
                Phase.SCANNING,
                f"no access point with SSID {_show(ssid)} was seen{hint}",
                ssid_hex=ssid.hex(),
            )

        def strongest(saps: Sequence[ScenarioAccessPoint]) -> ScenarioAccessPoint:
            return max(saps, key=lambda sap: sap.ap.rssi)

        five = [sap for sap in visible if sap.ap.band is Band.GHZ_5]
        two = [sap for sap in visible if sap.ap.band is Band.GHZ_2_4]
        if five and two:
            best5 = strongest(five)
            return best5 if best5.ap.rssi >= PREFER_5GHZ_DBM else strongest(two)
        return strongest(visible)

    async def verify(self, *, on_phase: PhaseCallback | None = None) -> None:
        async with self._lock:
            self._started()
            assert self._device_ssl is not None
            sap = self._connected
            if sap is None:
                raise _fail(Code.NO_INTERNET, Phase.DNS, "not connected to a network")
            steps, timeout = sap.after_association, self._check_timeout

            _emit(on_phase, Phase.DNS, {"hosts": [PROBE_HOST, CLOUD_HOST]})
            await self._sleep(steps.dns.delay_ms)
            resolver = _resolver(steps.dns)
            probe_ips = await check_dns(PROBE_HOST, resolver=resolver, timeout=timeout)
            cloud_ips = await check_dns(CLOUD_HOST, resolver=resolver, timeout=timeout)
            probe_ip = probe_ips[0]

            # A portal answers locally; otherwise the probe needs the internet.
            reachable = steps.captive_portal.result == "portal" or steps.internet.result == "ok"
            port = self._internet_port if reachable else self._refusing_port
            url = f"http://{probe_ip}:{port}{PROBE_PATH}"
            _emit(on_phase, Phase.CAPTIVE_PORTAL, {"url": url})
            await self._sleep(steps.captive_portal.delay_ms)
            await check_captive_portal(url, timeout=timeout)

            _emit(on_phase, Phase.INTERNET, {"host": probe_ip, "port": port})
            await self._sleep(steps.internet.delay_ms)
            await check_internet(probe_ips, port, timeout=timeout)

            tls_port = self._tls_ports[steps.tls.result]
            _emit(on_phase, Phase.TLS, {"host": CLOUD_HOST, "port": tls_port})
            await self._sleep(steps.tls.delay_ms)
            await check_tls(
                cloud_ips,
                tls_port,
                ssl_context=self._device_ssl,
                server_hostname=CLOUD_HOST,
                timeout=timeout,
            )

    async def disconnect(self) -> None:
        self._connected = None

    async def forget_all(self) -> None:
        self._connected = None
        self._saved.clear()

    async def _sleep(self, delay_ms: int) -> None:
        """Simulated time passing (the world's latency), not synchronisation."""
        if self._zero_delay or delay_ms <= 0 or self._time_scale == 0:
            return
        await asyncio.sleep(delay_ms / 1000 * self._time_scale)


# -- helpers --------------------------------------------------------------------------------------


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


def _resolver(step: DnsStep) -> Resolver:
    async def resolve(host: str) -> list[str]:
        if step.result == "fail":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host in (CLOUD_HOST, PROBE_HOST):
            return ["127.0.0.1"]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


def _psk(secret: str, ssid: bytes) -> bytes:
    """The WPA2 pairwise master key: a raw 64-hex key as is, else PBKDF2 of the passphrase."""
    if len(secret) == 64 and all(c in string.hexdigits for c in secret):
        return bytes.fromhex(secret)
    return hashlib.pbkdf2_hmac("sha1", secret.encode("ascii"), ssid, 4096, 32)


def _passphrase_matches(ap: AccessPoint, expected: str | None, given: str | None) -> bool:
    if ap.security is Security.OPEN:
        return True
    if expected is None or given is None:
        return False
    if ap.security is Security.WPA3_SAE:  # SAE uses the password itself; a raw PSK cannot work
        return hmac.compare_digest(expected.encode(), given.encode())
    return hmac.compare_digest(_psk(expected, ap.ssid), _psk(given, ap.ssid))
