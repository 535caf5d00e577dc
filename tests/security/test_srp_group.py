"""The SRP group constant is recomputed from its defining formula, not trusted."""

from __future__ import annotations

import importlib
import random

import pytest
import srp

from device_sim.codes import Code
from device_sim.errors import DeviceSimError
from device_sim.security import srp_group
from device_sim.security.srp_group import N_BYTES, N_HEX, G, N, is_portable_salt, srp_kwargs

# --- integer-only pi (Machin: pi = 16 atan(1/5) - 4 atan(1/239)) -----------------------------


def _arctan_inverse(x: int, one: int) -> int:
    """atan(1/x) * one, by the alternating Taylor series on fixed-point integers."""
    total = term = one // x
    x2 = x * x
    n, sign = 1, -1
    while term:
        term //= x2
        total += sign * (term // (2 * n + 1))
        n, sign = n + 1, -sign
    return total


def pi_fixed(bits: int) -> int:
    """floor(pi * 2^bits), with 64 guard bits absorbing the series' truncation errors."""
    guard = 64
    one = 1 << (bits + guard)
    return (16 * _arctan_inverse(5, one) - 4 * _arctan_inverse(239, one)) >> guard


def modp_prime(n: int, k: int) -> int:
    """RFC 2412/3526 MODP prime: 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k)."""
    return 2**n - 2 ** (n - 64) - 1 + 2**64 * (pi_fixed(n - 130) + k)


_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % q for q in range(3, int(p**0.5) + 1, 2))]


def is_probable_prime(n: int, rounds: int = 10) -> bool:
    """Miller-Rabin with base 2 and seeded random bases (reproducible)."""
    if n < 2:
        return False
    for p in [2, *_SMALL_PRIMES]:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    rng = random.Random(5054)
    for i in range(rounds):
        a = 2 if i == 0 else rng.randrange(3, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


# --- tests ------------------------------------------------------------------------------------


def test_pi_computation_gives_known_digits() -> None:
    assert pi_fixed(200) * 10**50 >> 200 == 314159265358979323846264338327950288419716939937510


def test_formula_reproduces_srp_packages_own_4096_bit_group() -> None:
    pysrp = importlib.import_module("srp._pysrp")
    n_hex, g_hex = pysrp._ng_const[srp.NG_4096]
    assert modp_prime(4096, 240904) == int(n_hex, 16)
    assert int(g_hex, 16) == 5


def test_constant_is_the_rfc5054_3072_bit_prime() -> None:
    assert modp_prime(3072, 1690314) == N
    assert int(N_HEX, 16) == N
    assert N.bit_length() == 3072
    assert N_BYTES == 384
    assert G == 5


def test_miller_rabin_rejects_composites_and_accepts_primes() -> None:
    assert is_probable_prime(2**127 - 1)
    assert not is_probable_prime(561)  # Carmichael number
    assert not is_probable_prime((2**127 - 1) * (2**89 - 1))
    assert not is_probable_prime(N * (2**127 - 1))


def test_group_prime_is_a_safe_prime() -> None:
    assert is_probable_prime(N)
    assert is_probable_prime((N - 1) // 2)


def test_generator_5_generates_the_whole_group() -> None:
    q = (N - 1) // 2
    # Order of 5 divides 2q; it is neither 1, 2 nor q, so it is 2q.
    assert pow(G, 2, N) != 1
    assert pow(G, q, N) == N - 1


def test_srp_kwargs_are_bytes_so_both_backends_accept_them() -> None:
    kwargs = srp_kwargs()
    assert kwargs["ng_type"] == srp.NG_CUSTOM
    assert kwargs["hash_alg"] == srp.SHA512
    assert kwargs["n_hex"] == N_HEX.encode()
    assert isinstance(kwargs["g_hex"], bytes)
    assert srp_group.USERNAME == "device-sim"


@pytest.mark.parametrize("switch", ["_rfc5054_compat", "_no_username_in_x"])
def test_srp_kwargs_refuse_a_flipped_global_switch(
    monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    monkeypatch.setattr(srp._mod, switch, True)
    with pytest.raises(DeviceSimError) as info:
        srp_kwargs()
    assert info.value.code is Code.INTERNAL_ERROR


@pytest.mark.parametrize(
    ("salt", "ok"),
    [
        (b"\x01" * 16, True),
        (b"\xff", True),
        (b"\x00" + b"\x01" * 15, False),
        (b"", False),
        (b"\x01" * 256, False),
    ],
)
def test_portable_salt(salt: bytes, ok: bool) -> None:
    assert is_portable_salt(salt) is ok
