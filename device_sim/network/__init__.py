"""Network backends: join Wi-Fi and verify the connection, behind one interface.

``create_backend(args)`` builds the backend its typed arguments (:mod:`.args`) are for;
implementations are imported lazily, so choosing the simulated backend never imports D-Bus code
and vice versa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .args import BackendArgs, NetworkManagerArgs, SimulatedArgs
from .base import (
    AccessPoint,
    BackendKind,
    Band,
    JoinResult,
    NetworkBackend,
    Phase,
    PhaseCallback,
    Security,
    validate_credentials,
)
from .scenario import Scenario, list_scenarios, load_scenario, scenarios_dir

if TYPE_CHECKING:
    from .base import SettingsStore
    from .simulated import SimulatedBackend

__all__ = [
    "AccessPoint",
    "BackendArgs",
    "BackendKind",
    "Band",
    "JoinResult",
    "NetworkBackend",
    "NetworkManagerArgs",
    "Phase",
    "PhaseCallback",
    "Scenario",
    "Security",
    "SimulatedArgs",
    "SimulatedBackend",
    "create_backend",
    "list_scenarios",
    "load_scenario",
    "scenarios_dir",
    "validate_credentials",
]


def create_backend(args: BackendArgs, store: SettingsStore | None = None) -> NetworkBackend:
    """The backend ``args`` are for (``store``: where NetworkManager keeps its ledger).

    ``create_backend(SimulatedArgs("typical-home", zero_delay=True))``;
    ``create_backend(NetworkManagerArgs(interface="wlan0"), store)``.
    Raises ConfigError for a bad value (a scenario that is not found, a negative scale).
    """
    if isinstance(args, SimulatedArgs):
        from .simulated import SimulatedBackend

        return SimulatedBackend(
            args.scenario,
            zero_delay=args.zero_delay,
            time_scale=args.time_scale,
            check_timeout=args.check_timeout,
            seed=args.seed,
        )
    from .nm.backend import NetworkManagerBackend  # lazy: D-Bus code only when chosen

    return NetworkManagerBackend(
        store,
        interface=args.interface,
        scan_timeout=args.scan_timeout,
        cloud_host=args.cloud_host,
        cloud_port=args.cloud_port,
        cloud_ca=args.cloud_ca,
        dnsmasq_shared_dir=args.dnsmasq_shared_dir,
        captive_api_url=args.captive_api_url,
        bus_address=args.bus_address,
        cert_dir=args.cert_dir,
    )


def __getattr__(name: str) -> Any:
    if name == "SimulatedBackend":  # lazy: pulls in aiohttp and cryptography
        from .simulated import SimulatedBackend

        return SimulatedBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
