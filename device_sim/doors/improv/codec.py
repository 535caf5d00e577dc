"""The Improv Wi-Fi BLE packet codec (spec revision 2.4, improv-wifi.com/ble): no I/O.

An RPC packet is ``command (u8), data length (u8), data, checksum (u8)`` where the data is a list
of strings, each ``length (u8) + bytes``, and the checksum is the sum of every preceding byte
modulo 256. RPC results use the same layout. A command longer than one ATT write arrives in
several writes: :class:`RpcAssembler` joins them by the announced length.

The numbers mirror ``gatt_profile.yaml``'s ``improv`` section (``tests`` check the drift).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag

MAX_DATA = 255


class ImprovState(IntEnum):
    AUTHORIZATION_REQUIRED = 1
    AUTHORIZED = 2
    PROVISIONING = 3
    PROVISIONED = 4


class ImprovError(IntEnum):
    NONE = 0
    INVALID_RPC_PACKET = 1
    UNKNOWN_RPC_COMMAND = 2
    UNABLE_TO_CONNECT = 3
    NOT_AUTHORIZED = 4
    BAD_HOSTNAME = 5
    UNKNOWN = 0xFF


class Command(IntEnum):
    WIFI_SETTINGS = 1
    IDENTIFY = 2
    DEVICE_INFO = 3
    SCAN_WIFI = 4
    HOSTNAME = 5
    DEVICE_NAME = 6


class Capability(IntFlag):
    IDENTIFY = 1
    DEVICE_INFO = 2
    SCAN_WIFI = 4
    HOSTNAME = 8
    DEVICE_NAME = 16


class PacketError(ValueError):
    """A packet that cannot be parsed; ``error`` is the Improv error to report."""

    def __init__(self, error: ImprovError, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def encode_strings(strings: Sequence[bytes]) -> bytes:
    out = bytearray()
    for s in strings:
        if len(s) > 255:
            raise ValueError(f"an Improv string holds at most 255 bytes, not {len(s)}")
        out += bytes([len(s)]) + s
    return bytes(out)


def build_packet(command: int, strings: Sequence[bytes] = ()) -> bytes:
    """One RPC command or result packet. Raises ValueError if the data exceeds 255 bytes."""
    data = encode_strings(strings)
    if len(data) > MAX_DATA:
        raise ValueError(f"Improv data holds at most {MAX_DATA} bytes, not {len(data)}")
    head = bytes([command, len(data)]) + data
    return head + bytes([checksum(head)])


@dataclass(frozen=True)
class Packet:
    command: int
    strings: tuple[bytes, ...]


def parse_packet(packet: bytes) -> Packet:
    """Parse a complete packet. Raises PacketError(INVALID_RPC_PACKET) for a bad length,
    checksum or string layout. The command number is not checked here (see :class:`Command`)."""
    if len(packet) < 3:
        raise PacketError(ImprovError.INVALID_RPC_PACKET, f"{len(packet)} bytes is too short")
    if packet[1] != len(packet) - 3:
        raise PacketError(
            ImprovError.INVALID_RPC_PACKET,
            f"length byte {packet[1]} but {len(packet) - 3} data bytes",
        )
    if packet[-1] != checksum(packet[:-1]):
        raise PacketError(
            ImprovError.INVALID_RPC_PACKET,
            f"checksum {packet[-1]:#04x}, expected {checksum(packet[:-1]):#04x}",
        )
    data = packet[2:-1]
    strings: list[bytes] = []
    i = 0
    while i < len(data):
        n = data[i]
        if i + 1 + n > len(data):
            raise PacketError(
                ImprovError.INVALID_RPC_PACKET, f"string {len(strings) + 1} runs past the data"
            )
        strings.append(data[i + 1 : i + 1 + n])
        i += 1 + n
    return Packet(packet[0], tuple(strings))


def service_data(state: ImprovState, capabilities: Capability) -> bytes:
    """The 6 bytes advertised under UUID 4677: state, capabilities, 4 reserved zeros."""
    return bytes([state, capabilities, 0, 0, 0, 0])


class RpcAssembler:
    """Joins RPC writes into packets by the length byte of the first write.

    ``feed`` returns a complete packet, or None while more bytes are due; a write that goes past
    the announced length raises PacketError(INVALID_RPC_PACKET) and drops the packet. A partial
    packet older than ``timeout_s`` is abandoned: :meth:`expire` (the door calls it from a timer)
    drops it and says so, and a new write after it starts a new packet.
    """

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._buf = bytearray()
        self._since = 0.0

    @property
    def pending(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()

    def expire(self) -> int:
        """Drop a partial packet older than the timeout; return how many bytes it had (0: none)."""
        if self._buf and self._clock() - self._since >= self.timeout_s:
            stale = len(self._buf)
            self._buf.clear()
            return stale
        return 0

    def feed(self, chunk: bytes) -> bytes | None:
        self.expire()
        if not self._buf:
            self._since = self._clock()
        self._buf += chunk
        if len(self._buf) < 2:
            return None
        total = self._buf[1] + 3
        if len(self._buf) < total:
            return None
        packet, extra = bytes(self._buf[:total]), len(self._buf) - total
        self._buf.clear()
        if extra:
            raise PacketError(
                ImprovError.INVALID_RPC_PACKET, f"{extra} bytes more than the announced length"
            )
        return packet
