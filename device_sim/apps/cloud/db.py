"""The cloud emulator's SQLite file: accounts, imported units, bindings and credentials.

One file (``cloud.sqlite3``, WAL journal, mode 0600). Every write is one ``BEGIN IMMEDIATE``
transaction; the emulator runs all calls on one worker thread, so they are also serialised.
Passwords are stored as salted scrypt hashes; bearer tokens, claim tokens and registration secrets
as SHA-256 (they are random and long, so a fast hash is enough). The one place plaintext
credentials are kept is ``activations.response``: the stored answer an activation retry gets again.

Methods raise :class:`~device_sim.apps.cloud.errors.CloudApiError` for what the caller did
wrong (400, 401, 404, 409) and :class:`~device_sim.errors.StoreError` when the file cannot be
opened.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import StoreError
from .errors import CloudApiError, bad_request

__all__ = ["DB_FILE", "CloudDb", "hash_password", "sha256_hex", "verify_password"]

DB_FILE = "cloud.sqlite3"
SCHEMA_VERSION = 1
DEVICE_USER_PREFIX = "dev-"
MIN_PASSWORD = 8
MAX_TEXT = 128
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    serial TEXT PRIMARY KEY, device_id TEXT NOT NULL UNIQUE,
    cert_fingerprint_sha256 TEXT NOT NULL, claim_token_sha256 TEXT, claim_expires_at REAL,
    claim_used_at REAL, imported_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS registration_keys (
    key_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, imported_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS supply_chain (
    serial TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(name),
    recorded_at REAL NOT NULL);
-- account NULL: released (the row keeps the generation counter).
CREATE TABLE IF NOT EXISTS bindings (
    device_id TEXT PRIMARY KEY, account TEXT REFERENCES accounts(name), mode TEXT,
    bound_at REAL, generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
    token_sha256 TEXT PRIMARY KEY, device_id TEXT NOT NULL, account TEXT NOT NULL,
    generation INTEGER NOT NULL, issued_at REAL NOT NULL, revoked_at REAL);
CREATE INDEX IF NOT EXISTS credentials_by_device ON credentials (device_id);
CREATE TABLE IF NOT EXISTS device_users (
    name TEXT PRIMARY KEY, device_id TEXT NOT NULL UNIQUE, account TEXT NOT NULL,
    password_hash TEXT NOT NULL, generation INTEGER NOT NULL, created_at REAL NOT NULL,
    revoked_at REAL);
CREATE TABLE IF NOT EXISTS activations (
    device_id TEXT NOT NULL, request_id TEXT NOT NULL, mode TEXT NOT NULL,
    response TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (device_id, request_id));
"""


