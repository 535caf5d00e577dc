"""The Improv Wi-Fi packet codec, byte by byte, against the spec (improv-wifi.com/ble, rev 2.4),
the third-party client's own codec (py-improv-ble-client) and ``gatt_profile.yaml``. No BLE."""

from __future__ import annotations

import pytest
from improv_ble_client import protocol as client_prot

from device_sim.doors.improv.codec import (
    Capability,
    Command,
    ImprovError,
    ImprovState,
    PacketError,
    RpcAssembler,
    build_packet,
    checksum,
    parse_packet,
    service_data,
)
from device_sim.doors.improv.device import CAPABILITIES, valid_hostname
from device_sim.doors.improv.profile import improv_def
from device_sim.profile import load_profile

SSID, PASSWORD = b"MyWirelessAP", b"mysecurepassword"


def _spec_example() -> bytes:
    """The spec's example: ``01 1E 0C {MyWirelessAP} 10 {mysecurepassword} CS``, written out
    by hand, with the checksum (sum of the preceding bytes, low 8 bits) computed here."""
    head = bytes([0x01, 0x1E, 0x0C]) + SSID + bytes([0x10]) + PASSWORD
    return head + bytes([sum(head) & 0xFF])


def _with_checksum(head: bytes) -> bytes:
    return head + bytes([sum(head) & 0xFF])


# --- building and parsing ------------------------------------------------------------------------


def test_spec_example_is_built_byte_for_byte() -> None:
    expected = _spec_example()
    assert len(expected) == 3 + 0x1E
    assert build_packet(Command.WIFI_SETTINGS, [SSID, PASSWORD]) == expected
    assert checksum(expected[:-1]) == expected[-1]


def test_spec_example_matches_the_third_party_client() -> None:
    assert client_prot.WiFiSettingsCmd(SSID, PASSWORD).as_bytes() == _spec_example()


def test_spec_example_parses() -> None:
    packet = parse_packet(_spec_example())
    assert packet.command == Command.WIFI_SETTINGS
    assert packet.strings == (SSID, PASSWORD)


@pytest.mark.parametrize(
    "command, strings",
    [
        (Command.IDENTIFY, []),
        (Command.HOSTNAME, [b"kitchen-sensor"]),
        (Command.HOSTNAME, []),
        (Command.WIFI_SETTINGS, [b"", b""]),
    ],
)
def test_round_trip(command: Command, strings: list[bytes]) -> None:
    packet = parse_packet(build_packet(command, strings))
    assert (packet.command, packet.strings) == (command, tuple(strings))


def test_commands_built_by_the_client_parse() -> None:
    for cmd, strings in [
        (client_prot.IdentifyCmd(), ()),
        (client_prot.DeviceInfoCmd(), ()),
        (client_prot.ScanWifiCmd(), ()),
        (client_prot.HostnameCmd(), ()),
        (client_prot.HostnameCmd(b"kitchen-sensor"), (b"kitchen-sensor",)),
    ]:
        packet = parse_packet(cmd.as_bytes())
        assert (packet.command, packet.strings) == (cmd.cmd_id, strings)


def test_build_refuses_oversized_data() -> None:
    with pytest.raises(ValueError):
        build_packet(Command.HOSTNAME, [b"x" * 256])
    with pytest.raises(ValueError):  # each string fits, the data (2 x 129 bytes) does not
        build_packet(Command.WIFI_SETTINGS, [b"x" * 128, b"y" * 128])
    assert len(build_packet(Command.HOSTNAME, [b"x" * 254])) == 3 + 255


# --- results our device sends, parsed by the client ----------------------------------------------


def test_device_info_result_parses_with_the_client() -> None:
    raw = build_packet(
        Command.DEVICE_INFO, [b"device-sim", b"0.1.0", b"x86_64 (simulated)", b"DS-7B92"]
    )
    res = client_prot.parse_result(raw)
    assert isinstance(res, client_prot.DeviceInfoRes)
    assert (res.firmware_name, res.firmware_version, res.hardware_chip, res.device_name) == (
        b"device-sim",
        b"0.1.0",
        b"x86_64 (simulated)",
        b"DS-7B92",
    )


