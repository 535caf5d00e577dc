#!/usr/bin/env python3
"""Write docs/protocol-vectors.json: the native protocol's test vectors (docs/protocol.md).

Fixed inputs (a setup code, a salt, the two ephemeral secrets) run through device-sim's own
handshake, channels and framing. ``tests/test_protocol_vectors.py`` checks the file against the
implementation and against an independent computation (SRP-6a from its formulas with Python
integers; HKDF and AES-GCM from ``cryptography``'s primitives), so neither can drift.

    .venv/bin/python scripts/protocol_vectors.py [--out docs/protocol-vectors.json] [--check]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device_sim.codes import MessageType  # noqa: E402
from device_sim.doors.native.wire import encode_json, fragment, pack_messages  # noqa: E402
from device_sim.security.secret import Secret  # noqa: E402
from device_sim.security.session import ClientHandshake, DeviceHandshake  # noqa: E402
from device_sim.security.srp_group import G, N  # noqa: E402

SETUP_CODE = "1234-5678"
SALT = bytes.fromhex("5a17c0de5a17c0de5a17c0de5a17c0de")
CLIENT_SECRET = bytes.fromhex("a1" * 32)  # a
DEVICE_SECRET = bytes.fromhex("b2" * 32)  # b
CHANNEL, FRAGMENT_SIZE = 7, 244
CREDENTIALS = {"ssid_hex": b"Home".hex(), "passphrase": "correct horse", "hidden": False}
# Revision 4: a CA certificate's bytes (any bytes: the transfer does not read them) in two
# CREDENTIAL_FILE parts, then SET_CREDENTIALS naming it by its SHA-256.
CA_FILE = b"-----BEGIN CERTIFICATE-----\n" + bytes(range(33, 127)) * 32 + b"\n"
FILE_CHUNK = 2048


def verifier(code_digits: str, salt: bytes) -> bytes:
    """v = g^x mod N, x = H(salt | H("device-sim:" | digits)) (the srp library's encoding)."""
    import hashlib

    inner = hashlib.sha512(b"device-sim:" + code_digits.encode()).digest()
    x = int.from_bytes(hashlib.sha512(salt + inner).digest(), "big")
    v = pow(G, x, N)
    return v.to_bytes((v.bit_length() + 7) // 8, "big")


def vectors() -> dict[str, Any]:
    v = verifier(SETUP_CODE.replace("-", ""), SALT)
    client = ClientHandshake(Secret(SETUP_CODE), ephemeral=CLIENT_SECRET)
    device = DeviceHandshake(SALT, v, ephemeral=DEVICE_SECRET)
    start = client.start()
    challenge = device.challenge(start)
    proof = client.process_challenge(challenge)
    confirm, device_channel = device.verify(proof)
    client_channel = client.confirm(confirm)
    status_request = client_channel.seal(MessageType.STATUS_REQUEST, encode_json({}))
    device_channel.open(status_request)
    status = device_channel.seal(MessageType.STATUS, encode_json({"state": "session_open"}))
    # A second handshake with the same inputs: its proof carries the bundle (revision 2).
    again = ClientHandshake(Secret(SETUP_CODE), ephemeral=CLIENT_SECRET)
    again.start()
    bundled_proof = again.process_challenge(challenge)
    early = again.bundle_channel()
    bundle = [
        early.seal(MessageType.SET_CREDENTIALS, encode_json(CREDENTIALS)),
        early.seal(MessageType.CONNECT, encode_json({})),
    ]
    pake_start = bytes([MessageType.PAKE_START]) + start
    transfer = [
        (
            MessageType.CREDENTIAL_FILE,
            {
                "name": "ca_cert",
                "size": len(CA_FILE),
                "offset": offset,
                "chunk_b64": base64.b64encode(CA_FILE[offset : offset + FILE_CHUNK]).decode(),
            },
        )
        for offset in range(0, len(CA_FILE), FILE_CHUNK)
    ]
    eap = {
        "method": "peap",
        "phase2": "mschapv2",
        "identity": "alice@corp.example",
        "password": "hunter2-enterprise",
        "domain": "corp.example",
        "ca_cert": hashlib.sha256(CA_FILE).hexdigest(),
    }
    transfer.append(
        (MessageType.SET_CREDENTIALS, {"ssid_hex": b"Corp".hex(), "hidden": False,
                                       "passphrase": None, "eap": eap})
    )  # fmt: skip
    return {
        "about": "device-sim native protocol test vectors (docs/protocol.md); all bytes in hex",
        "inputs": {
            "username": "device-sim",
            "setup_code": SETUP_CODE,
            "salt": SALT.hex(),
            "client_secret_a": CLIENT_SECRET.hex(),
            "device_secret_b": DEVICE_SECRET.hex(),
        },
        "verifier_v": v.hex(),
        "messages": {
            "pake_start_body": start.hex(),
            "pake_challenge_body": challenge.hex(),
            "pake_proof_body_m1": proof.hex(),
            "pake_confirm_body_hamk": confirm.hex(),
        },
        "sealed": {
            "client_status_request": {
                "counter": 1,
                "inner_type": int(MessageType.STATUS_REQUEST),
                "payload": encode_json({}).hex(),
                "message": status_request.hex(),
            },
            "device_status": {
                "counter": 1,
                "inner_type": int(MessageType.STATUS),
                "payload": encode_json({"state": "session_open"}).hex(),
                "message": status.hex(),
            },
        },
        "bundled_pake_proof": {
            "requests": [
                {
                    "counter": 1,
                    "inner_type": int(MessageType.SET_CREDENTIALS),
                    "payload": encode_json(CREDENTIALS).hex(),
                },
                {"counter": 2, "inner_type": int(MessageType.CONNECT), "payload": b"{}".hex()},
            ],
            "message": (
                bytes([MessageType.PAKE_PROOF]) + bundled_proof + pack_messages(bundle)
            ).hex(),
        },
        "enterprise_transfer": {
            "file": CA_FILE.hex(),
            "requests": [
                {
                    "counter": counter,
                    "inner_type": int(kind),
                    "payload": encode_json(body).hex(),
                    "message": client_channel.seal(kind, encode_json(body)).hex(),
                }
                for counter, (kind, body) in enumerate(transfer, start=2)
            ],
        },
        "fragments": {
            "message": pake_start.hex(),
            "channel": CHANNEL,
            "fragment_size": FRAGMENT_SIZE,
            "frames": [f.hex() for f in fragment(pake_start, CHANNEL, FRAGMENT_SIZE)],
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "protocol-vectors.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    args = parser.parse_args()
    text = json.dumps(vectors(), indent=2) + "\n"
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'differs: run without --check'}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
