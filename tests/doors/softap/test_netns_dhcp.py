"""The simulated SoftAP link: veth between namespaces, dnsmasq on the device, udhcpc on the phone.

No sleeps as synchronisation: dnsmasq is ready when it logs its DHCP range, udhcpc returns once
it holds the lease, and every wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from device_sim.apps.virtual.netns import NETNS_ETC, VethLink, netns_unavailable_reason, run
from device_sim.client.dhcp import decode_option_text, parse_lease_env, take_lease
from device_sim.codes import Code
from device_sim.doors.softap.dnsmasq import Dnsmasq, DnsmasqConfig
from device_sim.errors import TransportError

API = "http://192.168.4.1/captive-portal/api"
WAIT = 10.0


def _unavailable() -> str | None:
    missing = [tool for tool in ("dnsmasq", "udhcpc") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)} (apt install dnsmasq-base udhcpc)"
    return netns_unavailable_reason()


REASON = _unavailable()
needs_netns = pytest.mark.requires(REASON)

RESOLVE = "import socket, sys; print(*(socket.gethostbyname(n) for n in sys.argv[1:]))"


def config(link: VethLink, state_dir: Path) -> DnsmasqConfig:
    return DnsmasqConfig(
        interface=link.device_if,
        address=link.device_address,
        dhcp_start="192.168.4.10",
        dhcp_end="192.168.4.50",
        lease_seconds=120,
        captive_portal_api=API,
        state_dir=state_dir,
    )


async def namespaces() -> set[str]:
    return {
        line.split()[0]
        for line in (await run(["ip", "netns", "list"])).splitlines()
        if line.strip()
    }


def test_parse_lease_env_decodes_option_114() -> None:
    text = (
        "interface=wlan0\nip=192.168.4.23\nmask=24\nsubnet=255.255.255.0\n"
        "router=192.168.4.1 192.168.4.2\ndns=192.168.4.1 9.9.9.9\nserverid=192.168.4.1\n"
        f"lease=120\nopt114={API.encode().hex()}\n"
    )
    lease = parse_lease_env(text)
    assert lease.ip == "192.168.4.23" and lease.prefix_len == 24
    assert lease.router == "192.168.4.1" and lease.dns == ("192.168.4.1", "9.9.9.9")
    assert lease.captive_portal_api == API
    assert lease.lease_seconds == 120 and lease.server == "192.168.4.1"


def test_parse_lease_env_without_extras() -> None:
    lease = parse_lease_env("ip=10.0.0.5\nsubnet=255.255.0.0\nrouter=\ndns=\nopt114=\nlease=\n")
    assert lease.prefix_len == 16 and lease.router is None and lease.dns == ()
    assert lease.captive_portal_api is None and lease.lease_seconds is None
    assert lease.server is None
    with pytest.raises(ValueError):
        parse_lease_env("mask=24\n")


def test_decode_option_text() -> None:
    assert decode_option_text("") is None
    assert decode_option_text("68690a") == "hi\n"
    assert decode_option_text("https://x/api") == "https://x/api"  # already text


@needs_netns
async def test_phone_gets_lease_with_portal_api_and_catch_all_dns(tmp_path: Path) -> None:
    async with VethLink() as link:
        assert {link.device_ns, link.phone_ns} <= await namespaces()
        argv_prefix = link.exec_argv(link.device_ns, [])
        async with Dnsmasq(
            config(link, tmp_path / "dnsmasq"), argv_prefix=argv_prefix, ready_timeout=WAIT
        ) as dnsmasq:
            assert dnsmasq.running
            lease = await take_lease(link.phone_if, netns=link.phone_ns, timeout=WAIT)

            last_octet = int(lease.ip.rsplit(".", 1)[1])
            assert lease.ip.startswith("192.168.4.") and 10 <= last_octet <= 50
            assert lease.prefix_len == 24
            assert lease.router == link.device_address
            assert lease.dns == (link.device_address,)
            assert lease.server == link.device_address
            assert lease.captive_portal_api == API
            assert lease.lease_seconds == 120

            shown = json.loads(
                await run(["ip", "-n", link.phone_ns, "-j", "addr", "show", "dev", link.phone_if])
            )[0]
            assert {a["local"] for a in shown["addr_info"] if a["family"] == "inet"} == {lease.ip}
            granted = [entry for entry in dnsmasq.leases() if entry.ip == lease.ip]
            assert [entry.mac for entry in granted] == [shown["address"]]

            link.write_resolv_conf(link.phone_ns, link.device_address)
            names = ["connectivitycheck.gstatic.com", "anything.example"]
            out = await run(
                link.exec_argv(link.phone_ns, [sys.executable, "-c", RESOLVE, *names]), timeout=WAIT
            )
            assert out.split() == [link.device_address] * len(names)
        assert not dnsmasq.running
    assert not {link.device_ns, link.phone_ns} & await namespaces()
    assert not (NETNS_ETC / link.phone_ns).exists()


@needs_netns
async def test_dnsmasq_failures_name_the_cause(tmp_path: Path) -> None:
    async with VethLink() as link:
        argv_prefix = link.exec_argv(link.device_ns, [])
        cfg = config(link, tmp_path / "first")
        async with Dnsmasq(cfg, argv_prefix=argv_prefix, ready_timeout=WAIT):
            second = Dnsmasq(
                config(link, tmp_path / "second"), argv_prefix=argv_prefix, ready_timeout=WAIT
            )
            with pytest.raises(TransportError) as busy:
                await second.start()
            assert "Address already in use" in str(busy.value)
            assert busy.value.code is Code.SOFTAP_UNAVAILABLE
            await second.stop()

        ghost = DnsmasqConfig(
            interface="nosuch0",
            address="192.168.4.1",
            dhcp_start="192.168.4.10",
            dhcp_end="192.168.4.50",
            captive_portal_api=API,
            state_dir=tmp_path / "ghost",
        )
        with pytest.raises(TransportError, match="unknown interface nosuch0"):
            await Dnsmasq(ghost, argv_prefix=argv_prefix, ready_timeout=WAIT).start()

        missing = Dnsmasq(cfg, argv_prefix=argv_prefix, binary="no-such-dnsmasq")
        with pytest.raises(TransportError, match="no-such-dnsmasq"):
            await missing.start()


@needs_netns
async def test_no_server_no_lease(tmp_path: Path) -> None:
    async with VethLink() as link:
        with pytest.raises(TransportError) as info:
            await take_lease(link.phone_if, netns=link.phone_ns, timeout=1.5)
        assert info.value.code is Code.NO_DHCP_LEASE
        assert link.phone_if in str(info.value)
        with pytest.raises(TransportError, match="nosuch0"):
            await take_lease("nosuch0", netns=link.phone_ns, timeout=WAIT)


@needs_netns
async def test_failed_link_start_cleans_up() -> None:
    link = VethLink()
    link.device_if = "x" * 16  # longer than IFNAMSIZ: the veth step fails after the namespaces
    with pytest.raises(TransportError, match="ip link add"):
        await link.start()
    assert not {link.device_ns, link.phone_ns} & await namespaces()
    await link.stop()
