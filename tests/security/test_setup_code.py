"""Setup codes, SRP verifiers and the Secret wrapper."""

from __future__ import annotations

import hashlib
import pickle
import re

import pytest

from device_sim.security import (
    Secret,
    SetupCodeVerifier,
    format_setup_code,
    generate_setup_code,
    make_verifier,
    normalize_setup_code,
    redact,
)
from device_sim.security.srp_group import N_BYTES, G, N

# --- Secret -------------------------------------------------------------------------------------


def test_secret_is_redacted_everywhere_but_reveal() -> None:
    s = Secret("hunter22")
    assert repr(s) == str(s) == "<redacted>"
    assert f"{s}" == f"{s:>20}" == "<redacted>"
    assert "hunter22" not in repr([s, {"k": s}])
    assert "hunter22" not in f"{s} {s!r}"
    assert s.reveal() == "hunter22"


def test_secret_equality_is_by_value_and_never_with_plain_str() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert Secret("a") != "a"


def test_secret_is_not_hashable_nor_picklable_nor_built_from_non_str() -> None:
    with pytest.raises(TypeError):
        hash(Secret("a"))
    with pytest.raises(TypeError):
        pickle.dumps(Secret("a"))
    with pytest.raises(TypeError):
        Secret(b"a")  # type: ignore[arg-type]


def test_redact_hides_every_secret_longest_first_and_ignores_empty() -> None:
    line = "join ssid=home pass=abc123 code=1234-5678 again abc123"
    out = redact(line, Secret("abc123"), "1234-5678", Secret(""))
    assert out == "join ssid=home pass=<redacted> code=<redacted> again <redacted>"
    assert redact("xx abcd xx", Secret("ab"), Secret("abcd")) == "xx <redacted> xx"
    assert redact("nothing here") == "nothing here"


# --- setup codes --------------------------------------------------------------------------------


def test_generated_codes_have_label_form_and_vary() -> None:
    codes = [generate_setup_code() for _ in range(20)]
    for code in codes:
        assert isinstance(code, Secret)
        assert repr(code) == "<redacted>"
        assert re.fullmatch(r"[0-9]{4}-[0-9]{4}", code.reveal())
        digits = normalize_setup_code(code)
        assert len(set(digits)) > 1 and digits not in ("12345678", "87654321")
    assert len({c.reveal() for c in codes}) > 1


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("1234-5678", "12345678"),
        ("12345678", "12345678"),
        (" 1234 5678 ", "12345678"),
        ("12-34-56-78", "12345678"),
        ("0000\t0001\n", "00000001"),
    ],
)
def test_normalize_accepts_grouped_digits(text: str, digits: str) -> None:
    assert normalize_setup_code(text) == digits
    assert normalize_setup_code(Secret(text)) == digits


@pytest.mark.parametrize(
    "text",
    [
        "1234567",
        "123456789",
        "1234-567a",
        "",
        "----",
        "1234_5678",
        "1234.5678",
        "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",
    ],  # last: full-width digits
)
def test_normalize_rejects_other_text_without_echoing_it(text: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_setup_code(text)
    if text.strip("-"):
        assert text not in str(info.value)


def test_format_setup_code() -> None:
    assert format_setup_code("12345678") == "1234-5678"
    assert format_setup_code("1234 5678") == "1234-5678"
    with pytest.raises(ValueError):
        format_setup_code("123")


# --- verifiers ----------------------------------------------------------------------------------


def _reference_verifier(salt: bytes, digits: str) -> int:
    """v = g^x, x = H(salt | H("device-sim:" | digits)), SHA-512, computed without srp."""
    inner = hashlib.sha512(b"device-sim:" + digits.encode()).digest()
    x = int.from_bytes(hashlib.sha512(salt + inner).digest(), "big")
    return pow(G, x, N)


def test_make_verifier_shape_and_independent_value() -> None:
    code = Secret("1234-5678")
    salt, verifier = make_verifier(code)
    assert len(salt) == 16 and salt[0] != 0
    assert len(verifier) == N_BYTES
    # The SRP password is the normalised digits, whatever form the code was given in.
    assert int.from_bytes(verifier, "big") == _reference_verifier(salt, "12345678")
    salt2, verifier2 = make_verifier(Secret("12345678"))
    assert salt2 != salt and verifier2 != verifier
    assert int.from_bytes(verifier2, "big") == _reference_verifier(salt2, "12345678")


def test_verifier_and_salt_do_not_contain_the_code() -> None:
    code = Secret("2468-1357")
    salt, verifier = make_verifier(code)
    for needle in (b"24681357", b"2468-1357", "24681357".encode("utf-16-be")):
        assert needle not in salt + verifier
    record = SetupCodeVerifier(salt, verifier)
    assert "2468" not in repr(record) and verifier.hex()[:16] not in repr(record)


def test_make_verifier_takes_only_a_secret() -> None:
    with pytest.raises(TypeError):
        make_verifier("1234-5678")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make_verifier(Secret("1234"))


def test_setup_code_verifier_repr_shows_only_lengths() -> None:
    record = SetupCodeVerifier.from_setup_code(Secret("1111-2222"))
    assert repr(record) == "SetupCodeVerifier(salt=<16 bytes>, verifier=<384 bytes>)"
    with pytest.raises(AttributeError):
        record.salt = b"\x01"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("salt", "verifier"),
    [
        (b"\x00" + b"\x01" * 15, b"\x05"),
        (b"", b"\x05"),
        (b"\x01" * 16, b""),
        (b"\x01" * 16, b"\x01"),
        (b"\x01" * 16, N.to_bytes(N_BYTES, "big")),
        (b"\x01" * 16, b"\x05" * (N_BYTES + 1)),
    ],
)
def test_setup_code_verifier_rejects_bad_records(salt: bytes, verifier: bytes) -> None:
    with pytest.raises(ValueError):
        SetupCodeVerifier(salt, verifier)
