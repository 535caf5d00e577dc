"""Running the doctor: every check in order, each bounded in time and never raising; the report.

:func:`run_checks` takes a loaded configuration (None: a Raspberry Pi install's defaults);
:func:`diagnose` loads one first. :func:`format_results` and :func:`exit_code` report them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from pathlib import Path

from ...config import DEFAULT_CONFIG_PATH, DaemonOptions, load_config
from ...errors import ConfigError
from ...network.base import BackendKind
from ...network.options import NetworkOptions
from ..service import this_binary
from .base import Check, CheckResult, Context, Failed
from .checks_bus import (
    check_ap_capability,
    check_bluez,
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

__all__ = ["CHECKS", "CHECK_TIMEOUT", "diagnose", "exit_code", "format_results", "run_checks"]

CHECK_TIMEOUT = 5.0

CHECKS: tuple[tuple[str, Check, str], ...] = (
    ("dbus", check_dbus, "sudo systemctl start dbus"),
    ("bluez", check_bluez, "sudo systemctl restart bluetooth"),
    ("networkmanager", check_networkmanager, "sudo systemctl restart NetworkManager"),
    ("ap_capability", check_ap_capability, "sudo systemctl restart NetworkManager"),
    ("regulatory_country", check_regulatory_country, REGDOM_FIX),
    ("dbus_permissions", check_dbus_permissions, "run device-sim as root"),
    ("state_dir", check_state_dir, "sudo install -d -m 700 /var/lib/device-sim"),
    ("config", check_config, "correct the config file"),
    ("service", check_service, f"sudo {this_binary()} service install"),
)
"""(name, check, the fix when it fails unexpectedly), in the order they run."""


async def _guarded(
    name: str, check: Check, fallback_fix: str, ctx: Context, timeout: float
) -> CheckResult:
    try:
        async with asyncio.timeout(timeout):
            return CheckResult(name, True, await check(ctx))
    except Failed as exc:
        return CheckResult(name, False, exc.detail, exc.fix)
    except TimeoutError:
        return CheckResult(name, False, f"no answer within {timeout:g} s", fallback_fix)
    except Exception as exc:
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}", fallback_fix)


def _pi_defaults() -> DaemonOptions:
    return DaemonOptions(network=NetworkOptions(backend=BackendKind.NETWORK_MANAGER))


async def run_checks(
    config: DaemonOptions | None,
    *,
    bus_address: str | None = None,
    config_error: ConfigError | None = None,
    timeout: float = CHECK_TIMEOUT,
    root: Path = Path("/"),
) -> list[CheckResult]:
    """Run every check in :data:`CHECKS` order; never raises (but is cancellable).

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
        return [await _guarded(name, check, fix, ctx, timeout) for name, check, fix in CHECKS]
    finally:
        if ctx.bus is not None:
            with contextlib.suppress(Exception):
                ctx.bus.disconnect()
                async with asyncio.timeout(timeout):
                    await ctx.bus.wait_for_disconnect()


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
        line = f"{'PASS' if r.ok else 'FAIL'}  {r.name:<18} {r.detail}"
        lines.append(line if r.ok or not r.fix else f"{line}  -> fix: {r.fix}")
    return "\n".join(lines)


def exit_code(results: Iterable[CheckResult]) -> int:
    """0 when every check passed, 1 otherwise."""
    return 0 if all(r.ok for r in results) else 1
