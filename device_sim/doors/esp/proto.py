"""The protobuf messages of ESP-IDF unified provisioning, as a small codec of our own.

Protocomm and wifi_provisioning exchange proto3 messages. Only a handful of shapes occur, so
rather than generated classes this module declares each message as a table ``name -> (field
number, kind, sub-table)`` and encodes/decodes plain dicts with the protobuf wire format
(varints, length-delimited fields). Proto3 rules apply: a scalar equal to its default is not
sent; a sub-message that is set is sent even when empty (a oneof member says which it is).
Unknown fields are skipped, as protobuf does. Pure code, no I/O: every message can be checked
byte by byte.

Field numbers are the protocol's facts (``constants.proto``, ``session.proto``, ``sec0/1/2.proto``,
``wifi_config.proto``, ``wifi_scan.proto``, ``wifi_ctrl.proto``, ``wifi_constants.proto``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Kinds: "u" unsigned varint (uint32, enum, bool), "i" int32 (negative as 10-byte varint),
# "b" bytes, "s" string, "m" sub-message, "r" repeated sub-message.
Schema = Mapping[str, tuple[int, str, "Schema | None"]]


class DecodeError(ValueError):
    """The bytes are not a well-formed message of the expected shape."""


# --- constants -------------------------------------------------------------------------------

STATUS = {
    "Success": 0,
    "InvalidSecScheme": 1,
    "InvalidProto": 2,
    "TooManySessions": 3,
    "InvalidArgument": 4,
    "InternalError": 5,
    "CryptoError": 6,
    "InvalidSession": 7,
}
STA_CONNECTED, STA_CONNECTING, STA_DISCONNECTED, STA_FAILED = 0, 1, 2, 3
FAIL_AUTH_ERROR, FAIL_NETWORK_NOT_FOUND = 0, 1
AUTH_MODES = {  # WifiAuthMode
    "open": 0,
    "wep": 1,
    "wpa-psk": 2,
    "wpa2-psk": 3,
    "wpa-wpa2-psk": 4,
    "enterprise": 5,
    "wpa3-sae": 6,
    "wpa2-wpa3": 7,
}

# --- session (prov-session) ---------------------------------------------------------------------

_EMPTY: Schema = {}
_STATUS_ONLY: Schema = {"status": (1, "u", None)}
SEC0: Schema = {"msg": (1, "u", None), "sc": (20, "m", _EMPTY), "sr": (21, "m", _STATUS_ONLY)}
SEC1: Schema = {
    "msg": (1, "u", None),
    "sc0": (20, "m", {"client_pubkey": (1, "b", None)}),
    "sr0": (
        21,
        "m",
        {
            "status": (1, "u", None),
            "device_pubkey": (2, "b", None),
            "device_random": (3, "b", None),
        },
    ),
    "sc1": (22, "m", {"client_verify_data": (2, "b", None)}),
    "sr1": (23, "m", {"status": (1, "u", None), "device_verify_data": (3, "b", None)}),
}
SEC2: Schema = {
    "msg": (1, "u", None),
    "sc0": (20, "m", {"client_username": (1, "b", None), "client_pubkey": (2, "b", None)}),
    "sr0": (
        21,
        "m",
        {"status": (1, "u", None), "device_pubkey": (2, "b", None), "device_salt": (3, "b", None)},
    ),
    "sc1": (22, "m", {"client_proof": (1, "b", None)}),
    "sr1": (
        23,
        "m",
        {"status": (1, "u", None), "device_proof": (2, "b", None), "device_nonce": (3, "b", None)},
    ),
}
SESSION: Schema = {
    "sec_ver": (2, "u", None),
    "sec0": (10, "m", SEC0),
    "sec1": (11, "m", SEC1),
    "sec2": (12, "m", SEC2),
}
# msg values of Sec0/1/2 payloads: command 0, response 0, command 1, response 1
CMD0, RESP0, CMD1, RESP1 = 0, 1, 2, 3

# --- prov-config -------------------------------------------------------------------------------

CONNECTED_STATE: Schema = {
    "ip4_addr": (1, "s", None),
    "auth_mode": (2, "u", None),
    "ssid": (3, "b", None),
    "bssid": (4, "b", None),
    "channel": (5, "i", None),
}
CONFIG: Schema = {
    "msg": (1, "u", None),
    "cmd_get_status": (10, "m", _EMPTY),
    "resp_get_status": (
        11,
        "m",
        {
            "status": (1, "u", None),
            "sta_state": (2, "u", None),
            "fail_reason": (10, "u", None),
            "connected": (11, "m", CONNECTED_STATE),
            "attempt_failed": (12, "m", {"attempts_remaining": (1, "u", None)}),
        },
    ),
    "cmd_set_config": (
        12,
        "m",
        {
            "ssid": (1, "b", None),
            "passphrase": (2, "b", None),
            "bssid": (3, "b", None),
            "channel": (4, "i", None),
        },
    ),
    "resp_set_config": (13, "m", _STATUS_ONLY),
    "cmd_apply_config": (14, "m", _EMPTY),
    "resp_apply_config": (15, "m", _STATUS_ONLY),
}
(
    CMD_GET_STATUS,
    RESP_GET_STATUS,
    CMD_SET_CONFIG,
    RESP_SET_CONFIG,
    CMD_APPLY_CONFIG,
    RESP_APPLY_CONFIG,
) = range(6)

# --- prov-scan ---------------------------------------------------------------------------------

SCAN_RESULT: Schema = {
    "ssid": (1, "b", None),
    "channel": (2, "u", None),
    "rssi": (3, "i", None),
    "bssid": (4, "b", None),
    "auth": (5, "u", None),
}
SCAN: Schema = {
    "msg": (1, "u", None),
    "status": (2, "u", None),
    "cmd_scan_start": (
        10,
        "m",
        {
            "blocking": (1, "u", None),
            "passive": (2, "u", None),
            "group_channels": (3, "u", None),
            "period_ms": (4, "u", None),
        },
    ),
    "resp_scan_start": (11, "m", _EMPTY),
    "cmd_scan_status": (12, "m", _EMPTY),
    "resp_scan_status": (
        13,
        "m",
        {"scan_finished": (1, "u", None), "result_count": (2, "u", None)},
    ),
    "cmd_scan_result": (14, "m", {"start_index": (1, "u", None), "count": (2, "u", None)}),
    "resp_scan_result": (15, "m", {"entries": (1, "r", SCAN_RESULT)}),
}
(
    CMD_SCAN_START,
    RESP_SCAN_START,
    CMD_SCAN_STATUS,
    RESP_SCAN_STATUS,
    CMD_SCAN_RESULT,
    RESP_SCAN_RESULT,
) = range(6)

# --- prov-ctrl ---------------------------------------------------------------------------------

CTRL: Schema = {
    "msg": (1, "u", None),
    "status": (2, "u", None),
    "cmd_ctrl_reset": (11, "m", _EMPTY),
    "resp_ctrl_reset": (12, "m", _EMPTY),
    "cmd_ctrl_reprov": (13, "m", _EMPTY),
    "resp_ctrl_reprov": (14, "m", _EMPTY),
}
CMD_CTRL_RESET, RESP_CTRL_RESET, CMD_CTRL_REPROV, RESP_CTRL_REPROV = 1, 2, 3, 4

# --- the codec ---------------------------------------------------------------------------------

_MAX_DEPTH = 8


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(schema: Schema, message: Mapping[str, Any]) -> bytes:
    """``message`` (a dict of field name -> value) as protobuf bytes, in field-number order.

    Raises KeyError for a field the schema lacks, ValueError for a value out of range."""
    out = bytearray()
    for name, value in sorted(message.items(), key=lambda item: schema[item[0]][0]):
        number, kind, sub = schema[name]
        if value is None:
            continue
        if kind in ("u", "i"):
            number_value = int(value)
            if number_value == 0:
                continue
            if kind == "u" and number_value < 0:
                raise ValueError(f"{name}: unsigned, not {number_value}")
            if kind == "i":
                if not -(2**31) <= number_value < 2**31:
                    raise ValueError(f"{name}: int32, not {number_value}")
                number_value &= 0xFFFFFFFFFFFFFFFF  # negative int32: ten-byte varint
            out += _varint(number << 3) + _varint(number_value)
        elif kind in ("b", "s"):
            data = value.encode("utf-8") if kind == "s" else bytes(value)
            if not data:
                continue
            out += _varint(number << 3 | 2) + _varint(len(data)) + data
        elif kind == "m":
            assert sub is not None
            data = encode(sub, value)
            out += _varint(number << 3 | 2) + _varint(len(data)) + data
        elif kind == "r":
            assert sub is not None
            for item in value:
                data = encode(sub, item)
                out += _varint(number << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


def decode(schema: Schema, data: bytes, _depth: int = 0) -> dict[str, Any]:
    """The fields of ``data`` present by the schema (sub-messages as dicts, repeated as lists);
    absent scalars are left out. Raises DecodeError for malformed input."""
    if _depth > _MAX_DEPTH:
        raise DecodeError("nested too deeply")
    by_number = {number: (name, kind, sub) for name, (number, kind, sub) in schema.items()}
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire == 0:
            value, pos = _read_varint(data, pos)
            raw: Any = value
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise DecodeError("a field runs past the end")
            raw, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            raw, pos = data[pos : pos + 4], pos + 4
        elif wire == 1:
            raw, pos = data[pos : pos + 8], pos + 8
        else:
            raise DecodeError(f"wire type {wire}")
        if pos > len(data):
            raise DecodeError("a field runs past the end")
        if number not in by_number:
            continue  # unknown field: skipped, as protobuf does
        name, kind, sub = by_number[number]
        expected_wire = 0 if kind in ("u", "i") else 2
        if wire != expected_wire:
            raise DecodeError(f"{name}: wire type {wire}")
        if kind == "u":
            out[name] = raw & 0xFFFFFFFF
        elif kind == "i":
            value = raw & 0xFFFFFFFF
            out[name] = value - (1 << 32) if value >= 1 << 31 else value
        elif kind == "b":
            out[name] = bytes(raw)
        elif kind == "s":
            try:
                out[name] = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError(f"{name}: not UTF-8") from None
        elif kind == "m":
            assert sub is not None
            out[name] = decode(sub, bytes(raw), _depth + 1)
        else:
            assert sub is not None
            out.setdefault(name, []).append(decode(sub, bytes(raw), _depth + 1))
    return out


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("a varint runs past the end")
        if shift > 63:
            raise DecodeError("a varint longer than 10 bytes")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
