"""The connected life after `online` (device_sim/core/life.py), in-process on the simulated world:
losses and their codes, retries with backoff, doors reopening, saved networks, phones first."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from device_sim.codes import Code, State
from device_sim.core.engine import OnboardingEngine, Timeouts
from device_sim.core.events import DiagnosticEvent, EventBus
from device_sim.core.life import Backoff, LifeTimers
from device_sim.core.store import Credentials, DeviceStore
from device_sim.errors import OnboardingError
from device_sim.network.scenario import parse_scenario
from device_sim.network.simulated import SimulatedBackend
from device_sim.profile import load_profile
from device_sim.security.secret import Secret

PROFILE = load_profile()
TIMEOUTS = Timeouts(session_open=5, credentials_received=5, joining=5, verifying=5)
# Fast and far apart: retries every 0.05-0.2 s, doors after 0.6 s, checks every 0.1 s.
FAST = LifeTimers(
    initial_s=0.05,
    max_s=0.2,
    reopen_after_s=0.6,
    check_interval_s=0.1,
    saved_networks=5,
    second_look_s=0.02,
)
HOME, FLAT = b"Home", b"Flat"
HOME_KEY, FLAT_KEY = "home-passphrase", "flat-passphrase"


def world(extra: str = "", *, flat_present: bool = True, home_present: bool = True) -> str:
    return f"""
