"""Cloud activation end to end: a factory unit's daemon over BlueZoo, the phone's reference
client, and the cloud emulator in-process on loopback (accounts alice and bob; the supply chain
says alice).

Each test gets a fresh unit (from one module-wide factory CA and fleet registration key) and its
own cloud. After a daemon restart the device is observed through its control socket: BlueZoo
does not show a phone the GATT application of a restarted peripheral, and the control socket
has no push channel, so ``Bench.wait_status`` polls ``status`` at a short interval, bounded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from bleak.exc import BleakError

from device_sim.apps.cloud.admin import CloudAdmin, basic_auth
from device_sim.apps.cloud.db import DB_FILE
from device_sim.apps.cloud.emulator import CloudEmulator
from device_sim.apps.cloud.tls import client_context
from device_sim.apps.daemon_process import DaemonProcess, daemon_argv
from device_sim.apps.factory.registration import RegistrationKey, ensure_registration_key
from device_sim.apps.factory.unit import SiteWifi, UnitResult, provision_unit
from device_sim.apps.virtual.harness import VirtualBle
from device_sim.codes import Code, MessageType
from device_sim.control import control_request
from device_sim.core.store import CloudBinding, DeviceStore, Identity
from device_sim.doors.native.flow import Provisioner, provision
from device_sim.errors import DeviceSimError
from device_sim.pki import create_factory_ca
from device_sim.profile import Profile
from device_sim.security.secret import Secret

from .conftest import Device, fresh_adapter

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]

LAB_SSID, LAB_PASSPHRASE = b"DeviceSim-Lab", "lab-bench-passphrase"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
DEVICE_PASSWORD = Secret("device-pass-123")
FAULT = "crash-after-cloud-answer"
POLL_S = 0.05  # control-socket status polling interval (no push channel there)
DAY_S = 86400.0


class Clock:
    """The cloud's clock (seconds since the epoch), moved by tests to expire claim tokens."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RegistrationKey]:
    directory = tmp_path_factory.mktemp("factory")
    create_factory_ca(directory, "Activation Test Factory")
    return directory, ensure_registration_key(directory)


