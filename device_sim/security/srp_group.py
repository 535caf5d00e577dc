"""SRP-6a parameters of the device-sim handshake (``gatt_profile.yaml`` ``session.srp``).

Group: RFC 5054 appendix A, 3072 bits, g = 5. Its prime is the RFC 3526 group-15 MODP prime,
``p = 2^3072 - 2^3008 - 1 + 2^64 * (floor(2^2942 * pi) + 1690314)``;
``tests/security/test_srp_group.py`` recomputes it from that formula (and checks that it is a
safe prime) rather than trusting the hex below. Hash: SHA-512. Username: ``device-sim``.

Encoding decision (read before writing another client)
------------------------------------------------------
The ``srp`` package has two process-wide switches, ``srp.rfc5054_enable()`` and
``srp.no_username_in_x()``. device-sim never flips them (flipping a global at import time would
silently change every other user of ``srp`` in the process) and uses the **library-default
encoding** on both ends; both ends are this package, so they always agree. Concretely, with
``H = SHA-512`` and ``bytes(n)`` the minimal big-endian encoding of an integer (no leading zeros):

* ``x  = H(salt || H("device-sim" || ":" || setup_code_digits))``, ``v = g^x mod N``
* ``k  = H(bytes(N) || bytes(g))``          (no RFC 5054 padding of g)
* ``u  = H(bytes(A) || bytes(B))``          (no RFC 5054 padding of A and B)
* ``K  = H(bytes(S))``                      (64 bytes, the SRP session key)
* ``M1 = H(H(bytes(N)) xor H(bytes(g)) || H("device-sim") || salt || bytes(A) || bytes(B) || K)``
* ``HAMK = H(bytes(A) || M1 || K)``

This is *not* the RFC 5054 padded variant, so RFC 5054 test vectors do not apply; a third-party
client (a phone app using another SRP library) must use the formulas above. The verifier does not
depend on the padding choice, so stored verifiers would survive a future switch (which would need
a new ``protocol_version``). :func:`srp_kwargs` refuses to run if anything in the process flipped
either switch, because the two ends would then no longer agree with a client in another process.

Backend portability: ``srp`` picks a ctypes/OpenSSL backend when ``libssl.so`` loads and a pure
Python one otherwise (a Raspberry Pi without ``libssl-dev`` gets the latter). The two differ on
salts with a leading zero byte (the ctypes one strips it), so device-sim only uses salts whose
first byte is non-zero (:func:`is_portable_salt`); and the ctypes backend needs ``n_hex``/``g_hex``
as ``bytes``, hence the ``bytes`` constants here.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Final

import srp

from ..codes import Code
from ..errors import DeviceSimError

#: RFC 5054 3072-bit group prime (= RFC 3526 group 15), big-endian hex.
N_HEX: Final[str] = (
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
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)
#: Generator, hex.
G_HEX: Final[str] = "05"

N: Final[int] = int(N_HEX, 16)
G: Final[int] = int(G_HEX, 16)
#: Width of A, B and the stored verifier on the wire: 384 bytes.
N_BYTES: Final[int] = (N.bit_length() + 7) // 8

#: ``srp`` hash selector (SHA-512: M1, HAMK and K are 64 bytes).
HASH_ALG: Final[int] = srp.SHA512
HASH_LEN: Final[int] = 64
#: SRP identity I, fixed for every device (``session.srp.username`` in the profile).
USERNAME: Final[str] = "device-sim"
#: Salt length generated for new verifiers.
SALT_LEN: Final[int] = 16


#: ``srp``'s switches are process-wide, and the ESP personality's Security 2 flips the padding one
#: around its own calls (``doors/esp/security.py``). Every use of ``srp`` holds this lock, so a
#: flip on the event loop and an SRP computation in a worker thread (a fleet's handshakes and
#: identities) never overlap. Reentrant: a holder may call another holder.
SRP_LOCK: Final = threading.RLock()


def is_portable_salt(salt: bytes) -> bool:
    """True when both ``srp`` backends hash ``salt`` identically (1-255 bytes, first byte != 0)."""
    return 1 <= len(salt) <= 255 and salt[0] != 0


def _flipped_switches() -> list[str]:
    flipped = []
    for name in ("srp._ctsrp", "srp._pysrp"):
        backend = sys.modules.get(name)
        if backend is None:
            continue
        if getattr(backend, "_rfc5054_compat", False):
            flipped.append(f"{name}.rfc5054_enable()")
        if getattr(backend, "_no_username_in_x", False):
            flipped.append(f"{name}.no_username_in_x()")
    return flipped


def srp_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``srp.User``, ``srp.Verifier``, ``srp.create_salted_verification_key``.

    Raises:
        DeviceSimError: (``INTERNAL_ERROR``) something in this process flipped one of ``srp``'s
            global switches, so this process would no longer interoperate with other clients.
    """
    flipped = _flipped_switches()
    if flipped:
        raise DeviceSimError(
            "srp global switch changed in this process ("
            + ", ".join(flipped)
            + "); device-sim requires the library-default SRP encoding",
            code=Code.INTERNAL_ERROR,
        )
    return {
        "hash_alg": HASH_ALG,
        "ng_type": srp.NG_CUSTOM,
        "n_hex": N_HEX.encode("ascii"),
        "g_hex": G_HEX.encode("ascii"),
    }
