"""The Wi-Fi device as NetworkManager shows it: finding it, scanning with it, reading its lease.

:func:`scan` asks for a fresh scan and waits (bounded) for the device's ``LastScan`` to change;
when NetworkManager refuses, is too old to report ``LastScan`` or takes too long, it uses the
access points NetworkManager already knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from dbus_fast import Message
from dbus_fast.errors import DBusError

from ...codes import Code
from ...errors import NetworkError, TransportError
from ..base import AccessPoint, Band, JoinResult
from . import mapping
from .client import NMClient, translate
from .defs import (
    AP_IFACE,
    DEVICE_IFACE,
    ERR_NM_UNKNOWN_DEVICE,
    IP4_CONFIG_IFACE,
    MANAGER_IFACE,
    MANAGER_PATH,
    PROPS_IFACE,
    WIRELESS_IFACE,
    DeviceState,
    DeviceType,
)
from .profiles import FATAL

__all__ = ["find_device", "join_result", "scan"]

log = logging.getLogger(__name__)


async def find_device(client: NMClient, interface: str | None) -> tuple[str, str]:
    """(device path, interface name) of ``interface`` (None: the first managed Wi-Fi device).

    Raises TransportError, DBusError.
    """
    found = []
    for path in (await client.call(MANAGER_PATH, MANAGER_IFACE, "GetDevices"))[0]:
        props = await client.get_all(path, DEVICE_IFACE)
        found.append(
            (
                str(path),
                str(props.get("Interface", "")),
                int(props.get("DeviceType", 0)),
                int(props.get("State", 0)),
            )
        )
    for path, iface, kind, state in found:
        if interface is None:
            if kind == DeviceType.WIFI and state != DeviceState.UNMANAGED:
                return path, iface
            continue
        if iface != interface:
            continue
        if kind != DeviceType.WIFI:
            raise TransportError(
                f"{iface} is not a Wi-Fi device (NetworkManager type {kind}); see `nmcli device`",
                code=Code.INTERNAL_ERROR,
            )
        if state != DeviceState.UNMANAGED:
            return path, iface
    if interface is not None:
        raise translate(
            DBusError(ERR_NM_UNKNOWN_DEVICE, interface),
            doing="starting the NetworkManager backend",
            interface=interface,
        )
    raise TransportError(
        "NetworkManager manages no Wi-Fi device; see `nmcli device`", code=Code.INTERNAL_ERROR
    )


async def scan(client: NMClient, device: str, *, timeout: float, version: str) -> list[AccessPoint]:
    """Scan with ``device``; the BSSes, strongest first (``version``: NetworkManager's, for logs).

    Raises NetworkError(INTERNAL_ERROR) when NetworkManager is gone or refuses permission.
    """
    seen: list[int] = []
    changed = asyncio.Event()

    def on_props(msg: Message) -> None:
        if msg.body and msg.body[0] == WIRELESS_IFACE and "LastScan" in msg.body[1]:
            seen.append(int(msg.body[1]["LastScan"].value))
            changed.set()

    try:
        unsubscribe = await client.subscribe(device, PROPS_IFACE, "PropertiesChanged", on_props)
        try:
            await _request_scan(client, device, seen, changed, timeout=timeout, version=version)
        finally:
            await unsubscribe()
        paths = (await client.call(device, WIRELESS_IFACE, "GetAllAccessPoints"))[0]
        aps = []
        for path in paths:
            try:
                props = await client.get_all(path, AP_IFACE)
            except DBusError as exc:
                if exc.type in FATAL:
                    raise
                continue  # the BSS vanished between the list and the read
            if (ap := mapping.access_point(props)) is not None:
                aps.append(ap)
    except (DBusError, OSError, EOFError) as exc:
        raise translate(exc, doing="scanning", code=Code.INTERNAL_ERROR) from None
    aps.sort(key=lambda ap: ap.rssi, reverse=True)
    log.debug("scan: %d BSSes", len(aps))
    return aps


async def _request_scan(
    client: NMClient,
    device: str,
    seen: list[int],
    changed: asyncio.Event,
    *,
    timeout: float,
    version: str,
) -> None:
    """RequestScan, then wait for LastScan to change; fall back to the known list."""
    try:
        before = int(await client.get(device, WIRELESS_IFACE, "LastScan"))
    except DBusError as exc:
        if exc.type in FATAL:
            raise
        before = None  # NetworkManager < 1.12 has no LastScan: nothing to wait for
    try:
        await client.call(device, WIRELESS_IFACE, "RequestScan", "a{sv}", [{}])
    except DBusError as exc:
        if exc.type in FATAL:
            raise
        log.info(
            "scan: NetworkManager refused a new scan (%s: %s); using the access points "
            "it already knows",
            exc.type,
            exc.text,
        )
        return
    if before is None:
        log.info(
            "scan: NetworkManager %s reports no LastScan; using the access points it already knows",
            version,
        )
        return
    try:
        async with asyncio.timeout(timeout):
            while not any(value != before for value in seen):
                changed.clear()
                await changed.wait()
    except TimeoutError:
        log.info(
            "scan: no new results within %g s; using the access points NetworkManager "
            "already knows",
            timeout,
        )


async def join_result(
    client: NMClient, device: str, ssid: bytes, seen: AccessPoint | None
) -> JoinResult:
    """The lease and BSS of the activated ``device``.

    Raises NetworkError(NO_DHCP_LEASE) without an IPv4 address; DBusError.
    """
    ip4 = str(await client.get(device, DEVICE_IFACE, "Ip4Config"))
    props = await client.get_all(ip4, IP4_CONFIG_IFACE) if ip4 != "/" else {}
    ip, gateway, dns = mapping.lease(props)
    if not ip:
        raise NetworkError(
            Code.NO_DHCP_LEASE,
            f"{mapping.ssid_label(ssid)} is connected but gave no IPv4 address",
            raw={"ssid_hex": ssid.hex()},
        )
    bssid, band = (seen.bssid, seen.band) if seen else ("", Band.GHZ_2_4)
    with contextlib.suppress(DBusError):
        ap_path = str(await client.get(device, WIRELESS_IFACE, "ActiveAccessPoint"))
        if (
            ap_path != "/"
            and (ap := mapping.access_point(await client.get_all(ap_path, AP_IFACE))) is not None
        ):
            bssid, band = ap.bssid, ap.band
    return JoinResult(ssid=ssid, bssid=bssid, band=band, ip=ip, gateway=gateway, dns=dns)
