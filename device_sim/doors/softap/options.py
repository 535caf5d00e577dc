"""The SoftAP door's options (the config file's ``[softap]`` section), apart from the door so
that reading the configuration never loads the HTTP server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...options import IFNAME, HostPort, opt

__all__ = ["CAPTIVE_MODES", "SoftApOptions"]

CAPTIVE_MODES = ("app", "portal")


@dataclass(frozen=True)
class SoftApOptions:
    """Where and how the door serves (the config file's ``[softap]`` section). Port 0 picks a
    free port once and keeps it."""

    listen: HostPort = opt(
        HostPort("127.0.0.1", 8380),
        "the device's address on its AP (port 0: any free port)",
        flag="--softap-listen",
    )
    announce: str | None = opt(
        None,
        "the host phones are told for the AP listener (default: the --softap-listen host; "
        "for 0.0.0.0 or ::, this machine's address on its default route)",
        flag="--softap-announce",
        metavar="HOST",
    )
    lan: HostPort = opt(
        HostPort("127.0.0.1", 8381),
        "where the outcome is served on the home network after a SoftAP join",
        flag="--softap-lan",
    )
    lan_announce: str | None = opt(
        None,
        "the host name phones are told for the LAN listener (e.g. the Pi's mDNS name "
        "raspberrypi.local; default: the --softap-lan host, or for 0.0.0.0 or ::, this "
        "machine's address on its default route)",
        flag="--softap-lan-announce",
        metavar="HOST",
    )
    captive_mode: str = opt(
        "app",
        "app: answer OS probes as online; portal: redirect them to the page",
        flag="--captive-mode",
        choices=CAPTIVE_MODES,
    )
    open: bool = opt(False, "run the AP without WPA2 (bench only; logged loudly)")
    concurrent: bool = opt(
        False,
        "keep the AP up while the device joins, until the phone that started the join has "
        "its outcome (AP and station at once, as an ESP32 in APSTA mode; the simulated radio "
        "can, the NetworkManager backend cannot)",
    )
    dnsmasq: str | None = opt(
        None,
        "run dnsmasq on this interface while the AP is up (DHCP with option 114, every DNS "
        "name -> the device)",
        pattern=IFNAME,
        what="an interface name",
        metavar="IFACE",
    )
    state_dir: Path | None = None  # dnsmasq's files go here (the daemon's state directory)
    shutdown_grace_s: float = 2.0  # in-flight answers delivered before a listener closes

    @property
    def listen_host(self) -> str:
        return self.listen.host

    @property
    def lan_host(self) -> str:
        return self.lan.host
