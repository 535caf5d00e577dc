"""The diagnostics bundle: one archive a user attaches to a support ticket.

``device-sim ctl --state-dir DIR diagnostics --out FILE`` asks the running daemon for it. It
holds the device's identity (no secrets), the versions, the daemon's options (nothing secret in
them; the watch token lives in its own file and is left out), the device's state and doors and
why, the last scan, and the recent onboarding timelines (their events carry the backends' raw
reasons, e.g. NetworkManager's state reasons). Before it leaves the daemon, every file is
checked for the device's secrets (Wi-Fi passphrase, SoftAP passphrase, PoP, cloud token and
device password, private keys): a bundle that would carry one is refused (INTERNAL_ERROR), so a
mistake in what is collected can never leak one.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import io
import json
import platform
import sys
import tarfile
import time
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..codes import Code
from ..errors import OnboardingError

TIMELINE_LINES = 2000  # the most recent events kept from onboarding.jsonl (and its rotation)
PACKAGES = ("device-sim", "bless", "bleak", "aiohttp", "cryptography", "dbus-fast", "srp")
PRIVATE_KEY_MARKERS = ("PRIVATE KEY-----",)


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def jsonable(value: Any) -> Any:
    """Options and records as plain JSON (paths and enums as text, dataclasses as objects)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def timeline(state_dir: Path, lines: int = TIMELINE_LINES) -> str:
    """The most recent events of the onboarding log (rotated part first), ``lines`` at most."""
    text = ""
    for name in ("onboarding.jsonl.1", "onboarding.jsonl"):
        path = state_dir / name
        if path.exists():
            text += path.read_text(encoding="utf-8", errors="replace")
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else "")


def build(files: Mapping[str, str | dict[str, Any] | list[Any]], secrets: Iterable[str]) -> bytes:
    """A gzip'd tar of ``files`` (name -> text or JSON), each checked for ``secrets`` first.

    Raises OnboardingError(INTERNAL_ERROR) naming the file (never the secret) if one holds a
    secret or a private key."""
    needles = [s for s in secrets if s and len(s) >= 6]
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            text = content if isinstance(content, str) else json.dumps(content, indent=2) + "\n"
            if any(n in text for n in needles) or any(m in text for m in PRIVATE_KEY_MARKERS):
                raise OnboardingError(
                    Code.INTERNAL_ERROR, f"the diagnostics bundle's {name} would hold a secret"
                )
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"device-sim-diagnostics/{name}")
            info.size, info.mtime, info.mode = len(data), int(now), 0o600
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def encode(archive: bytes) -> str:
    return base64.b64encode(archive).decode("ascii")
