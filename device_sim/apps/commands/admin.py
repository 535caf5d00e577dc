"""``device-sim codes``, ``doctor`` and ``ctl``: the catalogue, the machine check, the daemon's
socket."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from ...codes import Code
from ...errors import ConfigError, OnboardingError
from .output import emit, write_out


def codes(args: argparse.Namespace) -> int:
    """Print the diagnostic-code catalogue, or one code in full (``codes 104``).

    Raises ConfigError for a code that does not exist."""
    from ...profile import load_profile
    from ...support import docs

    profile = load_profile()
    if args.code:
        try:
            doc = docs.find(profile, args.code)
        except KeyError:
            raise ConfigError(args.code, "no such code (device-sim codes lists them)") from None
        emit(args, doc.to_json(), lambda: docs.text(doc))
        return 0
    if getattr(args, "shown", False):  # the reverse map: what an app shows -> device codes
        shown = docs.shown_by_apps(profile)
        emit(
            args,
            shown,
            lambda: "\n".join(
                f"{personality}:\n"
                + "\n".join(f"  {what}\n    {', '.join(names)}" for what, names in m.items())
                for personality, m in shown.items()
            ),
        )
        return 0
    rows = [vars(c) for c in sorted(profile.codes.values(), key=lambda c: c.id)]
    emit(
        args,
        rows,
        lambda: "\n".join(
            f"{r['id']:>4} {r['name']:<26} {r['user_message']}\n{'':>31}next: {r['next_step']}"
            for r in rows
        ),
    )
    return 0


def write_docs(args: argparse.Namespace) -> int:
    """``device-sim docs``: the per-error documentation as Markdown and a self-contained page."""
    from ...profile import load_profile
    from ...support import docs

    profile = load_profile()
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "codes.md").write_text(docs.markdown(profile), encoding="utf-8")
        (out / "codes.html").write_text(docs.html_page(profile), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            str(out), f"cannot write the documentation: {exc.strerror or exc}"
        ) from None
    print(f"wrote {out / 'codes.md'} and {out / 'codes.html'} ({len(profile.codes)} codes)")
    return 0


def _world_certs(out: Path, identity: str) -> int:
    """``scenario certs``: the world's CA certificates, and a client certificate with its key
    (0600), valid and expired, for ``identity``."""
    import os

    from ...network.radius import world_pki
    from ...network.scenario.model import ISSUERS

    pki = world_pki()
    files = {f"{issuer}-ca.pem": pki.ca_pem(issuer) for issuer in ISSUERS}
    for name, expired in (("client", False), ("client-expired", True)):
        cert, key = pki.client(identity, expired=expired)
        files |= {f"{name}.pem": cert, f"{name}.key": key}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            path = out / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as exc:
        raise ConfigError(str(out), f"cannot write: {exc.strerror or exc}") from None
    print(f"wrote {', '.join(sorted(files))} to {out} (test fixtures: never trust them elsewhere)")
    return 0


def scenario(args: argparse.Namespace) -> int:
    """``scenario check``: 0 when every file is valid, 2 with each file's every error listed;
    ``scenario schema``: the JSON Schema made from the same model that validates them."""
    from ...errors import ConfigErrors
    from ...network.scenario import load_scenario, schema_text

    if args.scenario_command == "certs":
        return _world_certs(args.out, args.identity)
    if args.scenario_command == "schema":
        if args.out is None:
            sys.stdout.write(schema_text())
            return 0
        try:
            args.out.write_text(schema_text(), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(args.out), f"cannot write: {exc.strerror or exc}") from None
        print(f"wrote {args.out}")
        return 0
    bad = 0
    for name in args.scenarios:
        try:
            world = load_scenario(name)
        except ConfigErrors as exc:
            bad += 1
            print(f"{name}: {len(exc.errors)} error(s)")
            for error in exc.errors:
                print(f"  {error.where}: {error.problem}")
            continue
        except ConfigError as exc:
            bad += 1
            print(f"{name}: {exc}")
            continue
        expect = world.default_credentials.expect.name
        print(f"{name}: ok ({len(world.access_points)} BSSes, expects {expect})")
    return 2 if bad else 0


async def doctor(args: argparse.Namespace) -> int:
    """Check this machine can run the daemon; the exit code says how it went."""
    from ..doctor import diagnose, exit_code, format_results

    results = await diagnose(args.config)
    emit(args, [r.to_json() for r in results], lambda: format_results(results))
    return exit_code(results)


def _faults_text(result: dict[str, Any]) -> str:
    lines = [str(result["done"])] if result.get("done") else []
    faults = result["faults"]
    lines.append(
        f"{len(faults)} fault(s) in force (from the next attempt):" if faults else "no faults"
    )
    for f in faults:
        where = f"  on {bytes.fromhex(f['ssid'])!r}" if f.get("ssid") else ""
        lines.append(
            f"  {f['name']:<16} {f['step']:<15} p={f['probability']:<5g} "
            f"+{f['delay_ms']}±{f['jitter_ms']} ms  ends {f['result']}{where}"
        )
    return "\n".join(lines)


async def _ctl_fleet(args: argparse.Namespace, params: dict[str, Any]) -> int:
    """``ctl --fleet ROOT [--device NAME]``: the command to each device, results by name;
    0 all done, 1 a device refused it, 2 a device did not answer."""
    import asyncio

    from ...control import control_request
    from ...errors import TransportError
    from ..fleet.host import read_index

    if args.ctl_command == "diagnostics":
        raise ConfigError("--fleet", "diagnostics makes one file per device: use --state-dir")
    devices = read_index(args.fleet)["devices"]
    if args.device is not None:
        devices = [d for d in devices if d["name"] == args.device]
        if not devices:
            raise ConfigError("--device", f"no {args.device} in the fleet at {args.fleet}")
    gate = asyncio.Semaphore(64)
    worst = 0

    async def one(device: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        nonlocal worst
        async with gate:
            try:
                return device["name"], await control_request(
                    Path(device["state_dir"]), args.ctl_command, params, timeout=30
                )
            except OnboardingError as exc:
                worst = max(worst, 1)
                return device["name"], {"error": exc.code.name, "detail": exc.detail}
            except TransportError as exc:
                worst = 2
                return device["name"], {"error": "NO_DAEMON", "detail": exc.detail}

    results = dict(await asyncio.gather(*(one(d) for d in devices)))
    emit(
        args,
        results,
        lambda: "\n".join(
            f"{name}: "
            + ", ".join(
                f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in result.items()
            )
            for name, result in results.items()
        ),
    )
    return worst


def _offline_diagnostics(args: argparse.Namespace) -> dict[str, Any]:
    """``ctl diagnostics`` when no daemon answers: the bundle from the state directory.
    Raises ConfigError (no device there, no --out)."""
    from ...profile import load_profile
    from ...support import bundle, collect

    if args.out is None:
        raise ConfigError("--out", "diagnostics makes a file: give --out FILE")
    files, redacted, archive = collect.offline_bundle(load_profile(), Path(args.state_dir))
    out: dict[str, Any] = {"files": files, "bytes": len(archive), "daemon": "not running"}
    if redacted:
        out["redacted"] = redacted
    out["archive"] = bundle.encode(archive)
    return out


async def ctl(args: argparse.Namespace) -> int:
    """Send one command to a running daemon: 0 done, 1 the daemon refused it, 2 no daemon or
    arguments it cannot take (named, as any usage error).

    Raises:
        ConfigError: a parameter is not ``KEY=VALUE``.
    """
    from ...control import control_request
    from ...errors import TransportError

    params: dict[str, Any] = {}
    items = list(args.params)
    if args.ctl_command == "fault":  # ctl fault add|remove|list [NAME] [KEY=VALUE ...]
        for key in ("action", "name"):
            if items and "=" not in items[0]:
                params[key] = items.pop(0)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    if args.fleet is not None:
        return await _ctl_fleet(args, params)
    try:
        result = await control_request(args.state_dir, args.ctl_command, params, timeout=30)
    except OnboardingError as exc:
        if exc.code is Code.MALFORMED_REQUEST:  # the command's arguments: a usage error
            print(f"device-sim: ctl {args.ctl_command}: {exc.detail}", file=sys.stderr)
            return 2
        print(f"error {exc.code.name} ({int(exc.code)}): {exc.detail}", file=sys.stderr)
        return 1
    except TransportError as exc:
        if args.ctl_command != "diagnostics":
            print(f"device-sim: {exc.detail}", file=sys.stderr)
            return 2
        # A crashed device gets its bundle too: made from the state directory alone.
        result = _offline_diagnostics(args)
        print(
            f"device-sim: no daemon answers for {args.state_dir}: the bundle was made from "
            "its state directory (no doors, options or scan)",
            file=sys.stderr,
        )
    if "archive" in result:  # a file for the ticket (diagnostics): written, not printed
        if args.out is None:
            raise ConfigError("--out", f"{args.ctl_command} makes a file: give --out FILE")
        data = base64.b64decode(result.pop("archive"))
        write_out(args.out, data)
        result["written"] = str(args.out)
    if args.ctl_command == "fault" and "faults" in result:
        emit(args, result, lambda: _faults_text(result))
        return 0
    emit(
        args,
        result,
        lambda: (
            "\n".join(
                f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in result.items()
            )
            or "ok"
        ),
    )
    return 0
