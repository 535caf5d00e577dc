"""Setup codes (printed on the device label) and the SRP verifiers the device stores instead.

A setup code is 8 decimal digits, shown as ``1234-5678``. The SRP password is always the
normalised 8 digits, so a user may type the code with or without the dash or spaces.

The device stores only ``(salt, verifier)``. An 8-digit code has ~26.6 bits of entropy, so anyone
holding a verifier can find the code offline in seconds: store it like a secret (the SQLite file
must not be world-readable) even though it is not the code itself.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import srp

from ..codes import Code
from ..errors import DeviceSimError
from .secret import Secret
from .srp_group import N_BYTES, SALT_LEN, SRP_LOCK, USERNAME, N, is_portable_salt, srp_kwargs

SETUP_CODE_DIGITS = 8
_SEPARATORS = re.compile(r"[\s\-]")
_DIGITS = re.compile(r"[0-9]{8}")
# Codes a person might guess first; never generated (a label may still carry one: accepted).
_TRIVIAL = frozenset({"12345678", "87654321"} | {str(d) * SETUP_CODE_DIGITS for d in range(10)})
_MAX_SALT_TRIES = 64


def normalize_setup_code(text: str | Secret) -> str:
    """The 8 ASCII digits of a setup code typed as ``1234-5678``, ``1234 5678`` or ``12345678``.

    Raises:
        ValueError: not exactly 8 digits after removing whitespace and dashes. The message never
            repeats the input (a mistyped code is close to the real one).
    """
    raw = text.reveal() if isinstance(text, Secret) else text
    if not isinstance(raw, str):
        raise TypeError("a setup code is a str or a Secret")
    digits = _SEPARATORS.sub("", raw)
    if not _DIGITS.fullmatch(digits):
        raise ValueError("a setup code is 8 digits (0-9), optionally grouped with a dash or spaces")
    return digits


def format_setup_code(digits: str) -> str:
    """``12345678`` -> ``1234-5678`` (the label form). Raises ValueError like normalize."""
    d = normalize_setup_code(digits)
    return f"{d[:4]}-{d[4:]}"


def generate_setup_code() -> Secret:
    """A fresh random setup code in label form (``1234-5678``), from the ``secrets`` module.

    Trivial codes (one repeated digit, ``12345678``, ``87654321``) are never generated.
    """
    while True:
        digits = f"{secrets.randbelow(10**SETUP_CODE_DIGITS):0{SETUP_CODE_DIGITS}d}"
        if digits not in _TRIVIAL:
            return Secret(format_setup_code(digits))


def make_verifier(code: Secret) -> tuple[bytes, bytes]:
    """A fresh ``(salt, verifier)`` for ``code``: 16-byte salt, verifier left-padded to 384 bytes.

    The salt's first byte is never zero (see :func:`.srp_group.is_portable_salt`).

    Raises:
        TypeError: ``code`` is not a :class:`Secret` (keeps raw codes out of call sites).
        ValueError: the code is not 8 digits.
        DeviceSimError: ``srp``'s global switches were changed (see :mod:`.srp_group`).
    """
    if not isinstance(code, Secret):
        raise TypeError("make_verifier() takes the setup code as a Secret")
    digits = normalize_setup_code(code)
    with SRP_LOCK:
        kwargs = srp_kwargs()
        for _ in range(_MAX_SALT_TRIES):  # ~1/256 of srp's salts are short (leading zero byte)
            salt, verifier = srp.create_salted_verification_key(
                USERNAME, digits, salt_len=SALT_LEN, **kwargs
            )
            if len(salt) == SALT_LEN and is_portable_salt(salt):
                return bytes(salt), bytes(verifier).rjust(N_BYTES, b"\x00")
    raise DeviceSimError("could not draw a 16-byte SRP salt", code=Code.INTERNAL_ERROR)


@dataclass(frozen=True, repr=False)
class SetupCodeVerifier:
    """What the device stores for its setup code. ``repr`` shows only the lengths.

    Raises (on construction):
        ValueError: salt not 1-255 bytes or starting with a zero byte; verifier not 1-384 bytes
            or not in ``[2, N-1]``.
    """

    salt: bytes
    verifier: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.salt, bytes) or not isinstance(self.verifier, bytes):
            raise TypeError("salt and verifier are bytes")
        if not is_portable_salt(self.salt):
            raise ValueError("SRP salt must be 1-255 bytes and must not start with a zero byte")
        if not 1 <= len(self.verifier) <= N_BYTES:
            raise ValueError(f"SRP verifier must be 1-{N_BYTES} bytes")
        if not 1 < int.from_bytes(self.verifier, "big") < N:
            raise ValueError("SRP verifier out of range")

    @classmethod
    def from_setup_code(cls, code: Secret) -> SetupCodeVerifier:
        """A fresh verifier for ``code`` (see :func:`make_verifier`)."""
        return cls(*make_verifier(code))

    def __repr__(self) -> str:
        return (
            f"SetupCodeVerifier(salt=<{len(self.salt)} bytes>, "
            f"verifier=<{len(self.verifier)} bytes>)"
        )
