"""DeviceStore: the device's durable state in one SQLite file.

Every onboarding transition is one ``BEGIN IMMEDIATE ... COMMIT`` transaction in WAL mode, so a
daemon killed at any instant restarts into the last committed state: a commit is in the WAL
before it returns. Durability is chosen per use (``durability``): ``full`` (the default, every
device and ``device-sim run``) also fsyncs the WAL at each commit, so a device that loses power
keeps what it committed, credentials included; ``normal`` (``device-sim fleet``: emulated
devices on one host, where a power cut takes the whole fleet) leaves the fsync to checkpoints: a
killed process still loses nothing committed, only a crash of the host's kernel could.
The store keeps the identity (device id, SRP salt and verifier: never the setup code), the
onboarding record (state, code, the current Wi-Fi credentials), the saved networks (the last N
that worked, most recent first: the current one joins the list in the same transaction that
commits ``online``) and the setup-code failure counter that drives the backoff. The file is
created with mode 0600: it holds the Wi-Fi passphrases, as wpa_supplicant's and
NetworkManager's own files do.
"""

# Over 500 lines on purpose: one SQLite schema, its migrations and every transaction on it; split,
# one transition's write would span files.

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..codes import Code, State
from ..errors import IdentityExists, StoreError
from ..network.base import Security
from ..network.eap import EapSettings, eap_from_json
from ..security.secret import Secret

