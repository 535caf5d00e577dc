"""The bench's outputs: a JSON result, JUnit XML and one self-contained HTML report.

JUnit: one test case per run (class: its cell or its home; the run's code and device timeline
in its output), failed when a matrix run did not end as its scenario expects, or when a home
was not online within two minutes. HTML: the outcome per cell, p50/p90/max per phase, the
time-to-outcome distributions as plots (matplotlib, PNG embedded), the population's figures,
and each failure code with its documentation from ``gatt_profile.yaml``. No external asset.
"""

# Over 500 lines on purpose: one report document written three ways (JSON, JUnit, HTML with its
# plots) from one summary.

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from ...profile import Profile
from .runner import PHASES

__all__ = ["TWO_MINUTES_S", "percentile", "summarize", "write_html", "write_json", "write_junit"]

TWO_MINUTES_S = 120.0


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile by linear interpolation (numpy's default), or None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 3)


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "max": round(max(values), 3) if values else None,
    }


def home_s(run: dict[str, Any]) -> float | None:
    """A home's time to its outcome, in the user's seconds (scaled back)."""
    value = run.get("home_seconds", run.get("seconds"))
    return None if value is None else float(value)


def in_time(run: dict[str, Any]) -> bool:
    """Online within two minutes of the user's time."""
    seconds = home_s(run)
    return bool(run["online"] and seconds is not None and seconds <= TWO_MINUTES_S)


def variant(run: dict[str, Any]) -> str:
    return f"{run['transport']} / {run['personality']}"


