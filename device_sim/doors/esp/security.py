"""Protocomm security 0, 1 and 2: the session handshake on ``prov-session`` and the cipher every
later message goes through, device side and phone side.

* **Security 0**: no handshake beyond one exchange, no encryption.
* **Security 1**: X25519; the shared secret XOR SHA-256(proof of possession) is the AES-256-CTR
  key and the device's 16 random bytes its initial counter block. One keystream serves the whole
  session in both directions, in the order the bytes pass: the client's verify data is the
  device's public key encrypted, the device's is the client's public key encrypted.
* **Security 2**: SRP6a (3072-bit group of RFC 5054, g = 5, SHA-512, with a username), in the
  RFC 5054 padded variant (k, u and the group hash pad to the modulus), then AES-256-GCM with the
  first 32 bytes of the SRP session key. ``sec_patch_ver`` 0: one 16-byte nonce for every
  message; 1: a 12-byte nonce, 8 random bytes and a big-endian counter from 1, incremented after
  every encryption and every decryption on each side.

The ``srp`` package computes the SRP numbers. Its padded variant is a process-wide switch
(``rfc5054_enable``) that the native protocol must never see flipped, so :func:`_padded`
flips it only around the synchronous calls that depend on it and restores it before any other
code can run (there is no ``await`` inside), holding ``SRP_LOCK`` so that no worker thread's
SRP computation runs meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Iterator
from typing import Any

import srp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...security.srp_group import G_HEX, N_HEX, SRP_LOCK
from . import proto

SALT_LEN = 16
DEFAULT_USERNAME = "wifiprov"


class EspSessionError(Exception):
    """A handshake step failed; ``status`` is the protocomm Status to answer with."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@contextlib.contextmanager
def _padded() -> Iterator[None]:
    backend: Any = srp._mod  # the package's chosen backend (ctypes/OpenSSL or pure Python)
    with SRP_LOCK:  # no other SRP computation (a worker thread's) sees the switch flipped
        before = backend._rfc5054_compat
        backend._rfc5054_compat = True
        try:
            yield
        finally:
            backend._rfc5054_compat = before


def _srp_kwargs() -> dict[str, Any]:
    return {
        "hash_alg": srp.SHA512,
        "ng_type": srp.NG_CUSTOM,
        "n_hex": N_HEX.encode("ascii"),
        "g_hex": G_HEX.encode("ascii"),
    }


def password_interoperates(username: str, password: str) -> bool:
    """False for the 1 in 256 passwords whose SHA-512(username:password) starts with a zero
    byte: Espressif's Python client (esp_prov, esp-rainmaker-cli) turns that inner digest into
    an integer and back, dropping the zero, so its x, and every proof after it, differs from
    the device's (found by the ESP tests: one device in a few hundred never onboarded)."""
    return hashlib.sha512(f"{username}:{password}".encode()).digest()[0] != 0


def make_verifier(username: str, password: str) -> tuple[bytes, bytes]:
    """A Security 2 salt and verifier for ``username``/``password``. The salt's first byte is
    never zero: some clients strip leading zeros from it."""
    while True:
        with SRP_LOCK:
            salt, verifier = srp.create_salted_verification_key(
                username, password, salt_len=SALT_LEN, **_srp_kwargs()
            )
        if salt[0] != 0:
            return bytes(salt), bytes(verifier)


