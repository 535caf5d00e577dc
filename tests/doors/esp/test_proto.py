"""The ESP personality's protobuf codec, byte by byte, and against Espressif's generated classes
(esp-rainmaker-cli's *_pb2, unmodified) in both directions."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from device_sim.doors.esp import proto

VECTORS: list[tuple[proto.Schema, dict[str, Any], str]] = [
    # SessionData{sec_ver: SecScheme0, sec0: {msg: S0_Session_Command, sc: {}}}
    (proto.SESSION, {"sec_ver": 0, "sec0": {"msg": 0, "sc": {}}}, "5203a20100"),
    # security 1 response 0 with status 0 (not sent), a 2-byte key and a 1-byte random
    (
        proto.SESSION,
        {
            "sec_ver": 1,
            "sec1": {
                "msg": 1,
                "sr0": {"status": 0, "device_pubkey": b"\xaa\xbb", "device_random": b"\x01"},
            },
        },
        "10015a0c0801aa01071202aabb1a0101",
    ),
    # WiFiConfigPayload{msg: TypeRespGetStatus, resp_get_status{sta_state: ConnectionFailed,
    #                   fail_reason: NetworkNotFound}}
    (
        proto.CONFIG,
        {"msg": 1, "resp_get_status": {"sta_state": 3, "fail_reason": 1}},
        "08015a0410035001",
    ),
    # a scan entry with a negative RSSI: int32 as a ten-byte varint
    (
        proto.SCAN,
        {"msg": 5, "resp_scan_result": {"entries": [{"ssid": b"ab", "rssi": -42}]}},
        "08057a110a0f0a02616218d6ffffffffffffffff01",
    ),
]


@pytest.mark.parametrize(("schema", "message", "wire"), VECTORS)
def test_fixed_vectors(schema: proto.Schema, message: dict[str, Any], wire: str) -> None:
    assert proto.encode(schema, message).hex() == wire
    decoded = proto.decode(schema, bytes.fromhex(wire))
    assert proto.encode(schema, decoded).hex() == wire


@pytest.mark.parametrize(
    "raw", [b"\x0a", b"\x0a\x05ab", b"\x08", b"\x00\x01", b"\x0b", b"\xff" * 11, b"\x5a\x02\x08"]
)
def test_malformed_input_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(proto.DecodeError):
        proto.decode(proto.SESSION, raw)


def test_unknown_fields_are_skipped() -> None:
    assert proto.decode(proto.CONFIG, bytes.fromhex("0801f80101b20100")) == {"msg": 1}


ESPRESSIF = pytest.mark.requires_tools(modules=("rmaker_tools", "google.protobuf"))


@pytest.fixture(scope="module")
def pb2() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its load_module()
        # isort: off
        from rmaker_tools.common.security import security0  # noqa: F401  (loads `proto`)
        import proto as rmaker_proto  # type: ignore[import-not-found]
        # isort: on
    return rmaker_proto


@ESPRESSIF
def test_our_messages_parse_with_espressifs_classes(pb2: Any) -> None:
    status = proto.encode(
        proto.CONFIG,
        {
            "msg": proto.RESP_GET_STATUS,
            "resp_get_status": {
                "sta_state": proto.STA_CONNECTED,
                "connected": {"ip4_addr": "10.20.0.50", "ssid": b"Lab", "channel": 6},
            },
        },
    )
    theirs = pb2.wifi_config_pb2.WiFiConfigPayload()
    theirs.ParseFromString(status)
    got = theirs.resp_get_status
    assert (got.sta_state, got.connected.ip4_addr, got.connected.ssid, got.connected.channel) == (
        0,
        "10.20.0.50",
        b"Lab",
        6,
    )
    scan = proto.encode(
        proto.SCAN,
        {
            "msg": proto.RESP_SCAN_RESULT,
            "resp_scan_result": {
                "entries": [
                    {"ssid": b"A", "channel": 11, "rssi": -70, "bssid": b"\x02" * 6, "auth": 3},
                    {"ssid": b"B", "rssi": -30},
                ]
            },
        },
    )
    theirs = pb2.wifi_scan_pb2.WiFiScanPayload()
    theirs.ParseFromString(scan)
    assert [(e.ssid, e.channel, e.rssi, e.auth) for e in theirs.resp_scan_result.entries] == [
        (b"A", 11, -70, 3),
        (b"B", 0, -30, 0),
    ]


@ESPRESSIF
def test_espressifs_messages_decode_with_ours(pb2: Any) -> None:
    cmd = pb2.wifi_config_pb2.WiFiConfigPayload()
    cmd.msg = pb2.wifi_config_pb2.TypeCmdSetConfig
    cmd.cmd_set_config.ssid = b"Miller \xff Family"  # not UTF-8: SSIDs are bytes
    cmd.cmd_set_config.passphrase = b"p4ss"
    assert proto.decode(proto.CONFIG, cmd.SerializeToString()) == {
        "msg": proto.CMD_SET_CONFIG,
        "cmd_set_config": {"ssid": b"Miller \xff Family", "passphrase": b"p4ss"},
    }
    session = pb2.session_pb2.SessionData()
    session.sec_ver = 2
    session.sec2.msg = 0
    session.sec2.sc0.client_username = b"wifiprov"
    session.sec2.sc0.client_pubkey = b"\x01" * 384
    mine = proto.decode(proto.SESSION, session.SerializeToString())
    assert mine == {
        "sec_ver": 2,
        "sec2": {"sc0": {"client_username": b"wifiprov", "client_pubkey": b"\x01" * 384}},
    }
    assert proto.encode(proto.SESSION, mine) == session.SerializeToString()
