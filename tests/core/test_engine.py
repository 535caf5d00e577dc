"""OnboardingEngine, the session layer and native's session in-process: timeouts, recovery,
rules (no radio)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from device_sim.codes import Code, MessageType, State
from device_sim.core.engine import OnboardingEngine, Timeouts
from device_sim.core.events import EventBus
from device_sim.core.identity import create_identity
from device_sim.core.store import Credentials, DeviceStore
from device_sim.doors.native.session import NativeSession
from device_sim.doors.native.wire import ErrorBody, split_type
from device_sim.errors import OnboardingError
from device_sim.network.scenario import load_scenario
from device_sim.network.simulated import SimulatedBackend
from device_sim.profile import load_profile
from device_sim.security.secret import Secret
from device_sim.security.session import ClientHandshake
from device_sim.session.holder import SessionHolder
from device_sim.session.port import DoorPort

PROFILE = load_profile()
FAST = Timeouts(session_open=0.05, credentials_received=0.05, joining=5, verifying=5)
LAB = load_scenario("engineering-wifi").default_credentials


def _engine(
    store: DeviceStore,
    scenario: str = "engineering-wifi",
    *,
    zero_delay: bool = True,
    timeouts: Timeouts = FAST,
) -> tuple[OnboardingEngine, SimulatedBackend, list]:
    events = EventBus()
    seen: list = []
    events.subscribe(seen.append)
    backend = SimulatedBackend(load_scenario(scenario), zero_delay=zero_delay)
    return OnboardingEngine(PROFILE, store, backend, events, timeouts=timeouts), backend, seen


async def test_join_success_and_failure_then_retry(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        engine, backend, seen = _engine(store)
        async with backend, engine:
            engine.session_opened()
            engine.set_credentials(LAB.ssid, Secret("wrong-password"), False)
            engine.connect()
            record = await engine.wait_settled(5)
            assert (record.state, record.code) == (State.FAILED, Code.WRONG_CREDENTIALS)
            engine.set_credentials(LAB.ssid, Secret(LAB.passphrase or ""), False)
            engine.connect()
            record = await engine.wait_settled(5)
            assert (record.state, record.code, record.attempt) == (State.ONLINE, Code.OK, 2)
    states = [e.state for e in seen if e.phase in ("joining", "verifying", "online", "failed")]
    assert states == [State.JOINING, State.FAILED, State.JOINING, State.VERIFYING, State.ONLINE]


async def test_each_outcome_is_one_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The journal of a daemon without -v shows each onboarding's state, code, phase, elapsed."""
    caplog.set_level(logging.INFO, logger="device_sim.outcome")
    with DeviceStore(tmp_path) as store:
        engine, backend, _ = _engine(store, "captive-portal")
        home = load_scenario("captive-portal").default_credentials
        async with backend, engine:
            engine.session_opened()
            engine.set_credentials(
                home.ssid, Secret(home.passphrase) if home.passphrase else None, home.hidden
            )
            engine.connect()
            assert (await engine.wait_settled(5)).code is Code.CAPTIVE_PORTAL
    lines = [r for r in caplog.records if r.name == "device_sim.outcome"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    text = lines[0].getMessage()
    assert text.startswith(
        "onboarding failed: code CAPTIVE_PORTAL (106) in phase captive_portal after "
    )
    assert " s: " in text


@pytest.mark.parametrize(
    "state, code",
    [(State.SESSION_OPEN, Code.CLIENT_TIMEOUT), (State.CREDENTIALS_RECEIVED, Code.CLIENT_TIMEOUT)],
)
async def test_waiting_states_time_out_with_their_code(tmp_path: Path, state, code) -> None:
    with DeviceStore(tmp_path) as store:
        engine, backend, seen = _engine(store)
        async with backend, engine:
            engine.session_opened()
            if state is State.CREDENTIALS_RECEIVED:
                engine.set_credentials(LAB.ssid, Secret(LAB.passphrase or ""), False)
            fired = asyncio.Event()
            engine.events.subscribe(lambda e: fired.set() if e.phase == "timeout" else None)
            await asyncio.wait_for(fired.wait(), 5)
            assert seen[-1].phase == "timeout" and seen[-1].code is code
            target = State.UNPROVISIONED if state is State.SESSION_OPEN else State.FAILED
            assert engine.state is target


@pytest.mark.parametrize(
    "timeouts, code",
    [
        (Timeouts(60, 60, joining=0.05, verifying=60), Code.ASSOCIATION_TIMEOUT),
        (Timeouts(60, 60, joining=60, verifying=0.05), Code.NO_INTERNET),
    ],
)
async def test_joining_and_verifying_time_out(tmp_path: Path, timeouts, code) -> None:
    with DeviceStore(tmp_path) as store:
        engine, backend, _ = _engine(store, "typical-home", zero_delay=False, timeouts=timeouts)
        async with backend, engine:
            engine.session_opened()
            creds = load_scenario("typical-home").default_credentials
            engine.set_credentials(creds.ssid, Secret(creds.passphrase or ""), False)
            engine.connect()
            record = await engine.wait_settled(10)
            assert (record.state, record.code) == (State.FAILED, code)


@pytest.mark.parametrize(
    "stored, expected",
    [
        (State.SESSION_OPEN, (State.UNPROVISIONED, Code.OK)),
        (State.JOINING, (State.FAILED, Code.INTERRUPTED)),
        (State.VERIFYING, (State.FAILED, Code.INTERRUPTED)),
        (State.FAILED, (State.FAILED, Code.WRONG_CREDENTIALS)),
    ],
)
async def test_restart_recovers_per_the_profile(tmp_path: Path, stored, expected) -> None:
    with DeviceStore(tmp_path) as store:
        store.transition(
            State.CREDENTIALS_RECEIVED,
            credentials=Credentials(LAB.ssid, Secret(LAB.passphrase or ""), False),
        )
        store.transition(stored, Code.WRONG_CREDENTIALS if stored is State.FAILED else Code.OK)
        engine, backend, _ = _engine(store, timeouts=Timeouts(60, 60, 60, 60))
        async with backend, engine:
            record = engine.record
            assert (record.state, record.code) == expected
            if stored is not State.SESSION_OPEN:
                assert store.credentials() is not None


async def test_online_device_reconnects_on_boot_and_factory_reset_clears(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        store.transition(
            State.CREDENTIALS_RECEIVED,
            credentials=Credentials(LAB.ssid, Secret(LAB.passphrase or ""), False),
        )
        store.transition(State.JOINING)
        store.transition(State.VERIFYING)
        store.transition(State.ONLINE)
        engine, backend, seen = _engine(store)
        async with backend, engine:
            record = await engine.wait_settled(5)
            assert record.state is State.ONLINE
            assert any(e.phase == "joining" for e in seen)  # it really re-joined
            await engine.factory_reset()
            assert engine.state is State.UNPROVISIONED and store.credentials() is None
            with pytest.raises(OnboardingError) as info:
                engine.connect()
            assert info.value.code is Code.INVALID_STATE


async def test_requests_refused_while_joining(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        engine, backend, _ = _engine(
            store, "typical-home", zero_delay=False, timeouts=Timeouts(60, 60, 60, 60)
        )
        async with backend, engine:
            engine.session_opened()
            creds = load_scenario("typical-home").default_credentials
            engine.set_credentials(creds.ssid, Secret(creds.passphrase or ""), False)
            engine.connect()
            with pytest.raises(OnboardingError) as info:
                engine.set_credentials(b"other", Secret("password123"), False)
            assert info.value.code is Code.INVALID_STATE


async def test_session_idle_timeout_frees_the_session(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        identity, code = create_identity(store, Secret("1357-2468"))
        engine, backend, _ = _engine(store, timeouts=Timeouts(60, 60, 60, 60))
        async with backend, engine:
            service = SessionHolder(PROFILE, engine, store, identity, idle_timeout_s=0.05)
            native = NativeSession(DoorPort(service, "native"))
            sent: list[bytes] = []
            pushed = asyncio.Event()

            def send(message: bytes) -> None:
                sent.append(message)
                pushed.set()

            hs = ClientHandshake(code)
            (challenge,) = await native.handle(
                "phone", bytes([MessageType.PAKE_START]) + hs.start(), send
            )
            proof = hs.process_challenge(challenge[1:])
            replies = await native.handle("phone", bytes([MessageType.PAKE_PROOF]) + proof, send)
            assert replies[0][0] == MessageType.PAKE_CONFIRM
            assert engine.state is State.SESSION_OPEN
            # Another phone is refused while the session lives ...
            (busy,) = await native.handle("other", bytes([MessageType.PAKE_START]) + b"\x01", send)
            assert ErrorBody.from_body(split_type(busy)[1]).code is Code.BUSY
            # ... and the idle timeout pushes CLIENT_TIMEOUT and frees it.
            await asyncio.wait_for(pushed.wait(), 5)
            assert ErrorBody.from_body(split_type(sent[-1])[1]).code is Code.CLIENT_TIMEOUT
            assert service.session_peer is None and engine.state is State.UNPROVISIONED
            await service.aclose()


async def test_a_stranger_cannot_touch_the_holders_handshake_and_squatting_costs(
    tmp_path: Path,
) -> None:
    """Peers are the door's connections: another peer's PAKE_START or PAKE_PROOF during the
    holder's handshake gets BUSY and counts nothing; a handshake that never proves (it timed
    out, or was started over) counts as a wrong setup code, so holding the only session with
    bare PAKE_STARTs runs into the backoff like guessing does."""
    with DeviceStore(tmp_path) as store:
        identity, code = create_identity(store, Secret("1357-2468"))
        engine, backend, _ = _engine(store, timeouts=Timeouts(60, 60, 60, 60))
        async with backend, engine:
            service = SessionHolder(PROFILE, engine, store, identity, handshake_timeout_s=5)
            native = NativeSession(DoorPort(service, "native"))
            sent: list[bytes] = []
            pushed = asyncio.Event()

            def send(message: bytes) -> None:
                sent.append(message)
                pushed.set()

            def error(message: bytes) -> Code:
                kind, body = split_type(message)
                assert kind is MessageType.ERROR, kind
                return ErrorBody.from_body(body).code

            start = bytes([MessageType.PAKE_START])
            holder, stranger = ("central-A", 7), ("central-B", 7)  # same channel id
            hs = ClientHandshake(code)
            (challenge,) = await native.handle(holder, start + hs.start(), send)
            assert challenge[0] == MessageType.PAKE_CHALLENGE
            for message in (
                start + ClientHandshake(code).start(),
                bytes([MessageType.PAKE_PROOF]) + b"\x00" * 96,
            ):
                (reply,) = await native.handle(stranger, message, send)
                assert error(reply) is Code.BUSY
            assert store.auth_failures()[0] == 0
            confirm = await native.handle(
                holder, bytes([MessageType.PAKE_PROOF]) + hs.process_challenge(challenge[1:]), send
            )
            assert confirm[0][0] == MessageType.PAKE_CONFIRM
            (busy,) = await native.handle(stranger, start + ClientHandshake(code).start(), send)
            assert error(busy) is Code.BUSY and service.session_peer == holder
            service.release(holder)

            # A squatter's handshake that times out costs one failure ...
            service.handshake_timeout_s = 0.05
            await native.handle(stranger, start + ClientHandshake(code).start(), send)
            pushed.clear()
            await asyncio.wait_for(pushed.wait(), 5)
            assert error(sent[-1]) is Code.CLIENT_TIMEOUT
            assert store.auth_failures()[0] == 1
            # ... and so does each start-over, until PAKE_START meets the backoff.
            answers = []
            for _ in range(4):
                (reply,) = await native.handle(
                    stranger, start + ClientHandshake(code).start(), send
                )
                answers.append(reply[0])
            assert answers[:3] == [MessageType.PAKE_CHALLENGE] * 3
            assert answers[3] == MessageType.ERROR and error(reply) is Code.TOO_MANY_ATTEMPTS
            assert store.auth_failures()[0] == 3
            await service.aclose()


async def _onboard_slow(tmp_path: Path, scenario: str, timeouts: Timeouts) -> tuple[Any, list]:
    """One join on ``scenario`` played at 1/100 of its delays."""
    with DeviceStore(tmp_path) as store:
        events = EventBus()
        seen: list = []
        events.subscribe(seen.append)
        backend = SimulatedBackend(load_scenario(scenario), time_scale=0.01)
        engine = OnboardingEngine(PROFILE, store, backend, events, timeouts=timeouts)
        async with backend, engine:
            engine.session_opened()
            creds = load_scenario(scenario).default_credentials
            engine.set_credentials(creds.ssid, Secret(creds.passphrase or ""), False)
            engine.connect()
            return await engine.wait_settled(10), seen


async def test_a_phase_that_runs_out_ends_with_its_own_code(tmp_path: Path) -> None:
    """A 50 s DHCP (scaled 1/100: 0.5 s) outlasts the DHCP phase's 20 s (0.2 s) before the
    joining state's 45 s (0.45 s): NO_DHCP_LEASE, not ASSOCIATION_TIMEOUT."""
    record, seen = await _onboard_slow(
        tmp_path, "slow-dhcp", Timeouts.from_profile(PROFILE, scale=0.01)
    )
    assert (record.state, record.code) == (State.FAILED, Code.NO_DHCP_LEASE)
    assert "dhcp took over 0.2 s" in record.detail
    assert [e.phase for e in seen if e.state is State.FAILED] == ["failed"]
    assert "dhcp" in [e.phase for e in seen]


async def test_without_phase_timeouts_the_state_timeout_decides(tmp_path: Path) -> None:
    """The same DHCP with only the state timeouts (as before phases had their own): the joining
    state's code; and a join inside every phase's limit is unaffected."""
    scaled = Timeouts.from_profile(PROFILE, scale=0.01)
    record, _ = await _onboard_slow(
        tmp_path / "a", "slow-dhcp", dataclasses.replace(scaled, phases={})
    )
    assert (record.state, record.code) == (State.FAILED, Code.ASSOCIATION_TIMEOUT)
    record, _ = await _onboard_slow(tmp_path / "b", "engineering-wifi", scaled)
    assert record.state is State.ONLINE


def test_every_profile_phase_is_a_backend_phase() -> None:
    from device_sim.network.base import Phase

    assert set(PROFILE.phases) <= {str(p) for p in Phase}
    assert PROFILE.phases["dhcp"].timeout_code == "NO_DHCP_LEASE"
    joining_ms = PROFILE.states["joining"].timeout_ms
    assert joining_ms is not None and {p.timeout_ms for p in PROFILE.phases.values()}
    assert all(
        p.timeout_ms is not None and p.timeout_ms < joining_ms for p in PROFILE.phases.values()
    )


async def test_the_backend_keeps_the_new_saved_list_before_online_is_committed(
    tmp_path: Path,
) -> None:
    """Found by the kill loop on NetworkManager: the backend used to order its profiles only
    after `online` was committed, so a kill between the two left a saved network whose
    profile had no priority. Now the backend hears the list first: a kill then leaves a
    profile the next start deletes (it keeps only the store's list)."""
    with DeviceStore(tmp_path) as store:
        engine, backend, _ = _engine(store)
        kept: list[tuple[list[bytes], State, list[bytes]]] = []
        keep = backend.keep_networks

        async def spy(saved: Any) -> None:
            kept.append((list(saved), engine.state, [n.ssid for n in store.saved_networks()]))
            await keep(saved)

        backend.keep_networks = spy  # type: ignore[method-assign]
        async with backend, engine:
            engine.session_opened()
            engine.set_credentials(LAB.ssid, Secret(LAB.passphrase or ""), False)
            engine.connect()
            assert (await engine.wait_settled(5)).state is State.ONLINE
    # At start: the store's (empty) list; before online: the list online will commit.
    assert kept == [([], State.UNPROVISIONED, []), ([LAB.ssid], State.VERIFYING, [])]
