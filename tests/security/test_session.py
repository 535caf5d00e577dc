"""SRP-6a handshake and the AES-GCM channel, checked against an independent implementation."""

from __future__ import annotations

import hashlib
import importlib
import secrets
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import srp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from device_sim.codes import Code, MessageType
from device_sim.errors import DeviceSimError, OnboardingError, ProtocolError, SessionError
from device_sim.security import (
    ClientHandshake,
    DeviceHandshake,
    Secret,
    SecureChannel,
    make_verifier,
)
from device_sim.security.session import MAX_COUNTER, PROTOCOL_VERSION
from device_sim.security.srp_group import N_BYTES, G, N

CODE = Secret("3141-5926")
WRONG = Secret("3141-5927")

# --- an independent SRP-6a (library-default encoding, SHA-512) and channel ----------------------


def H(*parts: bytes) -> bytes:
    return hashlib.sha512(b"".join(parts)).digest()


def i2b(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def b2i(b: bytes) -> int:
    return int.from_bytes(b, "big")


K_MULT = b2i(H(i2b(N), i2b(G)))
HNXG = bytes(x ^ y for x, y in zip(H(i2b(N)), H(i2b(G)), strict=True))


def ref_x(salt: bytes, digits: str) -> int:
    return b2i(H(salt, H(b"device-sim:" + digits.encode())))


def ref_m1(a_pub: int, b_pub: int, salt: bytes, key: bytes) -> bytes:
    return H(HNXG, H(b"device-sim"), salt, i2b(a_pub), i2b(b_pub), key)


def ref_hamk(a_pub: int, m1: bytes, key: bytes) -> bytes:
    return H(i2b(a_pub), m1, key)


def ref_keys(key: bytes, a_wire: bytes, b_wire: bytes) -> dict[str, bytes]:
    return {
        d: HKDF(hashes.SHA256(), 32, a_wire + b_wire, f"device-sim v1 {d}".encode()).derive(key)
        for d in ("c2d", "d2c")
    }


def ref_seal(
    key: bytes, direction: str, counter: int, plaintext: bytes, aad: bytes | None = None
) -> bytes:
    ctr = counter.to_bytes(8, "big")
    nonce = direction.encode() + b"\x00" + ctr
    return (
        b"\x0f" + ctr + AESGCM(key).encrypt(nonce, plaintext, b"\x0f" + ctr if aad is None else aad)
    )


def ref_open(key: bytes, direction: str, message: bytes) -> bytes:
    ctr = message[1:9]
    return AESGCM(key).decrypt(direction.encode() + b"\x00" + ctr, message[9:], b"\x0f" + ctr)


def handshake(
    code: Secret = CODE, device_code: Secret = CODE
) -> tuple[SecureChannel, SecureChannel]:
    device = DeviceHandshake(*make_verifier(device_code))
    client = ClientHandshake(code)
    hamk, device_channel = device.verify(client.process_challenge(device.challenge(client.start())))
    return client.confirm(hamk), device_channel


def assert_error(
    info: pytest.ExceptionInfo[Any], kind: type, code: Code, detail: str | None = None
) -> None:
    error = info.value
    assert type(error) is kind and isinstance(error, OnboardingError)
    assert error.code is code
    if detail is not None:
        assert error.detail == detail


# --- the handshake ------------------------------------------------------------------------------


def test_full_handshake_channels_interoperate_both_ways() -> None:
    client, device = handshake()
    assert (client.role, device.role) == ("client", "device")
    for i in range(1, 6):
        request = client.seal(MessageType.STATUS_REQUEST, b'{"i": %d}' % i)
        assert device.open(request) == (MessageType.STATUS_REQUEST, b'{"i": %d}' % i)
        for j in range(2):  # the device may send more than it receives (events)
            event = device.seal(MessageType.EVENT, bytes([i, j]) * 50)
            assert client.open(event) == (MessageType.EVENT, bytes([i, j]) * 50)
    assert (client.send_counter, client.recv_counter) == (5, 10)
    assert (device.send_counter, device.recv_counter) == (10, 5)
    assert device.open(client.seal(MessageType.END_SESSION, b"")) == (MessageType.END_SESSION, b"")


def test_wire_layout_of_handshake_bodies() -> None:
    salt, verifier = make_verifier(CODE)
    device = DeviceHandshake(salt, verifier)
    client = ClientHandshake(Secret("31415926"))
    start = client.start()
    assert len(start) == 1 + 384 and start[0] == PROTOCOL_VERSION == 1
    challenge = device.challenge(start)
    assert challenge[0] == 16 and challenge[1:17] == salt and len(challenge) == 1 + 16 + 384
    assert 0 < b2i(challenge[17:]) < N
    proof = client.process_challenge(challenge)
    assert len(proof) == 64
    hamk, _ = device.verify(proof)
    assert len(hamk) == 64
    client.confirm(hamk)
    assert (client.state, device.state) == ("done", "done")


def test_device_against_independent_client_pins_encoding_and_keys() -> None:
    """A client written from the formulas in srp_group's docstring must interoperate."""
    salt, verifier = make_verifier(CODE)
    device = DeviceHandshake(salt, verifier)
    a = secrets.randbits(256) | 1 << 255
    a_pub = pow(G, a, N)
    challenge = device.challenge(bytes([1]) + a_pub.to_bytes(N_BYTES, "big"))
    salt_len = challenge[0]
    assert challenge[1 : 1 + salt_len] == salt
    b_wire = challenge[1 + salt_len :]
    b_pub = b2i(b_wire)
    u = b2i(H(i2b(a_pub), i2b(b_pub)))
    x = ref_x(salt, "31415926")
    s = pow((b_pub - K_MULT * pow(G, x, N)) % N, a + u * x, N)
    key = H(i2b(s))
    m1 = ref_m1(a_pub, b_pub, salt, key)
    hamk, channel = device.verify(m1)
    assert hamk == ref_hamk(a_pub, m1, key)
    # Byte-by-byte: the channel's keys, nonces and AAD are exactly the documented ones.
    keys = ref_keys(key, a_pub.to_bytes(N_BYTES, "big"), b_wire)
    assert keys["c2d"] != keys["d2c"]
    out = channel.seal(MessageType.STATUS, b'{"state": 1}')
    assert out[:9] == b"\x0f" + (1).to_bytes(8, "big")
    assert len(out) == 1 + 8 + 1 + len(b'{"state": 1}') + 16
    assert ref_open(keys["d2c"], "d2c", out) == b"\x25" + b'{"state": 1}'
    request = ref_seal(keys["c2d"], "c2d", 1, b"\x20{}")
    assert channel.open(request) == (MessageType.SCAN_REQUEST, b"{}")


def test_client_against_independent_device() -> None:
    salt = b"\x5a" * 16
    v = pow(G, ref_x(salt, "31415926"), N)
    client = ClientHandshake(CODE)
    a_pub = b2i(client.start()[1:])
    b = secrets.randbits(256)
    b_pub = (K_MULT * v + pow(G, b, N)) % N
    b_wire = b_pub.to_bytes(N_BYTES, "big")
    m1 = client.process_challenge(bytes([16]) + salt + b_wire)
    u = b2i(H(i2b(a_pub), i2b(b_pub)))
    key = H(i2b(pow(a_pub * pow(v, u, N), b, N)))
    assert m1 == ref_m1(a_pub, b_pub, salt, key)
    channel = client.confirm(ref_hamk(a_pub, m1, key))
    keys = ref_keys(key, a_pub.to_bytes(N_BYTES, "big"), b_wire)
    assert ref_open(keys["c2d"], "c2d", channel.seal(MessageType.SCAN_REQUEST, b"{}")) == b"\x20{}"


def test_client_rejects_an_impostor_device() -> None:
    """A device holding another code's verifier cannot produce a HAMK the client accepts."""
    salt = b"\x5a" * 16
    v = pow(G, ref_x(salt, "99999999"), N)  # not the client's code
    client = ClientHandshake(CODE)
    a_pub = b2i(client.start()[1:])
    b = secrets.randbits(256)
    b_pub = (K_MULT * v + pow(G, b, N)) % N
    m1 = client.process_challenge(bytes([16]) + salt + b_pub.to_bytes(N_BYTES, "big"))
    u = b2i(H(i2b(a_pub), i2b(b_pub)))
    key = H(i2b(pow(a_pub * pow(v, u, N), b, N)))
    with pytest.raises(SessionError) as info:
        client.confirm(ref_hamk(a_pub, m1, key))
    assert_error(info, SessionError, Code.WRONG_SETUP_CODE)


def test_wrong_code_fails_at_verify_and_spends_the_handshake() -> None:
    device = DeviceHandshake(*make_verifier(CODE))
    client = ClientHandshake(WRONG)
    proof = client.process_challenge(device.challenge(client.start()))
    with pytest.raises(SessionError) as info:
        device.verify(proof)
    assert_error(info, SessionError, Code.WRONG_SETUP_CODE)
    assert info.value.retry_after_ms == 0 and info.value.raw == {}
    assert device.state == "failed"
    # Single-use: no second guess against the same challenge, not even a well-formed one.
    with pytest.raises(SessionError) as again:
        device.verify(proof)
    assert_error(again, SessionError, Code.INVALID_STATE)
    with pytest.raises(SessionError):
        client.confirm(b"\x00" * 64)  # there is no HAMK to confirm; any guess is refused


def test_tampered_hamk_makes_the_client_refuse() -> None:
    device = DeviceHandshake(*make_verifier(CODE))
    client = ClientHandshake(CODE)
    hamk, _ = device.verify(client.process_challenge(device.challenge(client.start())))
    tampered = bytes([hamk[0] ^ 1]) + hamk[1:]
    with pytest.raises(SessionError) as info:
        client.confirm(tampered)
    assert_error(info, SessionError, Code.WRONG_SETUP_CODE)
    with pytest.raises(SessionError) as again:
        client.confirm(hamk)
    assert_error(again, SessionError, Code.INVALID_STATE)


def _a_wire() -> bytes:
    return pow(G, secrets.randbits(256), N).to_bytes(N_BYTES, "big")


@pytest.mark.parametrize(
    ("body", "kind", "code"),
    [
        (b"", ProtocolError, Code.MALFORMED_REQUEST),
        (bytes([2]) + _a_wire(), SessionError, Code.UNSUPPORTED_VERSION),
        (bytes([0]) + _a_wire(), SessionError, Code.UNSUPPORTED_VERSION),
        (bytes([2]), SessionError, Code.UNSUPPORTED_VERSION),
        (bytes([1]), ProtocolError, Code.MALFORMED_REQUEST),
        (bytes([1]) + _a_wire()[1:], ProtocolError, Code.MALFORMED_REQUEST),
        (bytes([1]) + _a_wire() + b"\x00", ProtocolError, Code.MALFORMED_REQUEST),
        (bytes([1]) + bytes(N_BYTES), ProtocolError, Code.MALFORMED_REQUEST),
        (bytes([1]) + N.to_bytes(N_BYTES, "big"), ProtocolError, Code.MALFORMED_REQUEST),
        (bytes([1]) + (N + 1).to_bytes(N_BYTES, "big"), ProtocolError, Code.MALFORMED_REQUEST),
        (bytes([1]) + b"\xff" * N_BYTES, ProtocolError, Code.MALFORMED_REQUEST),
    ],
    ids=[
        "empty",
        "v2",
        "v0",
        "v2-no-A",
        "no-A",
        "A-short",
        "A-long",
        "A=0",
        "A=N",
        "A=N+1",
        "A=2^3072-1",
    ],
)
def test_bad_pake_start(
    body: bytes, kind: type, code: Code, verifier_pair: tuple[bytes, bytes]
) -> None:
    device = DeviceHandshake(*verifier_pair)
    with pytest.raises(kind) as info:
        device.challenge(body)
    assert_error(info, kind, code)
    assert device.state == "new"  # nothing happened; a good PAKE_START still works
    client = ClientHandshake(CODE)
    device.verify(client.process_challenge(device.challenge(client.start())))


@pytest.fixture(scope="module")
def verifier_pair() -> tuple[bytes, bytes]:
    return make_verifier(CODE)


def test_bad_pake_proof_and_out_of_order_steps(verifier_pair: tuple[bytes, bytes]) -> None:
    device = DeviceHandshake(*verifier_pair)
    with pytest.raises(SessionError) as early:
        device.verify(b"\x00" * 64)
    assert_error(early, SessionError, Code.INVALID_STATE)
    client = ClientHandshake(CODE)
    proof = client.process_challenge(device.challenge(client.start()))
    with pytest.raises(SessionError) as twice:
        device.challenge(bytes([1]) + _a_wire())
    assert_error(twice, SessionError, Code.INVALID_STATE)
    for bad in (b"", proof[:-1], proof + b"\x00"):
        with pytest.raises(ProtocolError) as info:
            device.verify(bad)
        assert_error(info, ProtocolError, Code.MALFORMED_REQUEST)
    hamk, _ = device.verify(proof)  # a malformed proof is not a guess; the real one still works
    with pytest.raises(ProtocolError):
        client.confirm(hamk[:-1])
    client.confirm(hamk)
    with pytest.raises(SessionError) as done:
        client.start()
    assert_error(done, SessionError, Code.INVALID_STATE)


@pytest.mark.parametrize(
    "challenge",
    [
        b"",
        bytes([0]) + b"\x05" * N_BYTES,  # empty salt
        bytes([16]) + b"\x00" + b"\x01" * 15 + b"\x05" * N_BYTES,  # salt with leading zero
        bytes([16]) + b"\x01" * 16 + b"\x05" * (N_BYTES - 1),  # B short
        bytes([15]) + b"\x01" * 16 + b"\x05" * N_BYTES,  # salt_len disagrees with the length
        bytes([16]) + b"\x01" * 16 + bytes(N_BYTES),  # B = 0
        bytes([16]) + b"\x01" * 16 + N.to_bytes(N_BYTES, "big"),  # B = N (B % N == 0)
    ],
    ids=["empty", "no-salt", "salt-0", "B-short", "salt_len", "B=0", "B=N"],
)
def test_bad_pake_challenge(challenge: bytes) -> None:
    client = ClientHandshake(CODE)
    client.start()
    with pytest.raises(ProtocolError) as info:
        client.process_challenge(challenge)
    assert_error(info, ProtocolError, Code.MALFORMED_REQUEST)


def test_handshakes_check_their_inputs() -> None:
    with pytest.raises(TypeError):
        ClientHandshake("3141-5926")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ClientHandshake(Secret("3141"))
    with pytest.raises(ValueError):
        DeviceHandshake(b"\x00" * 16, b"\x05")
    with pytest.raises(SessionError) as info:
        ClientHandshake(CODE).process_challenge(b"\x00")
    assert_error(info, SessionError, Code.INVALID_STATE)


def test_flipped_srp_switch_is_refused(
    monkeypatch: pytest.MonkeyPatch, verifier_pair: tuple[bytes, bytes]
) -> None:
    monkeypatch.setattr(srp._mod, "_rfc5054_compat", True)
    with pytest.raises(DeviceSimError) as info:
        ClientHandshake(CODE).start()
    assert info.value.code is Code.INTERNAL_ERROR
    with pytest.raises(DeviceSimError):
        DeviceHandshake(*verifier_pair).challenge(bytes([1]) + _a_wire())
    with pytest.raises(DeviceSimError):
        make_verifier(CODE)


def _backend(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"srp.{name}")
    except (ImportError, OSError):  # the ctypes backend needs libssl.so
        return None


@pytest.mark.parametrize("client_backend", ["_pysrp", "_ctsrp"])
@pytest.mark.parametrize("device_backend", ["_pysrp", "_ctsrp"])
def test_srp_backends_interoperate(
    monkeypatch: pytest.MonkeyPatch,
    client_backend: str,
    device_backend: str,
    require: Callable[[str | None], None],
) -> None:
    """srp picks its backend by whether libssl.so loads; a phone and a Pi may differ."""
    client_mod, device_mod = _backend(client_backend), _backend(device_backend)
    require(
        None
        if client_mod is not None and device_mod is not None
        else "srp's ctypes/OpenSSL backend cannot load libssl.so (apt install libssl-dev)"
    )
    assert client_mod is not None and device_mod is not None
    monkeypatch.setattr(
        srp, "create_salted_verification_key", device_mod.create_salted_verification_key
    )
    salt, verifier = make_verifier(CODE)
    monkeypatch.setattr(srp, "Verifier", device_mod.Verifier)
    monkeypatch.setattr(srp, "User", client_mod.User)
    client, device = handshake()
    assert device.open(client.seal(MessageType.SCAN_REQUEST, b"{}")) == (
        MessageType.SCAN_REQUEST,
        b"{}",
    )
    assert client.open(device.seal(MessageType.ACK, b"ok")) == (MessageType.ACK, b"ok")
    # and the wrong code still fails across backends
    dh = DeviceHandshake(salt, verifier)
    ch = ClientHandshake(WRONG)
    with pytest.raises(SessionError):
        dh.verify(ch.process_challenge(dh.challenge(ch.start())))


# --- the channel --------------------------------------------------------------------------------

KEY = bytes(range(64))
A_WIRE = b"\x11" * N_BYTES
B_WIRE = b"\x22" * N_BYTES
REF = ref_keys(KEY, A_WIRE, B_WIRE)


@pytest.fixture
def pair() -> tuple[SecureChannel, SecureChannel]:
    return (
        SecureChannel("client", KEY, A_WIRE, B_WIRE),
        SecureChannel("device", KEY, A_WIRE, B_WIRE),
    )


def test_sealed_layout_byte_by_byte(pair: tuple[SecureChannel, SecureChannel]) -> None:
    client, device = pair
    first = client.seal(MessageType.SET_CREDENTIALS, b"payload")
    second = client.seal(MessageType.CONNECT, b"")
    assert first[0] == 0x0F and first[1:9] == bytes(7) + b"\x01"
    assert second[1:9] == bytes(7) + b"\x02"
    assert len(first) == 1 + 8 + 1 + 7 + 16 and len(second) == 26
    assert b"payload" not in first
    assert ref_open(REF["c2d"], "c2d", first) == b"\x22payload"
    assert ref_open(REF["c2d"], "c2d", second) == b"\x23"
    back = device.seal(MessageType.SECURE_ERROR, b"e")
    assert ref_open(REF["d2c"], "d2c", back) == b"\x28e"
    assert ref_seal(REF["c2d"], "c2d", 1, b"\x22payload") == first  # deterministic given key/ctr


def test_replay_is_rejected_and_the_next_message_still_opens(
    pair: tuple[SecureChannel, SecureChannel],
) -> None:
    client, device = pair
    m1 = client.seal(MessageType.SCAN_REQUEST, b"1")
    m2 = client.seal(MessageType.SCAN_REQUEST, b"2")
    assert device.open(m1)[1] == b"1"
    with pytest.raises(SessionError) as info:
        device.open(m1)
    assert_error(info, SessionError, Code.REPLAYED_MESSAGE, "expected counter 2, got 1")
    assert device.recv_counter == 1
    assert device.open(m2)[1] == b"2"


def test_reorder_is_rejected(pair: tuple[SecureChannel, SecureChannel]) -> None:
    client, device = pair
    m1 = client.seal(MessageType.SCAN_REQUEST, b"1")
    m2 = client.seal(MessageType.SCAN_REQUEST, b"2")
    with pytest.raises(SessionError) as info:
        device.open(m2)
    assert_error(info, SessionError, Code.REPLAYED_MESSAGE, "expected counter 1, got 2")
    assert device.open(m1)[1] == b"1"
    assert device.open(m2)[1] == b"2"


def _flip(message: bytes, index: int) -> bytes:
    return message[:index] + bytes([message[index] ^ 0x01]) + message[index + 1 :]


@pytest.mark.parametrize("index", [9, 10, -17, -1], ids=["type-byte", "payload", "tag-0", "tag-15"])
def test_tampered_ciphertext_fails_authentication(
    pair: tuple[SecureChannel, SecureChannel], index: int
) -> None:
    client, device = pair
    m1 = client.seal(MessageType.SET_CREDENTIALS, b'{"passphrase": "x"}')
    with pytest.raises(SessionError) as info:
        device.open(_flip(m1, index))
    assert_error(info, SessionError, Code.REPLAYED_MESSAGE, "authentication failed")
    assert device.recv_counter == 0
    assert device.open(m1)[0] is MessageType.SET_CREDENTIALS


def test_counter_is_bound_by_nonce_and_aad(pair: tuple[SecureChannel, SecureChannel]) -> None:
    client, device = pair
    m1 = client.seal(MessageType.STATUS_REQUEST, b"1")
    m2 = client.seal(MessageType.STATUS_REQUEST, b"2")
    relabelled = m2[:1] + m1[1:9] + m2[9:]  # m2's ciphertext under the expected counter 1
    with pytest.raises(SessionError) as info:
        device.open(relabelled)
    assert_error(info, SessionError, Code.REPLAYED_MESSAGE, "authentication failed")
    # Right key, nonce and counter, but an AAD without the 0x0F type byte: rejected.
    wrong_aad = ref_seal(REF["c2d"], "c2d", 1, b"\x24{}", aad=(1).to_bytes(8, "big"))
    with pytest.raises(SessionError) as aad:
        device.open(wrong_aad)
    assert_error(aad, SessionError, Code.REPLAYED_MESSAGE, "authentication failed")
    assert device.open(m1)[1] == b"1"
    assert device.open(m2)[1] == b"2"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda m: m[:25],
        lambda m: b"",
        lambda m: m[:9],
        lambda m: b"\x0e" + m[1:],
        lambda m: b"\x20" + m[1:],
    ],
    ids=["25-bytes", "empty", "header-only", "type-ERROR", "type-SCAN_REQUEST"],
)
def test_truncated_or_mistyped_message_is_malformed(
    pair: tuple[SecureChannel, SecureChannel], mangle: Any
) -> None:
    client, device = pair
    m1 = client.seal(MessageType.CONNECT, b"")
    with pytest.raises(ProtocolError) as info:
        device.open(mangle(m1))
    assert_error(info, ProtocolError, Code.MALFORMED_REQUEST)
    assert device.open(m1)[0] is MessageType.CONNECT


