"""The world model: the device's radio and clock, BSSes with their own fate (mesh fallback,
band steering), seeded distributions, IPv6-only networks, runtime faults; scenario files
checked all at once and their JSON Schema."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from device_sim.codes import Code
from device_sim.errors import ConfigErrors, NetworkError
from device_sim.network import Band, list_scenarios, load_scenario
from device_sim.network.faults import Fault, parse_fault
from device_sim.network.scenario import json_schema, parse_scenario, schema_text
from device_sim.network.simulated import SimulatedBackend

from .recorder import Recorder

ROOT = Path(__file__).resolve().parents[2]
KEY = "home-passphrase"


def world(access_points: str, extra: str = "", **backend: Any) -> SimulatedBackend:
    data = yaml.safe_load(f"""
name: inline
description: inline world
default_credentials: {{ssid: Home, passphrase: "{KEY}"}}
access_points: {access_points}
{extra}""")
    return SimulatedBackend(parse_scenario(data, "inline"), zero_delay=True, **backend)


def bss(band: str, rssi: int, **more: Any) -> str:
    fields = {
        "ssid": "Home",
        "band": band,
        "rssi": rssi,
        "security": "wpa2-psk",
        "passphrase": KEY,
        **more,
    }
    return json.dumps(fields)


async def onboard(
    backend: SimulatedBackend, recorder: Recorder | None = None, passphrase: str = KEY
) -> Code:
    try:
        await backend.join(b"Home", passphrase, on_phase=recorder)
        await backend.verify(on_phase=recorder)
    except NetworkError as exc:
        return exc.code
    return Code.OK


# -- the device's radio ---------------------------------------------------------------------------


async def test_a_2_4_ghz_radio_neither_hears_nor_joins_5_ghz() -> None:
    aps = f"[{bss('5GHz', -40)}, {{ssid: Other, band: 2.4GHz, rssi: -70, security: open}}]"
    async with world(aps, "device: {bands: [2.4GHz]}") as backend:
        assert [ap.band for ap in await backend.scan()] == [Band.GHZ_2_4]
        with pytest.raises(NetworkError) as info:
            await backend.join(b"Home", KEY)
    assert info.value.code is Code.NETWORK_5GHZ_ONLY
    assert info.value.raw["bands"] == ["5GHz"]
    async with world(aps) as dual:  # the same network for a dual-band radio
        assert await onboard(dual) is Code.OK


async def test_the_antenna_offset_moves_every_rssi() -> None:
    aps = f"[{bss('2.4GHz', -80)}]"
    async with world(aps) as plain:
        assert (await plain.scan())[0].rssi == -80
        assert await onboard(plain) is Code.OK
    async with world(aps, "device: {antenna_offset_db: -8}") as small:
        assert (await small.scan())[0].rssi == -88
        assert await onboard(small) is Code.ASSOCIATION_TIMEOUT  # below the -85 dBm floor


# -- BSSes with their own fate -----------------------------------------------------------------


async def test_a_mesh_node_that_fails_is_left_for_the_next_best() -> None:
    dead = bss(
        "5GHz", -50, bssid="02:00:00:00:aa:01", after_association={"dhcp": {"result": "timeout"}}
    )
    good = bss("5GHz", -62, bssid="02:00:00:00:aa:02")
    weak = bss("2.4GHz", -75, bssid="02:00:00:00:aa:03")
    recorder = Recorder()
    async with world(f"[{weak}, {dead}, {good}]") as backend:
        assert await onboard(backend, recorder) is Code.OK
        assert backend.connected is not None and backend.connected.bssid == "02:00:00:00:aa:02"
    tried = [d for p, d in recorder.calls if p == "associating"]
    assert [d["bssid"] for d in tried] == ["02:00:00:00:aa:01", "02:00:00:00:aa:02"]
    assert tried[1]["after_failing"] == ["02:00:00:00:aa:01"]


async def test_every_node_failing_ends_in_the_last_code_and_a_wrong_key_never_falls_back() -> None:
    a = bss("2.4GHz", -50, after_association={"dhcp": {"result": "timeout"}})
    b = bss("2.4GHz", -60, after_association={"association": {"result": "timeout"}})
    recorder = Recorder()
    async with world(f"[{a}, {b}]") as backend:
        assert await onboard(backend, recorder) is Code.ASSOCIATION_TIMEOUT
        assert recorder.phases.count("associating") == 2
        wrong = Recorder()
        assert await onboard(backend, wrong, "not-the-key-1") is Code.WRONG_CREDENTIALS
        assert wrong.phases.count("associating") == 1


async def test_band_steering() -> None:
    steered = bss("2.4GHz", -50, band_steering=True, steering_holdoff_ms=4000)
    five = bss("5GHz", -76)  # weaker than the usual -70 dBm preference
    for bands, band, holdoff in [
        ("[2.4GHz, 5GHz]", Band.GHZ_5, None),
        ("[2.4GHz]", Band.GHZ_2_4, 4000),
    ]:
        recorder = Recorder()
        async with world(f"[{steered}, {five}]", f"device: {{bands: {bands}}}") as backend:
            result = await backend.join(b"Home", KEY, on_phase=recorder)
        assert result.band is band
        (assoc,) = [d for p, d in recorder.calls if p == "associating"]
        assert assoc.get("band_steering_holdoff_ms") == holdoff


# -- distributions and seeds ----------------------------------------------------------------------

FLAKY = (
    f"[{bss('2.4GHz', -50)}]",
    "after_association: {dhcp: {delay_ms: [100, 900], jitter_ms: 50, fail_probability: 0.5}}",
)


async def outcomes_and_delays(seed: int, attempts: int = 12) -> tuple[list[Code], list[int]]:
    backend = world(*FLAKY, seed=seed)
    slept: list[int] = []

    async def record(delay_ms: int) -> None:
        slept.append(delay_ms)

    backend._sleep = record  # type: ignore[method-assign]  # the draws, without waiting
    async with backend:
        codes = [await onboard(backend) for _ in range(attempts)]
    return codes, slept


async def test_the_same_seed_replays_the_same_attempts() -> None:
    first, delays = await outcomes_and_delays(7)
    assert (first, delays) == await outcomes_and_delays(7)
    assert {Code.OK, Code.NO_DHCP_LEASE} == set(first)  # flaky, both ways
    assert first != (await outcomes_and_delays(8))[0]  # another seed, other draws
    dhcp = [d for d in delays if d >= 50]  # the drawn DHCP delays
    assert all(50 <= d <= 950 for d in dhcp) and len(set(dhcp)) > 3


# -- IPv6 and the clock ------------------------------------------------------------------------


async def test_ipv6_only_goes_over_ipv6_through_nat64() -> None:
    v6 = "after_association: {dhcp: {addressing: ipv6-only, nat64: true}}"
    recorder = Recorder()
    async with world(f"[{bss('2.4GHz', -50)}]", v6) as backend:
        result = await backend.join(b"Home", KEY, on_phase=recorder)
        await backend.verify(on_phase=recorder)
    assert result.ip == "2001:db8:1::50"
    (portal,) = [d for p, d in recorder.calls if p == "captive_portal"]
    assert portal["url"].startswith("http://[::1]:")  # a real IPv6 connection
    no_nat64 = "after_association: {dhcp: {addressing: ipv6-only, nat64: false}}"
    async with world(f"[{bss('2.4GHz', -50)}]", no_nat64) as backend:
        assert await onboard(backend) is Code.NO_INTERNET
    legacy = v6 + "\ndevice: {ipv6: false}"
    async with world(f"[{bss('2.4GHz', -50)}]", legacy) as backend:
        assert await onboard(backend) is Code.IPV6_ONLY_NETWORK


@pytest.mark.parametrize(
    ("clock", "ntp", "code"),
    [
        ("{rtc: true, skew_s: 157680000}", "blocked", Code.TLS_CERTIFICATE_DATE),  # 5 y ahead
        ("{rtc: true, skew_s: -94608000}", "blocked", Code.TLS_CERTIFICATE_DATE),  # 3 y behind
        ("{rtc: true, skew_s: -94608000}", "ok", Code.OK),  # NTP fixes it
        ("{rtc: false}", "blocked", Code.CLOCK_NOT_SET),  # 1970
        ("{rtc: false}", "ok", Code.OK),
    ],
)
async def test_the_device_clock_decides_the_certificate(clock: str, ntp: str, code: Code) -> None:
    extra = f"device: {{clock: {clock}}}\nafter_association: {{ntp: {{result: {ntp}}}}}"
    recorder = Recorder()
    async with world(f"[{bss('2.4GHz', -50)}]", extra) as backend:
        assert await onboard(backend, recorder) is code
    (time,) = [d for p, d in recorder.calls if p == "clock"]
    assert time["clock"] == ("ntp" if ntp == "ok" else "rtc" if "true" in clock else "unset")


# -- faults at runtime ----------------------------------------------------------------------------


async def test_a_fault_counts_from_the_next_attempt_never_the_running_one() -> None:
    backend = world(f"[{bss('2.4GHz', -50)}]")
    reached_dhcp = asyncio.Event()
    go_on = asyncio.Event()

    async def paced(delay_ms: int) -> None:
        if not reached_dhcp.is_set():
            reached_dhcp.set()
            await go_on.wait()

    backend._sleep = paced  # type: ignore[method-assign]
    async with backend:
        recorder = Recorder()
        running = asyncio.create_task(onboard(backend, recorder))
        await reached_dhcp.wait()  # the attempt is under way
        backend.add_fault(parse_fault({"name": "dns-down", "step": "dns"}))
        go_on.set()
        assert await running is Code.OK  # the running attempt keeps its world
        assert await onboard(backend) is Code.DNS_FAILURE
        assert backend.remove_fault("dns-down") is not None
        assert await onboard(backend) is Code.OK


async def test_latency_only_and_probabilistic_faults() -> None:
    backend = world(f"[{bss('2.4GHz', -50)}]", seed=1)
    slept: list[int] = []

    async def record(delay_ms: int) -> None:
        slept.append(delay_ms)

    backend._sleep = record  # type: ignore[method-assign]
    async with backend:
        backend.add_fault(parse_fault({"name": "slow-tls", "step": "tls", "delay_ms": 2500}))
        recorder = Recorder()
        assert await onboard(backend, recorder) is Code.OK
        assert 2500 in slept
        (tls,) = [d for p, d in recorder.calls if p == "tls"]
        assert tls["faults"] == ["slow-tls"]
        backend.add_fault(
            parse_fault({"name": "slow-tls", "step": "internet", "probability": 0.5})
        )  # replaces by name
        assert [f.step for f in backend.faults] == ["internet"]
        codes = {await onboard(backend) for _ in range(16)}
        assert codes == {Code.OK, Code.NO_INTERNET}


def test_fault_fields_are_checked() -> None:
    assert parse_fault({"name": "a", "step": "captive_portal"}) == Fault(
        "a", "captive_portal", 1.0, 0, 0, "portal"
    )
    # The README's "slow DHCP": a delay alone is a delay; a failure is asked for by name.
    assert (
        parse_fault(
            {"name": "slow-dhcp", "step": "dhcp", "delay_ms": 8000, "jitter_ms": 2000}
        ).result
        == "ok"
    )
    assert (
        parse_fault({"name": "late", "step": "dhcp", "delay_ms": 8000, "result": "timeout"}).result
        == "timeout"
    )
    for bad in (
        {"step": "dns"},
        {"name": "a", "step": "dns", "delay_ms": -1},
        {"name": "a", "step": "dns", "probability": True},
        {"name": "a", "step": "dns", "color": "red"},
    ):
        with pytest.raises(Exception) as info:
            parse_fault(bad)
        assert getattr(info.value, "code", None) is Code.MALFORMED_REQUEST


# -- scenario files: every error at once, and the JSON Schema --------------------------------------

BAD = """\
name: x
description: 5
default_credentials: {ssid: A, expect: NOPE}
access_points:
  - {ssid: A, rssi: 5, security: open, channel: 40}
