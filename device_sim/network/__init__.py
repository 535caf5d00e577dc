"""Network backends: join Wi-Fi and verify the connection, behind one interface.

``create_backend(kind, **options)`` builds a backend by :class:`BackendKind`; implementations are
imported lazily, so choosing the simulated backend never imports D-Bus code and vice versa.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
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
    from .simulated import SimulatedBackend

__all__ = [
    "AccessPoint",
    "BackendKind",
    "Band",
    "JoinResult",
    "NetworkBackend",
    "Phase",
    "PhaseCallback",
    "Scenario",
    "Security",
    "SimulatedBackend",
    "create_backend",
    "list_scenarios",
    "load_scenario",
    "scenarios_dir",
    "validate_credentials",
]


def create_backend(kind: BackendKind | str, **options: Any) -> NetworkBackend:
    """Build the backend ``kind`` with ``options`` (its constructor's arguments).

    ``create_backend("simulated", scenario="typical-home", zero_delay=True)``;
    ``create_backend("networkmanager", store=store, interface="wlan0")``.
    Raises ConfigError for an unknown kind or bad options.
    """
    try:
        kind = BackendKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in BackendKind)
        raise ConfigError(
            "network backend", f"unknown kind {kind!r} (choose from {choices})"
        ) from None
    if kind is BackendKind.SIMULATED:
        from .simulated import SimulatedBackend

        _check_options(kind, SimulatedBackend, options)
        return SimulatedBackend(**options)
    from .nm.backend import NetworkManagerBackend  # lazy: D-Bus code only when chosen

    _check_options(kind, NetworkManagerBackend, options)
    return NetworkManagerBackend(**options)


def _check_options(kind: BackendKind, cls: type, options: dict[str, Any]) -> None:
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise ConfigError(f"network backend {kind.value!r} options", str(exc)) from None


def __getattr__(name: str) -> Any:
    if name == "SimulatedBackend":  # lazy: pulls in aiohttp and cryptography
        from .simulated import SimulatedBackend

        return SimulatedBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