class Bench:
    """One factory unit, its daemon on a fresh BlueZoo adapter and a cloud that knows it."""

    def __init__(
        self,
        vb: VirtualBle,
        profile: Profile,
        unit: UnitResult,
        device: Device,
        cloud: CloudEmulator,
        admin: CloudAdmin,
        clock: Clock,
        factory_dir: Path,
        tmp: Path,
    ) -> None:
        self.vb, self.profile, self.unit, self.device = vb, profile, unit, device
        assert unit.setup_code is not None  # made in this process: the label's code is here
        self.setup_code = unit.setup_code
        self.cloud, self.admin, self.clock = cloud, admin, clock
        self.factory_dir, self.tmp = factory_dir, tmp

    @property
    def state_dir(self) -> Path:
        return self.unit.state_dir

    def inputs(self, mode: str, account: str = "alice") -> dict[str, Secret | str | None]:
        """What the app sends with SET_ACTIVATION for ``mode`` (the label gives the token)."""
        if mode == "claim":
            return {"account": account, "claim_token": self.unit.claim_token}
        if mode == "registration":
            return {"account": account, "device_password": DEVICE_PASSWORD}
        return {}

    async def start(
        self,
        mode: str | None,
        *extra: str,
        cloud_url: str | None = None,
        cloud_ca: Path | None = None,
        fault: str | None = None,
    ) -> dict[str, Any]:
        """(Re)start the unit's daemon with ``--activation mode`` against this cloud."""
        args = list(extra)
        if mode is not None:
            args += [
                "--activation",
                mode,
                "--cloud-url",
                cloud_url or self.cloud.url,
                "--cloud-ca",
                str(cloud_ca or self.cloud.ca_file),
            ]
        argv = daemon_argv(
            self.state_dir,
            adapter=self.device.adapter,
            scenario="engineering-wifi",
            zero_delay=True,
            extra=args,
        )
        env = self.vb.env()
        if fault is not None:
            env["DEVICE_SIM_FAULT"] = fault
        self.device.daemon = DaemonProcess(["-v", *argv], env, self.device.log)
        self.device.ready = await self.device.daemon.start()
        return self.device.ready

    async def provision(
        self,
        activation: dict[str, Secret | str | None] | None,
        *,
        phone: int = 1,
        passphrase: str = LAB_PASSPHRASE,
        outcome_timeout: float = 30.0,
    ) -> dict[str, Any]:
        return await provision(
            self.profile,
            self.device.target(phone),
            setup_code=self.setup_code,
            ssid=LAB_SSID,
            passphrase=Secret(passphrase),
            activation=activation,
            outcome_timeout=outcome_timeout,
        )

    async def wait_status(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Poll the daemon's ``status`` until ``done`` (bounded; see the module docstring)."""
        status: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    status = await control_request(self.state_dir, "status", {})
                    if done(status):
                        return status
                    await asyncio.sleep(POLL_S)
        except TimeoutError:
            tail = self.device.log.read_text(errors="replace")[-1500:]
            raise AssertionError(
                f"status not reached in {timeout} s; last {status}\n{tail}"
            ) from None

    def binding(self) -> CloudBinding:
        """The device's stored binding (a second reader next to the daemon: SQLite WAL)."""
        with DeviceStore(self.state_dir) as store:
            return store.cloud()

    def identity(self) -> tuple[Identity | None, bytes, bytes]:
        with DeviceStore(self.state_dir) as store:
            identity = store.identity()
        return (
            identity,
            (self.state_dir / "device.pem").read_bytes(),
            (self.state_dir / "device.key").read_bytes(),
        )

    async def devices(self, account: str) -> list[dict[str, Any]]:
        return await self.admin.list_devices(account, PASSWORDS[account])

    async def device_self(
        self, authorization: str, *, cert: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """``GET /v1/devices/self`` with an Authorization header value."""
        return await self.device_request(
            "GET", "/v1/devices/self", cert=cert, headers={"Authorization": authorization}
        )

    async def device_request(
        self, method: str, path: str, *, cert: bool = False, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        """A request as the device would make it (``cert``: with its factory certificate)."""
        ctx = client_context(self.cloud.ca_file)
        if cert:
            leaf_and_chain = self.tmp / "client-chain.pem"
            leaf_and_chain.write_bytes(
                (self.state_dir / "device.pem").read_bytes()
                + (self.state_dir / "chain.pem").read_bytes()
            )
            ctx = client_context(self.cloud.ca_file, leaf_and_chain, self.state_dir / "device.key")
        connector = aiohttp.TCPConnector(ssl=ctx, force_close=True)
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
            http.request(method, self.cloud.url + path, **kwargs) as resp,
        ):
            return resp.status, dict(await resp.json(content_type=None))

    def cloud_activations(self) -> int:
        """How many activations the cloud has answered for this device (replays excluded)."""
        db = sqlite3.connect(f"file:{self.cloud.state_dir / DB_FILE}?mode=ro", uri=True)
        try:
            row = db.execute(
                "SELECT COUNT(*) FROM activations WHERE device_id = ?", (self.unit.device_id,)
            ).fetchone()
        finally:
            db.close()
        return int(row[0])

    def device_events(self, phase: str) -> list[dict[str, Any]]:
        lines = (self.state_dir / "onboarding.jsonl").read_text().splitlines()
        return [e for e in map(json.loads, lines) if e["phase"] == phase]


MakeBench = Callable[..., Awaitable[Bench]]


@pytest_asyncio.fixture(loop_scope="session")
async def make_bench(
    vble: VirtualBle, profile: Profile, factory: tuple[Path, RegistrationKey], tmp_path: Path
) -> AsyncIterator[MakeBench]:
    """``await make_bench(site_wifi=None)``: a fresh unit, its cloud (in this loop) and daemon."""
    factory_dir, registration = factory
    async with AsyncExitStack() as stack:

        async def make(site_wifi: SiteWifi | None = None) -> Bench:
            unit = provision_unit(
                factory_dir,
                tmp_path / "u",
                station="e2e",
                registration=registration,
                site_wifi=site_wifi,
            )
            assert unit.passed
            clock = Clock()
            cloud = await stack.enter_async_context(
                CloudEmulator(
                    tmp_path / "cloud", factory_chain=factory_dir / "chain.pem", clock=clock
                )
            )
            admin = await stack.enter_async_context(
                CloudAdmin(cloud.url, cloud.ca_file, cloud.admin_token)
            )
            assert await admin.import_units(tmp_path / "u" / "cloud-import.json") == 1
            for name, password in PASSWORDS.items():
                await admin.add_account(name, password)
            await admin.set_supply_chain(unit.serial, "alice")
            device = Device(
                vble, await fresh_adapter(vble), unit.state_dir, tmp_path / "daemon.log"
            )
            stack.push_async_callback(device.stop)
            return Bench(vble, profile, unit, device, cloud, admin, clock, factory_dir, tmp_path)

        yield make


def _online_active(status: dict[str, Any]) -> bool:
    return status["state"] == "online" and status["activation"]["status"] == "active"


# -- a. every activation path ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "password_mode", "account"),
    [
        ("zero-touch", None, "alice"),  # the supply chain's account
        ("claim", None, "bob"),  # the app's account, not the supply chain's
        ("registration", "user", "bob"),
        ("registration", "cloud", "bob"),
    ],
    ids=["zero-touch", "claim", "registration-user-password", "registration-cloud-password"],
)
async def test_activation_path_end_to_end(
    make_bench: MakeBench, mode: str, password_mode: str | None, account: str
) -> None:
    bench = await make_bench()
    extra = ["--activation-password", password_mode] if password_mode else []
    await bench.start(mode, *extra)
    inputs = bench.inputs(mode, account)
    if password_mode == "cloud":
        inputs = {"account": account}  # the cloud makes the device user's password
    result = await bench.provision(inputs)

    assert (result["state"], result["code_name"]) == ("online", "OK"), result["detail"]
    activation = result["activation"]
    assert (
        activation["status"],
        activation["mode"],
        activation["account"],
        activation["generation"],
    ) == ("active", mode, account, 1)
    device_id = bench.unit.device_id
    assert await bench.devices(account) == [{"device_id": device_id, "mode": mode, "generation": 1}]
    other = "bob" if account == "alice" else "alice"
    assert await bench.devices(other) == []
    # The device's credentials work (and the phone never saw them).
    binding = bench.binding()
    assert binding.token is not None and binding.token.reveal() not in json.dumps(result)
    status, me = await bench.device_self(f"Bearer {binding.token.reveal()}")
    assert (status, me) == (200, {"device_id": device_id, "account": account, "generation": 1})
    if mode == "registration":
        assert activation["device_user"] == f"dev-{device_id}"
        password = DEVICE_PASSWORD if password_mode == "user" else binding.device_password
        assert password is not None
        status, me = await bench.device_self(basic_auth(f"dev-{device_id}", password.reveal()))
        assert (status, me["account"]) == (200, account)
    else:
        assert activation["device_user"] is None
    logs = bench.device.log.read_text() + (bench.state_dir / "onboarding.jsonl").read_text()
    for secret in (bench.unit.claim_token, DEVICE_PASSWORD, binding.token, binding.device_password):
        assert secret is None or secret.reveal() not in logs


# -- b. coded failures the phone can show ---------------------------------------------------------


async def _expect_failure(
    bench: Bench, inputs: dict[str, Secret | str | None], code: Code
) -> dict[str, Any]:
    result = await bench.provision(inputs)
    assert (result["state"], result["code_name"]) == ("failed", code.name), result["detail"]
    entry = bench.profile.code(code)
    assert (result["message"], result["next_step"]) == (entry.user_message, entry.next_step)
    assert result["activation"]["status"] != "active"
    return result


async def test_expired_claim_token(make_bench: MakeBench) -> None:
    bench = await make_bench()
    bench.clock.now += 366 * DAY_S  # the label's claim token is valid for 365 days
    await bench.start("claim")
    await _expect_failure(bench, bench.inputs("claim"), Code.CLAIM_TOKEN_EXPIRED)
    assert await bench.devices("alice") == []
    assert bench.binding().status == "none"  # a definite answer: the next try asks anew


async def test_claimed_by_another_account(make_bench: MakeBench) -> None:
    """The cloud already binds the unit to alice while the device holds no binding and did not
    go through a factory reset (e.g. its storage was wiped another way). Through the device alone
    this is unreachable: an active device never asks again (test_reonboard_keeps_the_claim), and
    a reset device says ``after_reset`` (test_factory_reset_then_another_owner)."""
    bench = await make_bench()
    status, answer = await bench.device_request(
        "POST",
        "/v1/activate",
        cert=True,
        json={
            "mode": "zero-touch",
            "request_id": "bound-elsewhere",
            "device_id": bench.unit.device_id,
        },
    )
    assert (status, answer["account"]) == (200, "alice")
    await bench.start("claim")
    await _expect_failure(bench, bench.inputs("claim", "bob"), Code.CLAIMED_BY_ANOTHER_ACCOUNT)
    assert [d["device_id"] for d in await bench.devices("alice")] == [bench.unit.device_id]
    assert await bench.devices("bob") == []


async def test_wrong_claim_token_is_rejected(make_bench: MakeBench) -> None:
    bench = await make_bench()
    await bench.start("claim")
    await _expect_failure(
        bench,
        {"account": "alice", "claim_token": Secret("NOT-THE-LABEL")},
        Code.CLOUD_ACTIVATION_REJECTED,
    )
    assert await bench.devices("alice") == []


async def test_cloud_unreachable(make_bench: MakeBench) -> None:
    bench = await make_bench()
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{closed.getsockname()[1]}"
        await bench.start("zero-touch", cloud_url=url)
        await _expect_failure(bench, {}, Code.CLOUD_UNREACHABLE)
    # No answer is not a refusal: the request stays pending, to be repeated with the same id.
    assert bench.binding().status == "pending"


async def test_untrusted_cloud_certificate(make_bench: MakeBench) -> None:
    bench = await make_bench()
    # The device trusts another CA (the factory's) than the one that issued the cloud's cert.
    await bench.start("zero-touch", cloud_ca=bench.factory_dir / "chain.pem")
    await _expect_failure(bench, {}, Code.TLS_VERIFICATION_FAILED)
    assert await bench.devices("alice") == []
    assert bench.cloud_activations() == 0


# -- c. killed between the cloud's answer and the commit ------------------------------------------


async def test_crash_after_cloud_answer_reconciles_on_boot(make_bench: MakeBench) -> None:
    bench = await make_bench()
    await bench.start("claim", fault=FAULT)
    assert bench.device.daemon is not None and bench.device.daemon.proc is not None
    proc = bench.device.daemon.proc
    # Zero-delay onboarding takes well under a second; the phone gives up 3 s after CONNECT.
    phone = asyncio.create_task(bench.provision(bench.inputs("claim"), outcome_timeout=3))
    async with asyncio.timeout(30):
        assert await proc.wait() == 137
    done, _ = await asyncio.wait({phone}, timeout=20)
    assert done, "the phone never gave up"
    failure = phone.exception()
    if failure is None:  # a failure result: any, but not online
        assert phone.result()["state"] != "online"
    else:
        # BlueZoo shows the phone no disconnect when the peripheral's process dies: the phone
        # gives up with CLIENT_TIMEOUT (or the link error, if BlueZ reports one).
        assert isinstance(failure, (DeviceSimError, BleakError)), repr(failure)
    await bench.device.stop()

    # The cloud bound the device; the device recorded only that it had asked.
    assert await bench.devices("alice") == [
        {"device_id": bench.unit.device_id, "mode": "claim", "generation": 1}
    ]
    pending = bench.binding()
    assert (pending.status, pending.token) == ("pending", None) and pending.request_id

    # Restarted without the fault, it asks again with the same request id, no phone needed.
    await bench.start("claim")
    status = await bench.wait_status(_online_active)
    assert (status["activation"]["account"], status["activation"]["generation"]) == ("alice", 1)
    assert await bench.devices("alice") == [
        {"device_id": bench.unit.device_id, "mode": "claim", "generation": 1}
    ]
    assert bench.cloud_activations() == 1  # the repeat was answered from the stored response
    binding = bench.binding()
    assert (binding.status, binding.request_id, binding.generation) == (
        "active",
        pending.request_id,
        1,
    )
    assert binding.token is not None
    code, me = await bench.device_self(f"Bearer {binding.token.reveal()}")
    assert (code, me["account"], me["generation"]) == (200, "alice", 1)


# -- d. QR pre-provisioning (site Wi-Fi loaded at the factory) --------------------------------


async def test_preprovisioned_unit_goes_online_without_a_phone(make_bench: MakeBench) -> None:
    bench = await make_bench(site_wifi=(LAB_SSID, LAB_PASSPHRASE))
    await bench.start("zero-touch")
    status = await bench.wait_status(_online_active)
    assert (status["activation"]["mode"], status["activation"]["account"]) == (
        "zero-touch",
        "alice",
    )
    assert [d["device_id"] for d in await bench.devices("alice")] == [bench.unit.device_id]


async def test_preprovisioned_wrong_passphrase_is_readable_by_the_app(
    make_bench: MakeBench,
) -> None:
    bench = await make_bench(site_wifi=(LAB_SSID, "not-the-lab-passphrase"))
    await bench.start("zero-touch")
    status = await bench.wait_status(lambda s: s["state"] == "failed")
    assert status["code_name"] == "WRONG_CREDENTIALS"
    async with Provisioner(bench.profile, bench.device.target(1), bench.setup_code) as app:
        assert app.session is not None
        _, seen = await app.session.call(MessageType.STATUS_REQUEST, {})
    assert (seen["state"], seen["code_name"]) == ("failed", "WRONG_CREDENTIALS")
    assert seen["ssid_hex"] == LAB_SSID.hex()
    assert seen["activation"]["status"] == "none"


# -- e. factory reset, then another owner ---------------------------------------------------------


async def test_factory_reset_then_another_owner(make_bench: MakeBench) -> None:
    bench = await make_bench()
    await bench.start("claim")
    first = await bench.provision(bench.inputs("claim", "alice"))
    assert (first["state"], first["activation"]["account"]) == ("online", "alice")
    alice_token = bench.binding().token
    assert alice_token is not None
    alice_auth = f"Bearer {alice_token.reveal()}"
    assert (await bench.device_self(alice_auth))[0] == 200
    identity = bench.identity()

    pressed = await control_request(bench.state_dir, "button", {"hold_s": 12})
    assert (pressed["action"], pressed["state"]) == ("factory-reset", "unprovisioned")
    with DeviceStore(bench.state_dir) as store:
        record, binding = store.record(), store.cloud()
    assert (record.state.wire_name, record.ssid) == ("unprovisioned", None)
    assert (binding.status, binding.after_reset, binding.token) == ("none", True, None)
    assert bench.identity() == identity  # device id, verifier, key and certificate kept
    # Online when reset, the device released itself: alice's credentials are revoked now.
    code, answer = await bench.device_self(alice_auth)
    assert (code, answer["error"]) == (401, "credentials_revoked")
    assert await bench.devices("alice") == []

    # Bob claims it with the label's claim token (used once, allowed again after a reset).
    second = await bench.provision(bench.inputs("claim", "bob"), phone=2)
    assert (second["state"], second["code_name"]) == ("online", "OK"), second["detail"]
    assert (
        second["activation"]["status"],
        second["activation"]["account"],
        second["activation"]["generation"],
    ) == ("active", "bob", 2)
    assert await bench.devices("bob") == [
        {"device_id": bench.unit.device_id, "mode": "claim", "generation": 2}
    ]
    assert await bench.devices("alice") == []
    assert (await bench.device_self(alice_auth))[0] == 401
    bob_token = bench.binding().token
    assert bob_token is not None
    assert (await bench.device_self(f"Bearer {bob_token.reveal()}"))[1]["account"] == "bob"
    assert bench.binding().after_reset is False


async def test_offline_factory_reset_rebinds_and_revokes(make_bench: MakeBench) -> None:
    """Reset while the cloud is down: the release cannot be sent, so the next activation's
    ``after_reset`` is what moves the device to bob and revokes alice's credentials."""
    bench = await make_bench()
    await bench.start("claim")
    first = await bench.provision(bench.inputs("claim", "alice"))
    assert (first["state"], first["activation"]["account"]) == ("online", "alice")
    alice_token = bench.binding().token
    assert alice_token is not None
    alice_auth = f"Bearer {alice_token.reveal()}"

    await bench.cloud.stop()
    pressed = await control_request(bench.state_dir, "button", {"hold_s": 10})
    assert (pressed["action"], pressed["state"]) == ("factory-reset", "unprovisioned")
    await bench.cloud.start()  # same state and port
    # The cloud never heard of the reset: alice's binding and token still stand.
    assert (await bench.device_self(alice_auth))[0] == 200
    assert [d["device_id"] for d in await bench.devices("alice")] == [bench.unit.device_id]

    second = await bench.provision(bench.inputs("claim", "bob"), phone=2)
    assert (second["state"], second["code_name"]) == ("online", "OK"), second["detail"]
    assert (second["activation"]["account"], second["activation"]["generation"]) == ("bob", 2)
    code, answer = await bench.device_self(alice_auth)
    assert (code, answer["error"]) == (401, "credentials_revoked")
    assert await bench.devices("alice") == []


async def test_reset_killed_after_the_cloud_release_finishes_on_boot(make_bench: MakeBench) -> None:
    """Killed after the cloud released the device but before the local reset: the device must
    not come back with a binding the cloud revoked; the restart finishes the reset."""
    bench = await make_bench()
    await bench.start("claim", fault="crash-after-cloud-release")
    first = await bench.provision(bench.inputs("claim", "alice"))
    assert (first["state"], first["activation"]["account"]) == ("online", "alice")
    token = bench.binding().token
    assert token is not None
    assert bench.device.daemon is not None and bench.device.daemon.proc is not None
    proc = bench.device.daemon.proc
    with pytest.raises(DeviceSimError):  # the daemon dies before it answers
        await control_request(bench.state_dir, "factory-reset", {})
    async with asyncio.timeout(30):
        assert await proc.wait() == 137
    await bench.device.stop()
    # The cloud released it; locally it was still online with alice's (revoked) token.
    assert await bench.devices("alice") == []
    assert (await bench.device_self(f"Bearer {token.reveal()}"))[0] == 401
    with DeviceStore(bench.state_dir) as store:
        assert store.record().state.wire_name == "online"
        assert store.pending_reset() is not None

    await bench.start("claim")
    status = await bench.wait_status(lambda s: s["state"] == "unprovisioned")
    assert status["activation"]["status"] == "none"
    binding = bench.binding()
    assert (binding.status, binding.token, binding.after_reset) == ("none", None, True)
    with DeviceStore(bench.state_dir) as store:
        assert (store.pending_reset(), store.credentials()) == (None, None)
    # ... and it onboards again for the next owner.
    second = await bench.provision(bench.inputs("claim", "bob"), phone=2)
    assert (second["state"], second["activation"]["account"]) == ("online", "bob"), second


async def test_factory_reset_over_ble(make_bench: MakeBench) -> None:
    bench = await make_bench()
    await bench.start("zero-touch")
    result = await bench.provision({})
    assert (result["state"], result["activation"]["status"]) == ("online", "active")
    async with Provisioner(bench.profile, bench.device.target(2), bench.setup_code) as app:
        assert app.session is not None
        kind, body = await app.session.call(MessageType.FACTORY_RESET, {})
        assert (kind, body) == (MessageType.ACK, {"request": "FACTORY_RESET"})
    # The reset runs right after the ACK; the control socket shows when it is done.
    status = await bench.wait_status(lambda s: s["state"] == "unprovisioned")
    assert status["activation"]["status"] == "none"
    assert bench.binding().after_reset is True
    assert await bench.devices("alice") == []


# -- f. re-onboarding keeps the claim ---------------------------------------------------------


async def test_reonboard_keeps_the_claim(make_bench: MakeBench) -> None:
    bench = await make_bench()
    await bench.start("claim")
    first = await bench.provision(bench.inputs("claim"))
    assert (first["state"], first["activation"]["status"]) == ("online", "active")
    token = bench.binding().token
    assert bench.cloud_activations() == 1

    # Another onboarding (same network; the app sends its activation inputs again), no reset.
    second = await bench.provision(bench.inputs("claim"), phone=2)
    assert (second["state"], second["code_name"]) == ("online", "OK"), second["detail"]
    assert second["activation"] == first["activation"]
    assert second["activation"]["generation"] == 1
    assert bench.cloud_activations() == 1  # the cloud was not asked again
    assert len(bench.device_events("activation")) == 1
    assert bench.binding().token == token
    assert bench.binding().in_claim_token is None  # the unneeded claim token is not kept
    assert await bench.devices("alice") == [
        {"device_id": bench.unit.device_id, "mode": "claim", "generation": 1}
    ]