def test_truncated_but_long_enough_fails_authentication(
    pair: tuple[SecureChannel, SecureChannel],
) -> None:
    client, device = pair
    m1 = client.seal(MessageType.STATUS_REQUEST, b"{}")
    with pytest.raises(SessionError) as info:
        device.open(m1[:-1])
    assert_error(info, SessionError, Code.REPLAYED_MESSAGE, "authentication failed")
    assert device.open(m1) == (MessageType.STATUS_REQUEST, b"{}")


def test_directions_have_different_keys(pair: tuple[SecureChannel, SecureChannel]) -> None:
    client, device = pair
    assert REF["c2d"] != REF["d2c"]
    own = device.seal(MessageType.EVENT, b"reflected")
    with pytest.raises(SessionError) as info:
        device.open(own)  # a device message reflected back to the device
    assert_error(info, SessionError, Code.REPLAYED_MESSAGE, "authentication failed")
    with pytest.raises(SessionError):
        client.open(client.seal(MessageType.SCAN_REQUEST, b"x"))
    assert client.open(own) == (MessageType.EVENT, b"reflected")


def test_messages_do_not_cross_sessions() -> None:
    client1, _device1 = handshake()
    client2, device2 = handshake()
    with pytest.raises(SessionError) as info:
        device2.open(client1.seal(MessageType.SCAN_REQUEST, b"{}"))
    assert_error(info, SessionError, Code.REPLAYED_MESSAGE, "authentication failed")
    assert device2.open(client2.seal(MessageType.SCAN_REQUEST, b"{}"))[1] == b"{}"