SCHEMA_VERSION = 2  # 2: the saved networks (a version-1 device's one network migrates in)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identity (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    device_id TEXT NOT NULL,
    srp_salt BLOB NOT NULL,
    srp_verifier BLOB NOT NULL,
    created_at REAL NOT NULL,
    softap_passphrase TEXT
);
CREATE TABLE IF NOT EXISTS onboarding (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    state INTEGER NOT NULL,
    code INTEGER NOT NULL,
    phase TEXT NOT NULL,
    detail TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    ssid BLOB,
    passphrase TEXT,
    hidden INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cloud (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    status TEXT NOT NULL,            -- none | pending | active
    mode TEXT,                       -- zero-touch | claim | registration
    request_id TEXT,                 -- the activation request a restart repeats (idempotent)
    account TEXT,
    generation INTEGER,
    token TEXT,                      -- operational credential (secret)
    device_user TEXT,
    device_password TEXT,            -- registration path, cloud-provided (secret)
    after_reset INTEGER NOT NULL,    -- the next activation follows a factory reset
    in_account TEXT,                 -- from the app (SET_ACTIVATION), until activation
    in_claim_token TEXT,             -- (secret)
    in_device_password TEXT          -- (secret)
);
CREATE TABLE IF NOT EXISTS networks (
    ssid BLOB PRIMARY KEY,
    passphrase TEXT,                 -- (secret, as the onboarding row's)
    hidden INTEGER NOT NULL,
    last_online_at REAL NOT NULL     -- wall-clock time it was last online on it
);
CREATE TABLE IF NOT EXISTS auth (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    failures INTEGER NOT NULL,
    last_failure_ms INTEGER NOT NULL
);
"""

# Sentinel for transition(): leave stored credentials as they are.
KEEP = object()


@dataclass(frozen=True)
class Identity:
    device_id: str
    srp_salt: bytes
    srp_verifier: bytes
    created_at: float
    softap_passphrase: Secret | None = None  # the SoftAP's WPA2 passphrase (on the label)

    @property
    def short_id(self) -> str:
        return self.device_id[-4:].upper()

    @property
    def id_low_bytes(self) -> bytes:
        return bytes.fromhex(self.device_id)[-3:]

    def __repr__(self) -> str:
        return f"Identity(device_id={self.device_id!r}, verifier=<{len(self.srp_verifier)} bytes>)"


@dataclass(frozen=True)
class Credentials:
    ssid: bytes
    passphrase: Secret | None
    hidden: bool
    security: Security | None = None  # what the app sent (None: the scan's, or tried in turn)
    eap: EapSettings | None = None  # an enterprise network's sign-in (its secrets included)


@dataclass(frozen=True)
class SavedNetwork:
    """A network the device was online on (its passphrase is a :class:`Secret`)."""

    ssid: bytes
    passphrase: Secret | None
    hidden: bool
    last_online_at: float
    security: Security | None = None
    eap: EapSettings | None = None

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.ssid, self.passphrase, self.hidden, self.security, self.eap)

    def public(self, current: bytes | None = None) -> dict[str, object]:
        """What NETWORKS and ``ctl status`` show: never the passphrase."""
        try:
            text: str | None = self.ssid.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "ssid_hex": self.ssid.hex(),
            "ssid": text,
            "hidden": self.hidden,
            "last_online_at": round(self.last_online_at, 3),
            "current": self.ssid == current,
            **({"eap": self.eap.public()} if self.eap is not None else {}),
        }


@dataclass(frozen=True)
class CloudBinding:
    """The device's cloud activation: ``status`` none, pending (asked, answer not committed)
    or active. Secrets are :class:`Secret`."""

    status: str
    mode: str | None
    request_id: str | None
    account: str | None
    generation: int | None
    token: Secret | None
    device_user: str | None
    device_password: Secret | None
    after_reset: bool
    in_account: str | None
    in_claim_token: Secret | None
    in_device_password: Secret | None

    def public(self) -> dict[str, object]:
        """What STATUS and ``ctl status`` show: never a token, password or claim token."""
        return {
            "status": self.status,
            "mode": self.mode,
            "account": self.account,
            "generation": self.generation,
            "device_user": self.device_user,
        }


@dataclass(frozen=True)
class ActivationResult:
    mode: str
    account: str
    generation: int
    token: Secret
    device_user: str | None = None
    device_password: Secret | None = None


@dataclass(frozen=True)
class OnboardingRecord:
    state: State
    code: Code
    phase: str
    detail: str
    attempt: int
    ssid: bytes | None
    hidden: bool
    has_passphrase: bool
    seq: int
    updated_at: float


class DeviceStore:
    """The device's SQLite file. Use as a context manager; methods raise StoreError."""

    FILENAME = "device.sqlite3"

    DURABILITY = ("full", "normal")  # SQLite's synchronous= in WAL mode (see the module doc)

    def __init__(self, state_dir: str | os.PathLike[str], *, durability: str = "full") -> None:
        if durability not in self.DURABILITY:
            raise ValueError(f"durability: full or normal, not {durability!r}")
        self.durability = durability
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / self.FILENAME
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> DeviceStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.durability.upper()}")
            # Deleted secrets are overwritten, not left in free pages (see forget_secrets()).
            db.execute("PRAGMA secure_delete=ON")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(identity)")}
            if "softap_passphrase" not in columns:  # a store made before the SoftAP door
                db.execute("ALTER TABLE identity ADD COLUMN softap_passphrase TEXT")
            for table in ("onboarding", "networks"):  # a store made before these fields
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column in ("security", "eap"):  # eap: JSON, with its secrets (0600 file)
                    if column not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
            with _tx(db):
                db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
                db.execute(
                    "INSERT OR IGNORE INTO onboarding (one, state, code, phase, detail, attempt,"
                    " hidden, seq, updated_at) VALUES (1, ?, 0, '', '', 0, 0, 0, ?)",
                    (int(State.UNPROVISIONED), time.time()),
                )
                db.execute("INSERT OR IGNORE INTO auth VALUES (1, 0, 0)")
                db.execute(
                    "INSERT OR IGNORE INTO cloud (one, status, after_reset) VALUES (1, 'none', 0)"
                )
                _migrate(db)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._db = db

    def harden(self) -> None:
        """Make the state directory 0700 and every file in it 0600 (the daemon does this at
        every start, whatever the umask or whoever loosened them; e.g. certificates copied in
        0644). SQLite gives the -wal and -shm files the database's mode.

        Raises StoreError if a file cannot be changed (not ours, read-only file system).
        """
        try:
            _private(self.state_dir, 0o700)
            for entry in self.state_dir.iterdir():
                if entry.is_file() and not entry.is_symlink():
                    _private(entry, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot make {self.state_dir} private: {exc}") from exc

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    # --- identity ------------------------------------------------------------------------------

    def create_identity(
        self, device_id: str, salt: bytes, verifier: bytes, softap_passphrase: Secret | None = None
    ) -> Identity:
        """Store the identity once. Raises StoreError if the device already has one."""
        bytes.fromhex(device_id)  # ValueError for a malformed id
        ap = softap_passphrase.reveal() if softap_passphrase is not None else None
        try:
            with _tx(self.db):
                self.db.execute(
                    "INSERT INTO identity (one, device_id, srp_salt, srp_verifier,"
                    " created_at, softap_passphrase) VALUES (1, ?, ?, ?, ?, ?)",
                    (device_id, salt, verifier, time.time(), ap),
                )
        except sqlite3.IntegrityError:
            raise IdentityExists(
                f"{self.path} already holds a device identity",
                f"use another --state-dir for a new device; to start this one over, run "
                f"device-sim ctl --state-dir {self.path.parent} factory-reset (its daemon "
                f"running), or remove {self.path.parent}",
            ) from None
        identity = self.identity()
        assert identity is not None
        return identity

    def identity(self) -> Identity | None:
        row = self.db.execute(
            "SELECT device_id, srp_salt, srp_verifier, created_at, softap_passphrase FROM identity"
        ).fetchone()
        if row is None:
            return None
        return Identity(
            row[0],
            bytes(row[1]),
            bytes(row[2]),
            row[3],
            Secret(row[4]) if row[4] is not None else None,
        )

    def set_softap_passphrase(self, passphrase: Secret) -> Identity:
        """Give an identity made before the SoftAP door its AP passphrase (once)."""
        with _tx(self.db):
            self.db.execute(
                "UPDATE identity SET softap_passphrase = ? WHERE one = 1"
                " AND softap_passphrase IS NULL",
                (passphrase.reveal(),),
            )
        identity = self.identity()
        if identity is None:
            raise StoreError(f"{self.path} holds no device identity")
        return identity

    # --- device settings (hostname, device name) ------------------------------------------------

    def setting(self, key: str) -> str | None:
        row = self.db.execute(
            "SELECT value FROM meta WHERE key = ?", (f"setting.{key}",)
        ).fetchone()
        return str(row[0]) if row else None

    def reserve_event_seqs(self, count: int) -> int:
        """Reserve the next ``count`` event sequence numbers and return the first. The highest
        reserved is persisted, so numbers keep rising across restarts (one write per block; a
        restart skips what the last run reserved and did not use)."""
        with _tx(self.db):
            row = self.db.execute("SELECT value FROM meta WHERE key = 'event_seq'").fetchone()
            first = int(row[0]) + 1 if row else 1
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('event_seq', ?)", (str(first + count - 1),)
            )
        return first

    def set_setting(self, key: str, value: str) -> None:
        with _tx(self.db):
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"setting.{key}", value))

    # --- onboarding record ---------------------------------------------------------------------

    def record(self) -> OnboardingRecord:
        row = self.db.execute(
            "SELECT state, code, phase, detail, attempt, ssid, hidden, passphrase IS NOT NULL, seq,"
            " updated_at FROM onboarding"
        ).fetchone()
        return OnboardingRecord(
            State(row[0]),
            Code(row[1]),
            row[2],
            row[3],
            row[4],
            bytes(row[5]) if row[5] is not None else None,
            bool(row[6]),
            bool(row[7]),
            row[8],
            row[9],
        )

    def credentials(self) -> Credentials | None:
        row = self.db.execute(
            "SELECT ssid, passphrase, hidden, security, eap FROM onboarding"
        ).fetchone()
        if row[0] is None:
            return None
        return Credentials(
            bytes(row[0]),
            Secret(row[1]) if row[1] is not None else None,
            bool(row[2]),
            _security(row[3]),
            _eap(row[4]),
        )

    def transition(
        self,
        state: State,
        code: Code = Code.OK,
        *,
        phase: str = "",
        detail: str = "",
        credentials: Credentials | object | None = KEEP,
        new_attempt: bool = False,
        activation: ActivationResult | None = None,
        forget_cloud: bool = False,
        remember: int | None = None,
        forget_networks: bool = False,
    ) -> OnboardingRecord:
        """Commit one transition atomically and return the new record.

        ``credentials``: KEEP (default) leaves them, None clears them, a Credentials replaces.
        ``new_attempt`` increments the attempt counter (a join starts). ``activation`` commits
        the cloud's answer in the same transaction (never bound in the cloud but not here);
        ``forget_cloud`` clears the binding (factory reset) and marks the next activation as
        following a reset. ``remember`` (with ``online``) puts the current credentials first
        in the saved networks and keeps that many; ``forget_networks`` empties them (reset).
        """
        sets = [
            "state = ?",
            "code = ?",
            "phase = ?",
            "detail = ?",
            "seq = seq + 1",
            "updated_at = ?",
        ]
        args: list[object] = [int(state), int(code), phase, detail, time.time()]
        if new_attempt:
            sets.append("attempt = attempt + 1")
        if credentials is None:
            sets += [
                "ssid = NULL", "passphrase = NULL", "hidden = 0", "security = NULL", "eap = NULL",
                "attempt = 0",
            ]  # fmt: skip
        elif isinstance(credentials, Credentials):
            sets += ["ssid = ?", "passphrase = ?", "hidden = ?", "security = ?", "eap = ?"]
            args += [
                credentials.ssid,
                credentials.passphrase.reveal() if credentials.passphrase else None,
                int(credentials.hidden),
                str(credentials.security) if credentials.security else None,
                _eap_json(credentials.eap),
            ]
        try:
            with _tx(self.db):
                self.db.execute(f"UPDATE onboarding SET {', '.join(sets)}", args)
                if activation is not None:
                    a = activation
                    self.db.execute(
                        "UPDATE cloud SET status = 'active', mode = ?, account = ?,"
                        " generation = ?, token = ?, device_user = ?, device_password = ?,"
                        " after_reset = 0, in_claim_token = NULL, in_device_password = NULL",
                        (
                            a.mode,
                            a.account,
                            a.generation,
                            a.token.reveal(),
                            a.device_user,
                            a.device_password.reveal() if a.device_password else None,
                        ),
                    )
                if forget_cloud:
                    self.db.execute(
                        "UPDATE cloud SET status = 'none', mode = NULL, request_id = NULL,"
                        " account = NULL, generation = NULL, token = NULL, device_user = NULL,"
                        " device_password = NULL, after_reset = 1, in_account = NULL,"
                        " in_claim_token = NULL, in_device_password = NULL"
                    )
                    self.db.execute("DELETE FROM meta WHERE key = 'reset_pending'")
                if forget_networks:
                    self.db.execute("DELETE FROM networks")
                if remember is not None:
                    self._remember_current(remember)
        except sqlite3.Error as exc:
            raise StoreError(f"transition to {state.wire_name} failed: {exc}") from exc
        return self.record()

    # --- saved networks ------------------------------------------------------------------------

    def _remember_current(self, keep: int) -> None:
        """Inside a transaction: the current credentials first in the list, ``keep`` at most."""
        self.db.execute(
            "INSERT INTO networks (ssid, passphrase, hidden, last_online_at, security, eap)"
            " SELECT ssid, passphrase, hidden, ?, security, eap FROM onboarding"
            " WHERE ssid IS NOT NULL"
            " ON CONFLICT (ssid) DO UPDATE SET passphrase = excluded.passphrase,"
            " hidden = excluded.hidden, last_online_at = excluded.last_online_at,"
            " security = excluded.security, eap = excluded.eap",
            (time.time(),),
        )
        self.db.execute(
            "DELETE FROM networks WHERE ssid NOT IN (SELECT ssid FROM networks"
            " ORDER BY last_online_at DESC, rowid DESC LIMIT ?)",
            (max(1, keep),),
        )

    def saved_networks(self) -> list[SavedNetwork]:
        """The networks the device was online on, most recent first."""
        rows = self.db.execute(
            "SELECT ssid, passphrase, hidden, last_online_at, security, eap FROM networks"
            " ORDER BY last_online_at DESC, rowid DESC"
        ).fetchall()
        return [
            SavedNetwork(
                bytes(r[0]),
                Secret(r[1]) if r[1] is not None else None,
                bool(r[2]),
                float(r[3]),
                _security(r[4]),
                _eap(r[5]),
            )
            for r in rows
        ]

    def forget_network(self, ssid: bytes) -> bool:
        """Drop one saved network; False when it was not saved."""
        try:
            with _tx(self.db):
                gone = self.db.execute("DELETE FROM networks WHERE ssid = ?", (bytes(ssid),))
        except sqlite3.Error as exc:
            raise StoreError(f"forgetting a saved network failed: {exc}") from exc
        return gone.rowcount > 0

    def remember_history(self, networks: list[Credentials], *, online: bool) -> None:
        """A device's past, written at once (a scenario's history for ``demo``/``init``): the
        networks as saved, the first the most recent; ``online`` leaves the device as it was
        before a power cut: online on the first one. Only for a device with none saved."""
        now = time.time()
        with _tx(self.db):
            if self.db.execute("SELECT COUNT(*) FROM networks").fetchone()[0]:
                raise StoreError(f"{self.path} already has saved networks")
            for age, net in enumerate(networks):
                self.db.execute(
                    "INSERT INTO networks (ssid, passphrase, hidden, last_online_at, security, eap)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        net.ssid,
                        net.passphrase.reveal() if net.passphrase else None,
                        int(net.hidden),
                        now - 3600 * (age + 1),
                        str(net.security) if net.security else None,
                        _eap_json(net.eap),
                    ),
                )
            if online and networks:
                first = networks[0]
                self.db.execute(
                    "UPDATE onboarding SET state = ?, code = 0, phase = 'history', detail = '',"
                    " ssid = ?, passphrase = ?, hidden = ?, security = ?, eap = ?, seq = seq + 1,"
                    " updated_at = ?",
                    (
                        int(State.ONLINE),
                        first.ssid,
                        first.passphrase.reveal() if first.passphrase else None,
                        int(first.hidden),
                        str(first.security) if first.security else None,
                        _eap_json(first.eap),
                        now,
                    ),
                )

    # --- cloud binding -------------------------------------------------------------------------

    def cloud(self) -> CloudBinding:
        row = self.db.execute(
            "SELECT status, mode, request_id, account, generation, token, device_user,"
            " device_password, after_reset, in_account, in_claim_token, in_device_password"
            " FROM cloud"
        ).fetchone()

        def secret(value: object) -> Secret | None:
            return Secret(str(value)) if value is not None else None

        return CloudBinding(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            secret(row[5]),
            row[6],
            secret(row[7]),
            bool(row[8]),
            row[9],
            secret(row[10]),
            secret(row[11]),
        )

    def set_activation_inputs(
        self, account: str | None, claim_token: Secret | None, device_password: Secret | None
    ) -> None:
        """What the app sent for the next activation (SET_ACTIVATION)."""
        with _tx(self.db):
            self.db.execute(
                "UPDATE cloud SET in_account = ?, in_claim_token = ?, in_device_password = ?",
                (
                    account,
                    claim_token.reveal() if claim_token else None,
                    device_password.reveal() if device_password else None,
                ),
            )

    def begin_activation(self, request_id: str) -> None:
        """Mark an activation as asked before the request leaves (a crash then repeats it)."""
        with _tx(self.db):
            self.db.execute("UPDATE cloud SET status = 'pending', request_id = ?", (request_id,))

    def abandon_activation(self) -> None:
        """The cloud refused: the next attempt asks anew (a new request id)."""
        with _tx(self.db):
            self.db.execute(
                "UPDATE cloud SET status = CASE WHEN token IS NULL THEN 'none'"
                " ELSE 'active' END, request_id = NULL WHERE status = 'pending'"
            )

    def forget_secrets(self) -> None:
        """After a factory reset: move the WAL into the database and truncate it, so the
        cleared credentials (overwritten in the database by ``secure_delete``) are not left in
        old WAL frames either."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StoreError(f"checkpoint after the factory reset failed: {exc}") from exc

    # --- factory reset intent -------------------------------------------------------------------

    def begin_factory_reset(self, source: str) -> None:
        """Record that a factory reset was asked for, before anything of it happens (the cloud
        release first): a restart finds it and finishes the reset. The transition with
        ``forget_cloud`` clears it in the same transaction that clears the binding."""
        with _tx(self.db):
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('reset_pending', ?)", (source,))

    def pending_reset(self) -> str | None:
        """Who asked for a factory reset that has not finished, or None."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'reset_pending'").fetchone()
        return str(row[0]) if row is not None else None

    # --- setup-code failures (backoff) ----------------------------------------------------------

    def auth_failures(self) -> tuple[int, int]:
        row = self.db.execute("SELECT failures, last_failure_ms FROM auth").fetchone()
        return int(row[0]), int(row[1])

    def record_auth_failure(self, now_ms: int) -> int:
        with _tx(self.db):
            self.db.execute(
                "UPDATE auth SET failures = failures + 1, last_failure_ms = ?", (now_ms,)
            )
        return self.auth_failures()[0]

    def reset_auth_failures(self) -> None:
        with _tx(self.db):
            self.db.execute("UPDATE auth SET failures = 0, last_failure_ms = 0")


