"""The simulated backend: joins, failure codes, phases, and the real checks behind verify."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from device_sim.codes import Code
from device_sim.errors import ConfigError, NetworkError
from device_sim.network import (
    AccessPoint,
    BackendArgs,
    BackendKind,
    Band,
    NetworkManagerArgs,
    Phase,
    Scenario,
    Security,
    SimulatedArgs,
    create_backend,
    load_scenario,
    validate_credentials,
)
from device_sim.network.checks import check_captive_portal, check_tls
from device_sim.network.eap import EapSettings
from device_sim.network.radius import eap_settings
from device_sim.network.scenario import parse_scenario
from device_sim.network.simulated import SimulatedBackend, client_ssl_context

from .recorder import Recorder
from .test_scenario import (
    DECIDED_BY_THE_CLOUD,
    DECIDED_BY_THE_ENGINE,
    DECIDED_BY_THE_STORY,
    SHIPPED,
)

JOIN_PHASES = ["scanning", "associating", "authenticating", "dhcp"]
VERIFY_PHASES = ["dns", "captive_portal", "internet", "clock", "tls"]
FAILED_IN = {  # the phase each failing scenario stops in
    "weak-signal": "associating",
    "no-dhcp": "dhcp",
    "dns-failure": "dns",
    "captive-portal": "captive_portal",  # the probe is redirected
    "no-internet": "captive_portal",  # the probe gets no answer at all
    "tls-failure": "tls",
    "five-ghz-only": "scanning",  # heard only on a band the radio lacks
    "wrong-clock": "tls",
    "no-rtc": "tls",
    "ipv6-only-legacy": "dhcp",  # router advertisements, no DHCPv4
    "enterprise-peap-unknown-user": "authenticating",  # the RADIUS server's answer
    "enterprise-peap-untrusted": "authenticating",
    "enterprise-tls-expired": "authenticating",
}
LAB = b"DeviceSim-Lab"
LAB_KEY = "lab-bench-passphrase"


async def onboard(
    backend: SimulatedBackend,
    ssid: bytes,
    passphrase: str | None,
    *,
    hidden: bool = False,
    eap: EapSettings | None = None,
    on_phase: Recorder | None = None,
) -> Code:
    """Join then verify, like the engine; returns the resulting code."""
    try:
        await backend.join(ssid, passphrase, hidden=hidden, eap=eap, on_phase=on_phase)
        await backend.verify(on_phase=on_phase)
    except NetworkError as exc:
        return exc.code
    return Code.OK


def world(access_points: str, extra: str = "") -> SimulatedBackend:
    """A backend over an inline scenario (YAML flow list of access points)."""
    import yaml

    data = yaml.safe_load(f"""