def test_scan_result_parses_with_the_client() -> None:
    raw = build_packet(
        Command.SCAN_WIFI, [b"DeviceSim-Lab", b"-42", b"WPA2", b"Guest", b"-80", b"NO"]
    )
    res = client_prot.parse_result(raw)
    assert isinstance(res, client_prot.ScanWifiRes)
    assert res.networks == [(b"DeviceSim-Lab", b"-42", b"WPA2"), (b"Guest", b"-80", b"NO")]


def test_empty_scan_result_parses_with_the_client() -> None:
    res = client_prot.parse_result(build_packet(Command.SCAN_WIFI, []))
    assert isinstance(res, client_prot.ScanWifiRes) and res.networks == []


def test_hostname_result_parses_with_the_client() -> None:
    res = client_prot.parse_result(build_packet(Command.HOSTNAME, [b"kitchen-sensor"]))
    assert isinstance(res, client_prot.HostnameRes) and res.hostname == b"kitchen-sensor"


@pytest.mark.parametrize(
    "strings, url", [([b"http://device.local/setup"], b"http://device.local/setup"), ([], None)]
)
def test_wifi_settings_result_parses_with_the_client(
    strings: list[bytes], url: bytes | None
) -> None:
    res = client_prot.parse_result(build_packet(Command.WIFI_SETTINGS, strings))
    assert isinstance(res, client_prot.WiFiSettingsRes) and res.redirect_url == url


# --- malformed packets ---------------------------------------------------------------------------


def _invalid(raw: bytes) -> PacketError:
    with pytest.raises(PacketError) as info:
        parse_packet(raw)
    assert info.value.error is ImprovError.INVALID_RPC_PACKET
    return info.value


def test_bad_checksum() -> None:
    raw = bytearray(_spec_example())
    raw[-1] ^= 0x01
    assert "checksum" in str(_invalid(bytes(raw)))


@pytest.mark.parametrize("length_byte", [0x1D, 0x1F, 0x00, 0xFF])
def test_bad_length_byte(length_byte: int) -> None:
    raw = bytearray(_spec_example())
    raw[1] = length_byte
    raw[-1] = sum(raw[:-1]) & 0xFF  # a valid checksum: only the length is wrong
    assert "length" in str(_invalid(bytes(raw)))


def test_too_short() -> None:
    for raw in (b"", b"\x02", b"\x02\x00"):
        _invalid(raw)


def test_string_running_past_the_data() -> None:
    # data = [05 'a' 'b']: the string announces 5 bytes, 2 follow
    raw = _with_checksum(bytes([Command.HOSTNAME, 3, 5]) + b"ab")
    assert "runs past" in str(_invalid(raw))


def test_string_ending_exactly_at_the_data_is_fine() -> None:
    raw = _with_checksum(bytes([Command.HOSTNAME, 3, 2]) + b"ab")
    assert parse_packet(raw).strings == (b"ab",)


def test_unknown_command_number_is_left_to_the_caller() -> None:
    assert parse_packet(_with_checksum(bytes([0x7F, 0]))).command == 0x7F


# --- reassembly ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_assembler_joins_three_writes() -> None:
    raw = _spec_example()
    asm = RpcAssembler(2.0, clock=FakeClock())
    assert asm.feed(raw[:1]) is None  # not even the length byte yet
    assert asm.feed(raw[1:20]) is None
    assert asm.pending == 20
    assert asm.feed(raw[20:]) == raw
    assert asm.pending == 0


def test_assembler_one_write_is_one_packet() -> None:
    asm = RpcAssembler(2.0, clock=FakeClock())
    raw = build_packet(Command.IDENTIFY)
    assert asm.feed(raw) == raw
    assert asm.feed(raw) == raw


def test_assembler_write_past_the_announced_length_raises_and_drops() -> None:
    raw = _spec_example()
    asm = RpcAssembler(2.0, clock=FakeClock())
    assert asm.feed(raw[:10]) is None
    with pytest.raises(PacketError) as info:
        asm.feed(raw[10:] + b"\x00")
    assert info.value.error is ImprovError.INVALID_RPC_PACKET
    assert asm.pending == 0
    assert asm.feed(raw) == raw  # the next packet starts afresh