@pytest.mark.parametrize(
    "inner", [b"\x99", b"\x01", b"\x0f"], ids=["unknown", "PAKE_START", "SECURE"]
)
def test_authentic_message_with_bad_inner_type(
    pair: tuple[SecureChannel, SecureChannel], inner: bytes
) -> None:
    client, device = pair
    client.seal(MessageType.SCAN_REQUEST, b"")  # counter 1 goes to the crafted message instead
    crafted = ref_seal(REF["c2d"], "c2d", 1, inner + b"secret-payload")
    with pytest.raises(ProtocolError) as info:
        device.open(crafted)
    assert_error(info, ProtocolError, Code.MALFORMED_REQUEST)
    assert "secret-payload" not in str(info.value) and inner.hex() not in info.value.detail
    assert device.recv_counter == 1  # it was authentic: its counter is spent
    assert device.open(client.seal(MessageType.SCAN_REQUEST, b"{}"))[1] == b"{}"


@pytest.mark.parametrize(
    "inner", [MessageType.PAKE_START, MessageType.SECURE, MessageType.ERROR, 0x99]
)
def test_seal_refuses_types_that_do_not_travel_inside_secure(
    pair: tuple[SecureChannel, SecureChannel], inner: int
) -> None:
    client, _ = pair
    with pytest.raises(ValueError):
        client.seal(inner, b"")  # type: ignore[arg-type]
    assert client.send_counter == 0


