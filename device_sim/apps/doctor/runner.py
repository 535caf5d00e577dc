"""Running the doctor: every check in order, each bounded in time and never raising; the report.

:func:`run_checks` takes a loaded configuration (None: a Raspberry Pi install's defaults);
:func:`diagnose` loads one first. :func:`format_results` and :func:`exit_code` report them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from ...codes import Code
from ...config import DEFAULT_CONFIG_PATH, DaemonOptions, load_config
from ...errors import ConfigError
from ...network.base import BackendKind
from ...network.options import NetworkOptions
from ..service import this_binary
from .base import Check, CheckResult, Context, Failed
from .checks_bus import (
    check_ap_capability,
    check_bluez,
    check_bumble,
    check_dbus,
    check_dbus_permissions,
    check_networkmanager,
)
from .checks_host import (
    REGDOM_FIX,
    check_config,
    check_regulatory_country,
    check_service,
    check_state_dir,
)

__all__ = [
    "CHECKS",
    "CHECK_TIMEOUT",
    "PREFLIGHT",
    "diagnose",
    "exit_code",
    "format_results",
    "preflight",
    "run_checks",
]

CHECK_TIMEOUT = 5.0

CHECKS: tuple[tuple[str, Check, str, Code], ...] = (
    ("dbus", check_dbus, "sudo systemctl start dbus", Code.SYSTEM_BUS_UNAVAILABLE),
    ("bluez", check_bluez, "sudo systemctl restart bluetooth", Code.BLUETOOTH_UNAVAILABLE),
    ("bumble", check_bumble, "pip install 'device-sim[bumble]'", Code.BLE_STACK_UNAVAILABLE),
    (
        "networkmanager",
        check_networkmanager,
        "sudo systemctl restart NetworkManager",
        Code.WIFI_UNAVAILABLE,
    ),
    (
        "ap_capability",
        check_ap_capability,
        "sudo systemctl restart NetworkManager",
        Code.AP_MODE_UNSUPPORTED,
    ),
    ("regulatory_country", check_regulatory_country, REGDOM_FIX, Code.WIFI_COUNTRY_NOT_SET),
    (
        "dbus_permissions",
        check_dbus_permissions,
        "run device-sim as root",
        Code.NETWORK_PERMISSION_DENIED,
    ),
    (
        "state_dir",
        check_state_dir,
        "sudo install -d -m 700 /var/lib/device-sim",
        Code.STATE_DIR_UNUSABLE,
    ),
    ("config", check_config, "correct the config file", Code.CONFIG_INVALID),
    (
        "service",
        check_service,
        f"sudo {this_binary()} service install",
        Code.SERVICE_NOT_INSTALLED,
    ),
)
"""(name, check, the fix when it fails unexpectedly, the finding's code when the check does
not name a more specific one), in the order they run."""


async def _guarded(
    name: str, check: Check, fallback_fix: str, code: Code, ctx: Context, timeout: float
) -> CheckResult:
    try:
        async with asyncio.timeout(timeout):
            return CheckResult(name, True, await check(ctx))
    except Failed as exc:
        return CheckResult(name, False, exc.detail, exc.fix, exc.code or code)
    except TimeoutError:
        return CheckResult(name, False, f"no answer within {timeout:g} s", fallback_fix, code)
    except Exception as exc:
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}", fallback_fix, code)


def _pi_defaults() -> DaemonOptions:
    return DaemonOptions(network=NetworkOptions(backend=BackendKind.NETWORK_MANAGER))


async def run_checks(
    config: DaemonOptions | None,
    *,
    bus_address: str | None = None,
    config_error: ConfigError | None = None,
    timeout: float = CHECK_TIMEOUT,
    root: Path = Path("/"),
    only: Collection[str] | None = None,
) -> list[CheckResult]:
    """Run every check in :data:`CHECKS` order (``only``: those named); never raises (but is
    cancellable).

    ``config`` None: a Raspberry Pi install's defaults. ``config_error``: why the config file
    did not load (the ``config`` check reports it; the others use the defaults).
    """
    ctx = Context(
        config or _pi_defaults(),
        config_error,
        bus_address,
        defaults=config is None and config_error is None,
        root=root,
    )
    try:
        return [
            await _guarded(name, check, fix, code, ctx, timeout)
            for name, check, fix, code in CHECKS
            if only is None or name in only
        ]
    finally:
        if ctx.bus is not None:
            with contextlib.suppress(Exception):
                ctx.bus.disconnect()
                async with asyncio.timeout(timeout):
                    await ctx.bus.wait_for_disconnect()


PREFLIGHT = ("dbus", "bluez", "bumble", "networkmanager", "ap_capability", "regulatory_country",
             "dbus_permissions")  # fmt: skip
"""The checks the daemon runs as it starts: not the state directory (it opens the store
itself), the config (it loaded it) or the service (an install's, not a run's)."""
PREFLIGHT_TIMEOUT = 3.0


async def preflight(config: DaemonOptions) -> list[dict[str, Any]]:
    """The daemon's preflight: :data:`PREFLIGHT` for this configuration (none that it does not
    need: a SoftAP-only device on the simulated world needs no system bus), each bounded by
    :data:`PREFLIGHT_TIMEOUT`; every result as ``doctor --json`` gives it. ``device-sim run``
    runs it for a device on NetworkManager."""
    only = set(PREFLIGHT)
    needs_bus = (
        config.doors.policy != "softap-only"
        or config.network.backend is BackendKind.NETWORK_MANAGER
    )
    if not needs_bus:
        only -= {"dbus", "bluez"}
    results = await run_checks(config, timeout=PREFLIGHT_TIMEOUT, only=only)
    return [r.to_json() for r in results]


async def diagnose(
    config_path: Path | None, *, bus_address: str | None = None, timeout: float = CHECK_TIMEOUT
) -> list[CheckResult]:
    """Load ``config_path`` (None: /etc/device-sim/device-sim.toml if it exists) and check."""
    if config_path is None and DEFAULT_CONFIG_PATH.is_file():
        config_path = DEFAULT_CONFIG_PATH
    config: DaemonOptions | None = None
    error: ConfigError | None = None
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            error = exc
    return await run_checks(config, bus_address=bus_address, config_error=error, timeout=timeout)


def format_results(results: Iterable[CheckResult]) -> str:
    """One line per check: PASS/FAIL, name, detail and, on failure, the fix."""
    lines = []
    for r in results:
        found = f" [{int(r.code)} {r.code.name}]" if r.code is not None else ""
        line = f"{'PASS' if r.ok else 'FAIL'}  {r.name:<18} {r.detail}{found}"
        lines.append(line if r.ok or not r.fix else f"{line}  -> fix: {r.fix}")
    return "\n".join(lines)


def exit_code(results: Iterable[CheckResult]) -> int:
    """0 when every check passed, 1 otherwise."""
    return 0 if all(r.ok for r in results) else 1
