"""The fleet registration key: one "registration account" credential programmed into every unit.

The pattern (as Medium One's IoT platform does it): each unit carries the same registration
credential, which the cloud accepts for one thing only, creating the unit's own device user at
first connection; after that the unit uses its own credential (here: its certificate). A leaked
registration key therefore lets an attacker create device users, never read or control units,
and the cloud can rotate it. The cloud learns only its SHA-256 (``cloud-import.json``).

``<factory_dir>/registration.json`` (0600) holds ``{key_id, secret}``; each unit gets a copy in
``state/registration.json`` (0600).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...security.secret import Secret

FILENAME = "registration.json"


@dataclass(frozen=True)
class RegistrationKey:
    """``secret`` is a Secret: reprs and logs show ``<redacted>``."""

    key_id: str
    secret: Secret

    @property
    def secret_sha256(self) -> str:
        return hashlib.sha256(self.secret.reveal().encode("ascii")).hexdigest()

    def file_content(self) -> bytes:
        """The JSON written to a 0600 file (it holds the secret)."""
        return (
            json.dumps({"key_id": self.key_id, "secret": self.secret.reveal()}, indent=2).encode()
            + b"\n"
        )

    def cloud_entry(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "secret_sha256": self.secret_sha256}


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never overwrites). Raises FileExistsError, OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def create_registration_key(factory_dir: str | os.PathLike[str]) -> RegistrationKey:
    """Create the factory's registration key once.

    Raises:
        ConfigError: the factory already has one (it is never replaced silently).
        OSError: the file cannot be written.
    """
    path = Path(factory_dir) / FILENAME
    key = RegistrationKey(f"reg-{secrets.token_hex(6)}", Secret(secrets.token_urlsafe(32)))
    Path(factory_dir).mkdir(parents=True, exist_ok=True)
    # Written in full under a temporary name, then linked: a concurrent reader never sees a
    # half-written file, and link() fails if the key already exists.
    tmp = path.with_name(f".{FILENAME}.{secrets.token_hex(4)}.tmp")
    write_private(tmp, key.file_content())
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ConfigError(str(path), "the factory already has a registration key") from None
    finally:
        tmp.unlink()
    return key


def load_registration_key(factory_dir: str | os.PathLike[str]) -> RegistrationKey:
    """The factory's registration key. Raises ConfigError if missing or malformed."""
    return read_registration_file(Path(factory_dir) / FILENAME)


def read_registration_file(path: Path) -> RegistrationKey:
    """A ``{key_id, secret}`` file. Raises ConfigError (missing, not JSON, wrong fields)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key_id, secret = data["key_id"], data["secret"]
        if not (isinstance(key_id, str) and isinstance(secret, str) and key_id and secret):
            raise TypeError("key_id and secret must be non-empty strings")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # The message names the problem's type only: a JSON error could quote the secret.
        raise ConfigError(
            str(path), f"not a usable registration key ({type(exc).__name__})"
        ) from None
    return RegistrationKey(key_id, Secret(secret))


def ensure_registration_key(factory_dir: str | os.PathLike[str]) -> RegistrationKey:
    """The factory's registration key, created on first use (safe against concurrent callers).

    Raises ConfigError (a malformed existing file) or OSError.
    """
    try:
        return create_registration_key(factory_dir)
    except ConfigError:
        return load_registration_key(factory_dir)