def test_assembler_expires_a_partial_packet() -> None:
    clock = FakeClock()
    raw = _spec_example()
    asm = RpcAssembler(2.0, clock=clock)
    assert asm.feed(raw[:10]) is None
    clock.now += 1.999
    assert asm.expire() == 0  # not yet
    assert asm.pending == 10
    clock.now += 0.001
    assert asm.expire() == 10
    assert asm.pending == 0
    assert asm.expire() == 0


def test_assembler_starts_over_after_a_stale_partial() -> None:
    clock = FakeClock()
    raw = _spec_example()
    asm = RpcAssembler(2.0, clock=clock)
    assert asm.feed(raw[:10]) is None
    clock.now += 5
    # the rest of the old packet arrives too late: it is the start of a new (bad) packet, and a
    # complete packet sent after that stale tail is still read once the tail has expired
    assert asm.feed(raw[10:12]) is None
    clock.now += 5
    assert asm.feed(raw) == raw


def test_assembler_timer_starts_with_the_first_write() -> None:
    clock = FakeClock()
    raw = _spec_example()
    asm = RpcAssembler(2.0, clock=clock)
    asm.feed(raw[:5])
    clock.now += 1.5
    asm.feed(raw[5:10])  # a later write does not restart the timer
    clock.now += 0.5
    assert asm.expire() == 10


# --- advertisement and enums ---------------------------------------------------------------------


def test_service_data_layout() -> None:
    data = service_data(ImprovState.AUTHORIZED, CAPABILITIES)
    assert data == bytes([2, 0x1F, 0, 0, 0, 0])
    parsed = client_prot.ImprovServiceData.from_bytes(data)
    assert parsed.state == client_prot.State.AUTHORIZED
    assert int(parsed.capabilities) == 0x1F


def test_enums_match_the_profile() -> None:
    spec = improv_def(load_profile())
    assert {m.name.lower(): m.value for m in ImprovState} == dict(spec.states)
    assert {m.name.lower(): m.value for m in ImprovError} == dict(spec.errors)
    assert {m.name.lower(): m.value for m in Command} == dict(spec.commands)
    assert {str(m.name).lower(): m.value for m in Capability} == dict(spec.capabilities)


def test_profile_matches_the_third_party_client() -> None:
    spec = improv_def(load_profile())
    assert spec.service_uuid == client_prot.SERVICE_UUID
    assert spec.service_data_uuid == client_prot.SERVICE_DATA_UUID
    c = spec.characteristics
    assert (c["state"], c["error"], c["rpc_command"], c["rpc_result"], c["capabilities"]) == (
        client_prot.CHARACTERISTIC_UUID_STATE,
        client_prot.CHARACTERISTIC_UUID_ERROR,
        client_prot.CHARACTERISTIC_UUID_RPC_COMMAND,
        client_prot.CHARACTERISTIC_UUID_RPC_RESULT,
        client_prot.CHARACTERISTIC_UUID_CAPABILITIES,
    )
    for state in ImprovState:
        assert client_prot.State[state.name] == state
    # the client names two errors differently (NO_ERROR, UNKNOWN_ERROR)
    assert [int(e) for e in ImprovError] == [int(e) for e in client_prot.Error]
    # the client (spec rev 2.3) knows every capability bit but DEVICE_NAME (rev 2.4)
    client_caps = {m.name: m.value for m in client_prot.Capabilities if m.name != "ALL"}
    assert client_caps == {m.name: m.value for m in Capability if m is not Capability.DEVICE_NAME}


# --- hostnames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, ok",
    [
        (b"kitchen-sensor", True),
        (b"a", True),
        (b"device-sim-7b92", True),
        (b"kitchen.local", True),
        (b"9lives", True),
        (b"x" * 63, True),
        (b".".join([b"a" * 63] * 4), True),  # 255 bytes
        (b"x" * 64, False),  # a label holds 63 at most
        (b".".join([b"a" * 63] * 4) + b"a", False),  # 256 bytes
        (b"", False),
        (b"bad_host!", False),
        (b"under_score", False),
        (b"-leading", False),
        (b"trailing-", False),
        (b"double..dot", False),
        (b"trailing.", False),
        (b"sp ace", False),
        ("küche".encode(), False),
        (b"\xff\xfe", False),
    ],
)
def test_valid_hostname(name: bytes, ok: bool) -> None:
    assert valid_hostname(name) is ok