def test_counters_never_wrap(pair: tuple[SecureChannel, SecureChannel]) -> None:
    client, device = pair
    client._send_counter = device._recv_counter = MAX_COUNTER - 1
    last = client.seal(MessageType.STATUS_REQUEST, b"")
    assert last[1:9] == b"\xff" * 8
    assert device.open(last) == (MessageType.STATUS_REQUEST, b"")
    with pytest.raises(SessionError) as send:
        client.seal(MessageType.STATUS_REQUEST, b"")
    assert_error(send, SessionError, Code.SESSION_REQUIRED)
    wrapped = ref_seal(REF["c2d"], "c2d", 0, b"\x24")
    with pytest.raises(SessionError) as recv:
        device.open(wrapped)
    assert_error(recv, SessionError, Code.SESSION_REQUIRED)


def test_counters_are_read_only_and_inputs_checked(
    pair: tuple[SecureChannel, SecureChannel],
) -> None:
    client, _ = pair
    with pytest.raises(AttributeError):
        client.send_counter = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        client.recv_counter = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        SecureChannel("server", KEY, A_WIRE, B_WIRE)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SecureChannel("client", KEY, A_WIRE[1:], B_WIRE)
    with pytest.raises(ValueError):
        SecureChannel("client", b"", A_WIRE, B_WIRE)


