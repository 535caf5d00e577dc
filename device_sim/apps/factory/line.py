"""Provision N units in a row (or with worker processes), with a progress bar on stderr.

A unit that fails its self-test (or raises while being made) is reported on stderr and counted;
the batch goes on. :attr:`BatchResult.ok` is False if any unit failed, and the CLI exits 1.
The CA and the profile are loaded once, before the first unit, so a missing CA stops the batch
at once instead of failing N times.

``workers`` > 1 makes units in that many worker processes: a unit is CPU work that holds the
GIL (SRP, ECDSA, QR encoding), so threads would not run two at once. Each worker loads the CA
and the profile once; the serial registry is SQLite with ``BEGIN IMMEDIATE``, safe across
processes. A unit's secrets (setup code, claim token, payload) stay in the worker that wrote
them to its labels: the result it hands back has none (``Secret`` refuses to be pickled). The
workers ignore Ctrl-C: the batch finishes the units being made, then reports.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import (
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ... import pki
from ...errors import ConfigError, DeviceSimError
from ...profile import Profile, load_profile
from .registration import RegistrationKey
from .unit import UnitResult, provision_unit


@dataclass
class _Worker:
    """In a worker process: its CA, profile and registration key, loaded once."""

    ca: pki.FactoryCA
    profile: Profile
    registration: RegistrationKey | None


_WORKER: list[_Worker] = []  # the one of this worker process


def _worker_start(
    factory_dir: str, profile_path: str, registration: tuple[str, str] | None
) -> None:
    """A worker process's start: its CA, profile and registration key, once. (The key's
    secret comes over the pipe from the parent, this machine's own process, once.)"""
    from ...security.secret import Secret

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; units are finished
    key = RegistrationKey(registration[0], Secret(registration[1])) if registration else None
    _WORKER[:] = [_Worker(pki.load_issuer(factory_dir), load_profile(profile_path), key)]


def _worker_unit(factory_dir: str, out_dir: str, station: str) -> UnitResult:
    (worker,) = _WORKER
    made = provision_unit(
        factory_dir,
        out_dir,
        station=station,
        registration=worker.registration,
        ca=worker.ca,
        profile=worker.profile,
    )
    return dataclasses.replace(made, setup_code=None, claim_token=None, payload=None)


@dataclass
class BatchResult:
    requested: int
    units: list[UnitResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # units that raised (no self-test report)
    elapsed_s: float = 0.0
    interrupted: bool = False  # Ctrl-C: the units being made were finished, no more started

    @property
    def passed(self) -> int:
        return sum(u.passed for u in self.units)

    @property
    def failed(self) -> int:
        """Units that failed their self-test or could not be made."""
        return len(self.units) - self.passed + len(self.errors)

    @property
    def failed_serials(self) -> list[str]:
        return [u.serial for u in self.units if not u.passed]

    @property
    def ok(self) -> bool:
        return self.failed == 0 and len(self.units) == self.requested

    @property
    def units_per_minute(self) -> float:
        return 60 * len(self.units) / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Progress:
    """A rich progress bar on a terminal; in a file or pipe only the failure lines (no ``\r``,
    no colour), so a station's log stays readable."""

    def __init__(self, total: int, stream: TextIO, show_bar: bool) -> None:
        self.console = Console(file=stream, highlight=False)
        self.bar: Progress | None = None
        if show_bar and self.console.is_terminal:
            self.bar = Progress(
                TextColumn("units"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self.task = self.bar.add_task("units", total=total, failed=0)
        self.failed = 0

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def step(self, failed: bool, note: str | None) -> None:
        self.failed += failed
        if note is not None:
            self.console.print(note, markup=False, soft_wrap=True)
        if self.bar is not None:
            self.bar.update(self.task, advance=1, failed=self.failed)


# Over 80 lines on purpose: a batch's workers, their results in order, and the line's records
# written as each unit ends.
def batch(
    factory_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    count: int,
    *,
    station: str,
    workers: int = 1,
    progress: bool = True,
    registration: RegistrationKey | None = None,
    stream: TextIO | None = None,
) -> BatchResult:
    """Provision ``count`` units with allocated serials; see the module docstring.

    ``stream`` receives the progress bar and failure lines (default: stderr; with ``progress``
    False, only the failure lines).

    Raises:
        ConfigError: ``count`` < 1, ``workers`` < 1, no usable CA, an invalid profile.
    """
    if count < 1:
        raise ConfigError("--count", "must be at least 1")
    if workers < 1:
        raise ConfigError("--workers", "must be at least 1")
    out = stream if stream is not None else sys.stderr
    ca = pki.load_issuer(factory_dir)
    profile = load_profile()
    result = BatchResult(count)
    t0 = time.perf_counter()

    def one(_: int) -> UnitResult:
        return provision_unit(
            factory_dir, out_dir, station=station, registration=registration, ca=ca, profile=profile
        )

    pool: Executor
    if workers == 1:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="factory")
        submit = pool.submit
        jobs = [lambda: submit(one, 0)] * count
    else:
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a threaded parent
            initializer=_worker_start,
            initargs=(
                str(factory_dir),
                str(profile.source),
                (registration.key_id, registration.secret.reveal()) if registration else None,
            ),
        )
        process_pool = pool
        jobs = [
            lambda: process_pool.submit(_worker_unit, str(factory_dir), str(out_dir), station)
        ] * count

    def collect(future: Future[UnitResult], bar: _Progress) -> None:
        note: str | None = None
        try:
            unit = future.result()
        except (DeviceSimError, OSError, ValueError) as exc:
            note = f"UNIT ERROR {type(exc).__name__}: {exc}"
            result.errors.append(note)
            failed = True
        else:
            result.units.append(unit)
            failed = not unit.passed
            if failed:
                bad = ", ".join(
                    f"{c.name}: {c.message}" for c in unit.report.checks if not c.passed
                )
                note = f"{unit.report.summary} - {bad}"
        bar.step(failed, note)

    with _Progress(count, out, progress) as bar, pool:
        futures = [job() for job in jobs]
        done: set[Future[UnitResult]] = set()
        try:
            for future in as_completed(futures):
                done.add(future)
                collect(future, bar)
        except KeyboardInterrupt:
            # Ctrl-C: start no new unit, finish the ones being made (a unit stopped half-way
            # would hold a serial with no record), then report what was made.
            result.interrupted = True
            running = [f for f in futures if not f.cancel() and f not in done]
            wait(running)
            for future in running:
                collect(future, bar)
    result.units.sort(key=lambda u: u.serial)
    result.elapsed_s = time.perf_counter() - t0
    return result
