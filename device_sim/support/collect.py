"""What a diagnostics bundle holds, from a running daemon or from a state directory alone.

``ctl diagnostics`` asks the running daemon (:func:`device_sim.daemon._bundle`, with its doors,
options and last scan). When no daemon answers (it crashed, or the device will not start), the
same command builds the bundle from the state directory: the store (read next to nothing: a
second reader, WAL), the event log and the daemon's own log ring. Both carry a one-screen
``summary.txt`` a support engineer reads first, and ``daemon.log``: the daemon keeps its last
log lines in its state directory (:data:`LOG_FILE`, 256 KiB and one rotation, whatever runs
it; under systemd the journal has them too).
"""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.store import DeviceStore, OnboardingRecord
from ..doors import registry
from ..profile import Profile
from . import bundle

__all__ = [
    "LOG_FILE",
    "daemon_log",
    "device_files",
    "device_secrets",
    "keep_log",
    "offline_bundle",
    "summary",
]

LOG_FILE = "daemon.log"
LOG_BYTES = 256 * 1024
LOG_LINES = 2000  # the most recent lines a bundle carries


def keep_log(state_dir: Path, level: int = logging.INFO) -> logging.Handler:
    """Keep the daemon's log lines in ``state_dir/daemon.log`` (a bounded ring: 256 KiB and
    one rotation). Returns the handler (added to the root logger; the caller removes it)."""
    handler = logging.handlers.RotatingFileHandler(
        state_dir / LOG_FILE, maxBytes=LOG_BYTES, backupCount=1, encoding="utf-8", delay=True
    )
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def daemon_log(state_dir: Path, lines: int = LOG_LINES) -> str:
    """The last ``lines`` of the daemon's log ring (rotated part first)."""
    return bundle.tail(state_dir, LOG_FILE, lines)


def device_secrets(store: DeviceStore) -> list[str]:
    """Every secret the device holds, for the bundle's check of its free text."""
    identity, cloud, creds = store.identity(), store.cloud(), store.credentials()
    kept = (
        creds.passphrase if creds else None,
        cloud.token,
        cloud.device_password,
        cloud.in_claim_token,
        cloud.in_device_password,
    )
    secrets = [secret.reveal() for secret in kept if secret is not None]
    if identity is not None and identity.softap_passphrase is not None:
        secrets.append(identity.softap_passphrase.reveal())
    secrets += [n.passphrase.reveal() for n in store.saved_networks() if n.passphrase]
    for name in registry.names():  # the personalities' own secrets (ESP's PoP)
        for key in registry.get(name).secret_settings:
            value = store.setting(f"{name}.{key}")
            if value:
                secrets.append(value)
    return secrets


def record_json(record: OnboardingRecord) -> dict[str, Any]:
    return bundle.jsonable(
        {
            "state": record.state.wire_name,
            "code": record.code.name,
            "phase": record.phase,
            "detail": record.detail,
            "attempt": record.attempt,
            "ssid_hex": record.ssid.hex() if record.ssid else None,
            "hidden": record.hidden,
        }
    )


def device_files(store: DeviceStore) -> dict[str, Any]:
    """The files any bundle holds, read from the store and the state directory."""
    identity = store.identity()
    return {
        "identity.json": {
            "device_id": identity.device_id if identity else None,
            "created_at": identity.created_at if identity else None,
            "factory_certificate": (store.state_dir / "device.pem").exists(),
        },
        "versions.json": bundle.versions(),
        "timeline.jsonl": bundle.timeline(store.state_dir),
        "daemon.log": daemon_log(store.state_dir),
    }


def summary(
    profile: Profile, store: DeviceStore, *, daemon: str, events: Iterable[dict[str, Any]] = ()
) -> str:
    """One screen for support: who, where it stands and why, what to do, the last events."""
    identity, record = store.identity(), store.record()
    entry = profile.code(record.code)
    saved = store.saved_networks()
    lines = [
        f"device {identity.device_id if identity else '?'}: {record.state.wire_name}"
        + (f" ({entry.name} {entry.id})" if record.code else ""),
        f"daemon: {daemon}",
        f"attempt {record.attempt}, phase {record.phase or '-'}"
        + (f": {record.detail}" if record.detail else ""),
    ]
    if record.code:
        lines += [
            f"the user sees: {entry.user_message}",
            f"next step: {entry.next_step}",
            f"support asks: {entry.support_question}",
        ]
    lines.append(f"saved networks: {len(saved)}; activation: {store.cloud().status or 'none'}")
    recent = list(events)[-10:]
    if recent:
        lines.append("last events:")
        lines += [
            f"  {str(e.get('at', ''))[:23]}  {e.get('state', ''):<21} {e.get('phase', ''):<15}"
            f" {e.get('code_name', '') if e.get('code') else ''}".rstrip()
            for e in recent
        ]
    return "\n".join(lines) + "\n"


def offline_bundle(profile: Profile, state_dir: Path) -> tuple[list[str], dict[str, int], bytes]:
    """The bundle of a device whose daemon does not answer, from its state directory alone.
    Raises ConfigError (no device there), OnboardingError(INTERNAL_ERROR) for a private key."""
    from ..errors import ConfigError

    if not (state_dir / "device.sqlite3").exists():
        raise ConfigError(str(state_dir), "no device here (no device.sqlite3): check --state-dir")
    with DeviceStore(state_dir) as store:
        files = device_files(store)
        record = store.record()
        files["state.json"] = {
            "record": record_json(record),
            "activation": store.cloud().public(),
            "daemon": "not running: this bundle was made from the state directory",
        }
        files["summary.txt"] = summary(
            profile,
            store,
            daemon="not running (bundle made from the state directory)",
            events=bundle.events_of(files["timeline.jsonl"]),
        )
        secrets = device_secrets(store)
    archive, redacted = bundle.build_with_report(files, secrets)
    return sorted(files) + (["redacted.json"] if redacted else []), redacted, archive