def _session(version: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {"sec_ver": version, f"sec{version}": payload}


# --- ciphers -----------------------------------------------------------------------------------


class Plain:
    def encrypt(self, data: bytes) -> bytes:
        return data

    def decrypt(self, data: bytes) -> bytes:
        return data


class CtrStream:
    """One AES-256-CTR keystream, shared by both directions in the order bytes pass."""

    def __init__(self, key: bytes, counter_block: bytes) -> None:
        self._ctx = Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()

    def encrypt(self, data: bytes) -> bytes:
        return self._ctx.update(data)

    decrypt = encrypt


class GcmNonces:
    """AES-256-GCM with the Security 2 nonce rule of ``patch`` (see the module docstring)."""

    def __init__(self, key: bytes, nonce: bytes, patch: int) -> None:
        self._aead = AESGCM(key)
        self._nonce = bytearray(nonce)
        self._patch = patch

    def _step(self) -> None:
        if self._patch == 1:
            counter = struct.unpack(">I", self._nonce[8:12])[0] + 1
            if counter > 0xFFFFFFFF:
                raise EspSessionError("InvalidSession", "nonce counter exhausted")
            self._nonce[8:12] = struct.pack(">I", counter)

    def encrypt(self, data: bytes) -> bytes:
        out = self._aead.encrypt(bytes(self._nonce), data, None)
        self._step()
        return out

    def decrypt(self, data: bytes) -> bytes:
        try:
            out = self._aead.decrypt(bytes(self._nonce), data, None)
        except InvalidTag:
            raise EspSessionError("CryptoError", "a message failed authentication") from None
        self._step()
        return out


Cipher_ = Plain | CtrStream | GcmNonces


# --- the device side ---------------------------------------------------------------------------


class DeviceSecurity:
    """The device end of one session: feed it ``prov-session`` requests until ``cipher`` is set.

    ``version`` 0, 1 or 2; ``pop`` the proof of possession (Security 1, None: no_pop);
    ``username``/``salt``/``verifier`` (Security 2); ``patch`` the Security 2 nonce rule.
    """

    def __init__(
        self,
        version: int,
        *,
        pop: bytes | None = None,
        username: str = DEFAULT_USERNAME,
        salt: bytes = b"",
        verifier: bytes = b"",
        patch: int = 1,
    ) -> None:
        self.version, self.pop, self.patch = version, pop, patch
        self.username, self.salt, self.verifier = username, salt, verifier
        self.cipher: Cipher_ | None = None
        self._step = 0
        self._state: Any = None
        self.proof_failed = False  # the last step failed on a wrong PoP / password

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """One handshake request (a decoded SessionData); the SessionData to answer.

        Raises EspSessionError (the Status to report) for a request out of order, of another
        security version, or with a wrong proof."""
        self.proof_failed = False
        if request.get("sec_ver", 0) != self.version:
            raise EspSessionError("InvalidSecScheme", f"this device runs security {self.version}")
        payload = request.get(f"sec{self.version}", {})
        msg = payload.get("msg", 0)
        if self.version == 0:
            self.cipher = Plain()
            return _session(0, {"msg": proto.RESP0, "sr": {"status": 0}})
        if msg == proto.CMD0:
            return self._cmd0(payload.get("sc0", {}))
        if msg == proto.CMD1 and self._step == 1:
            return self._cmd1(payload.get("sc1", {}))
        raise EspSessionError("InvalidProto", f"unexpected session message {msg}")

    def _cmd0(self, sc0: dict[str, Any]) -> dict[str, Any]:
        self.cipher, self._step = None, 1
        if self.version == 1:
            client_pub = sc0.get("client_pubkey", b"")
            if len(client_pub) != 32:
                raise EspSessionError("InvalidArgument", "client_pubkey is not 32 bytes")
            private = X25519PrivateKey.generate()
            device_pub = private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            try:
                shared = private.exchange(X25519PublicKey.from_public_bytes(client_pub))
            except ValueError:
                raise EspSessionError("CryptoError", "an invalid X25519 public key") from None
            if self.pop:
                digest = hashlib.sha256(self.pop).digest()
                shared = bytes(a ^ b for a, b in zip(shared, digest, strict=True))
            random = os.urandom(16)
            self._state = (CtrStream(shared, random), device_pub, client_pub)
            return _session(
                1,
                {
                    "msg": proto.RESP0,
                    "sr0": {"status": 0, "device_pubkey": device_pub, "device_random": random},
                },
            )
        username = sc0.get("client_username", b"")
        client_pub = sc0.get("client_pubkey", b"")
        if username.decode("utf-8", "replace") != self.username:
            self.proof_failed = True
            raise EspSessionError("InvalidArgument", "unknown username")
        with _padded():
            verifier = srp.Verifier(
                self.username, self.salt, self.verifier, client_pub, **_srp_kwargs()
            )
            salt, device_pub = verifier.get_challenge()
        if salt is None or device_pub is None:
            raise EspSessionError("CryptoError", "an invalid SRP public key")
        self._state = verifier
        return _session(
            2,
            {
                "msg": proto.RESP0,
                "sr0": {"status": 0, "device_pubkey": device_pub, "device_salt": salt},
            },
        )

    def _cmd1(self, sc1: dict[str, Any]) -> dict[str, Any]:
        self._step = 2
        if self.version == 1:
            stream, device_pub, client_pub = self._state
            if stream.decrypt(sc1.get("client_verify_data", b"")) != device_pub:
                self.proof_failed = True
                raise EspSessionError("CryptoError", "wrong proof of possession")
            verify = stream.encrypt(client_pub)
            self.cipher = stream
            return _session(
                1, {"msg": proto.RESP1, "sr1": {"status": 0, "device_verify_data": verify}}
            )
        verifier = self._state
        with _padded():
            hamk = verifier.verify_session(sc1.get("client_proof", b""))
        if hamk is None or not verifier.authenticated():
            self.proof_failed = True
            raise EspSessionError("CryptoError", "wrong username or password")
        key = verifier.get_session_key()[:32]
        nonce = os.urandom(16) if self.patch == 0 else os.urandom(8) + struct.pack(">I", 1)
        self.cipher = GcmNonces(key, nonce, self.patch)
        return _session(
            2,
            {
                "msg": proto.RESP1,
                "sr1": {"status": 0, "device_proof": hamk, "device_nonce": nonce},
            },
        )

    def error(self, status: str) -> dict[str, Any]:
        """The SessionData answering a failed step with ``status``."""
        code = proto.STATUS[status]
        if self.version == 0:
            return _session(0, {"msg": proto.RESP0, "sr": {"status": code}})
        key = "sr1" if self._step >= 2 else "sr0"
        msg = proto.RESP1 if key == "sr1" else proto.RESP0
        return _session(self.version, {"msg": msg, key: {"status": code}})


# --- the phone side ----------------------------------------------------------------------------


class ClientSecurity:
    """The phone end: :meth:`request` gives each handshake request (None when done) and reads the
    device's previous answer. Raises EspSessionError when the device cannot be verified."""

    def __init__(
        self,
        version: int,
        *,
        pop: bytes | None = None,
        username: str = DEFAULT_USERNAME,
        password: str = "",
        patch: int = 1,
    ) -> None:
        self.version, self.pop, self.username, self.password = version, pop, username, password
        self.patch = patch
        self.cipher: Cipher_ | None = None
        self._step = 0
        self._state: Any = None

    def request(self, answer: dict[str, Any] | None) -> dict[str, Any] | None:
        step, self._step = self._step, self._step + 1
        if self.version == 0:
            if step == 0:
                return _session(0, {"msg": proto.CMD0, "sc": {}})
            self._check(answer, "sr")
            self.cipher = Plain()
            return None
        if step == 0:
            return self._cmd0()
        if step == 1:
            return self._cmd1(self._check(answer, "sr0"))
        self._finish(self._check(answer, "sr1"))
        return None

    def _check(self, answer: dict[str, Any] | None, key: str) -> dict[str, Any]:
        payload = (answer or {}).get(f"sec{self.version}", {}).get(key)
        if (answer or {}).get("sec_ver", 0) != self.version or payload is None:
            raise EspSessionError("InvalidProto", "the device answered another security scheme")
        status = payload.get("status", 0)
        if status != 0:
            name = next((n for n, v in proto.STATUS.items() if v == status), str(status))
            raise EspSessionError(name, f"the device refused the session ({name})")
        return dict(payload)

    def _cmd0(self) -> dict[str, Any]:
        if self.version == 1:
            private = X25519PrivateKey.generate()
            public = private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            self._state = (private, public)
            return _session(1, {"msg": proto.CMD0, "sc0": {"client_pubkey": public}})
        with _padded():
            user = srp.User(self.username, self.password, **_srp_kwargs())
            _, a = user.start_authentication()
        self._state = user
        sc0 = {"client_username": self.username.encode(), "client_pubkey": a}
        return _session(2, {"msg": proto.CMD0, "sc0": sc0})

    def _cmd1(self, sr0: dict[str, Any]) -> dict[str, Any]:
        if self.version == 1:
            private, public = self._state
            device_pub = sr0.get("device_pubkey", b"")
            shared = private.exchange(X25519PublicKey.from_public_bytes(device_pub))
            if self.pop:
                digest = hashlib.sha256(self.pop).digest()
                shared = bytes(a ^ b for a, b in zip(shared, digest, strict=True))
            stream = CtrStream(shared, sr0.get("device_random", b""))
            self._state = (stream, public)
            verify = stream.encrypt(device_pub)
            return _session(1, {"msg": proto.CMD1, "sc1": {"client_verify_data": verify}})
        user = self._state
        with _padded():
            proof = user.process_challenge(sr0.get("device_salt", b""), sr0.get("device_pubkey"))
        if proof is None:
            raise EspSessionError("CryptoError", "the device's SRP challenge is invalid")
        return _session(2, {"msg": proto.CMD1, "sc1": {"client_proof": proof}})

    def _finish(self, sr1: dict[str, Any]) -> None:
        if self.version == 1:
            stream, public = self._state
            if stream.decrypt(sr1.get("device_verify_data", b"")) != public:
                raise EspSessionError("CryptoError", "the device could not be verified")
            self.cipher = stream
            return
        user = self._state
        with _padded():
            user.verify_session(sr1.get("device_proof", b""))
        if not user.authenticated():
            raise EspSessionError("CryptoError", "the device could not be verified")
        key = user.get_session_key()[:32]
        self.cipher = GcmNonces(key, sr1.get("device_nonce", b""), self.patch)
