"""Bad input, competing and vanishing clients, a killed daemon, and secrets on the bus."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from device_sim.codes import Code, MessageType
from device_sim.doors.native.client import BleLink, ClientSession
from device_sim.doors.native.flow import Provisioner, find_device, provision
from device_sim.doors.native.wire import ErrorBody, fragment, split_type
from device_sim.errors import SessionError
from device_sim.network.radius import eap_settings
from device_sim.network.scenario import load_scenario
from device_sim.security.secret import Secret

from .conftest import Device

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]
LAB = load_scenario("engineering-wifi").default_credentials
T = TypeVar("T")


async def _link(device: Device, profile, phone: int = 1) -> BleLink:
    found = await find_device(profile, device.target(phone))
    link = BleLink(profile, found.device, adapter=device.vb.adapters[phone])
    await link.__aenter__()
    return link


def _error(message: bytes) -> ErrorBody:
    kind, body = split_type(message)
    assert kind is MessageType.ERROR, kind
    return ErrorBody.from_body(body)


async def test_wrong_setup_code_then_backoff_then_right_code(
    device: Device, profile, setup_code
) -> None:
    await device.start("engineering-wifi")
    link = await _link(device, profile)
    try:
        codes = []
        for _ in range(3):
            with pytest.raises(SessionError) as info:
                await ClientSession(link).open(Secret("1111-2222"))
            codes.append(info.value.code)
        assert codes == [Code.WRONG_SETUP_CODE] * 3
        # The 3rd failure armed the backoff: even the right code now waits, and says how long.
        with pytest.raises(SessionError) as info:
            await ClientSession(link).open(setup_code)
        assert info.value.code is Code.TOO_MANY_ATTEMPTS
        assert 0 < info.value.retry_after_ms <= 2000
        assert (await link.read_state()).state.wire_name == "unprovisioned"
    finally:
        await link.__aexit__()


async def test_malformed_truncated_oversized_and_replayed(
    device: Device, profile, setup_code
) -> None:
    await device.start("engineering-wifi")
    link = await _link(device, profile)
    try:
        ch = link.channel.to_bytes(2, "big")
        cases = [
            (bytes([0x41]) + ch + b"orphan", Code.MALFORMED_REQUEST),  # no FIRST fragment
            (bytes([0xC0]) + ch + b"\x10\x01" + b"x", Code.MESSAGE_TOO_LARGE),  # 4097 announced
            (bytes([0xC0]) + ch + b"\x00\x09" + b"abc", Code.MALFORMED_REQUEST),  # truncated
            (bytes([0xC0]) + ch + b"\x00\x02" + b"\x99\x00", Code.MALFORMED_REQUEST),  # bad type
        ]
        for frame, code in cases:
            await link.send_raw(frame)
            assert _error(await link.receive(5)).code is code
        # An oversized message sent in many fragments is refused at its first fragment.
        for frame in fragment(b"\x20" + b"z" * 5000, link.channel, 200)[:1]:
            await link.send_raw(frame)
        assert _error(await link.receive(5)).code is Code.MESSAGE_TOO_LARGE
        # After all that, a real session works, and a replayed secure message is refused.
        session = ClientSession(link)
        await session.open(setup_code)
        assert session.channel is not None
        sealed = session.channel.seal(MessageType.STATUS_REQUEST, b"{}")
        await link.send(sealed)
        while session.channel.open(await link.receive(5))[0] is MessageType.EVENT:
            pass  # the session_open event is pushed right after PAKE_CONFIRM
        await link.send(sealed)  # the same bytes again: a replay
        assert _error(await link.receive(5)).code is Code.REPLAYED_MESSAGE
        kind, status = await session.call(MessageType.STATUS_REQUEST, {})
        assert kind is MessageType.STATUS and status["state"] == "session_open"
    finally:
        await link.__aexit__()


async def test_second_client_gets_busy(device: Device, profile, setup_code) -> None:
    await device.start("engineering-wifi")
    async with Provisioner(profile, device.target(1), setup_code):
        with pytest.raises(SessionError) as info:
            async with Provisioner(profile, device.target(2), setup_code):
                pass
        assert info.value.code is Code.BUSY


async def test_vanished_client_then_new_client_succeeds(
    device: Device, profile, setup_code
) -> None:
    await device.start("engineering-wifi", "--idle-timeout", "30")
    link = await _link(device, profile, phone=1)
    session = ClientSession(link)
    await session.open(setup_code)
    await session.call(
        MessageType.SET_CREDENTIALS,
        {"ssid_hex": LAB.ssid.hex(), "passphrase": LAB.passphrase, "hidden": False},
    )
    await link.__aexit__()  # gone without END_SESSION, mid-flow
    # The device sees the disconnect and frees the session long before the 30 s idle timeout.
    result = await provision(
        profile,
        device.target(2),
        setup_code=setup_code,
        ssid=LAB.ssid,
        passphrase=Secret(LAB.passphrase or ""),
        outcome_timeout=30,
    )
    assert (result["state"], result["code_name"]) == ("online", "OK"), result.get("detail")


async def test_daemon_killed_while_joining_restarts_consistent(
    device: Device, profile, setup_code
) -> None:
    # typical-home has real delays: the kill lands in `joining` (association takes ~0.6 s).
    await device.start("typical-home", zero_delay=False)
    creds = load_scenario("typical-home").default_credentials
    async with Provisioner(profile, device.target(1), setup_code) as prov:
        assert prov.session is not None
        await prov.session.call(
            MessageType.SET_CREDENTIALS,
            {"ssid_hex": creds.ssid.hex(), "passphrase": creds.passphrase, "hidden": False},
        )
        await prov.session.call(MessageType.CONNECT, {})
        event = await prov.session.next_event(10)
        while event["phase"] != "associating":
            event = await prov.session.next_event(10)
        assert device.daemon is not None
        device.daemon.kill()
        await device.daemon.stop()
    # What the store held at the kill: mid-join (association takes ~600 ms of simulated time).
    assert device.record().state.wire_name == "joining"
    await device.start("typical-home", "--time-scale", "0.2", zero_delay=False)
    record = device.record()
    assert (record.state.wire_name, record.code) == ("failed", Code.INTERRUPTED)
    assert record.ssid == creds.ssid  # credentials kept: the user need not type them again
    # A new phone (BlueZoo: the first one's GATT objects from the dead daemon linger) retries.
    result = await provision(
        profile,
        device.target(2),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=Secret(creds.passphrase or ""),
        outcome_timeout=30,
    )
    assert result["state"] == "online", result.get("detail")


async def on_the_bus(device: Device, onboarding: Awaitable[T]) -> tuple[T, bytes]:
    """``onboarding``'s result, and everything dbus-monitor saw on the device's bus meanwhile
    (checked to hold the GATT traffic)."""
    monitor = subprocess.Popen(
        ["dbus-monitor", "--address", device.vb.bus_address, "--binary"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = await onboarding
    finally:
        monitor.terminate()
        captured, _ = monitor.communicate(timeout=10)
    assert len(captured) > 10_000  # the capture really saw the GATT traffic
    return result, captured


@pytest.mark.requires_tools("dbus-monitor")
async def test_no_secret_crosses_the_bus_or_reaches_the_logs(
    device: Device, profile, setup_code
) -> None:
    await device.start("engineering-wifi")
    result, captured = await on_the_bus(
        device,
        provision(
            profile,
            device.target(1),
            setup_code=setup_code,
            ssid=LAB.ssid,
            passphrase=Secret(LAB.passphrase or ""),
        ),
    )
    assert result["state"] == "online"
    secrets = [
        (LAB.passphrase or "").encode(),
        setup_code.reveal().encode(),
        setup_code.reveal().replace("-", "").encode(),
    ]
    for secret in secrets:
        assert secret not in captured
    logs = device.log.read_bytes() + (device.state_dir / "onboarding.jsonl").read_bytes()
    for secret in secrets:
        assert secret not in logs


@pytest.mark.requires_tools("dbus-monitor")
@pytest.mark.parametrize("scenario", ["enterprise-peap", "enterprise-tls"])
async def test_no_enterprise_secret_crosses_the_bus_or_reaches_logs_events_or_a_bundle(
    device: Device, profile, setup_code, scenario: str, tmp_path
) -> None:
    """The password (PEAP) and the private key (EAP-TLS) travel sealed in the session, and
    appear in no log, event or diagnostics bundle (NetworkManager would get them over the
    system bus by design: here the simulated world plays it)."""
    creds = load_scenario(scenario).default_credentials
    assert creds.eap is not None
    eap = eap_settings(creds.eap)
    await device.start(scenario)
    result, captured = await on_the_bus(
        device,
        provision(
            profile, device.target(1), setup_code=setup_code, ssid=creds.ssid, passphrase=None,
            eap=eap,
        ),
    )  # fmt: skip
    assert result["state"] == "online", result.get("detail")
    secrets = [s.reveal().encode() for s in (eap.password, eap.private_key) if s is not None]
    if eap.private_key is not None:  # and each line of the key's body, as a PEM carries it
        secrets += [line.encode() for line in eap.private_key.reveal().splitlines()[1:-1]]
    assert secrets
    bundle = tmp_path / "bundle.tar.gz"
    done = subprocess.run(
        [sys.executable, "-m", "device_sim", "ctl", "--state-dir", str(device.state_dir),
         "--out", str(bundle), "diagnostics"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with tarfile.open(bundle) as archive:
        packed = b"".join(
            archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile()
        )
    events = (device.state_dir / "onboarding.jsonl").read_bytes()
    assert b'"method":' in events or b'"method": ' in events  # the events name the method ...
    for secret in secrets:  # ... and carry none of its secrets
        assert secret not in captured
        assert secret not in device.log.read_bytes() + events
        assert secret not in packed
