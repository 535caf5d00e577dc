"""The device's connected life after ``online``: watch the connection, reconnect, reopen doors.

Onboarding is not a one-time event: routers restart, are replaced, customers move. Once online,
the device watches its connection:

* at the link, through the backend (:meth:`~device_sim.network.base.NetworkBackend.
  wait_link_loss`): the access point went away or disconnected the device (``LINK_LOST``), the
  DHCP lease was not renewed (``LEASE_LOST``). The connection is gone: the device retries its
  saved networks, and after ``reopen_after_s`` without a connection reopens its doors;
* by checking DNS and the internet every ``check_interval_s`` (two failed checks in a row):
  ``DNS_LOST``, ``INTERNET_LOST``. Still associated, the device keeps the network and checks
  again with backoff; its doors do not reopen (the network is still there).

Each loss is a transition ``online -> failed`` with its own phase and code. A retry round is one
scan, then a join of each saved network it saw, most recent first (never a timeout per entry
that is not there); a saved network that rejects its stored passphrase is
``SAVED_NETWORK_REJECTED``, none seen ``SAVED_NETWORKS_NOT_FOUND``. Rounds follow an exponential
backoff with jitter, capped at ``max_s``, forever. Every step is an event.

One owner reconnects: this engine, never NetworkManager's autoconnect (the backend keeps its
profiles with autoconnect off). The engine knows what NetworkManager does not: the access point
on the same radio, a phone in the middle of a session, the order of the saved networks, and the
codes to report. So rounds wait while a phone holds a session (any door) or uses the access
point; a phone that opens a session stops a retry in flight. A boot with saved networks retries
them whatever state was stored (``failed`` after a loss included).
"""

# Over 500 lines on purpose: one task's loop (watch the link, check again, retry the saved networks
# with backoff, reopen the doors) and the timers it shares; each step makes its transition through
# the engine.

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..codes import Code, State
from ..errors import NetworkError, OnboardingError
from ..lifecycle import cancel_and_wait
from ..network.base import AccessPoint, NetworkBackend, Phase
from .events import EventPhase
from .options import ReconnectOptions
from .store import DeviceStore, SavedNetwork

LOG = logging.getLogger(__name__)

LOSS_PHASE = {
    Code.LINK_LOST: EventPhase.LINK_LOST,
    Code.LEASE_LOST: EventPhase.LEASE_LOST,
    Code.DNS_LOST: EventPhase.DNS_LOST,
    Code.INTERNET_LOST: EventPhase.INTERNET_LOST,
}
LINK_LOSSES = frozenset({Code.LINK_LOST, Code.LEASE_LOST})
# What a join of a saved network means when it fails: its own code (the user typed nothing).
RECONNECT_CODE = {
    Code.WRONG_CREDENTIALS: Code.SAVED_NETWORK_REJECTED,
    Code.NETWORK_NOT_FOUND: Code.SAVED_NETWORKS_NOT_FOUND,
}
# A check that failed while associated, as the loss it is.
CHECK_LOSS = {
    Code.DNS_FAILURE: Code.DNS_LOST,
    Code.NO_INTERNET: Code.INTERNET_LOST,
    Code.CAPTIVE_PORTAL: Code.INTERNET_LOST,
}
SECOND_LOOK_S = 1.0  # a failed check is looked at again after this (scaled) before it counts


class Backoff:
    """Exponential backoff with jitter: ``initial_s``, then twice as long each time, capped at
    ``max_s``; each delay drawn from the upper half of its step (so two devices that lost the
    same router do not retry in step, and no delay exceeds the cap)."""

    def __init__(
        self, initial_s: float, max_s: float, rng: random.Random | None = None, jitter: float = 0.5
    ) -> None:
        if not 0 < initial_s <= max_s or not 0 <= jitter < 1:
            raise ValueError("backoff: 0 < initial_s <= max_s and 0 <= jitter < 1")
        self.initial_s, self.max_s, self.jitter = initial_s, max_s, jitter
        self._rng = rng or random.Random()
        self.count = 0

    def step(self) -> float:
        """The current step's ceiling (no jitter)."""
        return min(self.max_s, self.initial_s * 2.0 ** min(self.count, 60))

    def next(self) -> float:
        delay = self.step() * (1 - self.jitter * self._rng.random())
        self.count += 1
        return delay

    def reset(self) -> None:
        self.count = 0


