"""Virtual BLE adapters (private system D-Bus + BlueZoo) for machines without Bluetooth.

The names load :mod:`.harness` (and dbus-fast) on first use, so the command line, which builds
this package's parser for every command, loads no D-Bus library for a command that uses none
(``demo --ble-stack bumble``, ``client --ble-stack bumble``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ProcInfo",
    "VirtualBle",
    "VirtualBleState",
    "default_addresses",
    "find_bluezoo",
    "is_running",
    "terminate",
    "use_bus",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import harness

        return getattr(harness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
