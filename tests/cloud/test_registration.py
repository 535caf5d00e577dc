"""Registration mode (a registration key, no client certificate) and what a key cannot do."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from device_sim.apps.cloud import CloudAdmin
from device_sim.apps.cloud.admin import basic_auth

from .conftest import PASSWORD, Device, DeviceClient, Factory, body

KEY_ID = "batch-7"
KEY_SECRET = "registration-secret-of-batch-7"


@pytest.fixture
async def unit(admin: CloudAdmin, factory: Factory) -> Device:
    device = factory.device("SN-R1")
    await admin.import_units(
        {
            "units": [device.unit()],
            "registration": [
                {"key_id": KEY_ID, "secret_sha256": hashlib.sha256(KEY_SECRET.encode()).hexdigest()}
            ],
        }
    )
    await admin.add_account("alice", PASSWORD)
    await admin.add_account("bob", PASSWORD)
    return device


def register(
    device: Device, account: str | None = "alice", secret: str = KEY_SECRET, **extra: Any
) -> dict[str, Any]:
    fields = {"account": account} if account else {}
    return body(
        device, "registration", registration={"key_id": KEY_ID, "secret": secret}, **fields, **extra
    )


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": basic_auth(user, password)}


async def test_user_provided_password(dev: DeviceClient, admin: CloudAdmin, unit: Device) -> None:
    status, answer = await dev.activate(
        unit, register(unit, password_mode="user", device_password="my-device-pw"), cert=False
    )
    assert status == 200
    assert answer["device_user"] == f"dev-{unit.device_id}"
    assert "device_password" not in answer
    assert (answer["account"], answer["mode"], answer["generation"]) == ("alice", "registration", 1)
    assert (await dev.self_(answer["credentials"]["token"]))[0] == 200
    # The device user can authenticate as the device, and only with its password.
    status, me = await dev.request(
        "GET", "/v1/devices/self", headers=basic(answer["device_user"], "my-device-pw")
    )
    assert (status, me["device_id"]) == (200, unit.device_id)
    status, _ = await dev.request(
        "GET", "/v1/devices/self", headers=basic(answer["device_user"], "wrong-password")
    )
    assert status == 401
    assert await admin.list_devices("alice", PASSWORD) == [
        {"device_id": unit.device_id, "mode": "registration", "generation": 1}
    ]


async def test_cloud_generated_password_returned_once(dev: DeviceClient, unit: Device) -> None:
    request = register(unit, password_mode="cloud")
    status, answer = await dev.activate(unit, request, cert=False)
    assert status == 200
    password = answer["device_password"]
    assert len(password) >= 16
    status, _me = await dev.request(
        "GET", "/v1/devices/self", headers=basic(answer["device_user"], password)
    )
    assert status == 200
    # A retry of the same request gets the identical answer; a new request (the device, with its
    # certificate, since it is bound now) a new password.
    assert await dev.activate(unit, request, cert=False) == (200, answer)
    status, again = await dev.activate(unit, register(unit, password_mode="cloud"))
    assert status == 200 and again["device_password"] != password


async def test_short_user_password_is_refused(dev: DeviceClient, unit: Device) -> None:
    status, answer = await dev.activate(
        unit, register(unit, password_mode="user", device_password="short"), cert=False
    )
    assert (status, answer["error"]) == (400, "bad_request")


async def test_wrong_registration_secret(dev: DeviceClient, unit: Device) -> None:
    status, answer = await dev.activate(unit, register(unit, secret="guessed"), cert=False)
    assert (status, answer) == (
        403,
        {"error": "activation_rejected", "detail": "invalid registration key"},
    )


async def test_account_from_supply_chain_when_none_named(
    dev: DeviceClient, admin: CloudAdmin, unit: Device
) -> None:
    status, answer = await dev.activate(unit, register(unit, account=None), cert=False)
    assert (status, answer["error"]) == (403, "activation_rejected")
    await admin.set_supply_chain(unit.serial, "bob")
    status, answer = await dev.activate(unit, register(unit, account=None), cert=False)
    assert (status, answer["account"]) == (200, "bob")
    status, answer = await dev.activate(unit, register(unit, account="nobody"), cert=False)
    assert (status, answer["error"]) == (403, "activation_rejected")


async def test_after_reset_with_key_and_certificate_rebinds_and_revokes_the_device_user(
    dev: DeviceClient, unit: Device
) -> None:
    status, old = await dev.activate(
        unit, register(unit, "alice", password_mode="cloud"), cert=False
    )
    status, answer = await dev.activate(unit, register(unit, "bob"))
    assert (status, answer["error"]) == (409, "claimed_by_another_account")
    status, answer = await dev.activate(
        unit, register(unit, "bob", secret="guessed", after_reset=True)
    )
    assert (status, answer["error"]) == (403, "activation_rejected")
    status, new = await dev.activate(
        unit, register(unit, "bob", after_reset=True, device_password="bobs-device-pw")
    )
    assert (status, new["account"], new["generation"]) == (200, "bob", 2)
    assert (await dev.self_(old["credentials"]["token"]))[1]["error"] == "credentials_revoked"
    status, _ = await dev.request(
        "GET", "/v1/devices/self", headers=basic(old["device_user"], old["device_password"])
    )
    assert status == 401


async def test_the_fleet_key_alone_cannot_take_over_a_bound_unit(
    dev: DeviceClient, admin: CloudAdmin, unit: Device, factory: Factory
) -> None:
    """The registration key is the same on every unit of the batch: whoever holds it (any unit,
    or an attacker who read one) must not rebind, or re-credential, a unit that is bound."""
    status, owner = await dev.activate(
        unit, register(unit, "alice", password_mode="cloud"), cert=False
    )
    assert status == 200
    token = owner["credentials"]["token"]
    other = factory.device("SN-R2")
    await admin.import_units({"units": [other.unit()]})
    attacks = [
        (register(unit, "bob", after_reset=True, password_mode="cloud"), False),  # rebind
        (register(unit, "alice", password_mode="user", device_password="mallorys-pw"), False),
        (register(unit, "alice", after_reset=True, password_mode="cloud"), False),
        # another unit's genuine certificate is not this unit's either
        (register(unit, "bob", after_reset=True, password_mode="cloud"), other),
    ]
    for request, cert in attacks:
        status, answer = await dev.activate(other if cert else unit, request, cert=bool(cert))
        assert (status, answer["error"]) == (403, "activation_rejected"), request
        assert "factory client certificate" in answer["detail"] or "not the one" in answer["detail"]
    # The owner's binding, token and device user are untouched.
    assert await dev.self_(token) == (
        200,
        {"device_id": unit.device_id, "account": "alice", "generation": 1},
    )
    status, _ = await dev.request(
        "GET", "/v1/devices/self", headers=basic(owner["device_user"], owner["device_password"])
    )
    assert status == 200
    assert await admin.list_devices("bob", PASSWORD) == []


async def test_a_registration_key_can_do_nothing_else(
    dev: DeviceClient, admin: CloudAdmin, unit: Device, factory: Factory
) -> None:
    """The key is not an admin token, not an account login and not a device token; and with it
    alone a device cannot use the certificate-bound modes."""
    for path, payload in (
        ("/v1/accounts", {"name": "mallory", "password": PASSWORD}),
        ("/v1/supply-chain", {"serial": unit.serial, "account": "alice"}),
        ("/v1/units/import", {"units": []}),
    ):
        status, answer = await dev.request(
            "POST", path, json=payload, headers={"X-Admin-Token": KEY_SECRET}
        )
        assert (status, answer["error"]) == (401, "admin_token_required")
    for user in (KEY_ID, "alice"):
        status, answer = await dev.request(
            "GET", "/v1/accounts/alice/devices", headers=basic(user, KEY_SECRET)
        )
        assert (status, answer["error"]) == (401, "invalid_credentials")
    status, answer = await dev.self_(KEY_SECRET)
    assert (status, answer["error"]) == (401, "invalid_token")
    zero_touch = body(unit, "zero-touch", registration={"key_id": KEY_ID, "secret": KEY_SECRET})
    assert (await dev.activate(unit, zero_touch, cert=False))[0] == 403
    # The one thing it makes is this device's own user.
    status, answer = await dev.activate(unit, register(unit), cert=False)
    assert answer["device_user"] == f"dev-{unit.device_id}"
    # A device user's login is no account login either.
    status, _ = await dev.request(
        "GET",
        f"/v1/accounts/{answer['device_user']}/devices",
        headers=basic(answer["device_user"], answer["device_password"]),
    )
    assert status == 401
