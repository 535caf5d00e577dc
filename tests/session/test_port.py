"""The door-facing interface (DoorPort): what a door may reach, and how it follows sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import pytest_asyncio

from device_sim.codes import Code, State
from device_sim.network.base import AccessPointConfig
from device_sim.security.secret import Secret
from device_sim.stack import DeviceStack
from device_sim.testing.stack import build_stack


@pytest_asyncio.fixture
async def device(tmp_path: Path) -> AsyncIterator[DeviceStack]:
    async with AsyncExitStack() as stack:
        yield await build_stack(stack, tmp_path / "device", scenario="engineering-wifi")


async def test_settings_are_kept_under_the_door_name(device: DeviceStack) -> None:
    improv, other = device.port("improv"), device.port("esp")
    improv.set_setting("device_name", "Kitchen")
    assert improv.setting("device_name") == "Kitchen"
    assert other.setting("device_name") is None  # another door's namespace
    assert device.store.setting("improv.device_name") == "Kitchen"


async def test_sessions_are_followed_until_unsubscribed(device: DeviceStack) -> None:
    port = device.port("test")
    opened: list[Hashable] = []
    closed: list[tuple[Hashable, Code]] = []
    stop = port.follow_sessions(opened.append, lambda p, c: closed.append((p, c)))
    ssid = b"DeviceSim-Lab"
    port.direct_provision("phone-1", ssid, Secret("lab-bench-passphrase"), hidden=False)
    assert opened == ["phone-1"] and port.session_peer == "phone-1"
    await port.wait_settled(10)
    port.release("phone-1")
    assert closed == [("phone-1", Code.OK)]
    stop()
    port.direct_provision("phone-2", ssid, Secret("lab-bench-passphrase"), hidden=False)
    await port.wait_settled(10)
    assert opened == ["phone-1"]  # no longer told


async def test_one_softap_server_at_a_time(device: DeviceStack) -> None:
    port = device.port("supervisor")

    async def opener(reason: str) -> dict[str, object]:
        return {"reason": reason}

    stop = port.serve_softap_requests(opener)
    with pytest.raises(RuntimeError, match="already has a server"):
        port.serve_softap_requests(opener)
    stop()
    port.serve_softap_requests(opener)()  # free again once stopped


async def test_public_state_and_the_radio(device: DeviceStack) -> None:
    port = device.port("softap")
    assert port.state is State.UNPROVISIONED and not port.busy and not port.provisioned
    assert port.outcome_within_s > 0
    assert [ap.ssid for ap in await port.scan()]  # the simulated world's networks
    await port.start_access_point(AccessPointConfig("DeviceSim-Setup", None, address="127.0.0.1"))
    assert device.backend.access_point is not None
    await port.stop_access_point()
    assert device.backend.access_point is None
    port.note_own("a note of its own")
    assert port.last_event is not None and port.last_event.phase == "softap"


async def test_credentials_carry_the_security_the_app_sent(device: DeviceStack) -> None:
    from device_sim.doors.native.session import parse_credentials
    from device_sim.errors import OnboardingError, ProtocolError
    from device_sim.network.base import Security

    port = device.port("test")
    port.begin_session("phone-1")
    port.establish_session("phone-1")
    request = {"ssid_hex": b"Quiet".hex(), "passphrase": "sae-only-please", "hidden": True}
    ssid, passphrase, hidden, security = parse_credentials({**request, "security": "wpa3-sae"})
    port.set_credentials(ssid, passphrase, hidden, security)
    creds = device.store.credentials()
    assert creds is not None and creds.security is Security.WPA3_SAE
    assert parse_credentials(request)[3] is None  # optional: revision-1 apps send none
    with pytest.raises(ProtocolError) as bad:
        parse_credentials({**request, "security": 3})
    assert bad.value.code is Code.MALFORMED_REQUEST and "security?: str" in str(bad.value)
    with pytest.raises(OnboardingError) as unknown:
        port.set_credentials(ssid, passphrase, hidden, "wpa9")
    assert unknown.value.code is Code.MALFORMED_REQUEST and "wpa3-sae" in str(unknown.value)
    with pytest.raises(OnboardingError) as refused:
        port.set_credentials(ssid, passphrase, hidden, "enterprise")
    assert refused.value.code is Code.UNSUPPORTED_SECURITY
    with pytest.raises(OnboardingError) as owe:
        port.set_credentials(ssid, passphrase, hidden, "owe")  # Enhanced Open takes no key
    assert owe.value.code is Code.INVALID_CREDENTIALS_FORMAT
    assert device.store.credentials() == creds  # a refused request changed nothing
