"""The native protocol's test vectors (docs/protocol-vectors.json, made by
scripts/protocol_vectors.py) hold two ways: device-sim's own handshake, channels and framing
give every byte of them, and an independent computation gives them too, SRP-6a from its
formulas with Python integers and hashlib, HKDF and AES-GCM from ``cryptography``'s primitives,
the fragments from the header layout. Vectors made only by the code under test would prove
nothing; here a client written from docs/protocol.md alone is checked."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from device_sim.codes import MessageType
from device_sim.doors.native.session import parse_eap, receive_file_part
from device_sim.doors.native.wire import Reassembler, fragment, unpack_messages
from device_sim.security.secret import Secret
from device_sim.security.session import ClientHandshake, DeviceHandshake

ROOT = Path(__file__).resolve().parents[1]
V: dict[str, Any] = json.loads((ROOT / "docs" / "protocol-vectors.json").read_text())
# The group of docs/protocol.md (RFC 5054's 3072-bit group, g = 5), written out again here.
N = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)
G = 5
WIDTH = 384


def H(*parts: bytes) -> bytes:
    return hashlib.sha512(b"".join(parts)).digest()


def minimal(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def b(name: str) -> bytes:
    return bytes.fromhex(name)


def independent() -> dict[str, Any]:
    """Every derived value, from docs/protocol.md's formulas alone."""
    inputs = V["inputs"]
    user, salt = inputs["username"].encode(), b(inputs["salt"])
    digits = inputs["setup_code"].replace("-", "").encode()
    a, bb = (
        int.from_bytes(b(inputs["client_secret_a"]), "big"),
        int.from_bytes(b(inputs["device_secret_b"]), "big"),
    )
    x = int.from_bytes(H(salt, H(user + b":" + digits)), "big")
    v = pow(G, x, N)
    k = int.from_bytes(H(minimal(N), minimal(G)), "big")
    A = pow(G, a, N)
    B = (k * v + pow(G, bb, N)) % N
    u = int.from_bytes(H(minimal(A), minimal(B)), "big")
    S = pow(B - k * pow(G, x, N), a + u * x, N)
    assert pow(A * pow(v, u, N), bb, N) == S  # both ends reach the same premaster secret
    K = H(minimal(S))
    hn, hg = H(minimal(N)), H(minimal(G))
    M1 = H(bytes(p ^ q for p, q in zip(hn, hg, strict=True)), H(user), salt, minimal(A),
           minimal(B), K)  # fmt: skip
    HAMK = H(minimal(A), M1, K)
    wire_a, wire_b = A.to_bytes(WIDTH, "big"), B.to_bytes(WIDTH, "big")

    def key(info: bytes) -> bytes:
        return HKDF(hashes.SHA256(), 32, wire_a + wire_b, info).derive(K)

    return {
        "v": minimal(v),
        "start": bytes([1]) + wire_a,
        "challenge": bytes([len(salt)]) + salt + wire_b,
        "M1": M1,
        "HAMK": HAMK,
        "c2d": key(b"device-sim v1 c2d"),
        "d2c": key(b"device-sim v1 d2c"),
    }


def seal(key: bytes, direction: bytes, counter: int, inner: int, payload: bytes) -> bytes:
    ctr = counter.to_bytes(8, "big")
    sealed = AESGCM(key).encrypt(direction + ctr, bytes([inner]) + payload, b"\x0f" + ctr)
    return b"\x0f" + ctr + sealed