@dataclass(frozen=True)
class LifeTimers:
    """:class:`~device_sim.core.options.ReconnectOptions` in seconds, scaled."""

    initial_s: float = 2.0
    max_s: float = 30.0
    reopen_after_s: float = 30.0
    check_interval_s: float = 30.0
    saved_networks: int = 5
    second_look_s: float = SECOND_LOOK_S

    @classmethod
    def from_options(cls, options: ReconnectOptions, scale: float = 1.0) -> LifeTimers:
        return cls(
            options.initial_s * scale,
            max(options.max_s, options.initial_s) * scale,
            options.reopen_after_s * scale,
            options.check_interval_s * scale,
            options.saved_networks,
            SECOND_LOOK_S * scale,
        )


class Engine(Protocol):
    """What the connected life asks of the onboarding engine (which implements it)."""

    store: DeviceStore
    backend: NetworkBackend
    last_scan: list[AccessPoint]

    @property
    def state(self) -> State: ...

    @property
    def verify_timeout_s(self) -> float: ...

    def life_transition(self, state: State, code: Code = Code.OK, **kwargs: Any) -> None: ...

    def note(
        self, phase: str, detail: str = "", data: dict[str, Any] | None = None, code: Code = ...
    ) -> None: ...

    def radio_in_use(self) -> bool: ...

    def record_code(self) -> Code: ...

    async def radio_step_aside(self) -> None: ...

    async def radio_back(self, final: State) -> None: ...

    async def join_and_verify(self, *, reconnect: bool = False) -> None: ...


