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
