"""The README documents every SoftAP endpoint the profile (and so the server) has."""

from __future__ import annotations

from pathlib import Path

from device_sim.profile import Profile

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_lists_every_softap_endpoint(profile: Profile) -> None:
    text = README.read_text(encoding="utf-8")
    missing = [
        f"{ep.method} {ep.path}"
        for ep in profile.softap.http.endpoints
        if f"`{ep.method} {ep.path}" not in text
    ]
    assert missing == []
