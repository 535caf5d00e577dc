"""Doors: one module per transport (BLE GATT through bless; SoftAP HTTP later)."""

from .base import Door

__all__ = ["Door"]
