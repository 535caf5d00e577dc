"""Provision N units in a row (or with a few worker threads), with a progress bar on stderr.

A unit that fails its self-test (or raises while being made) is reported on stderr and counted;
the batch goes on. :attr:`BatchResult.ok` is False if any unit failed, and the CLI exits 1.
The CA and the profile are loaded once, before the first unit, so a missing CA stops the batch
at once instead of failing N times.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TextIO

from .. import pki
from ..errors import ConfigError, DeviceSimError
from ..profile import load_profile
from .registration import RegistrationKey
from .unit import UnitResult, provision_unit

_BAR_WIDTH = 30


@dataclass
class BatchResult:
    requested: int
    units: list[UnitResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # units that raised (no self-test report)
    elapsed_s: float = 0.0

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
    """``[#########.....]  12/20 units  1 failed  31.5/min`` redrawn with ``\\r``."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total, self.stream, self.t0 = total, stream, time.perf_counter()
        self.done = self.failed = 0

    def _draw(self) -> None:
        if self.stream is None:
            return
        filled = _BAR_WIDTH * self.done // max(self.total, 1)
        rate = 60 * self.done / max(time.perf_counter() - self.t0, 1e-9)
        self.stream.write(f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] "
                          f"{self.done}/{self.total} units  {self.failed} failed  "
                          f"{rate:.1f}/min")
        self.stream.flush()

    def start(self) -> None:
        self._draw()

    def step(self, failed: bool, note: str | None) -> None:
        self.done += 1
        self.failed += failed
        if note is not None and self.stream is not None:
            self.stream.write("\r" + " " * (_BAR_WIDTH + 40) + "\r" + note + "\n")
        self._draw()

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def batch(factory_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], count: int, *,
          station: str, workers: int = 1, progress: bool = True,
          registration: RegistrationKey | None = None, stream: TextIO | None = None
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
    bar = _Progress(count, out if progress else None)
    t0 = time.perf_counter()

    def one(_: int) -> UnitResult:
        return provision_unit(factory_dir, out_dir, station=station, registration=registration,
                              ca=ca, profile=profile)

    bar.start()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="factory") as pool:
        futures = [pool.submit(one, i) for i in range(count)]
        for future in as_completed(futures):
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
                    bad = ", ".join(f"{c.name}: {c.message}" for c in unit.report.checks
                                    if not c.passed)
                    note = f"{unit.report.summary} - {bad}"
            if note is not None and not progress:
                out.write(note + "\n")
            else:
                bar.step(failed, note)
    if progress:
        bar.finish()
    result.units.sort(key=lambda u: u.serial)
    result.elapsed_s = time.perf_counter() - t0
    return result

