"""The ESP personality's options (the config file's ``[esp]`` section, ``--esp-*``)."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import opt


@dataclass(frozen=True)
class EspOptions:
    sec: int | None = opt(
        None,
        "protocomm security: 0 none, 1 X25519 + proof of possession, 2 SRP6a "
        "(default: the profile's)",
        low=0,
        high=2,
        metavar="0|1|2",
    )
    sec_patch: int | None = opt(
        None,
        "security 2's nonce rule: 0 one fixed nonce, 1 a counter (default: the profile's)",
        low=0,
        high=1,
        metavar="0|1",
    )