def summarize(runs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Per cell (matrix) or per variant (population): outcomes, times, phases."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[run["cell"] if kind == "matrix" else variant(run)].append(run)
    out: dict[str, Any] = {"kind": kind, "runs": len(runs), "groups": {}}
    for name, members in sorted(groups.items()):
        seconds = [s for r in members if (s := home_s(r)) is not None]
        online = [s for r in members if r["online"] and (s := home_s(r)) is not None]
        phases = {
            p: _stats([r["phases_ms"][p] for r in members if p in r["phases_ms"]]) for p in PHASES
        }
        group: dict[str, Any] = {
            "runs": len(members),
            "outcomes": dict(Counter(r["code_name"] for r in members).most_common()),
            "passed": sum(1 for r in members if r.get("passed")),
            "seconds": _stats(seconds),
            "phases_ms": {p: s for p, s in phases.items() if s["n"]},
        }
        if kind == "population":
            within = [s for s in online if s <= TWO_MINUTES_S]
            lost = Counter(_lost_reason(r) for r in members if not in_time(r))
            group.update(
                {
                    "online_within_2_min": len(within),
                    "share_online_within_2_min": round(len(within) / len(members), 4),
                    "time_to_online_s": {
                        "median": percentile(online, 0.5),
                        "p90": percentile(online, 0.9),
                    },
                    "codes_costing_homes": dict(lost.most_common()),
                    "by_home": _by(members, "scenario"),
                    "by_phone": _by(members, "phone"),
                    **_after_online(members, len(within)),
                }
            )
        out["groups"][name] = group
    every = {p: _stats([r["phases_ms"][p] for r in runs if p in r["phases_ms"]]) for p in PHASES}
    out["all"] = {"phases_ms": {p: stat for p, stat in every.items() if stat["n"]}}
    if kind == "matrix":
        out["passed"] = sum(1 for r in runs if r.get("passed"))
    return out


def _after_online(members: list[dict[str, Any]], first_in_time: int) -> dict[str, Any]:
    """The homes' life after the first onboarding: re-onboardings (a replaced router: from the
    doors reopening to online, the user's time) count as onboardings of their own; a device
    back by itself (a router that rebooted) counts its time from the network's return."""
    stories = [r["story"] for r in members if r.get("story")]
    again = [s for s in stories if s.get("reonboarding") is not None]
    again_s = [
        float(s["reonboard_s"])
        for s in again
        if s["reonboarding"].get("state") == "online" and s.get("reonboard_s") is not None
    ]
    again_in_time = [t for t in again_s if t <= TWO_MINUTES_S]
    back = [
        float(s["back_online_s"])
        for s in stories
        if s.get("reonboarding") is None
        and s.get("back_online_s") is not None
        and s["final"]["state"] == "online"
    ]
    onboardings = len(members) + len(again)
    return {
        "onboardings": onboardings,
        "onboardings_within_2_min": first_in_time + len(again_in_time),
        "share_onboardings_within_2_min": round(
            (first_in_time + len(again_in_time)) / onboardings, 4
        ),
        "reonboardings": {
            "n": len(again),
            "online_within_2_min": len(again_in_time),
            "median_s": percentile(again_s, 0.5),
            "p90_s": percentile(again_s, 0.9),
        },
        "back_by_itself": {
            "n": len(back),
            "of": sum(1 for s in stories if s.get("reonboarding") is None),
            "median_s": percentile(back, 0.5),
            "p90_s": percentile(back, 0.9),
        },
        "stories_as_expected": sum(1 for s in stories if not s["mismatches"]),
        "stories": len(stories),
    }


def _lost_reason(run: dict[str, Any]) -> str:
    return "ONLINE_AFTER_2_MIN" if run["online"] else str(run["code_name"])


def _by(members: list[dict[str, Any]], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted({str(r[key]) for r in members}):
        rs = [r for r in members if str(r[key]) == name]
        ok = [r for r in rs if in_time(r)]
        out[name] = {"homes": len(rs), "online_within_2_min": len(ok)}
    return out


# -- JSON and JUnit ---------------------------------------------------------------------------


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def write_junit(
    path: Path,
    runs: list[dict[str, Any]],
    kind: str,
    seconds: float,
    *,
    skipped: Sequence[dict[str, Any]] = (),
) -> None:
    """``skipped``: cells asked for that cannot run, each a skipped test case with its reason."""
    suite = ET.Element(
        "testsuite",
        name=f"device-sim bench ({kind})",
        tests=str(len(runs) + len(skipped)),
        time=f"{seconds:.3f}",
        skipped=str(len(skipped)),
    )
    for cell in skipped:
        case = ET.SubElement(
            suite, "testcase", classname=cell["cell"], name=f"{cell['cell']} ({cell['runs']} runs)"
        )
        ET.SubElement(case, "skipped", message=cell["reason"])
    failures = errors = 0
    for run in runs:
        classname = run["cell"] if kind == "matrix" else f"{variant(run)} / {run['scenario']}"
        case = ET.SubElement(
            suite,
            "testcase",
            classname=classname,
            name=f"{run['id']} ({run['phone']}, seed {run['seed']})",
            time=f"{run.get('wall_seconds', run.get('seconds')) or 0:.3f}",  # wall time
        )
        if run["code_name"] in ("BENCH_ERROR", "BENCH_TIMEOUT"):
            errors += 1
            node = ET.SubElement(
                case,
                "error",
                message=f"{run['code_name']}: {run.get('error') or run.get('detail', '')}"[:500],
            )
            node.text = run.get("error") or run.get("detail", "")
        elif not _junit_ok(run, kind):
            failures += 1
            want = (
                f"expected {run.get('expected')}"
                if kind == "matrix"
                else "expected online within 2 minutes"
            )
            node = ET.SubElement(case, "failure", message=f"{run['code_name']} ({want})")
            node.text = run.get("detail", "")
        out = ET.SubElement(case, "system-out")
        out.text = _timeline_text(run)
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _junit_ok(run: dict[str, Any], kind: str) -> bool:
    if kind == "matrix":
        return bool(run.get("passed"))
    return in_time(run)


def _timeline_text(run: dict[str, Any]) -> str:
    lines = [
        f"code {run['code_name']}  {run.get('detail', '')}",
        f"phone: {run['phone']} over {run.get('phone_transport')}; "
        + "; ".join(run.get("phone_story") or ["no incident"]),
    ]
    for event in run.get("timeline", []):
        code = f" {event['code_name']}" if event.get("code_name") not in (None, "OK") else ""
        lines.append(f"{event.get('at')}  {event.get('state'):<21} {event.get('phase')}{code}")
    return "\n".join(lines)


# -- HTML -------------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#1d2330}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccd}table{border-collapse:collapse;
margin:.6em 0}td,th{border:1px solid #ccd;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#eef1f6}.ok{background:#e3f6e6}.bad{background:#fbe4e2}.num{text-align:right}
.figure{font-size:2.2em;font-weight:600}img{max-width:100%}code{background:#f2f3f7;padding:0 .2em}
.small{color:#556;font-size:.9em}
"""


def write_html(path: Path, document: dict[str, Any], profile: Profile) -> None:
    runs, summary, kind = document["runs"], document["summary"], document["kind"]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        f"img-src data:; style-src 'unsafe-inline'\">"
        f"<title>device-sim bench: {kind}</title><style>{_STYLE}</style></head><body>"
    ]
    e = html.escape
    opts = document["options"]
    parts.append(
        f"<h1>device-sim bench: {e(kind)}</h1><p class='small'>{e(document['started'])}"
        f" &ndash; {len(runs)} runs in {document['seconds']:.0f} s of wall time; time scale "
        f"{opts['time_scale']:g} ({'real delays' if opts['time_scale'] == 1 else 'scaled'}"
        f"); concurrency {opts['concurrency']}; seed {opts['seed']}. Every other time here is "
        "the user's (wall time over the time scale).</p>"
    )
    if kind == "population":
        parts.append(_population_html(summary, opts))
    else:
        parts.append(_matrix_html(runs, summary))
    parts.append("<h2>Time to outcome</h2>")
    parts.append(_img(_time_plot(runs, kind)))
    parts.append("<h2>Phases (ms)</h2>" + _phases_html(summary))
    parts.append("<h2>Failures and what they mean</h2>" + _codes_html(runs, profile, kind))
    parts.append("<h2>Runs</h2>" + _runs_html(runs, kind))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def _population_html(summary: dict[str, Any], opts: dict[str, Any]) -> str:
    e = html.escape
    out = []
    for name, g in summary["groups"].items():
        t = g["time_to_online_s"]
        share = g["share_online_within_2_min"]
        out.append(
            f"<h2>{e(name)}</h2><p><span class='figure'>{share:.0%}</span> of {g['runs']} homes "
            f"online within 2 minutes ({g['online_within_2_min']}); time to online: median "
            f"{_s(t['median'])}, p90 {_s(t['p90'])}.</p>"
            + _after_online_html(g)
            + "<table><tr><th>what cost homes</th><th class='num'>homes</th></tr>"
            + "".join(
                f"<tr><td><code>{e(code)}</code></td><td class='num'>{n}</td></tr>"
                for code, n in g["codes_costing_homes"].items()
            )
            + "</table><table><tr><th>home</th><th class='num'>online &le; 2 min</th></tr>"
            + "".join(
                f"<tr><td>{e(h)}</td><td class='num'>{v['online_within_2_min']} / "
                f"{v['homes']}</td></tr>"
                for h, v in g["by_home"].items()
            )
            + "</table><table><tr><th>phone</th><th class='num'>online &le; 2 min</th></tr>"
            + "".join(
                f"<tr><td>{e(h)}</td><td class='num'>{v['online_within_2_min']} / "
                f"{v['homes']}</td></tr>"
                for h, v in g["by_phone"].items()
            )
            + "</table>"
        )
    out.append(_img(_codes_plot(summary)))
    return "".join(out)


def _after_online_html(g: dict[str, Any]) -> str:
    again, back = g["reonboardings"], g["back_by_itself"]
    if not again["n"] and not back["of"]:
        return ""
    return (
        f"<p>After the first onboarding: <b>{g['share_onboardings_within_2_min']:.0%}</b> of "
        f"{g['onboardings']} onboardings (re-onboardings included) online within 2 minutes. "
        f"Re-onboarded after a replaced router: {again['online_within_2_min']} of "
        f"{again['n']} within 2 minutes of the doors reopening (median "
        f"{_s(again['median_s'])}, p90 {_s(again['p90_s'])}). Back by itself after a router "
        f"restart: {back['n']} of {back['of']} (median {_s(back['median_s'])} after the "
        f"router). Stories as the scenario says: {g['stories_as_expected']} of "
        f"{g['stories']}.</p>"
    )


def _matrix_html(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    e = html.escape
    scenarios = sorted({r["scenario"] for r in runs})
    columns = sorted({variant(r) for r in runs})
    rows = [
        "<h2>Outcome per cell</h2><table><tr><th>scenario (expects)</th>"
        + "".join(f"<th>{e(c)}</th>" for c in columns)
        + "</tr>"
    ]
    for scenario in scenarios:
        expected = next((r.get("expected") for r in runs if r["scenario"] == scenario), "?")
        cells = []
        for column in columns:
            members = [r for r in runs if r["scenario"] == scenario and variant(r) == column]
            if not members:
                cells.append("<td></td>")
                continue
            passed = sum(1 for r in members if r.get("passed"))
            codes = Counter(r["code_name"] for r in members)
            label = ", ".join(f"{c} x{n}" for c, n in codes.most_common())
            seconds = [s for r in members if (s := home_s(r)) is not None]
            cls = "ok" if passed == len(members) else "bad"
            cells.append(
                f"<td class='{cls}'>{passed}/{len(members)} as expected<br>"
                f"<span class='small'>{e(label)}; p50 {_s(percentile(seconds, 0.5))}"
                f"</span></td>"
            )
        rows.append(
            f"<tr><td>{e(scenario)} <span class='small'>({e(str(expected))})</span>"
            f"</td>{''.join(cells)}</tr>"
        )
    rows.append("</table>")
    return (
        f"<p><span class='figure'>{summary['passed']}/{summary['runs']}</span> runs ended as "
        f"their scenario expects.</p>" + "".join(rows)
    )


def _phases_html(summary: dict[str, Any]) -> str:
    """One row per group and one for every run together; each phase's p50 / p90 / max."""
    e = html.escape
    groups = dict(summary["groups"])
    if "all" in summary:
        groups = {"all runs": summary["all"], **groups}
    phases = [p for p in PHASES if any(p in g["phases_ms"] for g in groups.values())]
    out = [
        "<p class='small'>each cell: p50 / p90 / max in the user's ms (from the device's "
        "events, over the time scale)</p>"
        "<table><tr><th>group</th>" + "".join(f"<th>{e(p)}</th>" for p in phases) + "</tr>"
    ]
    for name, g in groups.items():
        cells = []
        for phase in phases:
            s = g["phases_ms"].get(phase)
            cells.append(
                f"<td class='num'>{s['p50']:.0f} / {s['p90']:.0f} / {s['max']:.0f}</td>"
                if s
                else "<td></td>"
            )
        out.append(f"<tr><td>{e(name)}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return "".join(out)


def _codes_html(runs: list[dict[str, Any]], profile: Profile, kind: str) -> str:
    e = html.escape
    failing = Counter(r["code_name"] for r in runs if not _junit_ok(r, kind))
    if not failing:
        return "<p>None.</p>"
    out = [
        "<table><tr><th>code</th><th class='num'>runs</th><th>the user sees</th>"
        "<th>next step</th><th>support asks</th></tr>"
    ]
    by_name = {c.name: c for c in profile.codes.values()}
    for name, n in failing.most_common():
        code = by_name.get(name)
        if code is None:
            out.append(
                f"<tr><td><code>{e(name)}</code></td><td class='num'>{n}</td><td colspan=3>"
                "the bench's own (the run could not be completed; see its output)"
                "</td></tr>"
            )
            continue
        out.append(
            f"<tr><td><code>{e(name)}</code> {code.id}</td><td class='num'>{n}</td>"
            f"<td>{e(code.user_message)}</td><td>{e(code.next_step)}</td>"
            f"<td>{e(code.support_question)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _runs_html(runs: list[dict[str, Any]], kind: str) -> str:
    e = html.escape
    out = [
        "<table><tr><th>run</th><th>scenario</th><th>variant</th><th>phone</th><th>code</th>"
        "<th class='num'>s</th><th>story</th></tr>"
    ]
    for r in runs:
        cls = "ok" if _junit_ok(r, kind) else "bad"
        out.append(
            f"<tr class='{cls}'><td>{e(r['id'])}</td><td>{e(r['scenario'])}</td>"
            f"<td>{e(variant(r))}</td><td>{e(r['phone'])}</td><td>{e(r['code_name'])}</td>"
            f"<td class='num'>{_s(home_s(r))}</td>"
            f"<td class='small'>{e('; '.join(r.get('phone_story') or []))}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


# -- plots ------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _img(png: bytes) -> str:
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _time_plot(runs: list[dict[str, Any]], kind: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.2))
    groups: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        seconds = home_s(r)
        if seconds is not None and (kind == "matrix" or r["online"]):
            groups[r["cell"] if kind == "matrix" else variant(r)].append(seconds)
    if kind == "population":  # the share of homes online by time t, one line per variant
        for name, values in sorted(groups.items()):
            total = sum(1 for r in runs if variant(r) == name)
            xs = sorted(values)
            ax.step(
                [0, *xs], [0, *[(i + 1) / total for i in range(len(xs))]], where="post", label=name
            )
        ax.axvline(TWO_MINUTES_S, color="#b00", linestyle="--", label="2 minutes")
        ax.axhline(0.9, color="#888", linestyle=":", label="90% of homes")
        ax.set_xlabel("time to online (s, including the user)")
        ax.set_ylabel("share of homes online")
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right")
    else:
        names = sorted(groups)
        if names:
            ax.boxplot([groups[n] for n in names], vert=False)
            ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
        ax.set_xlabel("time from the phone's start to the outcome (s, scaled back)")
    fig.tight_layout()
    return _png(fig)


def _codes_plot(summary: dict[str, Any]) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    codes = Counter[str]()
    for g in summary["groups"].values():
        codes.update(g["codes_costing_homes"])
    names = [c for c, _ in codes.most_common(10)]
    ax.barh(names[::-1], [codes[c] for c in names[::-1]], color="#c0504d")
    ax.set_xlabel("homes not online within 2 minutes, by reason (all variants)")
    fig.tight_layout()
    return _png(fig)
