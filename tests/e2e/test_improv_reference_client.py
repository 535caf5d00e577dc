"""Our own Improv client (device-sim client provision --personality improv) against a device that
presents only the Improv service: the specific code still reaches the phone through the small
diagnostics service an improv-only device keeps."""

from __future__ import annotations

import pytest

from device_sim.control import control_request
from device_sim.doors.improv.client import provision_improv
from device_sim.security.secret import Secret

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]


async def test_wrong_then_right_passphrase_reports_the_specific_code(device) -> None:
    ready = await device.start(
        "engineering-wifi",
        "--personality",
        "improv",
        "--improv-redirect-url",
        "http://device.local/",
    )
    assert ready["personalities"] == ["improv"]
    await control_request(device.state_dir, "improv-authorize")  # the simulated button
    result = await provision_improv(
        device.profile,
        adapter=device.vb.adapters[1],
        name=ready["local_name"],
        discover_timeout=20,
        ssid=b"DeviceSim-Lab",
        passphrase=Secret("not-the-passphrase"),
        retries=[(b"DeviceSim-Lab", Secret("lab-bench-passphrase"), False)],
    )
    first, last = result["attempts"]
    assert (first["state"], first["code_name"], first["improv_error"]) == (
        "failed",
        "WRONG_CREDENTIALS",
        "UNABLE_TO_CONNECT",
    )
    assert first["message"] == device.profile.code("WRONG_CREDENTIALS").user_message
    assert any(
        e["state"] == "failed" and e["code_name"] == "WRONG_CREDENTIALS" for e in first["events"]
    )
    assert (last["state"], last["code_name"], last["redirect_url"]) == (
        "online",
        "OK",
        "http://device.local/",
    )
    assert result["transport"] == "ble-improv"


async def test_without_the_button_the_device_refuses(device) -> None:
    ready = await device.start("engineering-wifi", "--personality", "improv")
    result = await provision_improv(
        device.profile,
        adapter=device.vb.adapters[2],
        name=ready["local_name"],
        discover_timeout=20,
        ssid=b"DeviceSim-Lab",
        passphrase=Secret("lab-bench-passphrase"),
    )
    assert (result["improv_error"], result["code_name"], result["improv_state"]) == (
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "authorization_required",
    )
    assert result["next_step"] == device.profile.code("NOT_AUTHORIZED").next_step
    assert device.record().state.wire_name == "unprovisioned"
