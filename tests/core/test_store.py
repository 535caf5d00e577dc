"""DeviceStore over a real SQLite file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim.codes import Code, State
from device_sim.core.store import Credentials, DeviceStore
from device_sim.errors import StoreError
from device_sim.security.secret import Secret


def test_new_store_is_unprovisioned_and_private(tmp_path: Path) -> None:
    with DeviceStore(tmp_path / "dev") as store:
        record = store.record()
        assert record.state is State.UNPROVISIONED and record.code is Code.OK
        assert store.identity() is None and store.credentials() is None
    mode = stat.S_IMODE(os.stat(tmp_path / "dev" / DeviceStore.FILENAME).st_mode)
    assert mode == 0o600


def test_identity_is_written_once(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        ident = store.create_identity("0011223344556677", b"s" * 16, b"v" * 384)
        assert ident.short_id == "6677" and ident.id_low_bytes == bytes.fromhex("556677")
        assert "vvvv" not in repr(ident)
        with pytest.raises(StoreError, match="already holds"):
            store.create_identity("8899aabbccddeeff", b"s", b"v")


def test_transitions_keep_replace_and_clear_credentials(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        creds = Credentials(b"\xc3\x28net", Secret("correct horse"), True)
        r1 = store.transition(State.CREDENTIALS_RECEIVED, credentials=creds)
        r2 = store.transition(State.JOINING, new_attempt=True)
        assert r2.seq == r1.seq + 1 and r2.attempt == 1 and r2.ssid == b"\xc3\x28net"
        got = store.credentials()
        assert got is not None and got.passphrase is not None
        assert got.passphrase.reveal() == "correct horse" and got.hidden
        store.transition(State.FAILED, Code.WRONG_CREDENTIALS, detail="4-way handshake")
        assert store.record().code is Code.WRONG_CREDENTIALS
        store.transition(State.UNPROVISIONED, credentials=None)
        assert store.credentials() is None and store.record().attempt == 0


@pytest.mark.parametrize("durability, synchronous", [("full", 2), ("normal", 1)])
def test_committed_state_survives_a_killed_process(
    tmp_path: Path, durability: str, synchronous: int
) -> None:
    # A child commits a transition, then is SIGKILLed mid-way through nothing: the file, read
    # by this process, holds exactly what was committed, with either durability (normal, the
    # fleet's, leaves only the fsync to checkpoints).
    code = (
        "import os, signal, sys\n"
        "from device_sim.core.store import DeviceStore, Credentials\n"
        "from device_sim.codes import State\n"
        "from device_sim.security.secret import Secret\n"
        f"s = DeviceStore(sys.argv[1], durability={durability!r}); s.open()\n"
        f"assert s.db.execute('PRAGMA synchronous').fetchone()[0] == {synchronous}\n"
        "s.transition(State.CREDENTIALS_RECEIVED,\n"
        "             credentials=Credentials(b'n', Secret('12345678'), False))\n"
        "s.transition(State.JOINING, new_attempt=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    assert proc.returncode == -9
    with DeviceStore(tmp_path) as store:
        record = store.record()
        assert record.state is State.JOINING and record.attempt == 1 and record.ssid == b"n"


def test_an_unknown_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="full or normal"):
        DeviceStore(tmp_path, durability="off")


def test_auth_failures_count_and_reset(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        assert store.record_auth_failure(1000) == 1
        assert store.record_auth_failure(2000) == 2
        assert store.auth_failures() == (2, 2000)
        store.reset_auth_failures()
        assert store.auth_failures() == (0, 0)


def test_unwritable_directory_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        DeviceStore(blocker / "sub").open()


def test_a_store_from_before_the_softap_door_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    (tmp_path / "old").mkdir()
    db = sqlite3.connect(tmp_path / "old" / DeviceStore.FILENAME)
    db.execute(
        "CREATE TABLE identity (one INTEGER PRIMARY KEY CHECK (one = 1), device_id TEXT"
        " NOT NULL, srp_salt BLOB NOT NULL, srp_verifier BLOB NOT NULL,"
        " created_at REAL NOT NULL)"
    )
    db.execute("INSERT INTO identity VALUES (1, '0011223344556677', x'01', x'02', 0)")
    db.commit()
    db.close()
    with DeviceStore(tmp_path / "old") as store:
        identity = store.identity()
        assert identity is not None and identity.softap_passphrase is None
        store.set_softap_passphrase(Secret("first-passphrase"))
        store.set_softap_passphrase(Secret("second-passphrase"))  # never replaces the label's
        identity = store.identity()
        assert identity is not None and identity.softap_passphrase is not None
        assert identity.softap_passphrase.reveal() == "first-passphrase"


def test_init_with_a_malformed_setup_code_is_a_usage_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "device_sim",
            "init",
            "--state-dir",
            str(tmp_path / "d"),
            "--setup-code",
            "abc",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--setup-code" in out.stderr and "Traceback" not in out.stderr
    assert "abc" not in out.stderr  # a mistyped code is close to the real one: never echoed


def test_a_factory_reset_intent_lasts_until_the_reset_commits(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        store.transition(State.CREDENTIALS_RECEIVED, credentials=Credentials(b"x", None, False))
        assert store.pending_reset() is None
        store.begin_factory_reset("the CLI")
    with DeviceStore(tmp_path) as store:  # a restart still sees it
        assert store.pending_reset() == "the CLI"
        store.transition(State.UNPROVISIONED, credentials=None, forget_cloud=True)
        assert store.pending_reset() is None
        assert store.cloud().after_reset is True


def test_event_sequence_numbers_rise_across_reopenings(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        assert store.reserve_event_seqs(1000) == 1
        assert store.reserve_event_seqs(1000) == 1001
    with DeviceStore(tmp_path) as store:  # a restart: the next block, never reused
        assert store.reserve_event_seqs(10) == 2001


# The schema a version-1 device wrote (the onboarding row holds its one network).
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identity (one INTEGER PRIMARY KEY CHECK (one = 1), device_id TEXT NOT NULL,
    srp_salt BLOB NOT NULL, srp_verifier BLOB NOT NULL, created_at REAL NOT NULL,
    softap_passphrase TEXT);
CREATE TABLE onboarding (one INTEGER PRIMARY KEY CHECK (one = 1), state INTEGER NOT NULL,
    code INTEGER NOT NULL, phase TEXT NOT NULL, detail TEXT NOT NULL, attempt INTEGER NOT NULL,
    ssid BLOB, passphrase TEXT, hidden INTEGER NOT NULL, seq INTEGER NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE cloud (one INTEGER PRIMARY KEY CHECK (one = 1), status TEXT NOT NULL, mode TEXT,
    request_id TEXT, account TEXT, generation INTEGER, token TEXT, device_user TEXT,
    device_password TEXT, after_reset INTEGER NOT NULL, in_account TEXT, in_claim_token TEXT,
    in_device_password TEXT);
CREATE TABLE auth (one INTEGER PRIMARY KEY CHECK (one = 1), failures INTEGER NOT NULL,
    last_failure_ms INTEGER NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO cloud (one, status, after_reset) VALUES (1, 'none', 0);
INSERT INTO auth VALUES (1, 0, 0);
"""


