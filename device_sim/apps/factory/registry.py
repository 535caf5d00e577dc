"""The serial registry: one SQLite file per factory that hands out serials and refuses reuse.

``<factory_dir>/registry.sqlite3`` (mode 0600) holds a counter per ``<prefix>-<YY>`` and one row
per issued unit (serial, device id, certificate serial, time, station, self-test result). Every
method opens its own short connection and runs one ``BEGIN IMMEDIATE`` transaction, so several
workers (threads or processes, several stations sharing the file) never get the same serial.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError

FILENAME = "registry.sqlite3"
DEFAULT_PREFIX = "DS"
SERIAL_RE = re.compile(r"(?P<prefix>[A-Z]{1,8})-(?P<yy>[0-9]{2})-(?P<n>[0-9]{6})")
_PREFIX_RE = re.compile(r"[A-Z]{1,8}")
_MAX_NUMBER = 999_999
_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (scope TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    serial TEXT PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE,
    cert_serial TEXT NOT NULL UNIQUE,
    issued_at TEXT NOT NULL,
    station TEXT NOT NULL,
    result TEXT NOT NULL DEFAULT 'pending'
);
"""


@dataclass(frozen=True)
class IssuedUnit:
    serial: str
    device_id: str
    cert_serial: str
    issued_at: str
    station: str
    result: str


def validate_serial(serial: str) -> str:
    """``serial`` if it has the form ``DS-25-000123``; raises ConfigError naming it otherwise."""
    if not SERIAL_RE.fullmatch(serial):
        raise ConfigError(
            f"serial {serial!r}",
            "must look like DS-25-000123 (1-8 capital letters, 2-digit year, 6 digits)",
        )
    return serial


class SerialRegistry:
    """The registry file of one factory directory.

    Every method raises ConfigError naming the file if it cannot be opened or written.
    """

    def __init__(self, factory_dir: str | os.PathLike[str]) -> None:
        self.path = Path(factory_dir) / FILENAME

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(str(self.path), f"cannot open the serial registry: {exc}") from None
        try:
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ConfigError(str(self.path), f"serial registry error: {exc}") from None
        finally:
            db.close()

    def next_serial(self, prefix: str = DEFAULT_PREFIX, *, year: int | None = None) -> str:
        """Allocate the next free serial ``<prefix>-<YY>-<NNNNNN>`` (one transaction).

        The counter runs per prefix and year; serials registered by hand are skipped. An
        allocated serial is never handed out again, even if it is never registered.

        Raises:
            ConfigError: a malformed prefix, or the 999999 serials of this year are used up.
        """
        if not _PREFIX_RE.fullmatch(prefix):
            raise ConfigError(f"prefix {prefix!r}", "must be 1-8 capital letters")
        yy = (year if year is not None else dt.datetime.now(dt.UTC).year) % 100
        scope = f"{prefix}-{yy:02d}"
        with self._tx() as db:
            row = db.execute("SELECT last FROM counters WHERE scope = ?", (scope,)).fetchone()
            number = (row[0] if row else 0) + 1
            while db.execute(
                "SELECT 1 FROM units WHERE serial = ?", (f"{scope}-{number:06d}",)
            ).fetchone():
                number += 1
            if number > _MAX_NUMBER:
                raise ConfigError(f"serial scope {scope}", "all 999999 serials are used")
            db.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", (scope, number))
        return f"{scope}-{number:06d}"

    def register(self, serial: str, *, device_id: str, cert_serial: str, station: str) -> None:
        """Record ``serial`` as issued to ``device_id`` with certificate ``cert_serial``.

        Raises:
            ConfigError: the serial is malformed or already issued (reuse is refused), or the
                device id or certificate serial is already registered.
        """
        validate_serial(serial)
        with self._tx() as db:
            _refuse_reuse(db, serial)
            try:
                db.execute(
                    "INSERT INTO units VALUES (?, ?, ?, ?, ?, 'pending')",
                    (
                        serial,
                        device_id,
                        cert_serial,
                        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        station,
                    ),
                )
            except sqlite3.IntegrityError:
                raise ConfigError(
                    f"serial {serial}",
                    "device id or certificate serial is already registered to another unit",
                ) from None

    def check_unissued(self, serial: str) -> None:
        """Raise ConfigError if ``serial`` is malformed or already issued."""
        validate_serial(serial)
        with self._tx() as db:
            _refuse_reuse(db, serial)

    def set_result(self, serial: str, result: str) -> None:
        """Store the self-test result (``passed`` / ``failed``). Raises ConfigError if unknown."""
        with self._tx() as db:
            if (
                db.execute(
                    "UPDATE units SET result = ? WHERE serial = ?", (result, serial)
                ).rowcount
                != 1
            ):
                raise ConfigError(f"serial {serial}", "is not registered")

    def lookup(self, serial: str) -> IssuedUnit | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM units WHERE serial = ?", (serial,)).fetchone()
        return IssuedUnit(*row) if row else None

    def units(self) -> list[IssuedUnit]:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM units ORDER BY serial").fetchall()
        return [IssuedUnit(*r) for r in rows]


def _refuse_reuse(db: sqlite3.Connection, serial: str) -> None:
    previous = db.execute(
        "SELECT station, issued_at FROM units WHERE serial = ?", (serial,)
    ).fetchone()
    if previous:
        raise ConfigError(
            f"serial {serial}",
            f"already issued at station {previous[0]} on {previous[1]}; a serial is never reused",
        )
