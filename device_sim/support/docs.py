"""Per-error documentation, generated from ``gatt_profile.yaml`` (``device-sim docs``).

For every diagnostic code: what it means, what the user sees, the next step, what support asks
and collects, a command that reproduces it, and how each personality reports it (each
personality of the door registry says so itself). The same entries feed ``device-sim codes
CODE``, a Markdown file and a self-contained HTML page (no external assets).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from ..doors import registry
from ..network.scenario import list_scenarios, load_scenario
from ..profile import CodeDef, Profile

TITLE = "device-sim diagnostic codes"


@dataclass(frozen=True)
class CodeDoc:
    entry: CodeDef
    collect: tuple[str, ...]
    reproduce: tuple[str, ...]  # runnable commands
    reports: tuple[tuple[str, str], ...]  # (personality, how it reports the code)

    def to_json(self) -> dict[str, Any]:
        e = self.entry
        return {
            "id": e.id,
            "name": e.name,
            "category": e.category,
            "meaning": e.meaning,
            "user_message": e.user_message,
            "next_step": e.next_step,
            "support_question": e.support_question,
            "recoverable": e.recoverable,
            "collect": list(self.collect),
            "reproduce": list(self.reproduce),
            "reports": dict(self.reports),
        }


def code_docs(profile: Profile) -> list[CodeDoc]:
    """Every code's documentation, in id order."""
    by_scenario: dict[str, list[str]] = {}
    for name in list_scenarios():
        expect = load_scenario(name).default_credentials.expect
        by_scenario.setdefault(expect.name, []).append(f"device-sim demo --scenario {name}")
    entries = [registry.get(name) for name in registry.names()]
    docs = []
    for entry in sorted(profile.codes.values(), key=lambda c: c.id):
        commands = ([entry.reproduce] if entry.reproduce else []) + sorted(
            c for c in by_scenario.get(entry.name, []) if c != entry.reproduce
        )
        if entry.name == "OK":
            commands = ["device-sim demo"]
        reports = tuple(
            (p.name, p.reports(profile, entry)) for p in entries if p.reports is not None
        )
        docs.append(
            CodeDoc(
                entry,
                (*profile.collect.get(entry.category, ()), *entry.collect),
                tuple(commands),
                reports,
            )
        )
    return docs


def shown_by_apps(
    profile: Profile, docs: list[CodeDoc] | None = None
) -> dict[str, dict[str, list[str]]]:
    """The reverse map support needs: per personality, what an app shows (the first part of
    how the personality reports a code, e.g. Improv's ``error unable_to_connect``) and the
    device codes it may mean, in id order. The phone's own codes are left out, and so is a
    personality that shows every code as itself (native)."""
    out: dict[str, dict[str, list[str]]] = {}
    for doc in code_docs(profile) if docs is None else docs:
        if doc.entry.category == "client":
            continue
        for personality, how in doc.reports:
            shown = how.split(";")[0].strip()
            out.setdefault(personality, {}).setdefault(shown, []).append(doc.entry.name)
    return {p: m for p, m in out.items() if any(len(names) > 1 for names in m.values())}


def find(profile: Profile, key: str) -> CodeDoc:
    """One code's documentation by number or name. Raises KeyError."""
    wanted = key.upper()
    for doc in code_docs(profile):
        if str(doc.entry.id) == key or doc.entry.name == wanted:
            return doc
    raise KeyError(key)


def text(doc: CodeDoc) -> str:
    """One code in full, for a terminal (``device-sim codes 104``)."""
    e = doc.entry
    lines = [
        f"{e.id} {e.name} ({e.category}{'' if e.recoverable else ', not fixed by a retry'})",
        f"  meaning:      {e.meaning}",
        f"  user sees:    {e.user_message}",
        f"  next step:    {e.next_step}",
        f"  support asks: {e.support_question}",
    ]
    if doc.collect:
        lines.append("  collect:      " + "; ".join(doc.collect))
    lines.append(
        "  reproduce:    " + (" | ".join(doc.reproduce) if doc.reproduce else "no scenario yet")
    )
    for personality, how in doc.reports:
        lines.append(f"  {personality + ':':<13} {how}")
    return "\n".join(lines)