def _migrate(db: sqlite3.Connection) -> None:
    """Inside the opening transaction: bring an older store to :data:`SCHEMA_VERSION`.

    Version 1 kept one network, in the onboarding row; a device that was online on it keeps it
    as its first saved network (one that never worked is not a network that worked)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    version = int(row[0]) if row else SCHEMA_VERSION
    if version < 2:
        db.execute(
            "INSERT OR IGNORE INTO networks (ssid, passphrase, hidden, last_online_at)"
            " SELECT ssid, passphrase, hidden, updated_at FROM onboarding"
            " WHERE ssid IS NOT NULL AND state = ?",
            (int(State.ONLINE),),
        )
    if version < SCHEMA_VERSION:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))


def _security(stored: str | None) -> Security | None:
    """A stored security mode (None: not sent; an unknown word from a newer version: None)."""
    try:
        return Security(stored) if stored else None
    except ValueError:
        return None


def _eap(stored: str | None) -> EapSettings | None:
    """Stored enterprise settings (None: none; a record a newer version wrote that this one
    cannot read: None, and the join says the network needs its settings again)."""
    if not stored:
        return None
    try:
        return eap_from_json(json.loads(stored))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _eap_json(eap: EapSettings | None) -> str | None:
    return json.dumps(eap.to_json()) if eap is not None else None


def _private(target: Path, mode: int) -> None:
    """chmod ``target`` to ``mode`` if this user owns it (what is not ours is left alone: the
    doctor reports a loose state directory)."""
    if target.stat().st_uid == os.geteuid():
        os.chmod(target, mode)


@contextmanager
def _tx(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
