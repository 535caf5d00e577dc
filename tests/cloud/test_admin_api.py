"""Admin endpoints, account device listing, release, error shapes and what reaches the logs."""

from __future__ import annotations

import hashlib
import logging
import stat
from typing import Any

import pytest

from device_sim.apps.cloud import CloudAdmin, CloudApiError, CloudEmulator
from device_sim.apps.cloud.activation import ActivationRequest
from device_sim.apps.cloud.admin import basic_auth

from .conftest import PASSWORD, DeviceClient, Factory, body


async def test_import_counts_and_reimport_updates(admin: CloudAdmin, factory: Factory) -> None:
    units = [factory.device(f"SN-I{i}").unit() for i in range(3)]
    keys = [{"key_id": "k1", "secret_sha256": "AB" * 32}]
    assert await admin.import_units({"units": units, "registration": keys}) == 3
    assert await admin.import_units({"units": units[:1]}) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"units": [{"serial": "SN", "device_id": "d"}]},  # no fingerprint
        {
            "units": [
                {
                    "serial": "SN",
                    "device_id": "d",
                    "cert_fingerprint_sha256": "00" * 32,
                    "claim_expires_at": "next tuesday",
                }
            ]
        },
        {"units": "all of them"},
        {"registration": [{"key_id": "k", "secret_sha256": "short"}]},
    ],
)
async def test_import_rejects_malformed_files(admin: CloudAdmin, bad: dict[str, Any]) -> None:
    with pytest.raises(CloudApiError) as caught:
        await admin.import_units(bad)
    assert (caught.value.status, caught.value.error) == (400, "bad_request")


async def test_import_refuses_a_device_id_under_another_serial(
    admin: CloudAdmin, factory: Factory
) -> None:
    device = factory.device("SN-X1")
    await admin.import_units({"units": [device.unit()]})
    moved = device.unit() | {"serial": "SN-X2"}
    with pytest.raises(CloudApiError) as caught:
        await admin.import_units({"units": [moved]})
    assert (caught.value.status, caught.value.error) == (409, "conflict")


async def test_admin_token_required(cloud: CloudEmulator, dev: DeviceClient) -> None:
    for headers in ({}, {"X-Admin-Token": "wrong"}):
        status, answer = await dev.request(
            "POST", "/v1/accounts", headers=headers, json={"name": "eve", "password": PASSWORD}
        )
        assert (status, answer["error"]) == (401, "admin_token_required")
    async with CloudAdmin(cloud.url, cloud.ca_file, "wrong") as wrong:
        with pytest.raises(CloudApiError) as caught:
            await wrong.import_units({"units": []})
    assert caught.value.status == 401


async def test_accounts_and_supply_chain(admin: CloudAdmin) -> None:
    await admin.add_account("alice", PASSWORD)
    with pytest.raises(CloudApiError, match="account_exists"):
        await admin.add_account("alice", "another-password")
    for name, password in (("dev-0011", PASSWORD), ("alice2", "short"), ("", PASSWORD)):
        with pytest.raises(CloudApiError, match="bad_request"):
            await admin.add_account(name, password)
    with pytest.raises(CloudApiError) as caught:
        await admin.set_supply_chain("SN-1", "nobody")
    assert (caught.value.status, caught.value.error) == (404, "unknown_account")
    await admin.set_supply_chain("SN-1", "alice")


async def test_listing_needs_the_accounts_basic_auth(
    cloud: CloudEmulator, admin: CloudAdmin, dev: DeviceClient
) -> None:
    await admin.add_account("alice", PASSWORD)
    await admin.add_account("bob", "bobs-password")
    assert await admin.list_devices("alice", PASSWORD) == []
    with pytest.raises(CloudApiError) as caught:
        await admin.list_devices("alice", "wrong-password")
    assert (caught.value.status, caught.value.error) == (401, "invalid_credentials")
    # Bob's valid login does not list Alice's devices; nor does the admin token.
    status, _ = await dev.request(
        "GET",
        "/v1/accounts/alice/devices",
        headers={"Authorization": basic_auth("bob", "bobs-password")},
    )
    assert status == 401
    status, answer = await dev.request(
        "GET", "/v1/accounts/alice/devices", headers={"X-Admin-Token": cloud.admin_token}
    )
    assert (status, answer["error"]) == (401, "invalid_credentials")


