"""Each backend's own arguments, typed (bleak's ``args`` style): what the daemon's options
turn into for the backend it chose, and what :func:`device_sim.network.create_backend` takes.

Defined apart from the backends so that choosing one never imports the other (the
NetworkManager backend pulls in D-Bus; the simulated one aiohttp and cryptography).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scenario import Scenario

__all__ = [
    "DEFAULT_CAPTIVE_API_URL",
    "DEFAULT_DNSMASQ_SHARED_DIR",
    "BackendArgs",
    "NetworkManagerArgs",
    "SimulatedArgs",
]

DEFAULT_DNSMASQ_SHARED_DIR = Path("/etc/NetworkManager/dnsmasq-shared.d")
DEFAULT_CAPTIVE_API_URL = "http://{address}/captive-portal/api"


@dataclass(frozen=True)
class SimulatedArgs:
    """The simulated world's arguments."""

    scenario: Scenario | str | os.PathLike[str] = "typical-home"  # a name, a file or a model
    zero_delay: bool = False  # no delays at all (benchmarks)
    time_scale: float = 1.0  # multiplies every delay
    check_timeout: float = 5.0  # one connectivity check, at most (s)
    seed: int | None = None  # the world's draws; None: the scenario's seed


@dataclass(frozen=True)
class NetworkManagerArgs:
    """The NetworkManager backend's arguments (D-Bus)."""

    interface: str | None = None  # the Wi-Fi device; None: the first one NetworkManager manages
    scan_timeout: float = 10.0  # one scan, at most (s)
    cloud_host: str = "device-sim.example"  # the TLS check's host
    cloud_port: int = 443
    cloud_ca: Path | None = None  # the TLS check's trust anchor (None: the system's)
    dnsmasq_shared_dir: Path | None = DEFAULT_DNSMASQ_SHARED_DIR  # the AP's captive-portal file
    captive_api_url: str = DEFAULT_CAPTIVE_API_URL  # DHCP option 114 ({address}: the AP's)
    bus_address: str | None = None  # the system bus; None: the default
    cert_dir: Path | None = None  # enterprise profiles' certificate files (0600)


BackendArgs = SimulatedArgs | NetworkManagerArgs