name: inline
description: inline test scenario
default_credentials: {{ssid: Home, passphrase: "home-passphrase"}}
access_points: {access_points}
{extra}""")
    return SimulatedBackend(parse_scenario(data, "inline"), zero_delay=True)


# -- every shipped scenario -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    sorted(set(SHIPPED) - DECIDED_BY_THE_ENGINE - DECIDED_BY_THE_CLOUD - DECIDED_BY_THE_STORY),
)
async def test_default_credentials_give_the_scenarios_code(name: str) -> None:
    scenario = load_scenario(name)
    creds = scenario.default_credentials
    recorder = Recorder()
    async with SimulatedBackend(scenario, zero_delay=True) as backend:
        assert backend.name == f"simulated:{name}"
        eap = eap_settings(creds.eap) if creds.eap is not None else None
        code = await onboard(
            backend, creds.ssid, creds.passphrase, hidden=creds.hidden, eap=eap, on_phase=recorder
        )
    assert code is SHIPPED[name] is creds.expect
    # (a mesh's next BSS repeats associating .. dhcp: each phase counts once here)
    phases = list(dict.fromkeys(recorder.phases))
    if code is Code.OK:
        assert phases == JOIN_PHASES + VERIFY_PHASES
    else:
        assert recorder.phases[-1] == FAILED_IN[name]
        expected = JOIN_PHASES + VERIFY_PHASES
        assert phases == expected[: expected.index(FAILED_IN[name]) + 1]


async def test_typical_home_with_scaled_time() -> None:
    """The simulated delays really run (scaled down 1000x) and the onboarding still succeeds."""
    scenario = load_scenario("typical-home")
    creds = scenario.default_credentials
    async with SimulatedBackend(scenario, time_scale=0.001) as backend:
        assert await onboard(backend, creds.ssid, creds.passphrase) is Code.OK


async def test_zero_delay_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def spy(delay: float, result: Any = None) -> Any:
        slept.append(delay)
        return await real_sleep(delay, result)

    monkeypatch.setattr(asyncio, "sleep", spy)
    scenario = load_scenario("typical-home")
    creds = scenario.default_credentials
    async with SimulatedBackend(scenario, zero_delay=True) as backend:
        assert await onboard(backend, creds.ssid, creds.passphrase) is Code.OK
    assert [d for d in slept if d > 0] == []

    async with SimulatedBackend(scenario, time_scale=0.001) as backend:
        assert await onboard(backend, creds.ssid, creds.passphrase) is Code.OK
    steps = scenario.access_points[1].after_association
    expected_ms = [
        scenario.scan_delay_ms,
        steps.association.delay_ms,
        steps.dhcp.delay_ms,
        steps.dns.delay_ms,
        steps.captive_portal.delay_ms,
        steps.internet.delay_ms,
        steps.tls.delay_ms,
    ]
    assert [d for d in slept if d > 0] == pytest.approx([ms / 1000 * 0.001 for ms in expected_ms])


# -- join -----------------------------------------------------------------------------------------


async def test_wrong_passphrase_then_right_one() -> None:
    async with SimulatedBackend("engineering-wifi", zero_delay=True) as backend:
        with pytest.raises(NetworkError) as info:
            await backend.join(LAB, "not-the-lab-passphrase")
        assert info.value.code is Code.WRONG_CREDENTIALS
        assert info.value.raw["phase"] == "authenticating"
        assert backend.connected is None and backend.saved_networks == ()
        result = await backend.join(LAB, LAB_KEY)
        assert (result.ssid, result.band, result.ip, result.gateway, result.dns) == (
            LAB,
            Band.GHZ_2_4,
            "10.20.0.50",
            "10.20.0.1",
            ("10.20.0.1",),
        )
        assert backend.connected is not None and backend.connected.bssid == result.bssid
        await backend.verify()


async def test_raw_psk_works_for_wpa2_but_not_for_wpa3() -> None:
    async with SimulatedBackend("typical-home", zero_delay=True) as backend:
        psk = hashlib.pbkdf2_hmac("sha1", b"Sunflower-42-Garden", b"Miller Family", 4096, 32).hex()
        await backend.join(b"Miller Family", psk.upper())
        sae_psk = hashlib.pbkdf2_hmac(
            "sha1", b"wpa3-only-neighbour", b"NETGEAR42-5G", 4096, 32
        ).hex()
        with pytest.raises(NetworkError) as info:
            await backend.join(b"NETGEAR42-5G", sae_psk)
        assert info.value.code is Code.WRONG_CREDENTIALS and "SAE" in info.value.detail
        await backend.join(b"NETGEAR42-5G", "wpa3-only-neighbour")


def _tried(seen: Recorder) -> list[str]:
    return [d["key_mgmt"] for phase, d in seen.calls if phase == "authenticating"]


async def test_a_hidden_wpa3_network_is_joined_with_sae_though_no_security_was_sent() -> None:
    async with SimulatedBackend("hidden-wpa3", zero_delay=True) as backend:
        scan = {ap.bssid: ap for ap in await backend.scan()}
        assert scan["02:d5:e1:00:0c:01"].ssid == b""  # its beacons name nothing
        seen = Recorder()
        await backend.join(b"Quiet-House", "sae-only-please", hidden=True, on_phase=seen)
        assert _tried(seen) == ["sae"]


async def test_a_hidden_wpa2_network_is_joined_after_sae_is_refused() -> None:
    async with SimulatedBackend("edge-ssids", zero_delay=True) as backend:
        seen = Recorder()
        await backend.join(b"Hidden-Lab", "probe-for-me-please", hidden=True, on_phase=seen)
        assert _tried(seen) == ["sae", "wpa-psk"]
        with pytest.raises(NetworkError) as info:  # a wrong password ends the tries
            await backend.join(b"Hidden-Lab", "not-the-password", hidden=True)
        assert info.value.code is Code.WRONG_CREDENTIALS


async def test_the_security_the_app_sent_decides_and_a_wrong_one_has_its_code() -> None:
    async with SimulatedBackend("hidden-wpa3", zero_delay=True) as backend:
        with pytest.raises(NetworkError) as info:  # hidden: found out by trying
            await backend.join(
                b"Quiet-House", "sae-only-please", hidden=True, security=Security.WPA2_PSK
            )
        assert info.value.code is Code.SECURITY_MISMATCH
        assert info.value.raw["phase"] == "authenticating" and "wpa3-sae" in info.value.detail
        with pytest.raises(NetworkError) as info:  # visible: the beacons say it at once
            await backend.join(b"Quiet-Guest", None, security=Security.OPEN)
        assert info.value.code is Code.SECURITY_MISMATCH
        assert info.value.raw["phase"] == "scanning"
        with pytest.raises(NetworkError) as info:
            await backend.join(b"Quiet-Guest", None, security=Security.ENTERPRISE)
        assert info.value.code is Code.UNSUPPORTED_SECURITY
        seen = Recorder()
        await backend.join(b"Quiet-Guest", None, on_phase=seen)  # Enhanced Open: no key
        assert _tried(seen) == ["owe"]
        scan = {ap.ssid: ap for ap in await backend.scan()}
        assert scan[b"Quiet-Guest"].security is Security.OWE


@pytest.mark.parametrize(
    ("ssid", "passphrase", "code"),
    [
        (b"Nowhere", "some-passphrase", Code.NETWORK_NOT_FOUND),
        (b"Grand Hotel Staff", "corp-passphrase", Code.UNSUPPORTED_SECURITY),
        (b"Old-Router-WEP", "abcde", Code.UNSUPPORTED_SECURITY),
        (b"Backoffice-5G", "short", Code.INVALID_CREDENTIALS_FORMAT),
        (b"Grand Hotel Guest", "open-needs-none", Code.INVALID_CREDENTIALS_FORMAT),
    ],
)
async def test_join_failures(ssid: bytes, passphrase: str, code: Code) -> None:
    async with SimulatedBackend("difficult-network", zero_delay=True) as backend:
        with pytest.raises(NetworkError) as info:
            await backend.join(ssid, passphrase)
    assert info.value.code is code
    assert passphrase not in str(info.value)


async def test_association_timeout_from_scenario() -> None:
    backend = world(
        '[{ssid: Home, rssi: -40, security: wpa2-psk, passphrase: "home-passphrase"}]',
        "after_association: {association: {result: timeout}}",
    )
    async with backend:
        with pytest.raises(NetworkError) as info:
            await backend.join(b"Home", "home-passphrase")
    assert info.value.code is Code.ASSOCIATION_TIMEOUT and "timed out" in info.value.detail


async def test_hidden_ssid_needs_hidden_true() -> None:
    async with SimulatedBackend("edge-ssids", zero_delay=True) as backend:
        scanned = await backend.scan()
        hidden = [ap for ap in scanned if ap.hidden]
        assert len(hidden) == 1 and hidden[0].ssid == b""
        assert hidden[0].to_wire()["ssid_hex"] == "" and hidden[0].to_wire()["ssid"] is None
        with pytest.raises(NetworkError) as info:
            await backend.join(b"Hidden-Lab", "probe-for-me-please")
        assert info.value.code is Code.NETWORK_NOT_FOUND and "hidden" in info.value.detail
        result = await backend.join(b"Hidden-Lab", "probe-for-me-please", hidden=True)
        assert result.ssid == b"Hidden-Lab" and result.band is Band.GHZ_5
        await backend.verify()
        # hidden=True also finds a network that does broadcast its SSID
        await backend.join("Café ☕ Zone".encode(), "unicode-ssid-ok", hidden=True)


async def test_non_utf8_ssid_joins_by_bytes() -> None:
    raw = bytes([0xC3, 0x28, 0xFF, 0x41])
    async with SimulatedBackend("edge-ssids", zero_delay=True) as backend:
        scanned = await backend.scan()
        (ap,) = [ap for ap in scanned if ap.ssid == raw]
        wire = ap.to_wire()
        assert wire["ssid"] is None and wire["ssid_hex"] == "c328ff41"
        assert json.loads(json.dumps(wire)) == wire
        result = await backend.join(bytes.fromhex(wire["ssid_hex"]), "bytes-not-text")
        assert result.ssid == raw
        await backend.verify()


async def test_scan_lists_everything_strongest_first() -> None:
    scenario = load_scenario("typical-home")
    async with SimulatedBackend(scenario, zero_delay=True) as backend:
        scanned = await backend.scan()
    assert len(scanned) == len(scenario.access_points)
    assert [ap.rssi for ap in scanned] == sorted((ap.rssi for ap in scanned), reverse=True)
    assert {ap.security for ap in scanned} >= {Security.OPEN, Security.WPA3_SAE, Security.WPA2_PSK}
    wire = scanned[0].to_wire()
    assert set(wire) == {"ssid_hex", "ssid", "hidden", "rssi", "band", "channel", "security"}
    assert wire["band"] in ("2.4GHz", "5GHz") and isinstance(wire["channel"], int)


def test_to_wire_of_text_ssid() -> None:
    ap = AccessPoint(
        ssid="Café".encode(),
        bssid="02:00:00:00:00:01",
        band=Band.GHZ_5,
        channel=36,
        rssi=-60,
        security=Security.WPA2_WPA3,
        hidden=False,
    )
    assert ap.to_wire() == {
        "ssid_hex": "436166c3a9",
        "ssid": "Café",
        "hidden": False,
        "rssi": -60,
        "band": "5GHz",
        "channel": 36,
        "security": "wpa2-wpa3",
    }


async def test_dual_band_prefers_5ghz_when_strong_enough() -> None:
    async with SimulatedBackend("typical-home", zero_delay=True) as backend:
        result = await backend.join(b"Miller Family", "Sunflower-42-Garden")
    assert result.band is Band.GHZ_5 and result.bssid == "a4:2b:b0:11:22:31"


@pytest.mark.parametrize(
    ("rssi_24", "rssi_5", "band"),
    [
        (-50, -70, Band.GHZ_5),  # at the threshold: 5 GHz
        (-80, -71, Band.GHZ_2_4),  # below it: 2.4 GHz even though 2.4 is weaker
        (None, -80, Band.GHZ_5),  # only 5 GHz: take it
        (-60, None, Band.GHZ_2_4),
    ],
)
async def test_band_choice(rssi_24: int | None, rssi_5: int | None, band: Band) -> None:
    aps = []
    if rssi_24 is not None:
        aps.append(
            f"{{ssid: Home, band: 2.4GHz, rssi: {rssi_24}, security: wpa2-psk, "
            f'passphrase: "home-passphrase"}}'
        )
    if rssi_5 is not None:
        aps.append(
            f"{{ssid: Home, band: 5GHz, rssi: {rssi_5}, security: wpa2-psk, "
            f'passphrase: "home-passphrase"}}'
        )
    async with world(f"[{', '.join(aps)}]") as backend:
        result = await backend.join(b"Home", "home-passphrase")
    assert result.band is band


# -- phases and secrets ---------------------------------------------------------------------------


async def test_phases_in_order_and_never_the_passphrase() -> None:
    recorder = Recorder()
    async with SimulatedBackend("engineering-wifi", zero_delay=True) as backend:
        with pytest.raises(NetworkError) as info:
            await backend.join(LAB, "wrong-but-secret-1", on_phase=recorder)
        assert "wrong-but-secret-1" not in f"{info.value!s} {info.value!r} {info.value.raw!r}"
        assert await onboard(backend, LAB, LAB_KEY, on_phase=recorder) is Code.OK
    assert recorder.phases == [
        "scanning",
        "associating",
        "authenticating",
        *JOIN_PHASES,
        *VERIFY_PHASES,
    ]
    assert all(isinstance(p, str) and p in set(Phase) for p in recorder.phases)
    dumped = json.dumps(recorder.calls)  # details are JSON-able
    assert LAB_KEY not in dumped and "wrong-but-secret-1" not in dumped
    assert LAB_KEY not in repr(recorder.calls)
    assert LAB_KEY not in repr(backend.scenario)


# -- verify ---------------------------------------------------------------------------------------


async def test_portal_detail_names_the_login_page() -> None:
    async with SimulatedBackend("difficult-network", zero_delay=True) as backend:
        await backend.join(b"Grand Hotel Guest", None)
        with pytest.raises(NetworkError) as info:
            await backend.verify()
    assert info.value.code is Code.CAPTIVE_PORTAL
    assert "http://login.grandhotel.example/portal?ap=7000" in info.value.detail


@pytest.mark.parametrize(
    ("ssid", "passphrase", "reason", "code"),
    [
        (
            b"Corp-Inspected",
            "proxy-sees-all",
            "unable to get local issuer certificate",
            Code.TLS_VERIFICATION_FAILED,
        ),
        (b"Stale-Clock", "time-has-passed", "certificate has expired", Code.TLS_CERTIFICATE_DATE),
        (b"Wrong-Host", "somebody-elses-cert", "hostname mismatch", Code.TLS_VERIFICATION_FAILED),
    ],
)
async def test_tls_failures_carry_the_verify_reason(
    ssid: bytes, passphrase: str, reason: str, code: Code
) -> None:
    async with SimulatedBackend("tls-failure", zero_delay=True) as backend:
        await backend.join(ssid, passphrase)
        with pytest.raises(NetworkError) as info:
            await backend.verify()
    assert info.value.code is code
    assert reason in info.value.detail.lower()


async def test_verify_needs_a_network() -> None:
    async with SimulatedBackend("engineering-wifi", zero_delay=True) as backend:
        with pytest.raises(NetworkError) as info:
            await backend.verify()
        assert info.value.code is Code.NO_INTERNET
        await backend.join(LAB, LAB_KEY)
        await backend.disconnect()
        with pytest.raises(NetworkError):
            await backend.verify()


async def test_forget_all_drops_saved_networks() -> None:
    async with SimulatedBackend("engineering-wifi", zero_delay=True) as backend:
        await backend.join(LAB, LAB_KEY)
        assert backend.saved_networks == (LAB,)
        await backend.forget_all()
        assert not backend.saved_networks and backend.connected is None


async def test_servers_are_closed_after_exit() -> None:
    recorder = Recorder()
    backend = SimulatedBackend("engineering-wifi", zero_delay=True)
    async with backend:
        assert await onboard(backend, LAB, LAB_KEY, on_phase=recorder) is Code.OK
        ca_pem = backend.cloud_ca_pem
    details = dict(recorder.calls)
    with pytest.raises(NetworkError) as info:
        await check_captive_portal(details["captive_portal"]["url"], timeout=5)
    assert info.value.code is Code.NO_INTERNET
    with pytest.raises(NetworkError) as info:
        await check_tls(
            ["127.0.0.1"],
            details["tls"]["port"],
            ssl_context=client_ssl_context(ca_pem),
            server_hostname="cloud.device-sim.test",
            timeout=5,
        )
    assert info.value.code is Code.CLOUD_UNREACHABLE
    with pytest.raises(NetworkError) as info:
        await backend.join(LAB, LAB_KEY)
    assert info.value.code is Code.INTERNAL_ERROR
    await backend.stop()  # twice is fine


async def test_backend_can_restart() -> None:
    backend = SimulatedBackend("zero-delay", zero_delay=True)
    for _ in range(2):
        async with backend:
            assert await onboard(backend, LAB, LAB_KEY) is Code.OK


# -- factory and validation -----------------------------------------------------------------------


def test_factory_builds_the_networkmanager_backend() -> None:
    from device_sim.network.nm.backend import NetworkManagerBackend

    backend = create_backend(NetworkManagerArgs(interface="wlan0", scan_timeout=2.0))
    assert isinstance(backend, NetworkManagerBackend)


async def test_factory_builds_the_simulated_backend() -> None:
    backend = create_backend(SimulatedArgs("zero-delay", zero_delay=True))
    assert isinstance(backend, SimulatedBackend)
    backend = create_backend(SimulatedArgs(load_scenario("typical-home")))
    assert backend.name == "simulated:typical-home"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (SimulatedArgs("zero-delay", time_scale=-1), "time_scale"),
        (SimulatedArgs("zero-delay", check_timeout=0), "check_timeout"),
        (SimulatedArgs("no-such-scenario"), "not found"),
        (NetworkManagerArgs(scan_timeout=0), "scan_timeout"),
        (NetworkManagerArgs(scan_timeout=121), "scan_timeout"),
    ],
)
def test_factory_errors(args: BackendArgs, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_backend(args)


def test_the_daemons_options_become_the_backends_typed_arguments(tmp_path: Path) -> None:
    """The [network], [cloud] and [softap] options reach the backend as its own arguments."""
    from device_sim.config import DaemonOptions
    from device_sim.core.options import CloudOptions
    from device_sim.daemon import backend_args
    from device_sim.doors.softap.options import SoftApOptions
    from device_sim.network.options import NetworkOptions
    from device_sim.options import HostPort

    nm = DaemonOptions(
        network=NetworkOptions(
            backend=BackendKind.NETWORK_MANAGER, interface="wlan1", scan_timeout_s=7.0
        ),
        cloud=CloudOptions(host="cloud.example.com", port=8443, ca=tmp_path / "ca.pem"),
        softap=SoftApOptions(listen=HostPort("10.42.0.1", 80)),
    )
    assert backend_args(nm) == NetworkManagerArgs(
        interface="wlan1",
        scan_timeout=7.0,
        cloud_host="cloud.example.com",
        cloud_port=8443,
        cloud_ca=tmp_path / "ca.pem",
        captive_api_url="http://{address}/captive-portal/api",  # port 80: none in the URL
        cert_dir=nm.state_dir / "nm-certs",  # enterprise profiles' files, in the state dir
    )
    moved = backend_args(
        dataclasses.replace(nm, softap=SoftApOptions(listen=HostPort("10.42.0.1", 8380)))
    )
    assert isinstance(moved, NetworkManagerArgs)
    assert moved.captive_api_url == "http://{address}:8380/captive-portal/api"
    simulated = backend_args(
        DaemonOptions(network=NetworkOptions(scenario="slow-dhcp", time_scale=0.5, seed=7))
    )
    assert isinstance(simulated, SimulatedArgs)
    assert (simulated.time_scale, simulated.seed, simulated.zero_delay) == (0.5, 7, False)
    assert isinstance(simulated.scenario, Scenario) and simulated.scenario.name == "slow-dhcp"


@pytest.mark.parametrize(
    ("ssid", "passphrase", "security"),
    [
        (b"x", "12345678", Security.WPA2_PSK),
        (b"x" * 32, "~" * 63, Security.WPA3_SAE),
        (b"\xc3\x28\xff\x41", "0123456789abcdefABCDEF" + "0" * 42, Security.WPA2_WPA3),
        (b"x", None, Security.OPEN),
        (b"x", "", Security.OPEN),
        (b"x", None, None),
        (b"x", "with spaces ok", None),
        (b"x", "wep", Security.WEP),  # not checked: joining says UNSUPPORTED_SECURITY
    ],
)
def test_valid_credentials(ssid: bytes, passphrase: str | None, security: Security | None) -> None:
    validate_credentials(ssid, passphrase, security)


@pytest.mark.parametrize(
    ("ssid", "passphrase", "security"),
    [
        (b"", "12345678", Security.WPA2_PSK),
        (b"x" * 33, "12345678", Security.WPA2_PSK),
        (b"x", "1234567", Security.WPA2_PSK),
        (b"x", "g" * 64, Security.WPA2_PSK),  # 64 characters must be hex
        (b"x", "a" * 65, Security.WPA2_PSK),
        (b"x", "pässwörd-long", Security.WPA2_PSK),
        (b"x", "tab\tinside", Security.WPA2_PSK),
        (b"x", None, Security.WPA2_PSK),
        (b"x", "12345678", Security.OPEN),
        (b"x", "short", None),
    ],
)
def test_invalid_credentials(
    ssid: bytes, passphrase: str | None, security: Security | None
) -> None:
    with pytest.raises(NetworkError) as info:
        validate_credentials(ssid, passphrase, security)
    assert info.value.code is Code.INVALID_CREDENTIALS_FORMAT
    if passphrase:
        assert passphrase not in str(info.value)


async def test_difficult_network_falls_back_to_2_4ghz() -> None:
    scenario = load_scenario("difficult-network")
    creds = scenario.default_credentials
    bands = {sap.ap.band: sap.ap.rssi for sap in scenario.bsses(creds.ssid)}
    assert bands[Band.GHZ_5] < scenario.min_rssi_dbm <= bands[Band.GHZ_2_4]
    async with SimulatedBackend(scenario, zero_delay=True) as backend:
        result = await backend.join(creds.ssid, creds.passphrase)
    assert result.band is Band.GHZ_2_4


class HeldSiteStarts:
    """aiohttp's TCPSite.start held after its server is made, until ``release`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from aiohttp import web

        self.started, self.release = asyncio.Event(), asyncio.Event()
        self.sites: list[web.TCPSite] = []
        real_start = web.TCPSite.start

        async def held_start(site: web.TCPSite) -> None:
            await real_start(site)
            self.sites.append(site)
            self.started.set()
            await self.release.wait()

        monkeypatch.setattr(web.TCPSite, "start", held_start)

    async def none_listening(self) -> None:
        from yarl import URL

        assert self.sites
        for site in self.sites:  # closed, not left listening
            url = URL(site.name)
            with pytest.raises(OSError):
                _, writer = await asyncio.open_connection(url.host, url.port)
                writer.close()