@pytest.mark.parametrize(("state", "kept"), [(State.ONLINE, True), (State.FAILED, False)])
def test_a_version_1_device_keeps_its_network_as_the_first_saved(
    tmp_path: Path, state: State, kept: bool
) -> None:
    """Migration: the one network a version-1 device was online on becomes its saved list
    (one it never got online on is not a network that worked)."""
    import sqlite3

    db = sqlite3.connect(tmp_path / DeviceStore.FILENAME)
    db.executescript(V1_SCHEMA)
    db.execute(
        "INSERT INTO onboarding VALUES (1, ?, 0, 'online', '', 3, ?, ?, 0, 9, 1.5e9)",
        (int(state), b"Home", "home-passphrase"),
    )
    db.commit()
    db.close()
    with DeviceStore(tmp_path) as store:
        saved = store.saved_networks()
        assert store.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "2"
        assert store.record().ssid == b"Home"  # the onboarding row itself is untouched
        assert all(n.security is None for n in saved)  # the column came later: not sent
    if kept:
        assert [
            (n.ssid, n.passphrase and n.passphrase.reveal(), n.last_online_at) for n in saved
        ] == [(b"Home", "home-passphrase", 1.5e9)]
    else:
        assert saved == []
    with DeviceStore(tmp_path) as store:  # opening again migrates nothing twice
        assert len(store.saved_networks()) == (1 if kept else 0)


def test_the_security_the_app_sent_is_kept_with_the_network(tmp_path: Path) -> None:
    from device_sim.network.base import Security

    with DeviceStore(tmp_path) as store:
        store.transition(
            State.CREDENTIALS_RECEIVED,
            credentials=Credentials(b"Quiet", Secret("sae-only-please"), True, Security.WPA3_SAE),
        )
        store.transition(State.ONLINE, remember=3)
    with DeviceStore(tmp_path) as store:  # across a restart, in the row and in the saved list
        creds = store.credentials()
        assert creds is not None and creds.security is Security.WPA3_SAE and creds.hidden
        [saved] = store.saved_networks()
        assert saved.credentials == creds
        store.transition(State.UNPROVISIONED, credentials=None)
        store.db.execute("UPDATE networks SET security = 'wpa9-future'")  # a newer version's
        assert store.credentials() is None
        assert store.saved_networks()[0].security is None  # unknown: tried as unknown


def test_online_puts_the_network_first_in_the_same_transaction(tmp_path: Path) -> None:
    with DeviceStore(tmp_path) as store:
        for ssid in (b"A", b"B", b"A", b"C"):
            store.transition(
                State.CREDENTIALS_RECEIVED,
                credentials=Credentials(ssid, Secret("passphrase-1"), False),
            )
            store.transition(State.ONLINE, remember=2)
        assert [n.ssid for n in store.saved_networks()] == [b"C", b"A"]
        assert store.forget_network(b"A") and not store.forget_network(b"A")
        store.transition(State.UNPROVISIONED, credentials=None, forget_networks=True)
        assert store.saved_networks() == []
        store.remember_history([Credentials(b"X", None, False)], online=True)
        assert (store.record().state, store.record().ssid) == (State.ONLINE, b"X")
        with pytest.raises(StoreError):  # a past is given once, to a device without one
            store.remember_history([Credentials(b"Y", None, False)], online=True)
