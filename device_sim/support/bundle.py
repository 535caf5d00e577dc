"""The diagnostics bundle: one archive a user attaches to a support ticket.

``device-sim ctl --state-dir DIR diagnostics --out FILE`` asks the running daemon for it. It
holds the device's identity (no secrets), the versions, the daemon's options (nothing secret in
them; the watch token lives in its own file and is left out), the device's state and doors and
why, the last scan, and the recent onboarding timelines (their events carry the backends' raw
reasons, e.g. NetworkManager's state reasons).

Secrets are kept out by construction: no secret field (Wi-Fi passphrase, SoftAP passphrase,
PoP, cloud token and device password, keys) is ever copied into a file. The free text is
checked as well, because it comes from elsewhere (an event's ``detail`` and ``data``, a
backend's reason, a line cut by a crash): a secret found there is replaced by ``[redacted]``
and the bundle says so (``redacted.json``, and the command's answer). The structured values
(states, phases, code names, options) are not searched, so a passphrase that happens to be a
state name, e.g. ``credentials_received``, neither blanks every state nor refuses the bundle
support needs. A private key anywhere still refuses the whole bundle (INTERNAL_ERROR): one
can only get there through a bug.
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
REDACTED = "[redacted]"
FREE_TEXT_KEYS = frozenset({"detail", "data", "reason", "message", "error", "text"})


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


def tail(state_dir: Path, name: str, lines: int) -> str:
    """The last ``lines`` lines of a rotated log in ``state_dir`` (``name.1`` first)."""
    text = ""
    for part in (f"{name}.1", name):
        try:
            text += (state_dir / part).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else "")


def timeline(state_dir: Path, lines: int = TIMELINE_LINES) -> str:
    """The most recent events of the onboarding log (rotated part first), ``lines`` at most."""
    return tail(state_dir, "onboarding.jsonl", lines)


class _Redactor:
    """Replaces the secrets in free text, counting the replacements per file."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.needles = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self.counts: dict[str, int] = {}

    def text(self, value: str, where: str) -> str:
        for needle in self.needles:
            if needle in value:
                self.counts[where] = self.counts.get(where, 0) + value.count(needle)
                value = value.replace(needle, REDACTED)
        return value

    def free(self, value: Any, where: str) -> Any:
        """Every string inside ``value`` is free text."""
        if isinstance(value, str):
            return self.text(value, where)
        if isinstance(value, Mapping):
            return {k: self.free(v, where) for k, v in value.items()}
        if isinstance(value, list):
            return [self.free(v, where) for v in value]
        return value

    def structured(self, value: Any, where: str) -> Any:
        """Only the values under FREE_TEXT_KEYS are free text; the rest is kept as it is."""
        if isinstance(value, Mapping):
            return {
                k: self.free(v, where) if k in FREE_TEXT_KEYS else self.structured(v, where)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.structured(v, where) for v in value]
        return value

    def jsonl(self, text: str, where: str) -> str:
        """A JSON-lines log: each event's free text; a line that is not JSON is all free text."""
        out = []
        for line in text.splitlines(keepends=True):
            try:
                event = json.loads(line)
            except ValueError:
                out.append(self.text(line, where))
                continue
            if self.needles and isinstance(event, dict):
                cleaned = self.structured(event, where)
                if cleaned != event:
                    line = json.dumps(cleaned) + "\n"
            out.append(line)
        return "".join(out)


def events_of(timeline_text: str) -> list[dict[str, Any]]:
    """The events of an onboarding log's text (a line cut by a crash is left out)."""
    out = []
    for line in timeline_text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def build(files: Mapping[str, str | dict[str, Any] | list[Any]], secrets: Iterable[str]) -> bytes:
    """A gzip'd tar of ``files`` (name -> text or JSON). A ``.jsonl`` text is read as events,
    any other text as free text, JSON as structured values; a secret in free text is replaced
    (see the module) and ``redacted.json`` says how many in which file.

    Raises OnboardingError(INTERNAL_ERROR) naming the file if one holds a private key."""
    return build_with_report(files, secrets)[0]


def build_with_report(
    files: Mapping[str, str | dict[str, Any] | list[Any]], secrets: Iterable[str]
) -> tuple[bytes, dict[str, int]]:
    """:func:`build`, and the number of secrets redacted per file (empty: none)."""
    redactor = _Redactor(secrets)
    texts: dict[str, str] = {}
    for name, content in files.items():
        if isinstance(content, str):
            text = (
                redactor.jsonl(content, name)
                if name.endswith(".jsonl")
                else (redactor.text(content, name))
            )
        else:
            text = json.dumps(redactor.structured(content, name), indent=2) + "\n"
        if any(m in text for m in PRIVATE_KEY_MARKERS):
            raise OnboardingError(
                Code.INTERNAL_ERROR, f"the diagnostics bundle's {name} would hold a private key"
            )
        texts[name] = text
    if redactor.counts:
        texts["redacted.json"] = (
            json.dumps(
                {
                    "note": "secrets found in free text were replaced by " + REDACTED,
                    "files": redactor.counts,
                },
                indent=2,
            )
            + "\n"
        )
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in texts.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"device-sim-diagnostics/{name}")
            info.size, info.mtime, info.mode = len(data), int(now), 0o600
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), dict(redactor.counts)


def encode(archive: bytes) -> str:
    return base64.b64encode(archive).decode("ascii")