class ConnectedLife:
    """The engine's life after ``online``: one task at a time, in one of three modes (watch an
    online connection, check again while associated, retry the saved networks). Transitions go
    through the engine; the engine tells this class of every transition it commits
    (:meth:`entered`) and of sessions (:meth:`session_opened`, :meth:`session_closed`)."""

    def __init__(
        self,
        engine: Engine,
        timers: LifeTimers,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.engine = engine
        self.timers = timers
        self.backoff = Backoff(timers.initial_s, timers.max_s, rng)
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._task: asyncio.Task[None] | None = None
        self._mode = ""
        self._reopen: asyncio.Task[None] | None = None
        self._started = False
        self._session_held = False
        self.offline_since: float | None = None
        self.reopened = False
        self.rounds = 0
        self.loss: Code | None = None  # what ended the last connection (the retries' reason)

    # --- what the engine tells -----------------------------------------------------------------

    def start(self, *, boot: bool) -> None:
        """The engine recovered its state. ``boot``: a device with saved networks that is not
        online retries them now (and its doors reopen if that takes ``reopen_after_s``)."""
        self._started = True
        if boot:
            self._offline()
            self._run("reconnect", 0.0)
        elif self.engine.state is State.ONLINE:
            self._run("online", 0.0)

    def entered(self, state: State, previous: State) -> None:
        """A transition was committed (by this class's task or by anything else)."""
        if state is State.ONLINE:
            self.offline_since, self.reopened, self.loss = None, False, None
            self.backoff.reset()
            self._cancel_reopen()
        elif state is State.UNPROVISIONED:  # a factory reset: nothing saved, nothing to retry
            self.offline_since, self.reopened, self.loss = None, False, None
            self._cancel_reopen()
        if not self._started or self._own():
            return
        # A transition made by a phone's flow, a timeout, a recovery or a reset: what ran is
        # moot; the new state says what to do.
        self._cancel_task()
        if state is State.ONLINE:
            self._run("online", 0.0)
        elif state is State.FAILED and previous is not State.FAILED:
            self._retry_later()

    def session_opened(self) -> None:
        """A phone proved itself (any door): retries wait for it; one in flight stops. An
        online device keeps watching."""
        self._session_held = True
        self.stop_for_phone()

    def stop_for_phone(self) -> None:
        """A phone's request: a retry in flight ends ``failed`` with the loss that started
        the retries (the phone's request then proceeds from there)."""
        if self._task is None or self._mode == "online":
            return
        busy = self.engine.state in (State.JOINING, State.VERIFYING)
        self._cancel_task()
        if busy:
            self.engine.life_transition(
                State.FAILED,
                self.loss or Code.SAVED_NETWORKS_NOT_FOUND,
                phase=EventPhase.RECONNECT,
                detail="retry stopped: a phone opened a session",
            )
        self.engine.note(EventPhase.RECONNECT, "retries wait: a phone holds a session")

    def session_closed(self) -> None:
        """The phone's session ended: a device that is still not online retries again."""
        self._session_held = False
        if self._started and self._task is None and self.engine.state is State.FAILED:
            self._retry_later()

    async def halt(self) -> None:
        """Stop the task and the reopen timer and wait for them (a factory reset, shutdown)."""
        self._cancel_reopen()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    @property
    def rechecking(self) -> bool:
        """Still associated after DNS or the internet went away: checking again."""
        return self._running() and self._mode == "recheck"

    @property
    def retrying(self) -> bool:
        """A retry of the saved networks (or a check again) is in flight."""
        return self._running() and self._mode != "online"

    # --- the task ------------------------------------------------------------------------------

    def _running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _own(self) -> bool:
        return self._task is not None and asyncio.current_task() is self._task

    def _retry_later(self) -> None:
        if self._session_held or not self.engine.store.saved_networks():
            return
        self._offline()  # not online, retrying: the doors reopen if that lasts
        self._run("reconnect", self.backoff.next())

    def _run(self, mode: str, delay: float) -> None:
        self._cancel_task()
        self._mode = mode
        self._task = asyncio.get_running_loop().create_task(
            self._life(mode, delay), name=f"connected-life-{mode}"
        )

    def _cancel_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    async def _life(self, mode: str, delay: float) -> None:
        link: asyncio.Task[NetworkError] | None = None
        try:
            while True:
                self._mode = mode
                if mode in ("online", "recheck") and link is None:
                    link = asyncio.get_running_loop().create_task(
                        self.engine.backend.wait_link_loss(), name="link-watch"
                    )
                if mode == "online":
                    assert link is not None
                    loss = await self._watch(link)
                    link = None if link.done() else link
                    mode = self._lose(loss)
                    delay = self.backoff.next()
                elif mode == "recheck":
                    assert link is not None
                    mode, delay = await self._recheck_after(link, delay)
                    if mode != "recheck":
                        link = None if link.done() else link
                else:
                    if link is not None:
                        link.cancel()
                        link = None
                    if not await self._wait_retry(delay):
                        self._task = None  # nothing saved: nothing to retry until there is
                        return
                    if await self._round():
                        mode, delay = "online", 0.0
                    else:
                        if self.engine.record_code() is Code.SAVED_NETWORK_REJECTED:
                            # The network is there and refuses the stored password: only a
                            # phone can help, so the doors reopen now, not after the wait.
                            self._reopen_now()
                        delay = self.backoff.next()
        except asyncio.CancelledError:
            raise
        except Exception:  # never stranded by a bug: log it, and keep retrying from a clean slate
            LOG.exception("the connected life failed; retrying later")
            self._task = None
            loop = asyncio.get_running_loop()
            loop.call_later(self.timers.max_s, self._recover_from_bug)
        finally:
            if link is not None:
                link.cancel()

    def _recover_from_bug(self) -> None:
        if self._task is None and self.engine.state is State.FAILED:
            self._retry_later()
        elif self._task is None and self.engine.state is State.ONLINE:
            self._run("online", 0.0)

    # --- online: watch ---------------------------------------------------------------------------

    async def _watch(self, link: asyncio.Task[NetworkError]) -> NetworkError:
        """Until the connection is lost: the link's own report, or two failed checks."""
        while True:
            if await _sleep_or(link, self.timers.check_interval_s):
                return link.result()
            problem = await self._check(link)
            if problem is not None:
                return problem

    async def _check(self, link: asyncio.Task[NetworkError]) -> NetworkError | None:
        first = await self._check_once()
        if first is None or first.code in LINK_LOSSES:
            return first
        if await _sleep_or(link, self.timers.second_look_s):  # one lost probe is not a loss
            return link.result()
        return await self._check_once()

    async def _check_once(self) -> NetworkError | None:
        try:
            async with asyncio.timeout(self.engine.verify_timeout_s):
                await self.engine.backend.check_connection()
        except TimeoutError:
            return NetworkError(
                Code.INTERNET_LOST,
                f"the connection checks took over {self.engine.verify_timeout_s:.0f} s",
            )
        except NetworkError as exc:
            code = CHECK_LOSS.get(exc.code, exc.code)
            if code not in LOSS_PHASE:
                code = Code.INTERNET_LOST
            return NetworkError(code, exc.detail, raw=exc.raw)
        return None

    def _lose(self, loss: NetworkError) -> str:
        """Commit the loss (online -> failed, or failed -> failed when a check-again sees the
        link go too); the next mode."""
        code = loss.code if loss.code in LOSS_PHASE else Code.LINK_LOST
        self.loss = code
        LOG.warning("connection lost: %s: %s", code.name, loss.detail)
        self.engine.life_transition(
            State.FAILED, code, phase=LOSS_PHASE[code], detail=loss.detail, data=loss.raw
        )
        if code in LINK_LOSSES:
            self._offline()
            return "reconnect"
        return "recheck"

    # --- still associated: check again -----------------------------------------------------------

    async def _recheck_after(
        self, link: asyncio.Task[NetworkError], delay: float
    ) -> tuple[str, float]:
        """DNS or the internet went away while associated: check again after ``delay``."""
        self.engine.note(
            EventPhase.RECONNECT,
            f"checking again in {delay:.1f} s (still associated)",
            {"check_again_in_s": round(delay, 2), "loss": self.loss.name if self.loss else None},
        )
        if await _sleep_or(link, delay):
            self._lose(link.result())
            return "reconnect", self.backoff.next()
        engine = self.engine
        engine.life_transition(
            State.VERIFYING, phase=EventPhase.VERIFYING, detail="checking the connection again"
        )
        problem = await self._check_once()
        if problem is None:
            engine.life_transition(
                State.ONLINE, phase=EventPhase.ONLINE, detail="the checks pass again"
            )
            return "online", 0.0
        if problem.code in LINK_LOSSES:
            self._lose(problem)
            return "reconnect", self.backoff.next()
        engine.life_transition(
            State.FAILED,
            problem.code,
            phase=EventPhase.FAILED,
            detail=problem.detail,
            data=problem.raw,
        )
        return "recheck", self.backoff.next()

    # --- not connected: retry the saved networks -------------------------------------------------

    async def _wait_retry(self, delay: float) -> bool:
        """Wait ``delay``, then until no phone uses the access point; False when there is
        nothing to retry."""
        engine = self.engine
        while True:
            saved = engine.store.saved_networks()
            if not saved:
                engine.note(EventPhase.RECONNECT, "no saved network to retry")
                return False
            if delay > 0:
                engine.note(
                    EventPhase.RECONNECT,
                    f"retry {self.rounds + 1} in {delay:.1f} s ({_count(saved)})",
                    {"retry": self.rounds + 1, "in_s": round(delay, 2), "saved": len(saved)},
                )
                await asyncio.sleep(delay)  # the backoff itself, not a synchronisation
            if not engine.radio_in_use():
                return True
            engine.note(
                EventPhase.RECONNECT,
                "retry postponed: a phone is using the access point",
                {"postponed": True},
            )
            delay = self.backoff.next()

    async def _round(self) -> bool:
        """One scan, then a join of each saved network seen, most recent first. True online."""
        engine = self.engine
        saved = engine.store.saved_networks()
        self.rounds += 1
        n = self.rounds
        engine.life_transition(
            State.JOINING,
            phase=EventPhase.JOINING,
            detail=f"reconnect {n}: looking for {_count(saved)}",
            new_attempt=True,
            data={"reconnect": n, "saved": len(saved)},
        )
        final = State.FAILED
        await engine.radio_step_aside()
        try:
            try:
                seen = await engine.backend.scan()
            except OnboardingError as exc:
                engine.life_transition(
                    State.FAILED, exc.code, phase=EventPhase.FAILED, detail=exc.detail
                )
                return False
            engine.last_scan = seen
            candidates = visible(saved, seen)
            engine.note(
                Phase.SCANNING,
                f"reconnect {n}: {len(candidates)} of {_count(saved)} in range",
                {
                    "reconnect": n,
                    "seen": len(seen),
                    "candidates": [c.ssid.hex() for c in candidates],
                },
            )
            if not candidates:
                names = ", ".join(_label(s.ssid) for s in saved)
                engine.life_transition(
                    State.FAILED,
                    Code.SAVED_NETWORKS_NOT_FOUND,
                    phase=EventPhase.FAILED,
                    detail=f"none of the saved networks is in range ({names})",
                    data={"reconnect": n, "seen": len(seen)},
                )
                return False
            for i, network in enumerate(candidates):
                if i > 0:
                    engine.life_transition(
                        State.JOINING,
                        phase=EventPhase.JOINING,
                        detail=f"reconnect {n}: next saved network",
                        new_attempt=True,
                        data={"reconnect": n},
                    )
                engine.life_transition(
                    State.JOINING,
                    phase=EventPhase.JOINING,
                    detail=f"reconnect {n}: joining {_label(network.ssid)}",
                    credentials=network.credentials,
                    data={"reconnect": n, "ssid_hex": network.ssid.hex()},
                )
                await engine.join_and_verify(reconnect=True)
                if engine.state is State.ONLINE:
                    final = State.ONLINE
                    return True
            return False
        finally:
            await engine.radio_back(final)

    # --- doors -----------------------------------------------------------------------------------

    def _offline(self) -> None:
        """The device has no connection from now on: the doors reopen if that lasts."""
        if self.offline_since is not None:
            return
        self.offline_since = self._clock()
        self._cancel_reopen()
        self._reopen = asyncio.get_running_loop().create_task(self._reopen_later())

    async def _reopen_later(self, after_s: float | None = None) -> None:
        wait = self.timers.reopen_after_s if after_s is None else after_s
        await asyncio.sleep(wait)  # a timeout: offline this long
        self._reopen = None
        if self.offline_since is None or self.engine.state is State.ONLINE:
            return
        self.reopened = True
        offline = self._clock() - self.offline_since
        LOG.warning("no connection for %.0f s: the doors reopen", offline)
        self.engine.note(
            EventPhase.REOPEN,
            f"no connection for {offline:.0f} s: the doors reopen (saved networks are "
            "still retried)",
            {"offline_s": round(offline, 1), "loss": self.loss.name if self.loss else None},
        )

    def _reopen_now(self) -> None:
        if self.reopened:
            return
        self._cancel_reopen()
        self._reopen = asyncio.get_running_loop().create_task(self._reopen_later(0.0))

    def _cancel_reopen(self) -> None:
        reopen, self._reopen = self._reopen, None
        if reopen is not None and not reopen.done() and reopen is not asyncio.current_task():
            reopen.cancel()


def visible(saved: list[SavedNetwork], seen: list[AccessPoint]) -> list[SavedNetwork]:
    """The saved networks to join after a scan, in the saved order: those whose SSID was
    heard, and hidden ones when a hidden BSS was heard (a directed probe may find them)."""
    heard = {ap.ssid for ap in seen if ap.ssid}
    hidden_heard = any(ap.hidden or not ap.ssid for ap in seen)
    return [s for s in saved if s.ssid in heard or (s.hidden and hidden_heard)]


async def _sleep_or(task: asyncio.Task[NetworkError], seconds: float) -> bool:
    """Sleep ``seconds`` unless ``task`` ends first; True when it did."""
    if task.done():
        return True
    done, _ = await asyncio.wait({task}, timeout=seconds)
    return bool(done)


def _count(saved: list[SavedNetwork]) -> str:
    return f"{len(saved)} saved network{'s' if len(saved) != 1 else ''}"


def _label(ssid: bytes) -> str:
    try:
        return repr(ssid.decode("utf-8"))
    except UnicodeDecodeError:
        return f"0x{ssid.hex()}"
