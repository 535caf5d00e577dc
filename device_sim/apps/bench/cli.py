"""``device-sim bench``: a matrix of runs, or a population of homes, with a report.

Matrix: scenarios x transports x personalities x repeats, each run a fresh device and a phone
(``--phone``), several at once; a run passes when it ends as its scenario expects.
Population (``--population N``): N homes drawn from a homes file (scenario and phone by
weight), the same homes for every variant (transport x personality), reporting the share
online within two minutes, the median and p90 time to online, and the codes that cost homes.

Writes ``results.json``, ``junit.xml`` and ``report.html`` (self-contained) to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...doors import registry
from ...errors import ConfigError

QA_SCENARIOS = (
    "typical-home",
    "mesh-failing-node",
    "band-steering",
    "five-ghz-only",
    "wrong-clock",
    "no-rtc",
    "flaky-dhcp",
    "ipv6-only",
    "ipv6-only-legacy",
)


def add_parser(sub: Any) -> None:
    from ..commands.args import positive_float, positive_int

    p = sub.add_parser(
        "bench",
        help="QA bench: a matrix of scenarios, or a population of homes, "
        "with JUnit, JSON and an HTML report",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(QA_SCENARIOS),
        help="matrix: comma-separated scenario names or files (default: the QA world scenarios)",
    )
    p.add_argument(
        "--transports",
        default="ble",
        help="comma-separated: ble (BlueZoo), ble-bumble (bumble's virtual controllers, no "
        "D-Bus), softap",
    )
    p.add_argument(
        "--personalities",
        default=registry.default(),
        help=f"comma-separated personalities ({', '.join(registry.names())})",
    )
    p.add_argument("--repeat", type=positive_int, default=1, help="runs per cell (matrix)")
    p.add_argument(
        "--phone",
        default="{}",
        metavar="JSON",
        help="matrix: the phone every run plays (client provision --phone)",
    )
    p.add_argument(
        "--population",
        type=positive_int,
        metavar="N",
        help="onboard N homes drawn from --homes, per variant",
    )
    p.add_argument(
        "--homes",
        type=Path,
        metavar="FILE",
        help="the homes model (default scenarios/homes/default.yaml)",
    )
    p.add_argument(
        "--time-scale",
        type=positive_float,
        default=1.0,
        help="multiply the world's delays, the device's timeouts and the user's "
        "times (default 1: real delays)",
    )
    p.add_argument(
        "--softap-window",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="over BLE, seconds before the device opens its SoftAP for a phone "
        "without Bluetooth (default 60, the device's default)",
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        help="runs at once (default 8; 16 with --population)",
    )
    p.add_argument(
        "--seed", type=int, default=2026, help="seeds the homes and each run's world (default 2026)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("bench-report"),
        help="directory for results.json, junit.xml, report.html",
    )
    p.add_argument(
        "--min-online",
        type=share,
        default=None,
        metavar="F",
        help="with --population: fail (exit 1) when a group has less than this share of "
        "homes online within 2 minutes, e.g. 0.9 (a gate for CI)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def share(text: str) -> float:
    """An argparse type: a share from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a share from 0 to 1, not {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share from 0 to 1, not {text}")
    return value


@dataclass
class _Plan:
    """What a bench runs: its kind (matrix or population), every run, and the cells asked for
    that cannot run (with the reason)."""

    kind: str
    specs: list[Any]
    skipped: list[dict[str, Any]]
    transports: list[str]
    personalities: list[str]


async def run(args: argparse.Namespace) -> int:
    from ...profile import load_profile

    profile = load_profile()
    plan = _plan(args)
    out: Path = args.out
    _make_dir(out)
    for cell in plan.skipped:
        print(
            f"skipped: {cell['cell']} ({cell['runs']} run(s)): {cell['reason']}",
            file=sys.stderr,
        )
    reporter = _Reporter(args, plan, profile)
    runs = await _execute(args, profile, plan, reporter)
    if isinstance(runs, int):
        return runs  # terminated
    document = reporter.write(runs)
    summary = document["summary"]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, out, time.monotonic() - reporter.t0)
    return _verdict(args, plan.kind, summary, runs)


TRANSPORTS = ("ble", "ble-bumble", "softap")  # ble-bumble: the BLE stack chosen per run


def _plan(args: argparse.Namespace) -> _Plan:
    """The runs asked for. Raises ConfigError naming the flag at fault."""
    from ...doors import registry

    transports = _split(args.transports, "--transports")
    personalities = _split(args.personalities, "--personalities")
    for t in transports:
        if t not in TRANSPORTS:
            raise ConfigError("--transports", f"{', '.join(TRANSPORTS)}, not {t!r}")
    for name in personalities:
        registry.get(name, "--personalities")
    if args.concurrency is None:
        args.concurrency = 16 if args.population else 8
    if not 1 <= args.concurrency <= 32:
        raise ConfigError("--concurrency", "from 1 to 32")
    variants, skipped_variants = [], []
    for t, p in itertools.product(transports, personalities):
        if t in registry.get(p).transports or t.startswith("ble"):
            variants.append((t, p))
        else:
            skipped_variants.append((t, p, f"{p} has no {t} door"))
    if not variants:
        raise ConfigError("--transports", "no personality given runs over these transports")
    plan = _Plan("matrix", [], [], transports, personalities)
    if args.population:
        plan.kind = "population"
        _population(args, plan, variants, skipped_variants)
    else:
        _matrix(args, plan, variants, skipped_variants)
    if len(plan.specs) > 4000:
        raise ConfigError("--repeat", f"{len(plan.specs)} runs; at most 4000 in one bench")
    return plan


