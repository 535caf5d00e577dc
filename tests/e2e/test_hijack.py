"""A second central near the device: it cannot end, answer or break into the holder's session,
even on the holder's own channel id, and bare handshakes cost what wrong setup codes cost."""

from __future__ import annotations

import pytest

from device_sim.codes import Code, MessageType
from device_sim.core.store import DeviceStore
from device_sim.doors.native.client import BleLink, ClientSession
from device_sim.doors.native.flow import find_device
from device_sim.doors.native.wire import ErrorBody, split_type
from device_sim.errors import SessionError
from device_sim.security.secret import Secret
from device_sim.security.session import ClientHandshake

from .conftest import Device

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]
# The hijack fix needs BlueZ to name the central of every write; bless's fallback path does
# not, and the BLE host says so in the log (a WARNING). Every test here checks it never did.
UNNAMED = "arrived without the writing central"


@pytest.fixture(autouse=True)
def every_write_names_its_central(device: Device):
    yield
    assert UNNAMED not in device.log.read_text(errors="replace")


async def _link(device: Device, profile, phone: int, channel: int | None = None) -> BleLink:
    found = await find_device(profile, device.target(phone))
    link = BleLink(profile, found.device, adapter=device.vb.adapters[phone])
    if channel is not None:
        link.channel = channel  # a stranger that read the holder's channel id off the air
    await link.__aenter__()
    return link


def _auth_failures(device: Device) -> int:
    with DeviceStore(device.state_dir) as store:  # a second reader next to the daemon (WAL)
        return store.auth_failures()[0]


def _kinds(link: BleLink) -> list[MessageType]:
    """The types of the messages waiting in ``link``'s inbox (it is emptied)."""
    kinds = []
    while not link.inbox.empty():
        item = link.inbox.get_nowait()
        assert isinstance(item, bytes), item
        kinds.append(split_type(item)[0])
    return kinds


async def test_a_stranger_on_the_holders_channel_cannot_end_or_disturb_its_session(
    device: Device, profile, setup_code
) -> None:
    await device.start("engineering-wifi")
    holder = await _link(device, profile, phone=1)
    stranger = await _link(device, profile, phone=2, channel=holder.channel)
    try:
        session = ClientSession(holder)
        await session.open(setup_code)
        # The stranger starts a handshake, and sends a proof, on the holder's channel id. Writes
        # are acknowledged: when send() returns, the device has taken (and dropped) the frames.
        await stranger.send(bytes([MessageType.PAKE_START]) + ClientHandshake(setup_code).start())
        await stranger.send(bytes([MessageType.PAKE_PROOF]) + b"\x00" * 96)
        # The holder's session lives on, and no answer to the stranger reached its inbox.
        kind, status = await session.call(MessageType.STATUS_REQUEST, {})
        assert (kind, status["state"]) == (MessageType.STATUS, "session_open")
        assert MessageType.ERROR not in _kinds(holder)
        # The stranger saw nothing but the holder's own messages (notifications go to every
        # subscriber): its one challenge and confirm, then sealed ones; no answer of its own.
        kinds = _kinds(stranger)
        assert set(kinds) <= {
            MessageType.PAKE_CHALLENGE,
            MessageType.PAKE_CONFIRM,
            MessageType.SECURE,
        }
        assert kinds.count(MessageType.PAKE_CHALLENGE) <= 1
        assert _auth_failures(device) == 0
        assert "a central wrote on channel" in device.log.read_text()
    finally:
        await stranger.__aexit__()
        await holder.__aexit__()


async def test_a_strangers_proof_during_the_handshake_is_not_a_wrong_code(
    device: Device, profile, setup_code
) -> None:
    """Proofs from other centrals, on their own channel (BUSY) or on the holder's (dropped),
    neither end the holder's handshake nor count as wrong setup codes."""
    await device.start("engineering-wifi")
    holder = await _link(device, profile, phone=1)
    stranger = await _link(device, profile, phone=2)  # its own channel
    try:
        hs = ClientHandshake(setup_code)
        await holder.send(bytes([MessageType.PAKE_START]) + hs.start())
        kind, challenge = split_type(await holder.receive(10))
        assert kind is MessageType.PAKE_CHALLENGE
        own_channel = stranger.channel
        for _ in range(4):  # more than the free attempts: none of them may count
            stranger.channel = own_channel
            await stranger.send(bytes([MessageType.PAKE_PROOF]) + b"\x00" * 96)
            kind, body = split_type(await stranger.receive(10))
            assert (kind, ErrorBody.from_body(body).code) == (MessageType.ERROR, Code.BUSY)
            stranger.channel = holder.channel
            await stranger.send(bytes([MessageType.PAKE_PROOF]) + b"\x00" * 96)
        assert _auth_failures(device) == 0
        # The real phone finishes its handshake, with no backoff in its way.
        await holder.send(bytes([MessageType.PAKE_PROOF]) + hs.process_challenge(challenge))
        assert split_type(await holder.receive(10))[0] is MessageType.PAKE_CONFIRM
    finally:
        await stranger.__aexit__()
        await holder.__aexit__()


async def test_holding_the_session_with_bare_handshakes_runs_into_the_backoff(
    device: Device, profile, setup_code
) -> None:
    await device.start("engineering-wifi")
    squatter = await _link(device, profile, phone=2)
    try:
        answers = []
        for _ in range(5):  # each start-over abandons the previous handshake
            await squatter.send(
                bytes([MessageType.PAKE_START]) + ClientHandshake(Secret("0000-0000")).start()
            )
            kind, body = split_type(await squatter.receive(10))
            answers.append(
                kind if kind is not MessageType.ERROR else ErrorBody.from_body(body).code
            )
        # Three abandoned handshakes are the free attempts; the fourth start-over is refused.
        assert answers == [MessageType.PAKE_CHALLENGE] * 4 + [Code.TOO_MANY_ATTEMPTS]
        assert _auth_failures(device) == 3
    finally:
        await squatter.__aexit__()
    # The backoff the squatter earned applies to everyone, as wrong codes do: it is what
    # squatting costs, and it grows with every further attempt.
    phone = await _link(device, profile, phone=1)
    try:
        with pytest.raises(SessionError) as info:
            await ClientSession(phone).open(setup_code)
        assert info.value.code is Code.TOO_MANY_ATTEMPTS and info.value.retry_after_ms > 0
    finally:
        await phone.__aexit__()
