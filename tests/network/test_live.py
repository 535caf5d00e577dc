"""The simulated world over time (device_sim/network/live.py) and an established connection in
it: the timeline, link and lease faults, the checks an online device makes, and what is not a
loss (the device's own access point, its own disconnect)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from device_sim.codes import Code
from device_sim.errors import ConfigError, NetworkError
from device_sim.network.base import AccessPointConfig
from device_sim.network.faults import parse_fault
from device_sim.network.scenario import load_scenario, parse_scenario
from device_sim.network.simulated import SimulatedBackend

BASE = """
name: inline
description: one network
default_credentials: {ssid: Home, passphrase: "home-passphrase"}
access_points:
  - {ssid: Home, bssid: "02:00:00:00:00:01", security: wpa2-psk, passphrase: "home-passphrase"}
  - {ssid: Late, bssid: "02:00:00:00:00:02", security: open, present: false}
"""


def backend(extra: str = "") -> tuple[SimulatedBackend, list[tuple[str, dict]]]:
    notes: list[tuple[str, dict]] = []
    sim = SimulatedBackend(parse_scenario(yaml.safe_load(BASE + extra), "inline"), zero_delay=True)
    sim.watch_world(lambda detail, data: notes.append((detail, data)))
    return sim, notes


async def establish(
    sim: SimulatedBackend, ssid: bytes = b"Home", key: str | None = "home-passphrase"
) -> None:
    await sim.join(ssid, key)
    await sim.verify()


async def test_a_timeline_takes_the_access_point_away_and_brings_it_back() -> None:
    sim, notes = backend(
        "timeline:\n  - {after: online, at_s: 0, action: ap_off, ssid: Home, for_s: 0.2}"
    )
    async with sim:
        await establish(sim)
        loss = await asyncio.wait_for(sim.wait_link_loss(), 5)
        assert loss.code is Code.LINK_LOST and "02:00:00:00:00:01" in loss.detail
        assert [ap.ssid for ap in await sim.scan()] == []  # off the air
        with pytest.raises(NetworkError) as gone:
            await sim.join(b"Home", "home-passphrase")
        assert gone.value.code is Code.NETWORK_NOT_FOUND
        async with asyncio.timeout(5):
            while len(notes) < 2:  # the world's own clock: wait for its second change  # noqa: ASYNC110 (a callback list, no event)
                await asyncio.sleep(0.02)
        assert notes[0][1]["restores"] is False and notes[1][1]["restores"] is True
        assert "back on the air" in notes[1][0]
        await establish(sim)


async def test_a_router_that_boots_late_is_not_there_until_its_step() -> None:
    sim, notes = backend("timeline:\n  - {after: boot, at_s: 0.1, action: ap_on, ssid: Late}")
    async with sim:
        assert b"Late" not in [ap.ssid for ap in await sim.scan()]
        async with asyncio.timeout(5):
            while not notes:  # noqa: ASYNC110 (a callback list, no event)
                await asyncio.sleep(0.02)
        assert b"Late" in [ap.ssid for ap in await sim.scan()]
        await establish(sim, b"Late", None)


async def test_a_new_passphrase_disconnects_and_rejects_the_old_one() -> None:
    sim, _ = backend(
        "timeline:\n  - {after: online, at_s: 0, action: passphrase, ssid: Home, "
        'passphrase: "brand-new-key-1"}'
    )
    async with sim:
        await establish(sim)
        assert (await asyncio.wait_for(sim.wait_link_loss(), 5)).code is Code.LINK_LOST
        with pytest.raises(NetworkError) as wrong:
            await sim.join(b"Home", "home-passphrase")
        assert wrong.value.code is Code.WRONG_CREDENTIALS
        await establish(sim, b"Home", "brand-new-key-1")


@pytest.mark.parametrize(
    ("step", "loss", "then"),
    [
        ("link", Code.LINK_LOST, Code.ASSOCIATION_TIMEOUT),
        ("lease", Code.LEASE_LOST, Code.NO_DHCP_LEASE),
    ],
)
async def test_a_link_or_lease_fault_breaks_the_established_connection(
    step: str, loss: Code, then: Code
) -> None:
    sim, _ = backend()
    async with sim:
        await establish(sim)
        watch = asyncio.ensure_future(sim.wait_link_loss())
        sim.add_fault(parse_fault({"name": "kick", "step": step}))
        assert (await asyncio.wait_for(watch, 5)).code is loss
        with pytest.raises(NetworkError) as failing:  # while it stays, joins fail
            await establish(sim)
        assert failing.value.code is then
        sim.remove_fault("kick")
        await establish(sim)


@pytest.mark.parametrize(
    ("step", "code"), [("dns", Code.DNS_LOST), ("internet", Code.INTERNET_LOST)]
)
async def test_checks_while_online_fail_with_the_loss_codes(step: str, code: Code) -> None:
    sim, _ = backend()
    async with sim:
        await establish(sim)
        await sim.check_connection()  # a real check over loopback: it passes
        sim.add_fault(parse_fault({"name": "out", "step": step}))
        with pytest.raises(NetworkError) as lost:
            await sim.check_connection()
        assert lost.value.code is code and "still associated" in lost.value.detail
        sim.remove_fault("out")
        await sim.check_connection()


async def test_the_devices_own_doings_are_not_losses() -> None:
    """Its own access point coming up on the one radio, a disconnect, a new join: none of them
    ends a wait for a lost link."""
    sim, _ = backend()
    async with sim:
        for leave in ("access point", "disconnect", "join"):
            await establish(sim)
            watch = asyncio.ensure_future(sim.wait_link_loss())
            if leave == "access point":
                await sim.start_access_point(AccessPointConfig("DS-TEST", None))
                await sim.stop_access_point()
            elif leave == "disconnect":
                await sim.disconnect()
            else:
                await sim.join(b"Home", "home-passphrase")
            done, _ = await asyncio.wait({watch}, timeout=0.3)  # bounded: nothing may come
            watch.cancel()
            assert not done, leave
        with pytest.raises(NetworkError) as none:
            await sim.check_connection()
        assert none.value.code is Code.LINK_LOST


@pytest.mark.parametrize(
    ("extra", "where", "problem"),
    [
        (
            "timeline:\n  - {at_s: 1, action: ap_off, ssid: Nowhere}",
            "timeline[0].ssid",
            "no access point has this SSID",
        ),
        ("timeline:\n  - {at_s: 1, action: ap_off}", "timeline[0].ssid", "needs an ssid"),
        (
            "timeline:\n  - {at_s: 1, action: passphrase, ssid: Home}",
            "timeline[0].passphrase",
            "the new key is missing",
        ),
        (
            "timeline:\n  - {at_s: 1, action: dns_down, passphrase: x}",
            "timeline[0].passphrase",
            "takes no passphrase",
        ),
        (
            "story: {sequence: [online, 'failed:NO_SUCH_CODE']}",
            "story.sequence[1]",
            "not a diagnostic code",
        ),
        ("history: {networks: [{ssid: A}, {ssid: A}]}", "history.networks", "twice"),
    ],
)
def test_bad_timelines_stories_and_histories_name_their_place(
    extra: str, where: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(yaml.safe_load(BASE + extra), "inline.yaml")
    assert info.value.where == f"inline.yaml: {where}" and problem in info.value.problem


def test_the_shipped_stories_say_what_they_check() -> None:
    for name in ("router-reboot", "router-replaced", "late-router", "moved", "new-passphrase"):
        story = load_scenario(name).story
        assert story is not None and story.sequence and story.phone_sessions is not None, name
        assert story.doors_reopened is not None and story.online_ssid, name
    replaced, moved = load_scenario("router-replaced").story, load_scenario("moved").history
    assert replaced is not None and replaced.phone is not None and moved is not None
    assert replaced.phone.ssid == b"Miller Fiber"
    assert moved.networks[1].ssid == b"Miller Family"


def test_a_scenario_file_with_a_story_round_trips_its_schema(tmp_path: Path) -> None:
    import json

    import jsonschema

    from device_sim.network.scenario import json_schema

    for name in ("router-reboot", "late-router", "new-passphrase"):
        data = yaml.safe_load(
            load_scenario(name).source and (Path(load_scenario(name).source)).read_text()
        )
        jsonschema.validate(data, json_schema())
    assert json.dumps(json_schema())  # serialisable


async def test_a_fault_on_one_network_leaves_the_others_alone() -> None:
    """`step=link ssid=Home`: Home's router is off; another network still works."""
    sim, _ = backend("timeline:\n  - {after: boot, at_s: 0, action: ap_on, ssid: Late}")
    async with sim:
        await establish(sim)
        fault = parse_fault({"name": "home-off", "step": "link", "ssid": "Home"})
        assert fault.ssid == b"Home" and "on 'Home'" in fault.describe()
        assert fault.to_json()["ssid"] == b"Home".hex()
        watch = asyncio.ensure_future(sim.wait_link_loss())
        sim.add_fault(fault)
        assert (await asyncio.wait_for(watch, 5)).code is Code.LINK_LOST
        with pytest.raises(NetworkError) as home:
            await establish(sim)
        assert home.value.code is Code.ASSOCIATION_TIMEOUT
        await establish(sim, b"Late", None)  # the other network is untouched
        sim.add_fault(parse_fault({"name": "late-off", "step": "link", "ssid_hex": b"X".hex()}))
        await sim.check_connection()  # a fault on a third network changes nothing here
    for bad in ({"ssid": "A", "ssid_hex": "41"}, {"ssid_hex": "zz"}, {"ssid": ""}):
        with pytest.raises(Exception) as refused:
            parse_fault({"name": "x", "step": "link", **bad})
        assert refused.value.code is Code.MALFORMED_REQUEST  # type: ignore[attr-defined]