def _population(
    args: argparse.Namespace,
    plan: _Plan,
    variants: list[tuple[str, str]],
    skipped_variants: list[tuple[str, str, str]],
) -> None:
    from .homes import draw as draw_homes
    from .homes import load_homes
    from .runner import RunSpec

    if args.population > 2000:
        raise ConfigError("--population", "at most 2000 homes")
    homes = draw_homes(load_homes(args.homes), args.population, args.seed)
    for transport, personality, why in skipped_variants:
        plan.skipped.append(
            {
                "cell": f"{transport}-{personality}",
                "scenario": "every home",
                "transport": transport,
                "personality": personality,
                "runs": len(homes),
                "reason": why,
            }
        )
    for (transport, personality), (i, home) in itertools.product(variants, enumerate(homes)):
        plan.specs.append(
            RunSpec(
                f"home{i + 1:04d}-{transport}-{personality}",
                home.scenario,
                transport,
                personality,
                home.phone,
                home.seed,
                home=home.scenario,
            )
        )


def _matrix(
    args: argparse.Namespace,
    plan: _Plan,
    variants: list[tuple[str, str]],
    skipped_variants: list[tuple[str, str, str]],
) -> None:
    from ...network.scenario import load_scenario
    from .phone import parse_behaviour
    from .runner import RunSpec

    scenarios = _split(args.scenarios, "--scenarios")
    for name in scenarios:
        world = load_scenario(name)
        if world.cloud.mode or world.cloud.activation != "ok":
            raise ConfigError("--scenarios", f"{name} needs cloud activation: play it with demo")
    try:
        phone_spec = json.loads(args.phone)
    except ValueError:
        raise ConfigError("--phone", "not a JSON object") from None
    phone = parse_behaviour(
        phone_spec,
        "--phone",
        name=str(phone_spec.get("name", "careful")) if isinstance(phone_spec, dict) else "careful",
    )
    for scenario, (transport, personality, why) in itertools.product(scenarios, skipped_variants):
        plan.skipped.append(
            {
                "cell": f"{Path(scenario).stem}-{transport}-{personality}",
                "scenario": scenario,
                "transport": transport,
                "personality": personality,
                "runs": args.repeat,
                "reason": why,
            }
        )
    for n, (scenario, (transport, personality), repeat) in enumerate(
        itertools.product(scenarios, variants, range(args.repeat))
    ):
        plan.specs.append(
            RunSpec(
                f"{Path(scenario).stem}-{transport}-{personality}-{repeat + 1}",
                scenario,
                transport,
                personality,
                phone,
                args.seed + n,
                repeat + 1,
            )
        )


class _Reporter:
    """Writes the bench's reports (JSON, JUnit, HTML): at the end, or with the runs finished so
    far when the bench is interrupted."""

    def __init__(self, args: argparse.Namespace, plan: _Plan, profile: Any) -> None:
        self.args, self.plan, self.profile = args, plan, profile
        self.started = dt.datetime.now(dt.UTC)
        self.t0 = time.monotonic()

    def write(self, runs: list[dict[str, Any]], interrupted: str | None = None) -> dict[str, Any]:
        from .report import summarize, write_html, write_json, write_junit

        args, plan, out = self.args, self.plan, self.args.out
        seconds = time.monotonic() - self.t0
        summary = summarize(runs, plan.kind)
        summary["skipped"] = sum(cell["runs"] for cell in plan.skipped)
        document = {
            "kind": plan.kind,
            "started": self.started.isoformat(timespec="seconds"),
            "seconds": round(seconds, 1),
            "options": {
                "time_scale": args.time_scale,
                "concurrency": args.concurrency,
                "seed": args.seed,
                "transports": plan.transports,
                "personalities": plan.personalities,
                "repeat": args.repeat,
                "population": args.population,
                "homes": str(args.homes) if args.homes else "default",
                "softap_window_s": args.softap_window,
            },
            "summary": summary,
            "skipped": plan.skipped,
            "runs": runs,
        }
        if interrupted is not None:
            document["interrupted"] = {
                "by": interrupted,
                "runs_done": len(runs),
                "runs_asked": len(plan.specs),
            }
        write_json(out / "results.json", document)
        write_junit(out / "junit.xml", runs, plan.kind, seconds, skipped=plan.skipped)
        write_html(out / "report.html", document, self.profile)
        return document


