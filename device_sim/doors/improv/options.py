"""The Improv personality's options (the config file's ``[improv]`` section, ``--improv-*``)."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import opt


@dataclass(frozen=True)
class ImprovOptions:
    authorization: str | None = opt(
        None,
        "none or required (a button press) before Wi-Fi settings (default: the profile's)",
        flag="--improv-auth",
        choices=("none", "required"),
    )
    authorization_timeout_s: float | None = opt(
        None,
        "an authorization lapses after this many seconds (default: the profile's)",
        flag="--improv-auth-timeout",
        low=0,
        above=True,
        high=86400,
    )
    redirect_url: str | None = opt(
        None,
        "returned to the Improv client after a successful join (default: the profile's)",
        pattern=r"^https?://[^/\s]+",
        what="an http(s) URL",
        metavar="URL",
    )
    button: str | None = opt(
        None,
        "a GPIO button that authorizes Improv (Raspberry Pi)",
        pattern=r"^[^\s:]+:[0-9]{1,4}$",
        what="CHIP:LINE (gpiochip0:17)",
        metavar="CHIP:LINE",
    )
