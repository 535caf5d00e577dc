"""Faults a QA tester adds to a running simulated world (``device-sim ctl fault add``).

Like toxiproxy's toxics: a named fault sits on one step of the join or the checks, applies to an
attempt with ``probability`` (drawn from the attempt's seeded generator), adds ``delay_ms``
(plus up to ``jitter_ms`` either way) to the step and ends it with ``result``. Without a
``result``, a fault with a delay is a delay (the step then goes on as it would have: a slow
DHCP server, not a failing one), and a fault without one is the step's failure. Faults are
read when an attempt starts, so a change is effective from the next attempt, never halfway
through one.

Two more steps break an established connection on a running device: ``link`` (``down``: the
device is deauthenticated at once, and while the fault stays each association fails with its
probability, as under a deauthentication flood) and ``lease`` (``expired``: the lease is not
renewed, so the address is gone at once, and DHCP fails while it stays). ``dns`` and
``internet`` faults also fail the checks an online device makes. A fault with an ``ssid`` (or
``ssid_hex``) hits that network only: ``step=link ssid=Home`` is a router switched off.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..codes import Code
from ..errors import OnboardingError
from .scenario import RESULTS

__all__ = [
    "CRASH_POINTS",
    "DEFAULT_PORTAL_URL",
    "FAULT_RESULTS",
    "FAULT_STEPS",
    "LINK_STEPS",
    "MAX_FAULTS",
    "Fault",
    "crash_points",
    "parse_fault",
]

# The join's and the checks' steps, and the established connection's own two.
FAULT_RESULTS: dict[str, tuple[str, ...]] = {
    **RESULTS,
    "link": ("ok", "down"),
    "lease": ("ok", "expired"),
}
FAULT_STEPS = tuple(FAULT_RESULTS)
LINK_STEPS = frozenset({"link", "lease"})
MAX_FAULTS = 32
MAX_FAULT_DELAY_MS = 600_000
DEFAULT_PORTAL_URL = "http://portal.device-sim.test/login"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")


@dataclass(frozen=True)
class Fault:
    name: str
    step: str
    probability: float = 1.0
    delay_ms: int = 0
    jitter_ms: int = 0
    result: str = ""  # "" until parsed: the step's failure, or "ok"-like for a delay alone
    ssid: bytes | None = None  # only this network (None: every network)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ssid"] = self.ssid.hex() if self.ssid is not None else None
        return out

    def hits(self, ssid: bytes | None) -> bool:
        """On the network ``ssid`` (None: the fault's own network or any)."""
        return self.ssid is None or ssid is None or self.ssid == ssid

    def describe(self) -> str:
        parts = [f"{self.name}: {self.step}"]
        if self.ssid is not None:
            try:
                parts.append(f"on {self.ssid.decode('utf-8')!r}")
            except UnicodeDecodeError:
                parts.append(f"on 0x{self.ssid.hex()}")
        if self.result != FAULT_RESULTS[self.step][0]:
            parts.append(f"ends {self.result}")
        if self.delay_ms or self.jitter_ms:
            parts.append(f"+{self.delay_ms}±{self.jitter_ms} ms")
        parts.append(f"p={self.probability:g}")
        return " ".join(parts)


def parse_fault(args: dict[str, Any]) -> Fault:
    """A fault from the control request's JSON. Raises OnboardingError(MALFORMED_REQUEST)."""

    def bad(detail: str) -> OnboardingError:
        return OnboardingError(Code.MALFORMED_REQUEST, f"fault: {detail}")

    known = {"name", "step", "probability", "delay_ms", "jitter_ms", "result", "ssid", "ssid_hex"}
    unknown = sorted(set(args) - known - {"action"})
    if unknown:
        raise bad(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    name = args.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise bad("name: 1-48 letters, digits, '.', '_' or '-'")
    step = args.get("step")
    if step not in FAULT_STEPS:
        raise bad(f"step: one of {', '.join(FAULT_STEPS)}, not {step!r}")
    probability = args.get("probability", 1.0)
    if isinstance(probability, bool) or not isinstance(probability, int | float):
        raise bad("probability: a number from 0 to 1")
    if not 0 <= probability <= 1:
        raise bad(f"probability: from 0 to 1, not {probability}")
    ints = {}
    for key in ("delay_ms", "jitter_ms"):
        value = args.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"{key}: an integer number of ms")
        if not 0 <= value <= MAX_FAULT_DELAY_MS:
            raise bad(f"{key}: from 0 to {MAX_FAULT_DELAY_MS}, not {value}")
        ints[key] = value
    results = FAULT_RESULTS[step]
    # Only a delay asked for: a slow step. Otherwise the step's failure, unless one is named.
    slow_only = bool(ints["delay_ms"] or ints["jitter_ms"])
    result = args.get("result", results[0] if slow_only else results[1])
    if result not in results:
        raise bad(f"result of {step}: one of {', '.join(results)}, not {result!r}")
    ssid = None
    if "ssid" in args and "ssid_hex" in args:
        raise bad("give ssid or ssid_hex, not both")
    if "ssid" in args:
        if not isinstance(args["ssid"], str) or not 1 <= len(args["ssid"].encode()) <= 32:
            raise bad("ssid: 1-32 bytes of text")
        ssid = args["ssid"].encode("utf-8")
    elif "ssid_hex" in args:
        try:
            ssid = bytes.fromhex(str(args["ssid_hex"]))
        except ValueError:
            raise bad("ssid_hex: hex digits") from None
        if not 1 <= len(ssid) <= 32:
            raise bad("ssid_hex: 1-32 bytes")
    return Fault(name, step, float(probability), ints["delay_ms"], ints["jitter_ms"], result, ssid)


CRASH_POINTS = ("after-cloud-answer", "after-cloud-release")


def crash_points(fault: str | None) -> Callable[[str], None]:
    """The engine's checkpoint for ``DEVICE_SIM_FAULT``: ``crash-<point>`` ends the process at
    that point (exit 137, as a power cut or the OOM killer would), so QA and the kill loop can
    show that every state is done or recoverable. Raises ValueError for an unknown fault."""
    if not fault:
        return lambda point: None
    point = fault.removeprefix("crash-")
    if not fault.startswith("crash-") or point not in CRASH_POINTS:
        known = ", ".join(f"crash-{p}" for p in CRASH_POINTS)
        raise ValueError(f"DEVICE_SIM_FAULT={fault!r}: not a fault (known: {known})")

    def checkpoint(reached: str) -> None:
        if reached == point:
            logging.getLogger(__name__).critical("fault injection: exiting %s", point)
            os._exit(137)

    return checkpoint
