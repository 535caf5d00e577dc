"""The per-error documentation: generated from the profile, committed in docs/, specific, and
every reproduction command really ends in its code."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
from collections import Counter
from pathlib import Path

import pytest

from device_sim.apps.cli import build_parser, main
from device_sim.apps.story import has_story
from device_sim.network.scenario import load_scenario
from device_sim.profile import load_profile
from device_sim.support import docs

ROOT = Path(__file__).resolve().parents[2]
PROFILE = load_profile()
TIMED = {"device-sim demo --scenario slow-dhcp"}  # real time (20 s): tests/core/test_engine.py


def test_the_committed_documentation_is_up_to_date() -> None:
    """`device-sim docs` output is committed; regenerate it after changing the profile."""
    assert (ROOT / "docs" / "codes.md").read_text() == docs.markdown(PROFILE), (
        "docs/codes.md is out of date: run `device-sim docs`"
    )
    assert (ROOT / "docs" / "codes.html").read_text() == docs.html_page(PROFILE), (
        "docs/codes.html is out of date: run `device-sim docs`"
    )


def test_every_code_is_documented_specifically() -> None:
    all_docs = docs.code_docs(PROFILE)
    assert [d.entry.name for d in all_docs] == sorted(
        PROFILE.codes, key=lambda n: PROFILE.codes[n].id
    )
    md = docs.markdown(PROFILE)
    for d in all_docs:
        assert f"\n## {d.entry.name}\n" in md
        assert d.collect or d.entry.category == "none"
        assert {name for name, _ in d.reports} == {"native", "improv", "esp"}
    steps = Counter(d.entry.next_step for d in all_docs)
    assert [s for s, n in steps.items() if n > 1] == []
    for d in all_docs:  # never a bare "try again"
        assert not re.fullmatch(r"(?i)\W*try again\W*", d.entry.next_step)
    date, trust = PROFILE.code("TLS_CERTIFICATE_DATE"), PROFILE.code("TLS_VERIFICATION_FAILED")
    assert "clock" in date.next_step and "clock" not in trust.next_step
    for name in (
        "MALFORMED_REQUEST",
        "UNSUPPORTED_VERSION",
        "CAPTIVE_PORTAL",
        "CLAIMED_BY_ANOTHER_ACCOUNT",
        "UNSUPPORTED_SECURITY",
    ):
        assert PROFILE.code(name).recoverable is False, name  # a retry alone cannot help
    assert PROFILE.code("NO_DHCP_LEASE").recoverable is True


def test_the_page_is_self_contained() -> None:
    page = docs.html_page(PROFILE)
    assert "<script" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!#)""", page)  # only in-page links
    assert page.count("<section ") == len(PROFILE.codes)


def test_codes_shows_one_code_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codes", "104"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("104 NO_DHCP_LEASE") and "support asks:" in out
    assert "device-sim demo --scenario no-dhcp" in out and "esp:" in out
    assert main(["codes", "no_dhcp_lease", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reproduce"][0].startswith("device-sim demo")
    assert main(["codes", "999"]) == 2


def test_docs_command_writes_both(tmp_path: Path) -> None:
    assert main(["docs", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "codes.md").read_text() == docs.markdown(PROFILE)


def test_every_reproduction_command_parses() -> None:
    for d in docs.code_docs(PROFILE):
        for command in d.reproduce:
            argv = shlex.split(command)
            assert argv[0] == "device-sim"
            build_parser().parse_args(argv[1:])


async def test_every_reproduction_command_ends_in_its_code() -> None:
    """Each demo command, over the SoftAP on loopback, without delays: its code at the end, or
    (a scenario with a story: the connected life's codes) in the story it plays."""
    runs = [
        (d.entry.name, c)
        for d in docs.code_docs(PROFILE)
        for c in d.reproduce
        if c.startswith("device-sim demo") and c not in TIMED
    ]
    assert len(runs) >= 18
    gate = asyncio.Semaphore(4)

    async def run(command: str) -> list[str]:
        """The codes one command ended in; never raises: a failure is its own line, so every
        demo ends (each bounded) before the test judges, and none is left running."""
        argv = [*shlex.split(command)[1:], "--zero-delay", "--json"]
        scenario = argv[argv.index("--scenario") + 1] if "--scenario" in argv else ""
        if scenario and has_story(load_scenario(scenario)):
            argv += ["--time-scale", "0.1"]  # the story's world and timers, ten times faster
        if "--transport" not in argv:
            argv += ["--transport", "softap"]
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "device_sim",
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(os.environ),
            )
            try:
                async with asyncio.timeout(90):
                    out, err = await proc.communicate()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return [f"no result within 90 s (exit {proc.returncode})"]
        try:
            result = json.loads(out)
        except ValueError:
            return [f"exit {proc.returncode}, no JSON: {err.decode(errors='replace')[-800:]}"]
        return [str(result["code_name"]), *result.get("story", {}).get("codes", [])]

    codes = await asyncio.gather(*(run(command) for _, command in runs))
    wrong = [
        f"{command}\n    -> {c}"
        for (name, command), c in zip(runs, codes, strict=True)
        if name not in c
    ]
    assert not wrong, "\n".join(wrong)


def test_the_watch_page_is_self_contained_and_carries_the_codes() -> None:
    from device_sim.watch.server import page

    html = page(PROFILE).decode()
    assert not re.search(r"""(?:src|href)\s*=""", html)  # no asset, no link out
    assert "/*CODES*/" not in html and '"104":' in html  # the codes' documentation inside
    assert "</script" not in html.split("const CODES =")[1].split(";\n")[0]


def test_codes_are_listed_in_id_order_and_collect_is_specific(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["codes", "--json"]) == 0
    ids = [row["id"] for row in json.loads(capsys.readouterr().out)]
    assert ids == sorted(ids)  # 109-111 used to come after 121
    collected = {
        name: docs.find(PROFILE, name).collect
        for name in ("NO_DHCP_LEASE", "DNS_FAILURE", "CAPTIVE_PORTAL")
    }
    assert len({tuple(c) for c in collected.values()}) == 3  # the same list for all three before
    assert any("DHCP" in item for item in collected["NO_DHCP_LEASE"])
    assert any("DNS" in item for item in collected["DNS_FAILURE"])
    assert any("redirect" in item for item in collected["CAPTIVE_PORTAL"])


def test_the_reverse_map_from_what_an_app_shows(capsys: pytest.CaptureFixture[str]) -> None:
    shown = docs.shown_by_apps(PROFILE)
    assert set(shown) == {"improv", "esp"}  # native shows each code as itself
    improv = shown["improv"]["Improv error unable_to_connect (0x03)"]
    assert {"WRONG_CREDENTIALS", "NO_DHCP_LEASE", "DNS_FAILURE", "CAPTIVE_PORTAL"} <= set(improv)
    esp = {what.rsplit(" ", 1)[-1]: names for what, names in shown["esp"].items()}
    assert "WRONG_CREDENTIALS" in esp["AuthError"] and "NO_DHCP_LEASE" in esp["NetworkNotFound"]
    every = [n for m in shown.values() for names in m.values() for n in names]
    assert not any(PROFILE.code(n).category == "client" for n in every)
    assert main(["codes", "--shown", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == shown
    assert "## What an app shows, and the codes it may mean" in docs.markdown(PROFILE)
