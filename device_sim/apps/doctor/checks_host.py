"""The doctor's checks of the host itself: the Wi-Fi country, the state directory, the config.

None of them needs the system bus; none leaves anything behind.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
import tempfile
from pathlib import Path

from ...codes import Code
from ...errors import ConfigError, StoreError
from ..service import Layout, command_on_path, problems
from .base import Context, Failed, run_tool

__all__ = [
    "REGDOM_FIX",
    "REGDOM_PARAM",
    "check_config",
    "check_regulatory_country",
    "check_state_dir",
]

REGDOM_PARAM = Path("/sys/module/cfg80211/parameters/ieee80211_regdom")
CMDLINE = Path("/proc/cmdline")  # Raspberry Pi OS bookworm persists the country here
MODEL = Path("/proc/device-tree/model")  # "Raspberry Pi 4 Model B Rev 1.5"
REGDOM_FIX = (
    "set the Wi-Fi country: sudo raspi-config nonint do_wifi_country XX "
    "(XX: your ISO 3166 code, e.g. GB)"
)


async def check_regulatory_country(ctx: Context) -> str:
    if not ctx.nm_needed:
        return "not needed: network.backend is simulated"
    tried: list[str] = []
    iw = shutil.which("iw")
    if iw is not None:
        code, out = await run_tool([iw, "reg", "get"])
        if code == 0:
            countries = re.findall(r"^country ([A-Z0-9]{2}):", out, re.MULTILINE)
            chosen = [c for c in countries if c != "00"]
            if chosen:
                return _persisted(f"country {chosen[0]} (iw reg get)")
            raise Failed(
                f"no Wi-Fi country set (iw reg get: country {', '.join(countries) or 'none'})",
                REGDOM_FIX,
            )
        last = out.strip().splitlines()[-1:]
        tried.append(f"iw reg get failed: {last[0] if last else f'exit status {code}'}")
    else:
        tried.append("no iw")
    try:
        value = REGDOM_PARAM.read_text(encoding="ascii").strip()  # noqa: ASYNC240 - sysfs
    except OSError:
        tried.append(f"no {REGDOM_PARAM}")
    else:
        if value and value != "00":
            return _persisted(f"country {value} ({REGDOM_PARAM})")
        raise Failed(f"no Wi-Fi country set ({REGDOM_PARAM}: {value or 'empty'})", REGDOM_FIX)
    raise Failed(
        f"unknown: cannot read the Wi-Fi country ({'; '.join(tried)})",
        f"sudo apt install iw; then, if unset, {REGDOM_FIX}",
    )


def _persisted(found: str) -> str:
    """On a Raspberry Pi, the country must also be on the kernel command line (where
    raspi-config writes it on bookworm), or the next boot blocks the Wi-Fi again."""
    try:
        model = MODEL.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return found  # not a Raspberry Pi (or no device tree): persisted another way
    if "Raspberry Pi" not in model:
        return found
    try:
        cmdline = CMDLINE.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"{found}; {CMDLINE} unreadable"
    saved = re.search(r"\bcfg80211\.ieee80211_regdom=([A-Z0-9]{2})\b", cmdline)
    if saved is None:
        raise Failed(
            f"{found}, but not on the kernel command line: the next boot blocks the Wi-Fi",
            REGDOM_FIX,
            Code.WIFI_COUNTRY_NOT_PERSISTED,
        )
    return f"{found}; persisted ({saved.group(0)})"


async def check_state_dir(ctx: Context) -> str:
    """Writable and holding an identity. Creates nothing that stays: a missing directory is
    left to `device-sim init`, a temporary file proves it writable and is removed."""
    path = ctx.config.state_dir
    fix = f"sudo install -d -m 700 {path}"
    init = f"sudo {command_on_path(ctx.root)} init --state-dir {path}"

    def probe() -> str:
        from ...core.store import DeviceStore

        if not path.exists():
            parent = next(p for p in path.parents if p.exists())
            if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise Failed(
                    f"{path} does not exist and cannot be created "
                    f"({parent} is not a writable directory)",
                    fix,
                )
            raise Failed(
                f"{path} does not exist yet (it can be created): no device identity",
                init,
                Code.NO_DEVICE_IDENTITY,
            )
        if not path.is_dir():
            raise Failed(f"{path} is not a writable directory: not a directory", fix)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".doctor-")
        os.close(fd)
        os.unlink(tmp)
        if not (path / DeviceStore.FILENAME).exists():
            raise Failed(
                f"{path} is writable but holds no device identity (no store)",
                init,
                Code.NO_DEVICE_IDENTITY,
            )
        with DeviceStore(path) as store:
            if store.identity() is None:
                raise Failed(
                    f"{path} is writable but holds no device identity",
                    init,
                    Code.NO_DEVICE_IDENTITY,
                )
        mode = path.stat().st_mode & 0o777
        tail = (
            f", mode {mode:04o} (0700 recommended: sudo chmod 700 {path})" if mode & 0o077 else ""
        )
        return f"{path}: writable, store opens, identity present{tail}"

    try:
        return await asyncio.to_thread(probe)
    except OSError as exc:
        raise Failed(f"{path} is not a writable directory: {exc.strerror or exc}", fix) from None
    except StoreError as exc:
        raise Failed(f"the device store in {path} does not open: {exc.detail}", fix) from None


async def check_config(ctx: Context) -> str:
    from ...doors import registry
    from ...network.scenario import load_scenario
    from ...profile import load_profile

    fix = "correct the config file (every key is shown in packaging/device-sim.toml)"
    if ctx.config_error is not None:
        raise Failed(str(ctx.config_error), fix)
    cfg = ctx.config
    parts = [
        "no config file: checked a Raspberry Pi install's defaults"
        if ctx.defaults
        else f"{cfg.source or 'the configuration'} is valid"
    ]
    try:
        profile = load_profile(cfg.profile)
        chosen = registry.resolve(cfg.ble.personalities, profile, "ble.personalities")
        parts.append(
            f"profile {profile.source.name} loads "
            f"(personalities {', '.join(e.name for e in chosen)})"
        )
        if cfg.network.backend == "simulated":
            parts.append(f"scenario {load_scenario(cfg.network.scenario).name} loads")
    except ConfigError as exc:
        raise Failed(str(exc), fix) from None
    if cfg.cloud.ca is not None:
        try:
            ssl.create_default_context(cafile=str(cfg.cloud.ca))
        except (OSError, ssl.SSLError) as exc:
            raise Failed(
                f"cloud.ca {cfg.cloud.ca}: not a readable PEM CA bundle ({exc})", fix
            ) from None
        parts.append("cloud CA loads")
    return "; ".join(parts)


async def check_service(ctx: Context) -> str:
    """The systemd unit installed, running an executable device-sim, enabled, and device-sim
    on sudo's PATH (``device-sim service install``). Not needed with the simulated backend."""
    if not ctx.nm_needed:
        return "not needed: the simulated backend (a bench or CI machine, not a Pi install)"
    layout = Layout(root=ctx.root)
    found = problems(layout)
    if found:
        raise Failed("; ".join(detail for detail, _ in found), found[0][1])
    return f"{layout.unit}: enabled; {layout.link} reaches device-sim"