def markdown(profile: Profile) -> str:
    out = [
        f"# {TITLE}",
        "",
        "Generated from `gatt_profile.yaml` by `device-sim docs`; do not edit by hand "
        "(`tests/support/test_docs.py` fails when it is out of date).",
        "",
        "| code | name | user sees | recoverable |",
        "|---|---|---|---|",
    ]
    docs = code_docs(profile)
    out += [
        f"| {d.entry.id} | [{d.entry.name}](#{d.entry.name.lower()}) | {d.entry.user_message} "
        f"| {'yes' if d.entry.recoverable else 'no'} |"
        for d in docs
    ]
    for d in docs:
        e = d.entry
        out += [
            "",
            f"## {e.name}",
            "",
            f"**{e.id}**, {e.category}; "
            + ("a retry can help." if e.recoverable else "a retry alone does not help."),
            "",
            f"- **Meaning:** {e.meaning}",
            f"- **The user sees:** {e.user_message}",
            f"- **Next step:** {e.next_step}",
            f"- **Support asks:** {e.support_question}",
        ]
        if d.collect:
            out.append("- **Collect:** " + "; ".join(d.collect))
        out.append(
            "- **Reproduce:** "
            + (", ".join(f"`{c}`" for c in d.reproduce) if d.reproduce else "no scenario yet")
        )
        if d.reports:
            out.append("- **How each personality reports it:**")
            out += [f"  - {name}: {how}" for name, how in d.reports]
    out += [
        "",
        "## What an app shows, and the codes it may mean",
        "",
        "An app that speaks Improv or ESP sees fewer outcomes than the device knows; each "
        "line lists the device codes behind one of them (the device's diagnostics tell which).",
    ]
    for personality, shown in shown_by_apps(profile, docs).items():
        out += ["", f"### {personality}", ""]
        out += [f"- {what}: {', '.join(names)}" for what, names in shown.items()]
    return "\n".join(out) + "\n"


_CSS = (
    "body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
    "code{background:#f3f3f3;padding:0 .2em}section{border-top:1px solid #ddd;margin-top:1em}"
    "dt{font-weight:bold}dd{margin:0 0 .4em 1em}"
)


def html_page(profile: Profile) -> str:
    """The same documentation as one self-contained HTML page (no scripts, no assets)."""

    def esc(value: str) -> str:
        return html.escape(value, quote=True)

    docs = code_docs(profile)
    rows = "".join(
        f'<tr><td>{d.entry.id}</td><td><a href="#{esc(d.entry.name.lower())}">'
        f"{esc(d.entry.name)}</a></td><td>{esc(d.entry.user_message)}</td></tr>"
        for d in docs
    )
    sections = []
    for d in docs:
        e = d.entry
        items = [
            ("Meaning", esc(e.meaning)),
            ("The user sees", esc(e.user_message)),
            ("Next step", esc(e.next_step)),
            ("Support asks", esc(e.support_question)),
            ("Recoverable", "yes" if e.recoverable else "no: a retry alone does not help"),
            ("Collect", esc("; ".join(d.collect)) if d.collect else "-"),
            (
                "Reproduce",
                ", ".join(f"<code>{esc(c)}</code>" for c in d.reproduce)
                if d.reproduce
                else "no scenario yet",
            ),
            *((f"Reported by {esc(name)}", esc(how)) for name, how in d.reports),
        ]
        body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
        sections.append(
            f'<section id="{esc(e.name.lower())}"><h2>{e.id} {esc(e.name)}</h2>'
            f"<p>{esc(e.category)}</p><dl>{body}</dl></section>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{TITLE}</title><style>{_CSS}</style></head><body>"
        f"<h1>{TITLE}</h1><p>Generated from <code>gatt_profile.yaml</code> by "
        "<code>device-sim docs</code>.</p>"
        f"<table><tr><th>code</th><th>name</th><th>user sees</th></tr>{rows}</table>"
        + "".join(sections)
        + "</body></html>\n"
    )