def test_an_independent_client_computes_every_vector() -> None:
    mine = independent()
    assert mine["v"].hex() == V["verifier_v"]
    m = V["messages"]
    assert mine["start"].hex() == m["pake_start_body"]
    assert mine["challenge"].hex() == m["pake_challenge_body"]
    assert mine["M1"].hex() == m["pake_proof_body_m1"]
    assert mine["HAMK"].hex() == m["pake_confirm_body_hamk"]
    for name, key, direction in (
        ("client_status_request", mine["c2d"], b"c2d\0"),
        ("device_status", mine["d2c"], b"d2c\0"),
    ):
        s = V["sealed"][name]
        made = seal(key, direction, s["counter"], s["inner_type"], b(s["payload"]))
        assert made.hex() == s["message"], name
    transfer = V["enterprise_transfer"]
    parts = b""
    for r in transfer["requests"]:
        made = seal(mine["c2d"], b"c2d\0", r["counter"], r["inner_type"], b(r["payload"]))
        assert made.hex() == r["message"]
        body = json.loads(b(r["payload"]))
        if r["inner_type"] == MessageType.CREDENTIAL_FILE:
            assert body["offset"] == len(parts) and len(base64.b64decode(body["chunk_b64"])) > 0
            parts += base64.b64decode(body["chunk_b64"])
        else:  # SET_CREDENTIALS names the whole file by its SHA-256
            assert body["eap"]["ca_cert"] == hashlib.sha256(parts).hexdigest()
    assert parts == b(transfer["file"]) and len(transfer["requests"]) >= 3
    bundle = b(V["bundled_pake_proof"]["message"])
    assert bundle[0] == MessageType.PAKE_PROOF and bundle[1:65] == mine["M1"]
    sealed = [
        seal(mine["c2d"], b"c2d\0", r["counter"], r["inner_type"], b(r["payload"]))
        for r in V["bundled_pake_proof"]["requests"]
    ]
    framed = b"".join(struct.pack(">H", len(m)) + m for m in sealed)  # u16 length, then the message
    assert bundle[65:] == framed
    f = V["fragments"]
    message, channel, size = b(f["message"]), f["channel"], f["fragment_size"]
    first = struct.pack(">BHH", 0x80, channel, len(message)) + message[: size - 5]
    rest = message[size - 5 :]
    frames = [first] + [
        struct.pack(">BH", (i + 1) | (0x40 if i + 1 == -(-len(rest) // (size - 3)) else 0), channel)
        + rest[i * (size - 3) : (i + 1) * (size - 3)]
        for i in range(-(-len(rest) // (size - 3)))
    ]
    assert [fr.hex() for fr in frames] == f["frames"]


def test_device_sims_implementation_gives_every_vector() -> None:
    inputs, m = V["inputs"], V["messages"]
    client = ClientHandshake(Secret(inputs["setup_code"]), ephemeral=b(inputs["client_secret_a"]))
    device = DeviceHandshake(
        b(inputs["salt"]), b(V["verifier_v"]), ephemeral=b(inputs["device_secret_b"])
    )
    assert client.start().hex() == m["pake_start_body"]
    challenge = device.challenge(b(m["pake_start_body"]))
    assert challenge.hex() == m["pake_challenge_body"]
    proof = client.process_challenge(challenge)
    assert proof.hex() == m["pake_proof_body_m1"]
    confirm, device_channel = device.verify(proof)
    assert confirm.hex() == m["pake_confirm_body_hamk"]
    client_channel = client.confirm(confirm)
    request = V["sealed"]["client_status_request"]
    assert (
        client_channel.seal(MessageType.STATUS_REQUEST, b(request["payload"])).hex()
        == (request["message"])
    )
    assert device_channel.open(b(request["message"])) == (MessageType.STATUS_REQUEST, b"{}")
    answer = V["sealed"]["device_status"]
    assert client_channel.open(b(answer["message"]))[1] == b(answer["payload"])
    files: dict[str, tuple[int, bytearray]] = {}
    for r in V["enterprise_transfer"]["requests"]:
        inner, payload = device_channel.open(b(r["message"]))
        if inner is MessageType.CREDENTIAL_FILE:
            receive_file_part(files, json.loads(payload))
        else:
            eap = parse_eap(json.loads(payload)["eap"], files)
    assert eap.ca_cert == b(V["enterprise_transfer"]["file"]) and eap.method == "peap"
    bundled = b(V["bundled_pake_proof"]["message"])
    assert len(unpack_messages(bundled[65:])) == 2
    f = V["fragments"]
    frames = fragment(b(f["message"]), f["channel"], f["fragment_size"])
    assert [fr.hex() for fr in frames] == f["frames"]
    reassembler = Reassembler(4096, 5.0)
    done = [reassembler.feed(fr) for fr in frames]
    assert done[-1] == (f["channel"], b(f["message"]))


def test_a_wrong_setup_code_does_not_reach_the_vectors() -> None:
    inputs = V["inputs"]
    client = ClientHandshake(Secret("8765-4321"), ephemeral=b(inputs["client_secret_a"]))
    client.start()
    assert (
        client.process_challenge(b(V["messages"]["pake_challenge_body"])).hex()
        != (V["messages"]["pake_proof_body_m1"])
    )


@pytest.mark.parametrize("flag", ["--check"])
def test_the_vectors_file_is_what_the_generator_writes(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "protocol_vectors.py"), flag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