# -- hashing --------------------------------------------------------------------------------------


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    """A salted scrypt hash: ``scrypt$n$r$p$salt$hash`` (base64 parts)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return "$".join(
        [
            "scrypt",
            str(_SCRYPT["n"]),
            str(_SCRYPT["r"]),
            str(_SCRYPT["p"]),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` result (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# -- validation -----------------------------------------------------------------------------------


def text_field(
    obj: dict[str, Any],
    key: str,
    *,
    where: str,
    required: bool = True,
    pattern: re.Pattern[str] | None = None,
) -> str | None:
    """``obj[key]`` as a non-empty string of at most 128 characters (or None if optional).

    Raises:
        CloudApiError: 400 bad_request.
    """
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise bad_request(f"{where}{key}: a string of 1-{MAX_TEXT} characters is required")
    if pattern is not None and not pattern.fullmatch(value):
        raise bad_request(f"{where}{key}: invalid characters")
    return value


def name_field(obj: dict[str, Any], key: str, *, where: str = "") -> str:
    value = text_field(obj, key, where=where, pattern=_NAME)
    assert value is not None
    return value


def _hex64(obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    normal = value.replace(":", "").lower() if isinstance(value, str) else ""
    if not _HEX64.fullmatch(normal):
        raise bad_request(f"{where}{key}: 64 hex digits (a SHA-256) are required")
    return normal


def _timestamp(obj: dict[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(f"{where}{key}: an ISO 8601 date-time is required") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _password(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_TEXT:
        raise bad_request(f"{key}: {MIN_PASSWORD}-{MAX_TEXT} characters are required")
    return value


# -- the database ---------------------------------------------------------------------------------


class CloudDb:
    """The emulator's database. Not thread-safe: use it from one thread at a time."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> CloudDb:
        """Open (or create, mode 0600) the database at ``path``.

        Raises:
            StoreError: the file cannot be created, opened or migrated.
        """
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the cloud database {path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot initialise the cloud database {path}: {exc}") from exc
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back if the block raises."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- admin ----------------------------------------------------------------------------------

    def import_batch(self, body: Any, now: float) -> tuple[int, int]:
        """Import the factory's cloud-import file (all or nothing); returns (units, keys).

        Re-importing a serial updates it; a new claim token makes it unused again. Keys other
        than those documented are ignored.

        Raises:
            CloudApiError: 400 for a malformed file, 409 when a serial or device id is already
                taken by another unit.
        """
        if not isinstance(body, dict):
            raise bad_request("the import file must be a JSON object")
        units, keys = body.get("units", []), body.get("registration", [])
        if not isinstance(units, list) or not isinstance(keys, list):
            raise bad_request("units and registration must be lists")
        parsed = [self._parse_unit(u, f"units[{i}].") for i, u in enumerate(units)]
        parsed_keys = []
        for i, key in enumerate(keys):
            where = f"registration[{i}]."
            if not isinstance(key, dict):
                raise bad_request(f"{where[:-1]}: an object is required")
            parsed_keys.append(
                (name_field(key, "key_id", where=where), _hex64(key, "secret_sha256", where))
            )
        with self.transaction() as conn:
            for u in parsed:
                old = conn.execute(
                    "SELECT * FROM units WHERE serial = ? OR device_id = ?",
                    (u["serial"], u["device_id"]),
                ).fetchall()
                if any((r["serial"], r["device_id"]) != (u["serial"], u["device_id"]) for r in old):
                    raise CloudApiError(
                        409,
                        "conflict",
                        f"serial {u['serial']} or device "
                        f"{u['device_id']} is already imported with another pair",
                    )
                used = (
                    old[0]["claim_used_at"]
                    if old and old[0]["claim_token_sha256"] == u["claim_token_sha256"]
                    else None
                )
                conn.execute(
                    "INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        u["serial"],
                        u["device_id"],
                        u["cert_fingerprint_sha256"],
                        u["claim_token_sha256"],
                        u["claim_expires_at"],
                        used,
                        now,
                    ),
                )
            for key_id, secret in parsed_keys:
                conn.execute(
                    "INSERT OR REPLACE INTO registration_keys VALUES (?, ?, ?)",
                    (key_id, secret, now),
                )
        return len(parsed), len(parsed_keys)

    @staticmethod
    def _parse_unit(unit: Any, where: str) -> dict[str, Any]:
        if not isinstance(unit, dict):
            raise bad_request(f"{where[:-1]}: an object is required")
        return {
            "serial": name_field(unit, "serial", where=where),
            "device_id": name_field(unit, "device_id", where=where),
            "cert_fingerprint_sha256": _hex64(unit, "cert_fingerprint_sha256", where),
            "claim_token_sha256": _hex64(unit, "claim_token_sha256", where, required=False),
            "claim_expires_at": _timestamp(unit, "claim_expires_at", where),
        }

    def add_account(self, body: Any, now: float) -> str:
        """Create an account from ``{name, password}``; returns its name.

        Raises:
            CloudApiError: 400 bad input (names starting with ``dev-`` are reserved for device
                users), 409 ``account_exists``.
        """
        if not isinstance(body, dict):
            raise bad_request("a JSON object {name, password} is required")
        name = name_field(body, "name")
        if name.startswith(DEVICE_USER_PREFIX):
            raise bad_request(f"name: the prefix {DEVICE_USER_PREFIX!r} is reserved for devices")
        password_hash = hash_password(_password(body, "password"))
        with self.transaction() as conn:
            try:
                conn.execute("INSERT INTO accounts VALUES (?, ?, ?)", (name, password_hash, now))
            except sqlite3.IntegrityError:
                raise CloudApiError(409, "account_exists", f"account {name} exists") from None
        return name

    def set_supply_chain(self, body: Any, now: float) -> tuple[str, str]:
        """Record (or change) ``{serial, account}``; returns the pair.

        Raises:
            CloudApiError: 400 bad input, 404 ``unknown_account``.
        """
        if not isinstance(body, dict):
            raise bad_request("a JSON object {serial, account} is required")
        serial, account = name_field(body, "serial"), name_field(body, "account")
        with self.transaction() as conn:
            if not self.account_exists(account):
                raise CloudApiError(404, "unknown_account", f"no account {account}")
            conn.execute(
                "INSERT OR REPLACE INTO supply_chain VALUES (?, ?, ?)", (serial, account, now)
            )
        return serial, account

    def record_binding(self, device_id: str, account: str, mode: str, now: float) -> int:
        """Bind a unit to ``account`` as an activation would (a unit that was set up before:
        QA's "claimed by another account"); returns the binding's generation."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT generation FROM bindings WHERE device_id = ?", (device_id,)
            ).fetchone()
            generation = (row["generation"] if row is not None else 0) + 1
            conn.execute(
                "INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?)",
                (device_id, account, mode, now, generation),
            )
        return generation

    def account_exists(self, name: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone()
            is not None
        )

    def list_devices(self, account: str, password: str) -> list[dict[str, Any]]:
        """The devices bound to ``account``, if ``password`` is its password.

        Raises:
            CloudApiError: 401 ``invalid_credentials`` (unknown account or wrong password).
        """
        row = self.conn.execute(
            "SELECT password_hash FROM accounts WHERE name = ?", (account,)
        ).fetchone()
        if row is None or not verify_password(password, row["password_hash"]):
            raise CloudApiError(401, "invalid_credentials", "wrong account name or password")
        rows = self.conn.execute(
            "SELECT device_id, mode, generation FROM bindings WHERE account = ? ORDER BY device_id",
            (account,),
        )
        return [dict(r) for r in rows]

    # -- devices --------------------------------------------------------------------------------

    def authenticate_device(
        self, token: str | None, basic: tuple[str, str] | None
    ) -> dict[str, Any]:
        """The current binding for a bearer token (or a device user's name and password).

        Raises:
            CloudApiError: 401 ``invalid_token`` (unknown), ``credentials_revoked``.
        """
        if token is not None:
            row = self.conn.execute(
                "SELECT * FROM credentials WHERE token_sha256 = ?", (sha256_hex(token),)
            ).fetchone()
        elif basic is not None:
            row = self.conn.execute(
                "SELECT * FROM device_users WHERE name = ?", (basic[0],)
            ).fetchone()
            if row is not None and not verify_password(basic[1], row["password_hash"]):
                row = None
        else:
            row = None
        if row is None:
            raise CloudApiError(401, "invalid_token", "unknown device credentials")
        binding = self.conn.execute(
            "SELECT * FROM bindings WHERE device_id = ?", (row["device_id"],)
        ).fetchone()
        if (
            row["revoked_at"] is not None
            or binding is None
            or binding["account"] is None
            or binding["generation"] != row["generation"]
        ):
            raise CloudApiError(401, "credentials_revoked", "these credentials were revoked")
        return {
            "device_id": binding["device_id"],
            "account": binding["account"],
            "generation": binding["generation"],
        }

    def release(self, token: str, now: float) -> dict[str, Any]:
        """Unbind the device the token belongs to and revoke all its credentials.

        Raises:
            CloudApiError: 401 as :meth:`authenticate_device`.
        """
        with self.transaction() as conn:
            bound = self.authenticate_device(token, None)
            revoke_all(conn, bound["device_id"], now)
            conn.execute(
                "UPDATE bindings SET account = NULL, mode = NULL, bound_at = NULL "
                "WHERE device_id = ?",
                (bound["device_id"],),
            )
        return {"device_id": bound["device_id"], "released": True}


def revoke_all(conn: sqlite3.Connection, device_id: str, now: float) -> None:
    """Revoke every token and the device user of ``device_id``."""
    conn.execute(
        "UPDATE credentials SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
        (now, device_id),
    )
    conn.execute(
        "UPDATE device_users SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
        (now, device_id),
    )


def issue_token(
    conn: sqlite3.Connection, device_id: str, account: str, generation: int, now: float
) -> str:
    """A new opaque bearer token for the binding; only its SHA-256 is stored."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO credentials VALUES (?, ?, ?, ?, ?, NULL)",
        (sha256_hex(token), device_id, account, generation, now),
    )
    return token