# --- nothing secret in reprs or errors ----------------------------------------------------------


def test_no_secret_in_reprs_or_error_details() -> None:
    code_digits, code_label = "27182818", "2718-2818"
    code = Secret(code_label)
    salt, verifier = make_verifier(code)
    device, client = DeviceHandshake(salt, verifier), ClientHandshake(code)
    texts = [repr(device), repr(client), repr(code)]
    challenge = device.challenge(client.start())
    texts += [repr(device), repr(client)]
    hamk, device_channel = device.verify(client.process_challenge(challenge))
    client_channel = client.confirm(hamk)
    texts += [repr(device), repr(client), repr(device_channel), repr(client_channel)]
    errors: list[OnboardingError] = []
    plaintext = b'{"passphrase": "correct horse"}'
    m1 = client_channel.seal(MessageType.SET_CREDENTIALS, plaintext)
    for bad in (_flip(m1, 12), m1[:20], client_channel.seal(MessageType.CONNECT, plaintext)):
        try:
            device_channel.open(bad)
        except OnboardingError as exc:
            errors.append(exc)
    wrong_device = DeviceHandshake(salt, verifier)
    wrong_client = ClientHandshake(Secret("2718-2819"))
    try:
        wrong_device.verify(
            wrong_client.process_challenge(wrong_device.challenge(wrong_client.start()))
        )
    except OnboardingError as exc:
        errors.append(exc)
    try:
        ClientHandshake(code).confirm(hamk)
    except OnboardingError as exc:
        errors.append(exc)
    with pytest.raises(ValueError) as typo:
        ClientHandshake(Secret("2718-281"))
    texts.append(str(typo.value))
    assert len(errors) == 5
    texts += [str(e) for e in errors] + [repr(e) for e in errors] + [str(e.args) for e in errors]
    blob = "\n".join(texts)
    for needle in (
        code_digits,
        code_label,
        "2718-2819",
        "27182819",
        "correct horse",
        hamk.hex()[:16],
        verifier.hex()[-16:],
    ):
        assert needle not in blob
    assert "<redacted>" in blob


def test_handshakes_in_worker_threads_never_see_esps_padding_switch() -> None:
    """A fleet runs SRP in worker threads while the ESP personality flips srp's process-wide
    padding switch around its own calls on the event loop: SRP_LOCK keeps them apart, so every
    threaded handshake completes (unguarded, srp_kwargs refused or the proofs mismatched)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from device_sim.doors.esp.security import _padded, _srp_kwargs

    stop = threading.Event()
    flips = 0

    def esp_side() -> None:
        nonlocal flips
        while not stop.is_set() and flips < 10_000:
            with _padded():
                srp.User("wifiprov", "abcd1234", **_srp_kwargs()).start_authentication()
            flips += 1

    def native(_: int) -> bool:
        code = Secret("12345678")
        device = DeviceHandshake(*make_verifier(code))
        client = ClientHandshake(code)
        confirm, _channel = device.verify(
            client.process_challenge(device.challenge(client.start()))
        )
        client.confirm(confirm)
        return True

    flipper = threading.Thread(target=esp_side)
    flipper.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            assert all(pool.map(native, range(24)))
    finally:
        stop.set()
        flipper.join()
    assert flips > 0
