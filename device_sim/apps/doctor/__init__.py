"""``device-sim doctor``: is this machine ready to run the daemon (a Raspberry Pi, typically)?

:func:`run_checks` runs a fixed list of checks in order, each bounded in time and never raising:
a failure is a :class:`CheckResult` with ``ok=False``, a detail and the command that fixes it.
The D-Bus checks use the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` or ``bus_address``).

Checks a configuration does not need pass as "not needed": NetworkManager, AP mode, the Wi-Fi
country and NetworkManager permissions with ``network.backend = "simulated"``; BlueZ with
``doors.policy = "softap-only"``; AP mode with ``"ble-only"``. Without a configuration the doctor
checks a Raspberry Pi install's defaults (the networkmanager backend, ``hci0``,
``/var/lib/device-sim``). A Wi-Fi country that cannot be read at all (neither ``iw`` nor the
cfg80211 module parameter) fails: the doctor does not pass what it could not verify.

The package: :mod:`.base` (what a check gets and gives), :mod:`.checks_bus` (the checks over the
system D-Bus: dbus, BlueZ, NetworkManager, AP mode, NetworkManager permissions),
:mod:`.checks_host` (the Wi-Fi country, the state directory, the configuration) and
:mod:`.runner` (the checks in order, each bounded; the report).
"""

from __future__ import annotations

from .base import CheckResult
from .checks_bus import NM_PERMISSIONS
from .checks_host import REGDOM_PARAM
from .runner import (
    CHECK_TIMEOUT,
    CHECKS,
    PREFLIGHT,
    diagnose,
    exit_code,
    format_results,
    preflight,
    run_checks,
)

__all__ = [
    "CHECKS",
    "CHECK_TIMEOUT",
    "NM_PERMISSIONS",
    "PREFLIGHT",
    "REGDOM_PARAM",
    "CheckResult",
    "diagnose",
    "exit_code",
    "format_results",
    "preflight",
    "run_checks",
]
