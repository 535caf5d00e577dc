"""The SoftAP access point on NetworkManager: a hotspot connection plus a captive dnsmasq file.

:func:`require_ap_mode` checks the Wi-Fi device's ``WirelessCapabilities``; :func:`activate`
starts the hotspot connection (shared IPv4, recorded in the :class:`~.profiles.Ledger` like every
connection device-sim makes). While it is up, :class:`CaptiveConf` keeps a file in
NetworkManager's ``dnsmasq-shared.d`` that makes its dnsmasq answer every DNS name with the AP
address and hand out the captive-portal API URL as DHCP option 114.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from pathlib import Path

from dbus_fast.errors import DBusError

from ...codes import Code
from ...errors import NetworkError
from ..base import AccessPointConfig
from . import mapping, profiles
from .client import NMClient, translate
from .defs import WIRELESS_IFACE, WifiCapabilities

__all__ = [
    "CAPTIVE_CONF_NAME",
    "DEFAULT_CAPTIVE_API_URL",
    "DEFAULT_DNSMASQ_SHARED_DIR",
    "CaptiveConf",
    "activate",
    "require_ap_mode",
]

from ..args import DEFAULT_CAPTIVE_API_URL, DEFAULT_DNSMASQ_SHARED_DIR

log = logging.getLogger(__name__)

CAPTIVE_CONF_NAME = "device-sim-captive.conf"


async def require_ap_mode(client: NMClient, device: str) -> None:
    """Raises NetworkError(SOFTAP_UNAVAILABLE) unless ``device`` can be an access point."""
    try:
        caps = int(await client.get(device, WIRELESS_IFACE, "WirelessCapabilities"))
    except (DBusError, OSError, EOFError) as exc:
        raise translate(
            exc, doing="starting the access point", code=Code.SOFTAP_UNAVAILABLE
        ) from None
    if not caps & WifiCapabilities.AP:
        raise NetworkError(
            Code.SOFTAP_UNAVAILABLE,
            "this Wi-Fi device cannot be an access point",
            raw={"wireless_capabilities": caps},
        )


async def activate(
    client: NMClient,
    ledger: profiles.Ledger,
    config: AccessPointConfig,
    *,
    device: str,
    iface: str,
    timeout: float,
) -> profiles.Profile:
    """Start the hotspot connection for ``config`` on ``device``; returns its (recorded) profile.

    Raises NetworkError(SOFTAP_UNAVAILABLE) when NetworkManager refuses or fails to start it.
    """
    settings = mapping.hotspot_settings(config, interface=iface)
    profile, outcome = await profiles.activate(
        client,
        ledger,
        settings,
        "hotspot",
        config.ssid.encode(),
        lambda state: None,
        device=device,
        iface=iface,
        timeout=timeout,
        doing=f"starting the access point {config.ssid!r}",
        code=Code.SOFTAP_UNAVAILABLE,
    )
    if not outcome.ok:
        await ledger.discard(profile)
        raise NetworkError(
            Code.SOFTAP_UNAVAILABLE,
            f"NetworkManager could not start "
            f"the access point {config.ssid!r} (NetworkManager: "
            f"{mapping.describe(outcome.state, outcome.reason)})",
            raw=mapping.nm_raw(outcome.state, outcome.reason),
        )
    return profile


class CaptiveConf:
    """The dnsmasq-shared file in ``directory`` (None: never written) for the captive portal.

    ``api_url`` is the captive-portal API URL with ``{address}`` where the AP address goes.
    """

    def __init__(self, directory: Path | None, api_url: str) -> None:
        self._dir = Path(directory) if directory is not None else None
        self._api_url = api_url

    def write(self, config: AccessPointConfig) -> Path | None:
        """Write the file for ``config``. Raises NetworkError(SOFTAP_UNAVAILABLE)."""
        try:
            address = str(ipaddress.IPv4Address(config.address))
        except ValueError:
            raise NetworkError(
                Code.SOFTAP_UNAVAILABLE, f"the access point address {config.address!r} is not IPv4"
            ) from None
        if self._dir is None:
            return None
        path = self._dir / CAPTIVE_CONF_NAME
        text = mapping.captive_conf(address, self._api_url.format(address=address))
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise NetworkError(
                Code.SOFTAP_UNAVAILABLE,
                f"cannot write {path}: {exc.strerror or exc}; run device-sim as "
                f"root or set dnsmasq_shared_dir",
                raw={"path": str(path)},
            ) from None
        return path

    def remove(self) -> None:
        """Remove the file (a failure is logged: the access point is down either way)."""
        if self._dir is None:
            return
        path = self._dir / CAPTIVE_CONF_NAME
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove %s: %s", path, exc)
