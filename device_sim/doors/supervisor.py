"""Which doors a device opens, and when: the fallback policy between BLE and the SoftAP.

Policies (``device-sim run --doors``):

* ``ble-only``: BLE; no access point ever (a failing BLE door fails the daemon).
* ``softap-only``: the access point only.
* ``ble-then-softap`` (default): BLE first; the access point opens when no usable BLE adapter
  exists or advertising fails, or when no BLE session started within the window.
* ``both``: both at once (the access point still steps aside while the device joins).

An explicit request also opens the access point: ``device-sim ctl softap-start`` on the running
daemon, or START_SOFTAP over an authenticated BLE session. A device that is online (or joining)
keeps its radio: the request is refused with INVALID_STATE. Every decision is a ``door``
diagnostic event (BLE diagnostics, the JSONL log, the SoftAP's public state) naming the open
doors and the reason.

The doors reopen by themselves when a device with saved networks has been without a connection
for the configured time (the engine's ``reopen`` event, at boot or after a loss): by the policy
again, with the same proofs as the first onboarding. ``ble-then-softap``: BLE first (it shows
the device's failure code), the access point after the window unless a BLE session starts;
``softap-only`` and ``both``: the access point now; ``ble-only``: BLE only. The access point
shares the one radio with the retries of the saved networks (it steps aside for each). When the
device is online again (a saved network came back, or a phone set it up), the access point is
down and a pending window is cancelled. A device at boot whose saved networks are retried opens
no access point before that time: it may be back online first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..codes import Code, State
from ..errors import DeviceSimError, OnboardingError
from ..lifecycle import Component
from ..options import opt
from ..session.port import DiagnosticEvent, DoorPort, EventPhase
from .base import Door

if TYPE_CHECKING:
    from .softap.door import SoftApDoor

LOG = logging.getLogger(__name__)


class Policy(StrEnum):
    BLE_ONLY = "ble-only"
    SOFTAP_ONLY = "softap-only"
    BLE_THEN_SOFTAP = "ble-then-softap"
    BOTH = "both"


@dataclass(frozen=True)
class DoorOptions:
    """The fallback policy's options (the config file's ``[doors]`` section)."""

    policy: Policy = opt(Policy.BLE_THEN_SOFTAP, "fallback policy", flag="--doors")
    softap_window_s: float = opt(
        60.0,
        "ble-then-softap: open the AP when no BLE session started within this many seconds",
        flag="--softap-window",
        low=0,
        high=86400,
    )


class DoorSupervisor(Component):
    """Starts the doors by the policy, opens the SoftAP on fallback or request, stops all."""

    def __init__(
        self,
        policy: Policy,
        port: DoorPort,
        *,
        ble: Callable[[], Door] | None,
        softap: Callable[[], SoftApDoor] | None,
        window_s: float = 60.0,
    ) -> None:
        if policy is not Policy.SOFTAP_ONLY and ble is None:
            raise ValueError(f"policy {policy} needs a BLE door")
        if policy is not Policy.BLE_ONLY and softap is None:
            raise ValueError(f"policy {policy} needs a SoftAP door")
        self.policy, self.port = policy, port
        self._make_ble, self._make_softap = ble, softap
        self.window_s = window_s
        self.ble: Door | None = None
        self.softap: SoftApDoor | None = None
        self.ble_error: str | None = None
        self.softap_reason: str | None = None
        self.softap_error: str | None = None
        self.decision: str | None = None  # how the fallback was settled, once it is
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.decided = asyncio.Event()  # set once the fallback window is resolved either way
        self._unsubscribe: Callable[[], None] = lambda: None
        self._unfollow: Callable[[], None] = lambda: None
        self._unserve: Callable[[], None] = lambda: None
        self._tasks: set[asyncio.Task[None]] = set()
        self.reopened = False  # the doors reopened for a device without a connection

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Raises TransportError when ``ble-only``'s door (or ``softap-only``'s AP) cannot open."""
        if self._make_softap is not None and self.policy is not Policy.BLE_ONLY:
            self.softap = self._make_softap()
            self._unserve = self.port.serve_softap_requests(self.open_softap)
        self._unfollow = self.port.follow_sessions(opened=self._session_opened)
        if self.policy is not Policy.SOFTAP_ONLY:
            assert self._make_ble is not None
            try:
                door = self._make_ble()
                try:
                    await door.start()
                except BaseException:
                    await door.stop()
                    raise
                self.ble = door
            except DeviceSimError as exc:
                if self.policy is Policy.BLE_ONLY:
                    raise
                self.ble_error = exc.detail or str(exc)
                LOG.warning("BLE door unavailable (%s): falling back to the SoftAP", self.ble_error)
        if self.policy is not Policy.BLE_ONLY and self._provisioned():
            # Online, joining, or retrying its saved networks at boot: no access point now
            # (the doors reopen if the device stays without a connection).
            what = (
                "retries its saved networks"
                if self.port.retrying
                else "is " + (self.port.state.wire_name)
            )
            self.decision = f"no access point: the device {what}"
            self.decided.set()
        elif self.policy is Policy.SOFTAP_ONLY:
            await self._open("policy softap-only", strict=True)
        elif self.policy is Policy.BOTH:
            await self._open("policy both", strict=False)
        elif self.policy is Policy.BLE_THEN_SOFTAP:
            if self.ble is None:
                await self._open(f"no usable BLE: {self.ble_error}", strict=False)
            else:
                self._timer = asyncio.get_running_loop().create_task(self._window())
        if self.policy is not Policy.BLE_THEN_SOFTAP or self.ble is None:
            self.decision = self.decision or f"policy {self.policy}"
            self.decided.set()
        self._unsubscribe = self.port.subscribe(self._on_event)
        self._note("doors opened")

    def _on_event(self, event: DiagnosticEvent) -> None:
        if event.phase == EventPhase.FACTORY_RESET and self.softap is not None:
            self.decided.clear()  # until the policy has applied anew (ctl status waits on it)
            self._spawn(self._reapply())
        elif event.phase == EventPhase.REOPEN:
            self.decided.clear()
            self._spawn(self._reopen(event.detail))
        elif event.phase == EventPhase.ONLINE and self.reopened:
            # After the online event has reached every subscriber (a note emitted from here
            # would reach the later ones first).
            asyncio.get_running_loop().call_soon(self._closed_by_online)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reopen(self, why: str) -> None:
        """No connection for a while: the doors open again by the policy (the same proofs)."""
        self.reopened = True
        if self.policy is Policy.BLE_THEN_SOFTAP and self.ble is not None:
            self.decision = None
            if self._timer is None or self._timer.done():
                self._timer = asyncio.get_running_loop().create_task(self._window())
            self._note("no connection: BLE first again, the access point after the window")
        elif self.softap is not None:
            await self._open("no connection: the doors reopen", strict=False, reopen=True)
        else:  # ble-only: BLE is the door (its advertisement shows the device's failure)
            self.decision = "no connection: BLE only (policy ble-only)"
            self.decided.set()
            self._note(self.decision)

    def _closed_by_online(self) -> None:
        """Online again after the doors reopened: a pending window ends (the access point
        went down for the join that brought the device back)."""
        self.reopened = False
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            self._timer = None
        self.softap_reason = None
        self.decision = "online again: no access point"
        self.decided.set()
        self._note(self.decision)

    async def _reapply(self) -> None:
        """After a factory reset the device waits for a new owner: the policy applies anew."""
        if self.policy is Policy.BLE_THEN_SOFTAP and self.ble is not None:
            self.decision = None
            if self._timer is None or self._timer.done():
                self._timer = asyncio.get_running_loop().create_task(self._window())
            self._note("factory reset: BLE first again")
        else:
            await self._open("factory reset", strict=False)

    async def stop(self) -> None:
        self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unfollow()
        self._unserve()
        for door in (self.softap, self.ble):
            if door is not None:
                await door.stop()

    # --- decisions -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The open doors and why (for diagnostics, /api/v1/state and ``ctl status``)."""
        doors = []
        if self.ble is not None:
            doors.append("ble")
        if self.softap is not None and (self.softap.ap_up or self.softap_reason):
            doors.append("softap")
        return {
            "policy": str(self.policy),
            "doors": doors,
            "softap_reason": self.softap_reason,
            "ble_error": self.ble_error,
            "softap_error": self.softap_error,
            "fallback_pending": not self.decided.is_set(),
            "decision": self.decision,
            "softap": self.softap.describe() if self.softap is not None else None,
        }

    async def open_softap(self, reason: str) -> dict[str, Any]:
        """Open the access point on request. Raises OnboardingError (SOFTAP_UNAVAILABLE,
        INVALID_STATE while joining or online)."""
        if self.softap is None:
            raise OnboardingError(
                Code.SOFTAP_UNAVAILABLE, f"this device runs no SoftAP door (policy {self.policy})"
            )
        if self.port.provisioned:
            raise OnboardingError(
                Code.INVALID_STATE,
                f"the device is {self.port.state.wire_name}: opening "
                "the access point would take its radio from the station",
            )
        await self._open(reason, strict=True)
        return self.softap.describe()

    async def _open(self, reason: str, *, strict: bool, reopen: bool = False) -> None:
        """``reopen``: the doors reopen for a device without a connection; a retry of its saved
        networks may be in flight (the access point then comes up when it ends)."""
        assert self.softap is not None
        async with self._lock:
            if self._timer is not None and asyncio.current_task() is not self._timer:
                self._timer.cancel()
                self._timer = None
            self.decision = self.decision or f"softap: {reason}"
            if self.softap.ap_up:
                self.decided.set()
                return
            if reopen and self.port.state is State.ONLINE:
                self.decided.set()
                return
            if self._provisioned() and not reason.startswith("requested") and not reopen:
                LOG.info("device is %s: no access point (%s)", self.port.state.wire_name, reason)
                self.decided.set()
                return
            try:
                await self.softap.start()
            except DeviceSimError as exc:
                self.softap_error = exc.detail or str(exc)
                self._note("softap failed", reason=reason)
                self.decided.set()
                if strict:
                    raise OnboardingError(Code.SOFTAP_UNAVAILABLE, self.softap_error) from exc
                LOG.error("SoftAP door could not open (%s): %s", reason, self.softap_error)
                return
            self.softap_reason, self.softap_error = reason, None
            LOG.info("SoftAP door open (%s): %s", reason, self.softap.describe()["ap_url"])
            self.decided.set()
            self._note("softap opened", reason=reason)

    def _provisioned(self) -> bool:
        """Online or joining, or retrying its saved networks before the doors reopen."""
        return self.port.provisioned or self.port.retrying

    def _session_opened(self, peer: Hashable) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            self._timer = None
            self.decision = "ble session in time: no access point"
            self.decided.set()
            self._note(self.decision)

    async def _window(self) -> None:
        await asyncio.sleep(self.window_s)  # the fallback window is a timeout, not a sync
        self._timer = None
        await self._open(
            f"no BLE session within {self.window_s:g} s", strict=False, reopen=self.reopened
        )

    def _note(self, what: str, **extra: Any) -> None:
        status = self.status()
        detail = f"{what}: {', '.join(status['doors']) or 'none'}"
        self.port.note(EventPhase.DOOR, detail, {**status, **extra, "softap": None})
