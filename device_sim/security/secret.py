"""A wrapper that keeps secrets (Wi-Fi passphrases, setup codes) out of reprs and logs."""

from __future__ import annotations

import hmac
from typing import NoReturn

REDACTED = "<redacted>"


class Secret:
    """A secret string. ``repr``, ``str`` and f-strings show ``<redacted>``; use :meth:`reveal`.

    Two secrets compare equal when their values are equal, compared in constant time. A secret
    never equals a plain ``str`` (compare ``a.reveal() == b`` deliberately if you must). Secrets are
    not hashable (a hash is derived from the value) and refuse to be pickled.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret value. Call it only where the value is consumed (crypto, the network)."""
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode("utf-8"), other._value.encode("utf-8"))

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


def redact(text: str, *secrets: Secret | str) -> str:
    """Replace every occurrence of each secret's value in ``text`` with ``<redacted>``.

    Longer secrets are replaced first, so a secret containing another is hidden entirely. Empty
    values are ignored.
    """
    values = {s.reveal() if isinstance(s, Secret) else s for s in secrets}
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text
