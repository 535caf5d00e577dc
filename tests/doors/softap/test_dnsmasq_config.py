"""DnsmasqConfig: rendering and validation (pure, no root), and Dnsmasq's no-binary failure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from device_sim.codes import Code
from device_sim.doors.softap.dnsmasq import Dnsmasq, DnsmasqConfig
from device_sim.errors import ConfigError, TransportError

API = "http://192.168.4.1/captive-portal/api"


def make(tmp_path: Path, **changes: Any) -> DnsmasqConfig:
    fields: dict[str, Any] = dict(
        interface="ap0",
        address="192.168.4.1",
        dhcp_start="192.168.4.10",
        dhcp_end="192.168.4.50",
        captive_portal_api=API,
        state_dir=tmp_path,
    )
    fields.update(changes)
    return DnsmasqConfig(**fields)


def test_render_serves_only_the_ap_interface(tmp_path: Path) -> None:
    lines = make(tmp_path).render().splitlines()
    for expected in (
        "interface=ap0",
        "bind-interfaces",
        "except-interface=lo",
        "port=53",
        "no-resolv",
        "no-hosts",
        "dhcp-authoritative",
        "no-ping",
    ):
        assert expected in lines


def test_render_answers_every_name_with_the_device(tmp_path: Path) -> None:
    lines = make(tmp_path).render().splitlines()
    assert "address=/#/192.168.4.1" in lines
    assert "dhcp-option=option:router,192.168.4.1" in lines
    assert "dhcp-option=option:dns-server,192.168.4.1" in lines


def test_render_option_114_is_a_quoted_string(tmp_path: Path) -> None:
    lines = make(tmp_path).render().splitlines()
    assert f'dhcp-option=114,"{API}"' in lines


def test_render_range_and_files(tmp_path: Path) -> None:
    cfg = make(
        tmp_path,
        prefix_len=16,
        address="10.7.0.1",
        dhcp_start="10.7.1.1",
        dhcp_end="10.7.1.200",
        lease_seconds=120,
        captive_portal_api="https://10.7.0.1/api",
    )
    lines = cfg.render().splitlines()
    assert "dhcp-range=10.7.1.1,10.7.1.200,255.255.0.0,120" in lines
    assert f"dhcp-leasefile={tmp_path / 'dnsmasq.leases'}" in lines
    assert cfg.conf_path.parent == cfg.pid_path.parent == tmp_path


def test_options_switch_lines(tmp_path: Path) -> None:
    lines = make(tmp_path, ping_check=True, verbose=False, dns_port=5353).render().splitlines()
    assert "no-ping" not in lines and "log-dhcp" not in lines and "log-queries" not in lines
    assert "port=5353" in lines


def test_state_dir_may_be_a_string(tmp_path: Path) -> None:
    assert make(tmp_path, state_dir=str(tmp_path)).state_dir == tmp_path


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        (dict(dhcp_start="192.168.5.10"), "dhcp_start", "outside"),
        (dict(dhcp_end="10.0.0.5"), "dhcp_end", "outside"),
        (dict(dhcp_start="192.168.4.60"), "dhcp_end", "empty"),
        (dict(address="192.168.4.20"), "address", "inside the DHCP range"),
        (dict(address="192.168.4.0"), "address", "network or broadcast"),
        (dict(dhcp_end="192.168.4.255"), "dhcp_end", "network or broadcast"),
        (dict(address="192.168.4.300"), "address", "not an IPv4"),
        (dict(dhcp_start="fe80::1"), "dhcp_start", "not an IPv4"),
        (dict(prefix_len=31), "prefix_len", "8..30"),
        (dict(lease_seconds=60), "lease_seconds", "at least 120"),
        (dict(interface="a-very-long-interface"), "interface", "not an interface name"),
        (dict(interface="ap0\nport=0"), "interface", "not an interface name"),
        (dict(captive_portal_api="/captive-portal/api"), "captive_portal_api", "absolute"),
        (dict(captive_portal_api='http://x/"a'), "captive_portal_api", "quotes"),
        (dict(captive_portal_api="http://x/" + "a" * 250), "captive_portal_api", "255 bytes"),
        (dict(dns_port=0), "dns_port", "1..65535"),
    ],
)
def test_invalid_config_names_the_field(
    tmp_path: Path, changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ValueError) as info:
        make(tmp_path, **changes)
    assert isinstance(info.value, ConfigError)
    assert info.value.where == f"DnsmasqConfig.{field}"
    assert words in str(info.value)


def test_replace_revalidates(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        replace(make(tmp_path), dhcp_end="192.168.4.5")


async def test_missing_binary_is_a_transport_error(tmp_path: Path) -> None:
    server = Dnsmasq(make(tmp_path / "state"), binary="/nonexistent/dnsmasq")
    with pytest.raises(TransportError) as info:
        await server.start()
    assert info.value.code is Code.SOFTAP_UNAVAILABLE
    assert "/nonexistent/dnsmasq" in str(info.value)
    assert not server.running
    await server.stop()
    await server.stop()
    assert server.leases() == []
