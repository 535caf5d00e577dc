"""The core's options: state timeouts (``[timeouts]``) and the cloud (``[cloud]``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..options import opt

ACTIVATION_MODES = ("zero-touch", "claim", "registration")


@dataclass(frozen=True)
class TimeoutOptions:
    scale: float = opt(
        1.0,
        "multiply the profile's state timeouts and the [reconnect] times (tests shorten them)",
        flag="--timeout-scale",
        low=0,
        above=True,
        high=1000,
    )
    idle_s: float | None = opt(
        None,
        "session idle timeout in seconds (default: the profile's)",
        flag="--idle-timeout",
        low=0,
        above=True,
        high=86400,
    )


@dataclass(frozen=True)
class CloudOptions:
    """The cloud: the TLS endpoint the connectivity check verifies after a join
    (networkmanager backend), and activation with it after the checks."""

    host: str | None = opt(
        None,
        "the TLS endpoint the connectivity check verifies (default: the backend's)",
        pattern=r"^[A-Za-z0-9._:-]+$",
        what="a host name or IP address",
    )
    port: int = opt(443, "its port", low=1, high=65535)
    ca: Path | None = opt(None, "a PEM CA bundle for it (default: the system's trust store)")
    activation: str | None = opt(
        None,
        "activate with the cloud after the checks (default: no cloud)",
        flag="--activation",
        choices=ACTIVATION_MODES,
    )
    url: str | None = opt(
        None,
        "the cloud for activation, e.g. https://localhost:8443",
        pattern=r"^https://[^/\s]+(/\S*)?$",
        what="an https:// URL",
        metavar="URL",
    )
    activation_password: str = opt(
        "user",
        "registration: the device user's password comes from the app (user) or the cloud",
        flag="--activation-password",
        choices=("user", "cloud"),
    )


@dataclass(frozen=True)
class ReconnectOptions:
    """The connected life after ``online`` (the config file's ``[reconnect]`` section): how the
    device watches its connection, retries its saved networks and reopens its doors. Every time
    here is multiplied by ``timeouts.scale`` as the state timeouts are."""

    initial_s: float = opt(
        2.0,
        "the first retry of the saved networks after a loss waits about this long; each next "
        "one twice as long, with jitter",
        flag="--reconnect-initial",
        low=0,
        above=True,
        high=3600,
    )
    max_s: float = opt(
        30.0,
        "no retry waits longer than this: the backoff's cap (it retries forever)",
        flag="--reconnect-max",
        low=0,
        above=True,
        high=86400,
    )
    reopen_after_s: float = opt(
        30.0,
        "after this long without a connection (at boot or after a loss) the doors reopen, as the "
        "door policy says",
        flag="--reopen-after",
        low=0,
        high=86400,
    )
    check_interval_s: float = opt(
        30.0,
        "while online, check DNS and the internet this often",
        flag="--check-interval",
        low=0,
        above=True,
        high=86400,
    )
    saved_networks: int = opt(
        5,
        "keep the last this many networks that worked (most recent first)",
        flag="--saved-networks",
        low=1,
        high=32,
    )
