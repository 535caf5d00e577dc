"""The phone side at scale: onboard every device of a running fleet (``client provision
--fleet ROOT``), several at once, each with the credentials of its own world.

Each device is reached as the fleet's index says (its AP URL, or its advertised name through
one of the fleet's phone adapters) with the setup code from its label, and provisioned by its
personality's reference phone side. The result lists every device's outcome and times, and a
summary: how many are online, how long it took, p50/p90 per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from pathlib import Path
from typing import Any

from ...client.target import ProvisionRequest, Target
from ...doors import registry
from ...errors import ConfigError, DeviceSimError, OnboardingError
from ...network.scenario import load_scenario
from ...profile import Profile
from ...security.secret import Secret
from .host import read_index, read_labels

__all__ = ["provision_fleet"]

PER_PHONE = 1  # BLE onboardings at once through one phone adapter (its scans must not overlap)


async def provision_fleet(
    profile: Profile,
    root: Path,
    *,
    names: list[str] | None = None,
    concurrency: int = 32,
    timeout: float = 120.0,
    credentials: tuple[bytes, Secret | None, bool] | None = None,
) -> dict[str, Any]:
    """Onboard the fleet's devices (``names``: some of them). ``credentials`` overrides each
    device's world's own. Never raises for one device's failure: it is that device's result.

    Raises ConfigError (no fleet index, an unknown name, a BLE fleet without phone adapters).
    """
    index, labels = read_index(root), read_labels(root)
    devices = index["devices"]
    if names:
        known = {d["name"] for d in devices}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError("--devices", f"not in the fleet: {', '.join(unknown)}")
        devices = [d for d in devices if d["name"] in names]
    phones: list[str] = list(index.get("phones") or [])
    ble = index.get("transport") == "ble"
    bumble = ble and index.get("ble_stack") == "bumble"
    if ble and not phones:
        raise ConfigError(str(root), "a BLE fleet started without phone adapters (--phones 0)")
    gate = asyncio.Semaphore(concurrency)
    phone_gates = {phone: asyncio.Semaphore(PER_PHONE) for phone in phones}
    started = time.monotonic()

    async def one(i: int, device: dict[str, Any]) -> dict[str, Any]:
        label = labels.get(device["name"]) or {}
        phone = phones[i % len(phones)] if ble else None
        if phone is not None and bumble:  # a phone is a controller served by the fleet
            target = Target(name=device["address"], ble_stack="bumble", bumble_transport=phone)
        elif phone is not None:
            target = Target(adapter=phone, name=device["local_name"])
        else:
            target = Target(softap_url=device["ap_url"])
        ssid, passphrase, hidden = credentials or _world_credentials(device["scenario"])
        code = label.get("setup_code")
        request = ProvisionRequest(
            ssid=ssid,
            passphrase=passphrase,
            hidden=hidden,
            setup_code=Secret(code) if code else None,
            outcome_timeout=timeout,
            extra=_extra(device, label),
        )
        entry = registry.get(device["personality"])
        async with gate:
            t0 = time.monotonic()
            try:
                if phone is not None:
                    async with phone_gates[phone]:
                        result = await entry.phone(profile, target, request, None)
                else:
                    result = await entry.phone(profile, target, request, None)
            except DeviceSimError as exc:  # this machine's problem for this device
                name = exc.code.name if isinstance(exc, OnboardingError) else "SETUP_ERROR"
                result = {"state": None, "code_name": name, "detail": str(exc)}
            seconds = time.monotonic() - t0
        return {
            "name": device["name"],
            "device_id": device["device_id"],
            "state": result.get("state"),
            "code_name": result.get("code_name"),
            "detail": result.get("detail"),
            "seconds": round(seconds, 3),
            "since_start_s": round(time.monotonic() - started, 3),
            "round_trips": result.get("gatt_round_trips"),
            "timings_ms": result.get("timings_ms"),
        }

    with contextlib.ExitStack() as scope:
        if ble and index.get("bus"):  # the fleet's BlueZoo bus, for bleak in this process
            from ..virtual.harness import use_bus

            scope.enter_context(use_bus(str(index["bus"])))
        try:
            results = await asyncio.gather(*(one(i, d) for i, d in enumerate(devices)))
        finally:
            if bumble:
                from ...client.ble import close_radios

                await close_radios()
    return {"devices": results, "summary": summarize(results, time.monotonic() - started)}


def summarize(results: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    online = [r for r in results if r["state"] == "online"]
    times = sorted(r["seconds"] for r in online)
    codes: dict[str, int] = {}
    for r in results:
        if r["state"] != "online":
            codes[str(r["code_name"])] = codes.get(str(r["code_name"]), 0) + 1
    return {
        "devices": len(results),
        "online": len(online),
        "wall_s": round(wall_s, 3),
        "last_online_s": max((r["since_start_s"] for r in online), default=None),
        "per_device_s": {"p50": _quantile(times, 0.5), "p90": _quantile(times, 0.9)},
        "not_online": codes,
    }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


@functools.lru_cache(maxsize=64)
def _world_credentials(scenario: str) -> tuple[bytes, Secret | None, bool]:
    creds = load_scenario(scenario).default_credentials
    passphrase = Secret(creds.passphrase) if creds.passphrase is not None else None
    return creds.ssid, passphrase, creds.hidden


def _extra(device: dict[str, Any], label: dict[str, Any]) -> dict[str, Any]:
    """A personality's own label fields its phone side reads (ESP's proof of possession)."""
    entry = registry.get(device["personality"])
    return entry.phone_label(label) if entry.phone_label is not None else {}
