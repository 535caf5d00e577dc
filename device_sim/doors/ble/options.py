"""The BLE host's options (the config file's ``[ble]`` section)."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import opt

DEFAULT_NOTIFY_SIZE = 244  # fits an ATT MTU of 247, the common LE Data Length Extension size


@dataclass(frozen=True)
class BleOptions:
    adapter: str = opt(
        "hci0", "the BLE adapter", flag="--adapter", pattern=r"^hci[0-9]{1,3}$", what="hciN"
    )
    personalities: tuple[str, ...] | None = opt(
        None,
        "the personalities to present, e.g. native,improv (default: the profile's)",
        flag="--personality",
        metavar="NAME[,NAME]",
    )
    notify_size: int = opt(
        DEFAULT_NOTIFY_SIZE, "bytes per GATT notification", flag="--notify-size", low=20, high=512
    )
    stack: str = opt(
        "bluez",
        "the BLE stack: bluez (BlueZ over D-Bus, with bless) or bumble (a Python host on a "
        "controller bumble_transport names: no bluetoothd, no D-Bus)",
        flag="--ble-stack",
        choices=("bluez", "bumble"),
    )
    bumble_transport: str | None = opt(
        None,
        "with stack bumble: the controller, as a bumble transport moniker "
        "(android-netsim, tcp-client:HOST:PORT, serial:DEV, usb:N, hci-socket:N, or "
        "local:NAME for an in-process link)",
        flag="--bumble-transport",
        metavar="SPEC",
    )