async def test_release_unbinds_and_revokes(
    admin: CloudAdmin, dev: DeviceClient, factory: Factory
) -> None:
    device = factory.device("SN-REL")
    await admin.import_units({"units": [device.unit()]})
    await admin.add_account("alice", PASSWORD)
    await admin.set_supply_chain(device.serial, "alice")
    status, first = await dev.activate(device, body(device, "zero-touch"))
    token = first["credentials"]["token"]
    auth = {"Authorization": f"Bearer {token}"}
    status, answer = await dev.request("POST", "/v1/devices/self/release", headers=auth)
    assert (status, answer) == (200, {"device_id": device.device_id, "released": True})
    assert (await dev.self_(token))[1]["error"] == "credentials_revoked"
    assert (await dev.request("POST", "/v1/devices/self/release", headers=auth))[0] == 401
    assert await admin.list_devices("alice", PASSWORD) == []
    # A later activation starts a new generation.
    status, again = await dev.activate(device, body(device, "zero-touch"))
    assert (status, again["generation"]) == (200, 2)


async def test_errors_are_json(dev: DeviceClient) -> None:
    status, answer = await dev.request("GET", "/v1/nowhere")
    assert (status, answer["error"]) == (404, "not_found")
    status, answer = await dev.request("POST", "/v1/activate", data=b"{not json")
    assert (status, answer["error"]) == (400, "bad_request")


async def test_secrets_never_logged(
    cloud: CloudEmulator,
    admin: CloudAdmin,
    dev: DeviceClient,
    factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    device = factory.device("SN-LOG")
    key_secret = "registration-secret-for-logs"
    await admin.import_units(
        {
            "units": [device.unit()],
            "registration": [
                {"key_id": "k", "secret_sha256": hashlib.sha256(key_secret.encode()).hexdigest()}
            ],
        }
    )
    await admin.add_account("alice", PASSWORD)
    await admin.add_account("bob", PASSWORD)
    secrets_seen = [cloud.admin_token, PASSWORD, device.claim_token, key_secret]
    _, claimed = await dev.activate(
        device, body(device, "claim", account="alice", claim_token=device.claim_token)
    )
    secrets_seen.append(claimed["credentials"]["token"])
    registration = body(
        device,
        "registration",
        account="bob",
        after_reset=True,
        registration={"key_id": "k", "secret": key_secret},
        device_password="users-device-password",
    )
    _, registered = await dev.activate(device, registration)
    secrets_seen += [registered["credentials"]["token"], "users-device-password"]
    _, cloud_pw = await dev.activate(
        device,
        registration | {"request_id": "r2", "device_password": None, "password_mode": "cloud"},
    )
    secrets_seen.append(cloud_pw["device_password"])
    await dev.activate(device, body(device, "claim", account="bob", claim_token="wrong-token"))
    await dev.activate(
        device, registration | {"request_id": "r3", "device_password": "x"}, cert=False
    )
    assert any("activation" in r.getMessage() for r in caplog.records)  # it does log
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for secret in secrets_seen:
        assert secret not in logged
    parsed = ActivationRequest.from_json(registration)
    assert key_secret not in repr(parsed) and "users-device-password" not in repr(parsed)


async def test_database_file_is_private(cloud: CloudEmulator, admin: CloudAdmin) -> None:
    await admin.add_account("alice", PASSWORD)  # a write, so the WAL exists too
    for path in cloud.state_dir.glob("cloud.sqlite3*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    raw = b"".join(p.read_bytes() for p in cloud.state_dir.glob("cloud.sqlite3*"))
    assert PASSWORD.encode() not in raw