async def test_a_backend_stopped_while_its_world_starts_leaves_no_server_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The device stops (a fleet's end, SIGTERM) while verify is starting the world's probe
    server: the stop waits for the start, which closes what it made."""
    from device_sim.network import simulated

    held = HeldSiteStarts(monkeypatch)
    settling = asyncio.Event()
    real_settle = simulated._settle

    async def seen_settle(under_way: set[asyncio.Future[Any]]) -> None:
        settling.set()
        await real_settle(under_way)

    monkeypatch.setattr(simulated, "_settle", seen_settle)
    backend = SimulatedBackend("engineering-wifi", zero_delay=True)
    await backend.start()
    await backend.join(LAB, LAB_KEY)
    verify = asyncio.ensure_future(backend.verify())
    await held.started.wait()
    stopping = asyncio.ensure_future(backend.stop())
    await settling.wait()  # the stop has begun: it waits for the start under way
    assert not stopping.done()
    held.release.set()
    await stopping
    with pytest.raises(NetworkError) as info:
        await verify
    assert info.value.code is Code.INTERNAL_ERROR and "stopped" in info.value.detail
    await held.none_listening()


async def test_a_check_cancelled_while_its_world_starts_leaves_no_server_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connected life's check is cancelled (the device stopping) inside the probe server's
    start, where asyncio's create_server would drop a listening server unclosed: the start runs
    to its end, its servers belong to the backend, and its stop closes them."""
    held = HeldSiteStarts(monkeypatch)
    async with SimulatedBackend("engineering-wifi", zero_delay=True) as backend:
        await backend.join(LAB, LAB_KEY)
        verify = asyncio.ensure_future(backend.verify())
        await held.started.wait()
        verify.cancel()
        with pytest.raises(asyncio.CancelledError):
            await verify
        held.release.set()
        await backend.verify()  # the finished start serves this check
        assert len(held.sites) == 2  # one start (IPv4 and IPv6), not a second one
    await held.none_listening()
