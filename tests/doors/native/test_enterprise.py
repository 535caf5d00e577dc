"""Enterprise sign-ins over the native session (revision 4): certificates and keys as sealed
CREDENTIAL_FILE parts, SET_CREDENTIALS naming them by SHA-256, every bad part a coded error
that loses nothing, the parts wiped when the session ends, and the sign-in stored as a secret
that a factory reset overwrites."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from device_sim.codes import Code, MessageType, State
from device_sim.doors.native.flow import eap_wire
from device_sim.doors.native.session import NativeSession
from device_sim.doors.native.wire import decode_json, encode_json
from device_sim.network.radius import eap_settings
from device_sim.network.scenario import load_scenario
from device_sim.security.secret import Secret
from device_sim.security.session import ClientHandshake, SecureChannel
from device_sim.stack import DeviceStack
from device_sim.testing.stack import SETUP_CODE, build_stack

FLOOR = load_scenario("enterprise-tls").default_credentials
CORP = load_scenario("enterprise-peap").default_credentials
PASSWORD = "hunter2-enterprise"


class Phone:
    """A native session opened on ``device``: sealed requests, their answers (the events the
    device pushes between them are opened in turn, as the channel's counters require)."""

    def __init__(self, service: NativeSession) -> None:
        self.service = service
        self.pushed: list[bytes] = []
        self.channel: SecureChannel | None = None

    @classmethod
    async def open(cls, device: DeviceStack) -> Phone:
        phone = cls(NativeSession(device.port("native")))
        hs = ClientHandshake(Secret(SETUP_CODE))
        start = bytes([MessageType.PAKE_START]) + hs.start()
        (challenge,) = await phone.service.handle("phone", start, phone.pushed.append)
        proof = bytes([MessageType.PAKE_PROOF]) + hs.process_challenge(challenge[1:])
        confirm, *events = await phone.service.handle("phone", proof, phone.pushed.append)
        assert confirm[0] == MessageType.PAKE_CONFIRM
        phone.channel = hs.confirm(confirm[1:])
        for event in events:
            phone.channel.open(event)
        return phone

    async def call(self, kind: MessageType, body: dict[str, Any]) -> tuple[MessageType, Any]:
        assert self.channel is not None
        for event in self.pushed:
            self.channel.open(event)
        self.pushed.clear()
        sealed = self.channel.seal(kind, encode_json(body))
        replies = await self.service.handle("phone", sealed, self.pushed.append)
        answers = [self.channel.open(r) for r in replies]
        kind_, payload = next((k, p) for k, p in answers if k is not MessageType.EVENT)
        return kind_, decode_json(payload)

    async def send_file(self, name: str, data: bytes, chunk: int = 2048) -> None:
        for offset in range(0, len(data), chunk):
            body = {**part(name, data, offset), "chunk_b64": base64.b64encode(
                data[offset : offset + chunk]).decode()}  # fmt: skip
            kind, answer = await self.call(MessageType.CREDENTIAL_FILE, body)
            assert kind is MessageType.ACK
            assert answer["received"] == min(len(data), offset + chunk)


def part(name: str, data: bytes, offset: int, size: int | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "size": len(data) if size is None else size,
        "offset": offset,
        "chunk_b64": base64.b64encode(data[offset : offset + 2048]).decode(),
    }


def credentials(ssid: bytes, eap: dict[str, Any]) -> dict[str, Any]:
    return {"ssid_hex": ssid.hex(), "hidden": False, "passphrase": None, "eap": eap}


async def test_eap_tls_onboards_with_its_files_and_wipes_them(tmp_path: Path) -> None:
    assert FLOOR.eap is not None
    files, body = eap_wire(eap_settings(FLOOR.eap))
    assert len(files) == 3 and sum(len(data) for _, data in files) > 1000
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path, scenario="enterprise-tls")
        phone = await Phone.open(device)
        for name, data in files:
            await phone.send_file(name, data, chunk=400)  # several parts each
        held = phone.service._s
        assert held is not None
        key = held.files["private_key"][1]
        assert key == dict(files)["private_key"]
        kind, _ = await phone.call(MessageType.SET_CREDENTIALS, credentials(FLOOR.ssid, body))
        assert kind is MessageType.ACK
        await phone.call(MessageType.CONNECT, {})
        record = await device.engine.wait_settled(10)
        assert (record.state, record.code) == (State.ONLINE, Code.OK)
        await phone.call(MessageType.END_SESSION, {})
        assert key == bytes(len(key)) and not held.files  # overwritten, then dropped
        saved = device.store.saved_networks()
        assert saved[0].eap is not None and saved[0].eap.client_cert == dict(files)["client_cert"]
        public: dict[str, Any] = saved[0].public()
        assert public["eap"]["method"] == "tls" and "BEGIN" not in str(public)


