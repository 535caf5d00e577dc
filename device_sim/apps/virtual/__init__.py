"""Virtual BLE adapters (private system D-Bus + BlueZoo) for machines without Bluetooth."""

from .harness import (
    ProcInfo,
    VirtualBle,
    VirtualBleState,
    default_addresses,
    find_bluezoo,
    is_running,
    terminate,
    use_bus,
)

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
