"""The diagnostics bundle's own guard: a file that would carry a secret is refused."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pytest

from device_sim.codes import Code
from device_sim.errors import OnboardingError
from device_sim.support import bundle


def members(data: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {
            m.name.split("/", 1)[1]: archive.extractfile(m).read().decode()  # type: ignore
            for m in archive.getmembers()
        }


def test_a_secret_in_free_text_is_redacted_and_the_bundle_says_so() -> None:
    files: dict[str, Any] = {
        "state.json": {"record": {"state": "failed", "detail": "psk Sunflower-42-Garden refused"}},
        "timeline.jsonl": json.dumps(
            {"state": "failed", "detail": "", "data": {"raw": ["x Sunflower-42-Garden"]}}
        )
        + "\n"
        + "a line cut by a crash: Sunflower-42-Garden\n",
        "notes.txt": "the passphrase is Sunflower-42-Garden\n",
    }
    data, counts = bundle.build_with_report(files, ["Sunflower-42-Garden"])
    texts = members(data)
    assert "Sunflower" not in "".join(texts.values())
    assert counts == {"state.json": 1, "timeline.jsonl": 2, "notes.txt": 1}
    assert json.loads(texts["redacted.json"])["files"] == counts
    assert json.loads(texts["state.json"])["record"] == {
        "state": "failed",
        "detail": "psk [redacted] refused",
    }
    assert texts["notes.txt"] == "the passphrase is [redacted]\n"


def test_a_passphrase_that_is_a_state_name_leaves_the_states_alone() -> None:
    """The passphrase `credentials_received` is also a state's name: the structured values
    keep it, and the bundle is made (support needs it exactly after such a failure)."""
    event = {
        "state": "credentials_received",
        "phase": "credentials",
        "code_name": "OK",
        "detail": "stored",
    }
    files: dict[str, Any] = {
        "state.json": {"record": {"state": "credentials_received"}},
        "timeline.jsonl": json.dumps(event) + "\n",
    }
    data, counts = bundle.build_with_report(files, ["credentials_received"])
    texts = members(data)
    assert counts == {} and "redacted.json" not in texts
    assert json.loads(texts["timeline.jsonl"]) == event
    assert json.loads(texts["state.json"])["record"]["state"] == "credentials_received"


def test_a_private_key_refuses_the_bundle_and_is_not_named() -> None:
    with pytest.raises(OnboardingError) as info:
        bundle.build({"k.pem": "-----BEGIN EC PRIVATE KEY-----\nMHcC\n"}, [])
    assert info.value.code is Code.INTERNAL_ERROR
    assert "k.pem" in info.value.detail and "MHcC" not in info.value.detail


def test_files_are_private_members_of_one_archive() -> None:
    data = bundle.build({"x.json": {"n": 1}, "y.jsonl": "{}\n"}, ["short", ""])
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == [
        "device-sim-diagnostics/x.json",
        "device-sim-diagnostics/y.jsonl",
    ]
    assert all(m.mode == 0o600 for m in members)
