"""The NetworkManager backend's connected life: a dropped connection seen over D-Bus (the device's
and the active connection's StateChanged), its code, the checks while online, and the backend's
own doings that are not losses. Then the engine on it: a drop, a reconnect, online again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device_sim.codes import Code, State
from device_sim.core.engine import OnboardingEngine, Timeouts
from device_sim.core.events import DiagnosticEvent, EventBus
from device_sim.core.life import LifeTimers
from device_sim.core.store import DeviceStore
from device_sim.errors import NetworkError
from device_sim.network.base import AccessPointConfig
from device_sim.network.nm.backend import NetworkManagerBackend
from device_sim.network.nm.defs import Connectivity, DeviceStateReason
from device_sim.network.nm.link import loss_for
from device_sim.profile import load_profile
from device_sim.security.secret import Secret
from device_sim.testing.nm_mock import NMMock

from .conftest import WAIT, MakeBackend

PASS = "correct-horse-battery"


async def established(backend: NetworkManagerBackend) -> None:
    await backend.join(b"Home", PASS)
    await backend.verify()


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (DeviceStateReason.SSID_NOT_FOUND, Code.LINK_LOST),
        (DeviceStateReason.SUPPLICANT_DISCONNECT, Code.LINK_LOST),
        (DeviceStateReason.IP_CONFIG_EXPIRED, Code.LEASE_LOST),
        (DeviceStateReason.DHCP_FAILED, Code.LEASE_LOST),
    ],
)
async def test_a_dropped_connection_is_seen_with_its_code(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, reason: int, code: Code
) -> None:
    await established(backend)
    watch = asyncio.ensure_future(backend.wait_link_loss())
    await nm.drop_connection(wifi, reason)
    loss = await asyncio.wait_for(watch, WAIT)
    assert loss.code is code and "Home" in loss.detail and str(reason) in loss.detail
    assert loss.raw["nm_reason_value"] == int(reason)  # the reason travels, for support
    with pytest.raises(NetworkError) as gone:
        await backend.check_connection()
    assert gone.value.code is Code.LINK_LOST


async def test_the_backends_own_doings_are_not_losses(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend
) -> None:
    for leave in ("disconnect", "join", "access point"):
        await established(backend)
        watch = asyncio.ensure_future(backend.wait_link_loss())
        if leave == "disconnect":
            await backend.disconnect()
        elif leave == "join":
            await backend.join(b"Cafe", None)
        else:
            await backend.start_access_point(AccessPointConfig("DS-TEST", Secret("ap-pass-1234")))
            await backend.stop_access_point()
        done, _ = await asyncio.wait({watch}, timeout=0.5)  # bounded: nothing may come
        watch.cancel()
        assert not done, leave


async def test_checks_while_online_use_networkmanagers_connectivity_and_dns(
    nm: NMMock, wifi: str, make_backend: MakeBackend
) -> None:
    names = {"cloud.device-sim.test": ["127.0.0.1"]}

    async def resolve(host: str) -> list[str]:
        import socket

        if host in names:
            return names[host]
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    backend = await make_backend(resolver=resolve)
    await established(backend)
    await backend.check_connection()
    await nm.set_connectivity(Connectivity.LIMITED)
    with pytest.raises(NetworkError) as internet:
        await backend.check_connection()
    assert internet.value.code is Code.INTERNET_LOST and "LIMITED" in internet.value.detail
    await nm.set_connectivity(Connectivity.FULL)
    names.clear()
    with pytest.raises(NetworkError) as dns:
        await backend.check_connection()
    assert dns.value.code is Code.DNS_LOST and "still associated" in dns.value.detail


def test_loss_for_maps_reasons() -> None:
    assert loss_for(120, int(DeviceStateReason.CARRIER), "'X'").code is Code.LINK_LOST
    assert loss_for(120, 999_999, "'X'").code is Code.LINK_LOST  # unknown reasons too


async def test_the_engine_sees_the_drop_and_reconnects(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, tmp_path: Path
) -> None:
    """The device online through NetworkManager; the router drops it: LINK_LOST, a retry of
    the saved network, online again; the profile is still the one saved network."""
    seen: list[DiagnosticEvent] = []
    changed = asyncio.Event()

    def collect(event: DiagnosticEvent) -> None:
        seen.append(event)
        changed.set()

    async def until(phase: str, after: int = 0) -> DiagnosticEvent:
        async with asyncio.timeout(WAIT * 3):
            while True:
                for event in seen[after:]:
                    if event.phase == phase:
                        return event
                changed.clear()
                await changed.wait()

    bus = EventBus()
    bus.subscribe(collect)
    with DeviceStore(tmp_path / "device") as store:
        engine = OnboardingEngine(
            load_profile(),
            store,
            backend,
            bus,
            timeouts=Timeouts(session_open=5, credentials_received=5, joining=WAIT, verifying=WAIT),
            life=LifeTimers(initial_s=0.05, max_s=0.2, reopen_after_s=5, check_interval_s=30),
        )
        async with engine:
            engine.session_opened()
            engine.set_credentials(b"Home", Secret(PASS), False)
            engine.connect()
            assert (await engine.wait_settled(WAIT)).state is State.ONLINE
            engine.session_closed()
            start = len(seen)
            await nm.drop_connection(wifi, DeviceStateReason.SSID_NOT_FOUND)
            lost = await until("link_lost", start)
            assert (lost.state, lost.code) == (State.FAILED, Code.LINK_LOST)
            await until("online", seen.index(lost) + 1)
            assert [n.ssid for n in store.saved_networks()] == [b"Home"]
    assert len(await nm.connections()) == 1  # one profile for the one saved network


async def test_a_profile_saved_by_a_run_killed_before_online_goes_at_start(
    nm: NMMock, wifi: str, backend: NetworkManagerBackend, tmp_path: Path
) -> None:
    """Found by the kill loop on NetworkManager: killed after the checks saved the profile but
    before `online` was committed, the device has no saved network and NetworkManager a profile
    of ours. The engine's start keeps only the saved networks: the profile goes."""
    with DeviceStore(tmp_path / "device") as store:
        await backend.join(b"Home", PASS)
        await backend.verify()  # saves the profile, as the checks do before `online`
        assert len(await nm.connections()) == 1 and store.saved_networks() == []
        engine = OnboardingEngine(
            load_profile(),
            store,
            backend,
            EventBus(),
            life=LifeTimers(initial_s=0.05, max_s=0.2, reopen_after_s=5, check_interval_s=30),
        )
        async with engine:
            assert await nm.connections() == []
