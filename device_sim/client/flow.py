"""The reference client's flows: find a device, open a session, list networks, provision.

``provision`` returns a JSON-ready result with the final state and code (with the profile's
user message and next step), per-phase timings in milliseconds and the GATT round trips used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..codes import Code, MessageType
from ..errors import DeviceSimError, OnboardingError
from ..profile import Profile
from ..security.secret import Secret
from .ble import BleLink, ClientSession, FoundDevice, discover

Progress = Callable[[str, dict[str, Any]], None]
TERMINAL = ("online", "failed")


@dataclass(frozen=True)
class Target:
    adapter: str = "hci1"
    name: str | None = None
    discover_timeout: float = 20.0
    fragment_size: int | None = None


class _Clock:
    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()
        self.marks: dict[str, int] = {}

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.marks[phase] = int((now - self.last) * 1000)
        self.last = now

    def total(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)


async def find_device(profile: Profile, target: Target) -> FoundDevice:
    """The first provisioning device seen (or the one named). Raises OnboardingError."""
    devices = await discover(profile, adapter=target.adapter, timeout=target.discover_timeout,
                             name=target.name, first=True)
    if not devices:
        raise OnboardingError(Code.CLIENT_TIMEOUT,
                              f"no provisioning device seen in {target.discover_timeout:.0f} s")
    return devices[0]


def describe(profile: Profile, code: Code | int) -> dict[str, Any]:
    entry = profile.code(code)
    return {"code": entry.id, "code_name": entry.name, "message": entry.user_message,
            "next_step": entry.next_step}


async def list_networks(profile: Profile, target: Target, setup_code: Secret) -> list[dict[str, Any]]:
    found = await find_device(profile, target)
    async with BleLink(profile, found.device, adapter=target.adapter,
                       fragment_size=target.fragment_size) as link:
        session = ClientSession(link)
        await session.open(setup_code)
        _, body = await session.call(MessageType.SCAN_REQUEST, {})
        await session.call(MessageType.END_SESSION, {})
        return list(body["networks"])


async def provision(profile: Profile, target: Target, *, setup_code: Secret, ssid: bytes,
                    passphrase: Secret | None, hidden: bool = False, outcome_timeout: float = 120.0,
                    on_progress: Progress | None = None) -> dict[str, Any]:
    """Run the whole onboarding. Never raises for device-reported failures: they are the result."""
    progress = on_progress or (lambda phase, info: None)
    clock = _Clock()
    events: list[dict[str, Any]] = []
    result: dict[str, Any] = {"state": None, "device": None}
    link: BleLink | None = None
    try:
        progress("discover", {"adapter": target.adapter})
        found = await find_device(profile, target)
        clock.mark("discover")
        result["device"] = found.to_json()
        progress("connect", {"address": found.device.address, "name": found.name})
        link = BleLink(profile, found.device, adapter=target.adapter,
                       fragment_size=target.fragment_size)
        async with link:
            clock.mark("connect")
            session = ClientSession(link)
            progress("session", {})
            await session.open(setup_code)
            clock.mark("session")
            progress("credentials", {})
            await session.call(MessageType.SET_CREDENTIALS, {
                "ssid_hex": ssid.hex(), "hidden": hidden,
                "passphrase": passphrase.reveal() if passphrase else None})
            clock.mark("credentials")
            await session.call(MessageType.CONNECT, {})
            final = await _follow(session, clock, events, progress, outcome_timeout)
            result["state"] = final["state"]
            result.update(describe(profile, final["code"]))
            result["detail"] = final.get("detail", "")
            await session.call(MessageType.END_SESSION, {})
    except OnboardingError as exc:
        result.update(describe(profile, exc.code))
        result["detail"] = exc.detail
        if exc.retry_after_ms:
            result["retry_after_ms"] = exc.retry_after_ms
        if result["state"] is None and link is not None:
            result["state"] = await _public_state(link)
    except DeviceSimError as exc:
        result.update(describe(profile, exc.code))
        result["detail"] = exc.detail
    result["timings_ms"] = {**{p: clock.marks.get(p) for p in
                               ("discover", "connect", "session", "credentials", "join",
                                "verify")}, "total": clock.total()}
    result["gatt_round_trips"] = link.round_trips if link else 0
    result["gatt_writes"] = link.writes if link else 0
    result["events"] = events
    return result


async def _follow(session: ClientSession, clock: _Clock, events: list[dict[str, Any]],
                  progress: Progress, timeout: float) -> dict[str, Any]:
    """Consume pushed events until the device reaches online or failed."""
    deadline = time.monotonic() + timeout
    joined = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OnboardingError(Code.CLIENT_TIMEOUT, f"no outcome within {timeout:.0f} s")
        event = await session.next_event(remaining)
        events.append(event)
        progress("event", event)
        if event["state"] == "verifying" and not joined:
            clock.mark("join")
            joined = True
        if event["state"] in TERMINAL and event["phase"] in TERMINAL:
            clock.mark("verify" if joined else "join")
            return event


async def _public_state(link: BleLink) -> str | None:
    try:
        return (await link.read_state()).state.wire_name
    except Exception:
        return None
