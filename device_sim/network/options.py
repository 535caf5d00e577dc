"""The network backend's options (the config file's ``[network]`` section)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..options import IFNAME, opt
from .base import BackendKind


@dataclass(frozen=True)
class NetworkOptions:
    backend: BackendKind = opt(BackendKind.SIMULATED, "network backend", flag="--backend")
    interface: str | None = opt(
        None,
        "networkmanager: the Wi-Fi interface (default: the first one it manages)",
        flag="--interface",
        pattern=IFNAME,
        what="an interface name",
    )
    scenario: str = opt(
        "typical-home",
        "simulated: the world, a scenario name or a YAML path",
        flag="--scenario",
        path_like=True,
    )
    scan_timeout_s: float = opt(
        10.0,
        "how long a Wi-Fi scan may take, in s",
        flag="--scan-timeout",
        low=0,
        above=True,
        high=120,
    )
    zero_delay: bool = opt(False, "simulated: no delays (benchmarks)", flag="--zero-delay")
    time_scale: float = opt(1.0, "simulated: multiply every delay", flag="--time-scale", low=0)
    seed: int | None = opt(
        None,
        "simulated: seed the world's draws (delay ranges, jitter, failure probabilities); "
        "default: the scenario's seed",
        flag="--seed",
        low=0,
    )
    dnsmasq_shared_dir: Path | None = opt(
        None,
        "networkmanager: the directory of its shared-mode dnsmasq's files, where the access "
        "point's captive-portal file goes (default /etc/NetworkManager/dnsmasq-shared.d)",
        flag="--nm-dnsmasq-dir",
    )
