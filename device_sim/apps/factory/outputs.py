"""The line's shared output files in ``out_dir``: manufacturing records and the cloud import.

* ``records.jsonl``: one JSON object per unit, appended (passed and failed units alike).
* ``cloud-import.json``: ``{"units": [...], "registration": [...]}``, rewritten atomically;
  only units that passed their self-test are listed (a failed unit is scrapped, never claimable).

Both are written under an exclusive ``flock`` on ``out_dir/.factory.lock``, so workers in one
process and several processes sharing ``out_dir`` never interleave or lose entries. Neither file
ever holds a secret: :func:`check_no_secrets` is the guard every record passes through.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...security.secret import Secret

RECORDS = "records.jsonl"
CLOUD_IMPORT = "cloud-import.json"
_LOCK = ".factory.lock"
_PEM_MARKERS = ("-----BEGIN", "PRIVATE KEY")


@contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``out_dir`` (blocks until free). Raises OSError."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_no_secrets(text: str, secrets: list[Secret]) -> None:
    """Raise ValueError if ``text`` contains any of ``secrets`` or a PEM/private-key marker.

    The message names neither the secret nor where it is.
    """
    if any(marker in text for marker in _PEM_MARKERS):
        raise ValueError("refusing to write a record holding a PEM block")
    for secret in secrets:
        value = secret.reveal()
        if value and value in text:
            raise ValueError("refusing to write a record holding a secret")


def append_record(out_dir: Path, record: dict[str, Any], secrets: list[Secret]) -> None:
    """Append ``record`` as one line of ``records.jsonl``.

    Raises ValueError (the record holds one of ``secrets``) or OSError.
    """
    line = json.dumps(record, sort_keys=True, separators=(",", ":"))
    check_no_secrets(line, secrets)
    with locked(out_dir), open(out_dir / RECORDS, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def add_to_cloud_import(
    out_dir: Path,
    unit: dict[str, Any] | None,
    registration: dict[str, Any] | None,
    secrets: list[Secret],
) -> None:
    """Add a unit and/or a registration key entry (deduplicated by key_id) to the import file.

    Raises ValueError (an entry holds one of ``secrets``; or the existing file is not an import
    file) or OSError.
    """
    check_no_secrets(json.dumps([unit, registration]), secrets)
    path = out_dir / CLOUD_IMPORT
    with locked(out_dir):
        data: dict[str, Any] = {"units": [], "registration": []}
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data.get("units"), list) or not isinstance(
                data.get("registration"), list
            ):
                raise ValueError(f"{path} is not a cloud import file")
        if unit is not None:
            data["units"].append(unit)
        if registration is not None and all(
            r.get("key_id") != registration["key_id"] for r in data["registration"]
        ):
            data["registration"].append(registration)
        tmp = path.with_name(f".{CLOUD_IMPORT}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
