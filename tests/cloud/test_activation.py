"""POST /v1/activate: zero-touch, claim, idempotency and the binding rule."""

from __future__ import annotations

from typing import Any

import pytest

from device_sim.apps.cloud import CloudAdmin
from device_sim.apps.cloud.emulator import CloudEmulator

from .conftest import NOW, PASSWORD, Clock, Device, DeviceClient, Factory, body


@pytest.fixture
async def unit(admin: CloudAdmin, factory: Factory) -> Device:
    """An imported unit; accounts alice and bob exist; no supply-chain record."""
    device = factory.device("SN-A1")
    assert await admin.import_units({"units": [device.unit()], "registration": []}) == 1
    await admin.add_account("alice", PASSWORD)
    await admin.add_account("bob", PASSWORD)
    return device


def claim(
    device: Device, account: str, request_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    return body(
        device, "claim", request_id, account=account, claim_token=device.claim_token, **extra
    )


# -- zero-touch -----------------------------------------------------------------------------------


async def test_zero_touch_binds_to_the_supply_chain_account(
    dev: DeviceClient, admin: CloudAdmin, unit: Device
) -> None:
    await admin.set_supply_chain(unit.serial, "alice")
    status, answer = await dev.activate(unit, body(unit, "zero-touch", account="bob"))
    assert status == 200
    assert answer["device_id"] == unit.device_id
    assert (answer["account"], answer["mode"], answer["generation"]) == ("alice", "zero-touch", 1)
    assert set(answer) == {"device_id", "account", "mode", "generation", "credentials"}
    status, me = await dev.self_(answer["credentials"]["token"])
    assert (status, me) == (200, {"device_id": unit.device_id, "account": "alice", "generation": 1})
    assert await admin.list_devices("alice", PASSWORD) == [
        {"device_id": unit.device_id, "mode": "zero-touch", "generation": 1}
    ]


async def test_zero_touch_without_supply_chain_record(dev: DeviceClient, unit: Device) -> None:
    status, answer = await dev.activate(unit, body(unit, "zero-touch"))
    assert status == 403
    assert answer == {"error": "activation_rejected", "detail": "no supply-chain record"}


async def test_cert_of_another_unit_is_rejected(
    dev: DeviceClient, admin: CloudAdmin, unit: Device, factory: Factory
) -> None:
    other = factory.device("SN-A2")
    await admin.import_units({"units": [other.unit()]})
    await admin.set_supply_chain(unit.serial, "alice")
    status, answer = await dev.activate(other, body(unit, "zero-touch"))
    assert (status, answer["error"]) == (403, "activation_rejected")


async def test_unimported_device_with_valid_factory_cert_is_rejected(
    dev: DeviceClient, factory: Factory, unit: Device
) -> None:
    stranger = factory.device("SN-NOT-IMPORTED")
    status, answer = await dev.activate(stranger, body(stranger, "zero-touch"))
    assert (status, answer["error"]) == (403, "activation_rejected")


# -- claim ----------------------------------------------------------------------------------------


async def test_claim_success(dev: DeviceClient, admin: CloudAdmin, unit: Device) -> None:
    status, answer = await dev.activate(unit, claim(unit, "bob"))
    assert status == 200
    assert (answer["account"], answer["mode"], answer["generation"]) == ("bob", "claim", 1)
    assert (await dev.self_(answer["credentials"]["token"]))[0] == 200
    assert [d["device_id"] for d in await admin.list_devices("bob", PASSWORD)] == [unit.device_id]


async def test_claim_needs_the_client_cert_the_right_token_and_an_account(
    dev: DeviceClient, unit: Device
) -> None:
    status, answer = await dev.activate(unit, claim(unit, "bob"), cert=False)
    assert (status, answer["error"]) == (403, "activation_rejected")
    wrong = claim(unit, "bob") | {"claim_token": "not-the-label-token"}
    assert (await dev.activate(unit, wrong))[1] == {
        "error": "activation_rejected",
        "detail": "wrong claim token",
    }
    status, answer = await dev.activate(unit, claim(unit, "nobody"))
    assert (status, answer["error"]) == (403, "activation_rejected")
    status, answer = await dev.activate(unit, body(unit, "claim", claim_token=unit.claim_token))
    assert (status, answer["error"]) == (400, "bad_request")


async def test_claim_token_expired(dev: DeviceClient, clock: Clock, unit: Device) -> None:
    clock.now = NOW + 86400 + 1  # the unit's token expires at NOW + 1 day
    status, answer = await dev.activate(unit, claim(unit, "bob"))
    assert (status, answer["error"]) == (410, "claim_token_expired")


async def test_claim_token_reused_by_a_second_request(dev: DeviceClient, unit: Device) -> None:
    status, first = await dev.activate(unit, claim(unit, "bob"))
    assert status == 200
    # The device is released (unbound); a new request with the used token without a reset.
    assert (
        await dev.request(
            "POST",
            "/v1/devices/self/release",
            headers={"Authorization": f"Bearer {first['credentials']['token']}"},
        )
    )[0] == 200
    status, answer = await dev.activate(unit, claim(unit, "alice"))
    assert (status, answer["error"]) == (409, "claim_token_used")
    status, answer = await dev.activate(unit, claim(unit, "bob"))
    assert (status, answer["error"]) == (409, "claim_token_used")


async def test_same_request_id_returns_the_stored_response(
    dev: DeviceClient, admin: CloudAdmin, unit: Device
) -> None:
    request = claim(unit, "bob", request_id="boot-1-activate")
    status, first = await dev.activate(unit, request)
    assert status == 200
    # The token is used now, but the retry of the same request gets the same answer...
    status, again = await dev.activate(unit, request)
    assert (status, again) == (200, first)
    # ...and the same binding: no second generation, no second device.
    assert await admin.list_devices("bob", PASSWORD) == [
        {"device_id": unit.device_id, "mode": "claim", "generation": 1}
    ]
    # A retry must still prove what the mode needs.
    status, answer = await dev.activate(unit, request, cert=False)
    assert (status, answer["error"]) == (403, "activation_rejected")
    status, answer = await dev.activate(unit, body(unit, "zero-touch", "boot-1-activate"))
    assert (status, answer["error"]) == (409, "request_id_conflict")


# -- the binding rule -----------------------------------------------------------------------------


async def test_bound_to_the_same_account_is_idempotent_success(
    dev: DeviceClient, unit: Device
) -> None:
    status, first = await dev.activate(unit, claim(unit, "bob"))
    status, second = await dev.activate(unit, claim(unit, "bob"))
    assert status == 200
    assert (second["account"], second["generation"]) == ("bob", 1)
    assert second["credentials"]["token"] != first["credentials"]["token"]
    for answer in (first, second):  # same generation: both tokens stay valid
        assert (await dev.self_(answer["credentials"]["token"]))[0] == 200


async def test_claimed_by_another_account(
    dev: DeviceClient, admin: CloudAdmin, unit: Device
) -> None:
    assert (await dev.activate(unit, claim(unit, "bob")))[0] == 200
    status, answer = await dev.activate(unit, claim(unit, "alice"))
    assert (status, answer["error"]) == (409, "claimed_by_another_account")
    await admin.set_supply_chain(unit.serial, "alice")
    status, answer = await dev.activate(unit, body(unit, "zero-touch"))
    assert (status, answer["error"]) == (409, "claimed_by_another_account")
    assert await admin.list_devices("alice", PASSWORD) == []


async def test_after_reset_another_account_rebinds_and_revokes_old_credentials(
    dev: DeviceClient, admin: CloudAdmin, unit: Device
) -> None:
    status, old = await dev.activate(unit, claim(unit, "bob"))
    assert status == 200
    old_token = old["credentials"]["token"]
    status, new = await dev.activate(unit, claim(unit, "alice", after_reset=True))
    assert status == 200
    assert (new["account"], new["generation"]) == ("alice", 2)
    status, answer = await dev.self_(old_token)
    assert (status, answer["error"]) == (401, "credentials_revoked")
    assert await dev.self_(new["credentials"]["token"]) == (
        200,
        {"device_id": unit.device_id, "account": "alice", "generation": 2},
    )
    assert await admin.list_devices("bob", PASSWORD) == []
    assert await admin.list_devices("alice", PASSWORD) == [
        {"device_id": unit.device_id, "mode": "claim", "generation": 2}
    ]


async def test_after_reset_in_zero_touch_after_resale(
    dev: DeviceClient, admin: CloudAdmin, unit: Device
) -> None:
    await admin.set_supply_chain(unit.serial, "bob")
    status, old = await dev.activate(unit, body(unit, "zero-touch"))
    await admin.set_supply_chain(unit.serial, "alice")  # sold on
    status, new = await dev.activate(unit, body(unit, "zero-touch", after_reset=True))
    assert (status, new["account"], new["generation"]) == (200, "alice", 2)
    assert (await dev.self_(old["credentials"]["token"]))[1]["error"] == "credentials_revoked"


async def test_after_reset_needs_the_factory_cert(dev: DeviceClient, unit: Device) -> None:
    assert (await dev.activate(unit, claim(unit, "bob")))[0] == 200
    status, answer = await dev.activate(unit, claim(unit, "alice", after_reset=True), cert=False)
    assert (status, answer["error"]) == (403, "activation_rejected")


async def test_unknown_token(dev: DeviceClient, cloud: CloudEmulator) -> None:
    status, answer = await dev.self_("made-up")
    assert (status, answer["error"]) == (401, "invalid_token")
    status, answer = await dev.request("GET", "/v1/devices/self")
    assert (status, answer["error"]) == (401, "invalid_token")


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "magic"},
        {"request_id": ""},
        {"device_id": "a b"},
        {"after_reset": "yes"},
    ],
)
async def test_malformed_requests(dev: DeviceClient, unit: Device, bad: dict[str, Any]) -> None:
    status, answer = await dev.activate(unit, body(unit, "zero-touch") | bad)
    assert (status, answer["error"]) == (400, "bad_request")