async def _execute(
    args: argparse.Namespace, profile: Any, plan: _Plan, reporter: _Reporter
) -> list[dict[str, Any]] | int:
    """Every run, ``--concurrency`` at once; the runs, or 143 when SIGTERM ended the bench
    (Ctrl-C raises on). Interrupted, it reports the runs finished so far."""
    from .runner import Bench, RunSpec

    finished: list[dict[str, Any]] = []  # in the order they ended: kept when interrupted
    specs = plan.specs

    async def one(bench: Bench, spec: RunSpec, gate: asyncio.Semaphore) -> dict[str, Any]:
        async with gate:
            result = await bench.run(spec)
        finished.append(result)
        if not args.json:
            wall = (
                f" (wall {result.get('wall_seconds') or 0:.1f} s)" if args.time_scale != 1 else ""
            )
            print(
                f"[{len(finished):>4}/{len(specs)}] {spec.id:<40} {result['code_name']:<26} "
                f"{result.get('seconds') or 0:7.1f} s{wall}",
                flush=True,
            )
        return result

    # SIGTERM (a CI job cancelled, `kill`) ends the bench as Ctrl-C does: every run's device
    # and phone processes and the BlueZoo buses are stopped, none is left behind.
    main = asyncio.current_task()
    assert main is not None
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        main.cancel()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="device-sim-bench-") as tmp:
            gate = asyncio.Semaphore(args.concurrency)
            async with Bench(
                profile, Path(tmp), time_scale=args.time_scale, softap_window_s=args.softap_window
            ) as bench:
                # A task group, not gather: cancelled, it waits for every run to stop its
                # processes before the bench goes on (gather would return at once).
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(one(bench, s, gate)) for s in specs]
                return [task.result() for task in tasks]
    except asyncio.CancelledError:
        # Ctrl-C or SIGTERM: the finished runs are reported all the same (partial).
        reporter.write(finished, "SIGTERM" if terminated else "Ctrl-C")
        print(
            f"device-sim bench: {'terminated' if terminated else 'interrupted'}; every run's "
            f"processes stopped; {len(finished)} of {len(specs)} runs reported in "
            f"{args.out / 'results.json'}",
            file=sys.stderr,
        )
        if not terminated:
            raise
        return 143  # 128 + SIGTERM
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _verdict(
    args: argparse.Namespace, kind: str, summary: dict[str, Any], runs: list[dict[str, Any]]
) -> int:
    """0 when the bench holds: every run completed, a matrix all as expected, a population's
    share online within 2 minutes at least ``--min-online``."""
    broken = sum(1 for r in runs if r["code_name"] in ("BENCH_ERROR", "BENCH_TIMEOUT"))
    if broken:
        print(
            f"{broken} run(s) could not be completed (BENCH_ERROR/BENCH_TIMEOUT): see "
            f"{args.out / 'junit.xml'}",
            file=sys.stderr,
        )
        return 1
    if kind == "matrix":
        return 0 if summary["passed"] == summary["runs"] else 1
    if args.min_online is not None:
        short = {
            name: g["share_online_within_2_min"]
            for name, g in summary["groups"].items()
            if g["share_online_within_2_min"] < args.min_online
        }
        for name, got in short.items():
            print(
                f"below --min-online {args.min_online:g}: {name} has {got:.1%} of homes online "
                "within 2 minutes",
                file=sys.stderr,
            )
        return 1 if short else 0
    return 0


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(str(out), f"cannot create: {exc.strerror or exc}") from None


def _split(text: str, flag: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ConfigError(flag, "give at least one")
    return list(dict.fromkeys(items))


def _print_summary(summary: dict[str, Any], out: Path, seconds: float) -> None:
    print(f"\n{summary['runs']} runs in {seconds:.0f} s")
    for name, g in summary["groups"].items():
        if summary["kind"] == "population":
            t = g["time_to_online_s"]
            print(
                f"  {name}: {g['share_online_within_2_min']:.1%} of {g['runs']} homes online "
                f"within 2 minutes; time to online median {t['median']} s, p90 {t['p90']} s"
            )
            costly = ", ".join(f"{c} {n}" for c, n in list(g["codes_costing_homes"].items())[:5])
            print(f"    cost homes: {costly or 'none'}")
            again, back = g["reonboardings"], g["back_by_itself"]
            if again["n"] or back["of"]:
                print(
                    f"    onboardings, re-onboardings included: "
                    f"{g['share_onboardings_within_2_min']:.1%} of {g['onboardings']} online "
                    f"within 2 minutes; re-onboardings {again['online_within_2_min']}/"
                    f"{again['n']} (median {again['median_s']} s); back by itself "
                    f"{back['n']}/{back['of']} (median {back['median_s']} s after the router); "
                    f"stories as expected {g['stories_as_expected']}/{g['stories']}"
                )
        else:
            codes = ", ".join(f"{c} x{n}" for c, n in g["outcomes"].items())
            print(f"  {name}: {g['passed']}/{g['runs']} as expected ({codes})")
    if summary["kind"] == "matrix":
        print(f"{summary['passed']}/{summary['runs']} runs ended as their scenario expects")
    print(
        f"report: {out / 'report.html'}  junit: {out / 'junit.xml'}  json: {out / 'results.json'}"
    )
