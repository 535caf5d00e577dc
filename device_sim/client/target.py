"""What every phone-side client shares: the device to reach, the onboarding asked for, progress
callbacks, phase timings and the code descriptions of a result.

Each personality's phone side (``device_sim/doors/<name>/``) takes a :class:`Target` and a
:class:`ProvisionRequest` and returns the same JSON-ready result shape, so the CLI, the demo and
the benchmarks drive any of them through the door registry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..codes import Code
from ..network.eap import EapSettings
from ..profile import Profile
from ..security.secret import Secret
from .ble import Radio

Progress = Callable[[str, dict[str, Any]], None]
TERMINAL = ("online", "failed")
Credentials = tuple[bytes, Secret | None, bool]  # ssid, passphrase, hidden
_ADDRESS = re.compile(r"(?:[0-9A-F]{2}:){5}[0-9A-F]{2}", re.IGNORECASE)  # a BLE address


@dataclass(frozen=True)
class Target:
    """The device to reach: over BLE (an adapter of this machine, the device's advertised name)
    or over the SoftAP door's HTTP API (``softap_url``)."""

    adapter: str = "hci1"
    name: str | None = None
    discover_timeout: float = 20.0
    fragment_size: int | None = None
    softap_url: str | None = None  # provision over the SoftAP door's HTTP API instead of BLE
    ble_stack: str = "bluez"  # bluez (bleak) or bumble (a central on bumble_transport)
    bumble_transport: str | None = None

    @property
    def transport(self) -> str:
        return "softap" if self.softap_url else "ble"

    @property
    def radio(self) -> Radio:
        """The phone's BLE for this target."""
        only = self.name if self.name and _ADDRESS.fullmatch(self.name) else None
        return Radio(self.adapter, self.ble_stack, self.bumble_transport, only=only)


@dataclass(frozen=True)
class ProvisionRequest:
    """One onboarding as a phone asks for it."""

    ssid: bytes
    passphrase: Secret | None
    hidden: bool = False
    setup_code: Secret | None = None  # the label's code (personalities with a PAKE session)
    security: str | None = None  # the network's mode as the user chose it (None: the device's)
    eap: EapSettings | None = None  # an enterprise network's sign-in (native, revision 4)
    activation: dict[str, Secret | str | None] | None = None  # SET_ACTIVATION's inputs
    retries: list[Credentials] = field(default_factory=list)  # tried in turn after a failure
    outcome_timeout: float = 120.0
    # A personality's own phone-side settings from the label or the command line, e.g. ESP's
    # {"pop": Secret, "sec": 2}; the personality's phone side says which it reads.
    extra: Mapping[str, Any] = field(default_factory=dict)


class Attempts:
    """The credentials one session tries in turn (the request's, then its retries after a
    failure: an app's "try another password" without a new session), and each one's result.

    :meth:`run` stops at the first that ends online; :meth:`add` records a failure that ended
    the session; :meth:`result` is the last result, with every attempt's when there were
    retries."""

    def __init__(self, first: Credentials, retries: Sequence[Credentials] = ()) -> None:
        self.tries: list[Credentials] = [first, *retries]
        self.retried = bool(retries)
        self.results: list[dict[str, Any]] = []

    async def run(self, attempt: Callable[[Credentials], Awaitable[dict[str, Any]]]) -> None:
        for creds in self.tries:
            result = await attempt(creds)
            self.results.append(result)
            if result.get("state") == "online":
                return

    def add(self, result: dict[str, Any]) -> None:
        self.results.append(result)

    def result(self) -> dict[str, Any]:
        out = dict(self.results[-1])
        if self.retried:
            out["attempts"] = self.results
        return out


class Clock:
    """Per-phase timings of one attempt, in milliseconds."""

    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()
        self.marks: dict[str, int] = {}

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.marks[phase] = int((now - self.last) * 1000)
        self.last = now

    def total(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)


def describe(profile: Profile, code: Code | int) -> dict[str, Any]:
    """A code as a result shows it: number, name, the user's message and next step."""
    entry = profile.code(code)
    return {
        "code": entry.id,
        "code_name": entry.name,
        "message": entry.user_message,
        "next_step": entry.next_step,
    }