name: inline
description: two networks
default_credentials: {{ssid: Home, passphrase: "{HOME_KEY}"}}
scan_delay_ms: 0
access_points:
  - {{ssid: Home, bssid: "02:00:00:00:00:01", security: wpa2-psk, passphrase: "{HOME_KEY}",
     present: {str(home_present).lower()}}}
  - {{ssid: Flat, bssid: "02:00:00:00:00:02", security: wpa2-psk, passphrase: "{FLAT_KEY}",
     present: {str(flat_present).lower()}}}
{extra}"""


class Device:
    """An engine on an inline world, its events, and waits on them (no sleeping)."""

    def __init__(
        self, store: DeviceStore, text: str, timers: LifeTimers = FAST, *, zero_delay: bool = True
    ) -> None:
        self.events: list[DiagnosticEvent] = []
        self._new = asyncio.Event()
        bus = EventBus()
        bus.subscribe(self._seen)
        self.backend = SimulatedBackend(
            parse_scenario(yaml.safe_load(text), "inline"), zero_delay=zero_delay
        )
        self.engine = OnboardingEngine(
            PROFILE, store, self.backend, bus, timeouts=TIMEOUTS, life=timers
        )
        self.store = store

    def _seen(self, event: DiagnosticEvent) -> None:
        self.events.append(event)
        self._new.set()

    async def until(
        self, match: Callable[[DiagnosticEvent], bool], *, after: int = 0, timeout: float = 10
    ) -> DiagnosticEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[after:]:
                    if match(event):
                        return event
                self._new.clear()
                await self._new.wait()

    def index(self, event: DiagnosticEvent) -> int:
        return self.events.index(event) + 1

    async def onboard(self, ssid: bytes = HOME, key: str = HOME_KEY) -> None:
        self.engine.session_opened()
        self.engine.set_credentials(ssid, Secret(key), False)
        self.engine.connect()
        record = await self.engine.wait_settled(5)
        assert record.state is State.ONLINE, record
        self.engine.session_closed()

    def phases(self, after: int = 0) -> list[str]:
        return [e.phase for e in self.events[after:]]


def phase_is(phase: str, code: Code | None = None) -> Callable[[DiagnosticEvent], bool]:
    return lambda e: e.phase == phase and (code is None or e.code is code)


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(7))
    delays = [backoff.next() for _ in range(7)]
    ceilings = [1, 2, 4, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert len(set(delays)) == 7  # jittered: no two devices retry in step
    backoff.reset()
    assert backoff.next() <= 1.0
    with pytest.raises(ValueError):
        Backoff(10.0, 5.0)


async def test_a_lost_link_is_retried_until_the_router_is_back(tmp_path: Path) -> None:
    text = world(
        "timeline:\n  - {after: online, at_s: 0.05, action: ap_off, ssid: Home, for_s: 1.0}"
    )
    with DeviceStore(tmp_path) as store:
        device = Device(store, text)
        async with device.backend, device.engine:
            await device.onboard()
            start = len(device.events)
            lost = await device.until(phase_is("link_lost", Code.LINK_LOST), after=start)
            assert lost.state is State.FAILED and "went off the air" in lost.detail
            await device.until(phase_is("failed", Code.SAVED_NETWORKS_NOT_FOUND), after=start)
            reopen = await device.until(phase_is("reopen"), after=start)
            back = await device.until(
                lambda e: e.phase == "world" and e.data["restores"], after=start
            )
            online = await device.until(phase_is("online"), after=device.index(back))
            assert device.engine.state is State.ONLINE
            assert device.index(lost) < device.index(reopen) < device.index(online)
            retries = [
                e for e in device.events[start:] if e.phase == "reconnect" and "in_s" in e.data
            ]
            waits = [e.data["in_s"] for e in retries]
            assert len(waits) >= 3 and max(waits) <= FAST.max_s  # capped, forever
            assert [n.ssid for n in store.saved_networks()] == [HOME]


async def test_losing_the_internet_keeps_the_network_and_reopens_no_door(tmp_path: Path) -> None:
    text = world("timeline:\n  - {after: online, at_s: 0.05, action: internet_down, for_s: 0.8}")
    with DeviceStore(tmp_path) as store:
        device = Device(store, text)
        async with device.backend, device.engine:
            await device.onboard()
            start = len(device.events)
            await device.until(phase_is("internet_lost", Code.INTERNET_LOST), after=start)
            back = await device.until(
                lambda e: e.phase == "world" and e.data["restores"], after=start
            )
            await device.until(phase_is("online"), after=device.index(back))
            phases = device.phases(start)
            assert "verifying" in phases  # checked again, still associated
            assert "joining" not in phases and "associating" not in phases  # never rejoined
            assert "reopen" not in phases  # the network is still there: no door reopens


async def test_dns_going_away_is_its_own_loss(tmp_path: Path) -> None:
    text = world("timeline:\n  - {after: online, at_s: 0.05, action: dns_down, for_s: 0.5}")
    with DeviceStore(tmp_path) as store:
        device = Device(store, text)
        async with device.backend, device.engine:
            await device.onboard()
            lost = await device.until(phase_is("dns_lost", Code.DNS_LOST))
            assert "still associated" in lost.detail
            await device.until(phase_is("online"), after=device.index(lost))


async def test_a_lease_that_is_not_renewed_costs_the_address(tmp_path: Path) -> None:
    text = world(
        "timeline:\n  - {after: online, at_s: 0.05, action: lease, ssid: Home, for_s: 0.5}"
    )
    with DeviceStore(tmp_path) as store:
        device = Device(store, text)
        async with device.backend, device.engine:
            await device.onboard()
            lost = await device.until(phase_is("lease_lost", Code.LEASE_LOST))
            await device.until(phase_is("failed", Code.NO_DHCP_LEASE), after=device.index(lost))
            await device.until(phase_is("online"), after=device.index(lost))


@pytest.mark.parametrize("stored", [State.ONLINE, State.FAILED])
async def test_a_boot_with_saved_networks_retries_them_whatever_was_stored(
    tmp_path: Path, stored: State
) -> None:
    with DeviceStore(tmp_path) as store:
        store.remember_history([Credentials(HOME, Secret(HOME_KEY), False)], online=True)
        if stored is State.FAILED:  # after a loss, before the restart
            store.transition(State.FAILED, Code.LINK_LOST, phase="link_lost")
        device = Device(store, world())
        async with device.backend, device.engine:
            await device.until(phase_is("online"))
            assert device.engine.record.ssid == HOME


async def test_moved_one_scan_then_one_join_of_the_network_in_range(tmp_path: Path) -> None:
    """Saved: the flat (newer), home (older). Only home is in range: one scan, one join."""
    with DeviceStore(tmp_path) as store:
        store.remember_history(
            [
                Credentials(FLAT, Secret(FLAT_KEY), False),
                Credentials(HOME, Secret(HOME_KEY), False),
            ],
            online=True,
        )
        device = Device(store, world(flat_present=False))
        async with device.backend, device.engine:
            await device.until(phase_is("online"))
            assert device.phases().count("associating") == 1
            scans = [e for e in device.events if e.phase == "scanning" and "reconnect" in e.data]
            assert len(scans) == 1 and scans[0].data["candidates"] == [HOME.hex()]
            assert [n.ssid for n in store.saved_networks()] == [HOME, FLAT]  # home first now


async def test_a_new_passphrase_is_reported_and_reopens_the_doors_at_once(tmp_path: Path) -> None:
    text = world(
        "timeline:\n  - {after: online, at_s: 0.05, action: passphrase, ssid: Home, "
        'passphrase: "another-key-2026"}'
    )
    slow_doors = LifeTimers(0.05, 0.2, reopen_after_s=60, check_interval_s=10)
    with DeviceStore(tmp_path) as store:
        device = Device(store, text, slow_doors)
        async with device.backend, device.engine:
            await device.onboard()
            rejected = await device.until(phase_is("failed", Code.SAVED_NETWORK_REJECTED))
            await device.until(phase_is("reopen"), after=device.index(rejected), timeout=5)
            # The phone brings the new passphrase: online, the network saved with it.
            await device.onboard(HOME, "another-key-2026")
            key = store.saved_networks()[0].passphrase
            assert key is not None and key.reveal() == "another-key-2026"


async def test_a_phone_stops_the_retries_and_moves_the_device(tmp_path: Path) -> None:
    text = world("timeline:\n  - {after: online, at_s: 0.05, action: ap_off, ssid: Home}")
    with DeviceStore(tmp_path) as store:
        device = Device(store, text)
        async with device.backend, device.engine:
            await device.onboard()
            await device.until(phase_is("failed", Code.SAVED_NETWORKS_NOT_FOUND))
            device.engine.session_opened()
            held = len(device.events)
            assert not device.engine.life.retrying
            device.engine.set_credentials(FLAT, Secret(FLAT_KEY), False)
            device.engine.connect()
            assert (await device.engine.wait_settled(5)).state is State.ONLINE
            assert [
                e.data.get("reconnect") for e in device.events[held:] if e.phase == "joining"
            ] == [None]  # the phone's join, no retry
            device.engine.session_closed()
            assert [n.ssid for n in store.saved_networks()] == [FLAT, HOME]


async def test_a_retry_in_flight_yields_to_a_phone(tmp_path: Path) -> None:
    """A round joining (slow world) when a phone proves itself: the round stops, the device is
    failed with the loss's code, and the phone's credentials are taken at once."""
    text = world(
        "timeline:\n  - {after: online, at_s: 0.05, action: ap_off, ssid: Home, "
        "for_s: 0.1}\n"
        "after_association: {association: {delay_ms: 3000}}"
    )
    with DeviceStore(tmp_path) as store:
        device = Device(store, text, zero_delay=False)
        async with device.backend, device.engine:
            await device.onboard()
            start = len(device.events)
            await device.until(
                lambda e: e.phase == "associating" and e.state is State.JOINING,
                after=start,
                timeout=15,
            )
            assert device.engine.life.retrying
            device.engine.session_opened()
            record = device.engine.record
            assert (record.state, record.code) == (State.FAILED, Code.LINK_LOST)
            device.engine.set_credentials(FLAT, Secret(FLAT_KEY), False)  # no INVALID_STATE
            assert device.engine.state is State.CREDENTIALS_RECEIVED


async def test_saved_networks_keep_the_last_n_most_recent_first(tmp_path: Path) -> None:
    text = world("""  - {ssid: Cafe, bssid: "02:00:00:00:00:03", security: open}""")
    text = text.replace("\n\n", "\n")
    two = LifeTimers(0.05, 0.2, 0.6, 10, saved_networks=2)
    with DeviceStore(tmp_path) as store:
        device = Device(store, text, two)
        async with device.backend, device.engine:
            await device.onboard(HOME, HOME_KEY)
            await device.onboard(FLAT, FLAT_KEY)
            device.engine.session_opened()
            device.engine.set_credentials(b"Cafe", None, False)
            device.engine.connect()
            assert (await device.engine.wait_settled(5)).state is State.ONLINE
            device.engine.session_closed()
            saved = store.saved_networks()
            assert [n.ssid for n in saved] == [b"Cafe", FLAT]
            flat_key = saved[1].passphrase
            assert saved[0].passphrase is None and flat_key is not None
            assert flat_key.reveal() == FLAT_KEY
            assert "flat-passphrase" not in repr(saved) + str(saved[1].public())


async def test_forgetting_saved_networks(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        device = Device(store, world())
        async with device.backend, device.engine:
            await device.onboard(FLAT, FLAT_KEY)
            await device.onboard(HOME, HOME_KEY)
            with pytest.raises(OnboardingError) as current:
                await device.engine.forget_network(HOME)
            assert current.value.code is Code.INVALID_STATE and "online" in current.value.detail
            await device.engine.forget_network(FLAT)
            with pytest.raises(OnboardingError) as unknown:
                await device.engine.forget_network(FLAT)
            assert unknown.value.code is Code.INVALID_STATE
            assert [n.ssid for n in store.saved_networks()] == [HOME]
            assert device.events[-1].phase == "networks"


async def test_a_factory_reset_forgets_every_network_and_retries_nothing(tmp_path: Path) -> None:
    text = world("timeline:\n  - {after: online, at_s: 0.05, action: ap_off, ssid: Home}")
    with DeviceStore(tmp_path) as store:
        device = Device(store, text)
        async with device.backend, device.engine:
            await device.onboard(FLAT, FLAT_KEY)
            await device.onboard(HOME, HOME_KEY)
            await device.until(phase_is("reconnect"))
            await device.engine.factory_reset("test")
            assert store.saved_networks() == [] and store.credentials() is None
            assert not device.engine.life.retrying
            assert device.engine.state is State.UNPROVISIONED
        raw = store.path.read_bytes() + store.path.with_name(store.path.name + "-wal").read_bytes()
        assert FLAT_KEY.encode() not in raw and HOME_KEY.encode() not in raw


async def test_retries_wait_while_a_phone_uses_the_access_point(tmp_path: Path) -> None:
    class Busy:
        in_use_now = True

        async def before_station(self) -> None: ...

        async def after_station(self, state: State) -> None: ...

        def in_use(self) -> bool:
            return self.in_use_now

    text = world("timeline:\n  - {after: online, at_s: 0.05, action: ap_off, ssid: Home}")
    with DeviceStore(tmp_path) as store:
        device = Device(store, text)
        async with device.backend, device.engine:
            await device.onboard()
            ap = Busy()
            device.engine.add_radio_user(ap)
            lost = await device.until(phase_is("link_lost"))
            await device.until(lambda e: e.data.get("postponed") is True, after=device.index(lost))
            joins = [e for e in device.events[device.index(lost) :] if e.phase == "joining"]
            assert joins == []  # no round took the radio from the phone
            ap.in_use_now = False
            await device.until(phase_is("joining"), after=device.index(lost))


async def test_forgetting_the_last_saved_network_ends_the_retries(tmp_path: Path) -> None:
    """Nothing saved, nothing to retry: the device waits for a phone (its doors open)."""
    text = world("timeline:\n  - {after: online, at_s: 0.05, action: ap_off, ssid: Home}")
    with DeviceStore(tmp_path) as store:
        device = Device(store, text)
        async with device.backend, device.engine:
            await device.onboard()
            await device.until(phase_is("failed", Code.SAVED_NETWORKS_NOT_FOUND))
            device.engine.session_opened()
            await device.engine.forget_network(HOME)  # not online on it any more: allowed
            device.engine.session_closed()
            assert not device.engine.life.retrying  # none started for an empty list
            assert device.engine.state is State.FAILED and store.saved_networks() == []
            # A list emptied under a running loop (the store written elsewhere): it stops.
            store.remember_history([Credentials(FLAT, Secret(FLAT_KEY), False)], online=False)
            device.engine.life.session_closed()  # a failed device with a saved network: retries
            assert device.engine.life.retrying
            store.forget_network(FLAT)
            await device.until(
                lambda e: e.phase == "reconnect" and e.detail == "no saved network to retry"
            )
            assert not device.engine.life.retrying
