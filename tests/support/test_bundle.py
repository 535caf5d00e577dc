"""The diagnostics bundle's own guard: a file that would carry a secret is refused."""

from __future__ import annotations

import io
import tarfile

import pytest

from device_sim.codes import Code
from device_sim.errors import OnboardingError
from device_sim.support import bundle


def test_a_secret_or_a_private_key_is_refused_and_not_named() -> None:
    files = {"a.json": {"ok": True}, "b.txt": "the passphrase is Sunflower-42-Garden\n"}
    with pytest.raises(OnboardingError) as info:
        bundle.build(files, ["Sunflower-42-Garden"])
    assert info.value.code is Code.INTERNAL_ERROR
    assert "b.txt" in info.value.detail and "Sunflower" not in info.value.detail
    with pytest.raises(OnboardingError):
        bundle.build({"k.pem": "-----BEGIN EC PRIVATE KEY-----\n"}, [])


def test_files_are_private_members_of_one_archive() -> None:
    data = bundle.build({"x.json": {"n": 1}, "y.jsonl": "{}\n"}, ["short", ""])
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == ["device-sim-diagnostics/x.json",
                                         "device-sim-diagnostics/y.jsonl"]
    assert all(m.mode == 0o600 for m in members)