after_association: {dhcp: {delay_ms: [5, 1], fail_probability: 3}}
device: {bands: [2.4GHz, 2.4GHz]}
"""


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigErrors) as info:
        load_scenario(path)
    wheres = [e.where.split(": ", 1)[1] for e in info.value.errors]
    assert set(wheres) == {
        "description",
        "default_credentials.expect",
        "access_points[0].rssi",
        "access_points[0].channel",
        "after_association.dhcp.delay_ms",
        "after_association.dhcp.fail_probability",
        "device.bands",
    }
    assert str(info.value).count("\n") == len(wheres) - 1  # one line each


def test_the_committed_schema_is_the_models() -> None:
    committed = (ROOT / "scenarios" / "scenario.schema.json").read_text()
    assert committed == schema_text(), (
        "run: device-sim scenario schema --out scenarios/scenario.schema.json"
    )


@pytest.mark.parametrize("name", list_scenarios())
def test_every_shipped_scenario_meets_the_schema(name: str) -> None:
    data = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())
    jsonschema.Draft202012Validator(json_schema()).validate(data)


def test_the_schema_refuses_what_the_loader_refuses() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    data = yaml.safe_load(BAD)
    paths = {".".join(map(str, e.absolute_path)) for e in validator.iter_errors(data)}
    assert {
        "description",
        "default_credentials.expect",
        "access_points.0.rssi",
        "after_association.dhcp.fail_probability",
    } <= paths
    assert not validator.is_valid(
        {**yaml.safe_load((ROOT / "scenarios" / "zero-delay.yaml").read_text()), "scan_dealy_ms": 5}
    )