async def test_every_bad_part_is_a_coded_error_and_loses_nothing(tmp_path: Path) -> None:
    assert CORP.eap is not None
    files, body = eap_wire(eap_settings(CORP.eap))
    [(name, ca)] = files
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path, scenario="enterprise-peap")
        phone = await Phone.open(device)
        big = ca * 8  # three parts
        first = part(name, big, 0)
        assert (await phone.call(MessageType.CREDENTIAL_FILE, first))[0] is MessageType.ACK
        for bad, code in (
            (part(name, big, 4096), Code.MALFORMED_REQUEST),  # a part skipped
            ({**part(name, big, 2048), "size": 5}, Code.MALFORMED_REQUEST),  # size changed
            (part(name, ca, 0, size=20_000), Code.MESSAGE_TOO_LARGE),
            ({**part(name, ca, 0), "name": "../../etc/passwd"}, Code.MALFORMED_REQUEST),
            ({**part(name, ca, 0), "chunk_b64": "***"}, Code.MALFORMED_REQUEST),
            ({**part(name, ca, 0), "offset": True}, Code.MALFORMED_REQUEST),
            (
                {**part(name, ca, 0), "chunk_b64": base64.b64encode(b"x" * 3000).decode()},
                Code.MALFORMED_REQUEST,
            ),
        ):
            kind, answer = await phone.call(MessageType.CREDENTIAL_FILE, bad)
            assert (kind, answer["code"]) == (MessageType.SECURE_ERROR, code), bad
        # the first part is still there: the next two complete the file
        for offset in (2048, 4096):
            kind, answer = await phone.call(MessageType.CREDENTIAL_FILE, part(name, big, offset))
        assert answer["received"] == len(big)
        for eap, code in (
            ({**body, "ca_cert": hashlib.sha256(ca).hexdigest()}, Code.EAP_SETTINGS_INVALID),
            ({**body, "method": "leap"}, Code.EAP_SETTINGS_INVALID),
            ({**body, "phase2": "gtc"}, Code.EAP_SETTINGS_INVALID),
            ({**body, "password": 7}, Code.MALFORMED_REQUEST),
            ({**body, "pin": "1234"}, Code.MALFORMED_REQUEST),
        ):
            kind, answer = await phone.call(
                MessageType.SET_CREDENTIALS, credentials(CORP.ssid, eap)
            )
            assert (kind, answer["code"]) == (MessageType.SECURE_ERROR, code), eap
            assert PASSWORD not in answer["detail"]
        with_passphrase = {**credentials(CORP.ssid, body), "passphrase": PASSWORD}
        kind, answer = await phone.call(MessageType.SET_CREDENTIALS, with_passphrase)
        assert answer["code"] == Code.EAP_SETTINGS_INVALID and PASSWORD not in answer["detail"]
        assert device.engine.state is State.SESSION_OPEN  # nothing stored, the session open
        await phone.send_file(name, ca)  # offset 0 starts the file over
        kind, _ = await phone.call(MessageType.SET_CREDENTIALS, credentials(CORP.ssid, body))
        assert kind is MessageType.ACK


async def test_a_reset_overwrites_the_stored_sign_in(tmp_path: Path) -> None:
    assert CORP.eap is not None
    files, body = eap_wire(eap_settings(CORP.eap))
    async with AsyncExitStack() as stack:
        device = await build_stack(stack, tmp_path, scenario="enterprise-peap")
        phone = await Phone.open(device)
        for name, data in files:
            await phone.send_file(name, data)
        await phone.call(MessageType.SET_CREDENTIALS, credentials(CORP.ssid, body))
        await phone.call(MessageType.CONNECT, {})
        assert (await device.engine.wait_settled(10)).state is State.ONLINE
        await phone.call(MessageType.END_SESSION, {})
        db = device.store.path
        assert db.stat().st_mode & 0o077 == 0  # the store: 0600
        assert device.store.saved_networks()[0].eap is not None
        device.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = b"".join(p.read_bytes() for p in tmp_path.glob("device.sqlite3*"))
        assert PASSWORD.encode() in before  # stored (in a 0600 file) until the reset
        await device.engine.factory_reset("test")
        assert device.store.saved_networks() == [] and device.store.credentials() is None
        device.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("device.sqlite3*"))
    assert PASSWORD.encode() not in raw  # secure_delete: overwritten, not left in free pages
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT COUNT(*) FROM networks").fetchone()[0] == 0
