"""``device-sim factory ca|unit|batch|selftest``: the factory step of a production line.

    device-sim factory ca --factory-dir D [--name N]
    device-sim factory unit --factory-dir D --out O --station S [--serial X]
                            [--site-ssid S --site-passphrase P] [--registration]
    device-sim factory batch --factory-dir D --out O --count N --station S [--registration]
    device-sim factory selftest --factory-dir D --unit O/<serial> --setup-code C
                                (--payload P | --payload-from-label)

Exit codes: 0 success, 1 a unit failed its self-test, 2 a usage or configuration error. The lead
CLI wires it with :func:`add_parser` and :func:`run`; ``python -m device_sim.apps.factory.cli``
works on its own. Nothing here prints a setup code, claim token or passphrase: they are on the
labels only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import DeviceSimError

EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``factory`` subcommand (with ``ca``, ``unit``, ``batch``, ``selftest``)."""
    parser = subparsers.add_parser(
        "factory",
        help="factory line: CA, unit provisioning, labels, self-test",
        description="Provision units as a production line does: certificates from a factory "
        "CA, serials, labels, end-of-line self-test and manufacturing records.",
    )
    configure(parser)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the factory commands to ``parser`` (used by :func:`add_parser` and :func:`main`)."""
    sub = parser.add_subparsers(dest="factory_command", required=True, metavar="COMMAND")

    def base(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument(
            "--factory-dir",
            type=Path,
            required=True,
            help="the factory CA, serial registry and registration key",
        )
        return p

    p = base("ca", "create the factory's root and issuing CA (once)")
    p.add_argument("--name", default="device-sim Factory", help="CA name (default: %(default)s)")

    def unit_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--out",
            type=Path,
            required=True,
            help="output directory: <serial>/ per unit, records.jsonl, cloud-import.json",
        )
        p.add_argument("--station", required=True, help="this station's name (in the records)")
        p.add_argument(
            "--registration",
            action="store_true",
            help="program the factory's fleet registration key into the unit(s) "
            "(created on first use)",
        )
        p.add_argument("--json", action="store_true", help="print one JSON document")

    p = base("unit", "provision one unit")
    unit_args(p)
    p.add_argument("--serial", help="use this serial (DS-YY-NNNNNN) instead of the next one")
    p.add_argument("--site-ssid", help="pre-provision this site Wi-Fi (UTF-8 SSID)")
    p.add_argument("--site-passphrase", help="its passphrase (omit for an open network)")
    p.add_argument(
        "--claim-ttl-days",
        type=int,
        default=365,
        help="days the claim token stays valid (default: %(default)s; 0: expired at once, "
        "to reproduce CLAIM_TOKEN_EXPIRED)",
    )

    p = base("batch", "provision N units with a progress bar")
    unit_args(p)
    p.add_argument("--count", type=int, required=True, help="number of units")
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes (default: 1, in this process)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = base("selftest", "re-run the self-test of a unit")
    p.add_argument("--unit", type=Path, required=True, help="the unit directory (<out>/<serial>)")
    p.add_argument("--setup-code", required=True, help="the setup code printed on the label")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--payload", help="the exact QR payload the label must carry")
    which.add_argument(
        "--payload-from-label",
        action="store_true",
        help="read the payload from the label's QR and check its fields against "
        "this unit (device id, setup code, claim-token hash)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``factory`` command; return the exit code."""
    commands = {"ca": _ca, "unit": _unit, "batch": _batch, "selftest": _selftest}
    try:
        return commands[args.factory_command](args)
    except (DeviceSimError, OSError) as exc:
        print(f"device-sim factory {args.factory_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m device_sim.apps.factory.cli ca|unit|batch|selftest ...``."""
    parser = argparse.ArgumentParser(prog="device-sim factory", description=__doc__.splitlines()[0])
    configure(parser)
    return run(parser.parse_args(argv))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _ca(args: argparse.Namespace) -> int:
    from ... import pki

    ca = pki.create_factory_ca(args.factory_dir, args.name)
    print(
        f"root CA:    {ca.root_cert.subject.rfc4514_string()}  "
        f"sha256 {pki.fingerprint_sha256(ca.root_cert)}"
    )
    print(
        f"issuing CA: {ca.issuing_cert.subject.rfc4514_string()}  "
        f"sha256 {pki.fingerprint_sha256(ca.issuing_cert)}"
    )
    print(
        f"Move {args.factory_dir / pki.ROOT_DIR} offline now: issuing units needs only "
        f"{pki.ISSUING_DIR}/ and {pki.CHAIN}."
    )
    return 0


def _registration(args: argparse.Namespace) -> Any:
    from .registration import ensure_registration_key

    return ensure_registration_key(args.factory_dir) if args.registration else None


def _unit_json(unit: Any) -> dict[str, Any]:
    return {
        "serial": unit.serial,
        "device_id": unit.device_id,
        "unit_dir": str(unit.unit_dir),
        "passed": unit.passed,
        "summary": unit.report.summary,
        "failed_checks": unit.report.failed_checks,
        "label_png": str(unit.unit_dir / "label.png"),
    }


def _unit(args: argparse.Namespace) -> int:
    from .unit import provision_unit

    site = None
    if args.site_ssid is not None:
        site = (args.site_ssid.encode("utf-8"), args.site_passphrase)
    elif args.site_passphrase is not None:
        print("device-sim factory unit: --site-passphrase needs --site-ssid", file=sys.stderr)
        return EXIT_USAGE
    unit = provision_unit(
        args.factory_dir,
        args.out,
        station=args.station,
        serial=args.serial,
        site_wifi=site,
        claim_ttl_days=args.claim_ttl_days,
        registration=_registration(args),
    )
    if args.json:
        _print_json(_unit_json(unit))
    else:
        print(unit.report.summary)
        for check in unit.report.checks:
            if not check.passed:
                print(f"  {check.name}: {check.message}")
        print(f"unit: {unit.unit_dir}  (label: {unit.unit_dir / 'label.png'})")
    return 0 if unit.passed else EXIT_FAILED


def _batch(args: argparse.Namespace) -> int:
    from .line import batch

    result = batch(
        args.factory_dir,
        args.out,
        args.count,
        station=args.station,
        workers=args.workers,
        progress=not args.no_progress,
        registration=_registration(args),
    )
    summary = {
        "requested": result.requested,
        "passed": result.passed,
        "failed": result.failed,
        "failed_serials": result.failed_serials,
        "errors": result.errors,
        "elapsed_s": round(result.elapsed_s, 3),
        "units_per_minute": round(result.units_per_minute, 1),
        "serials": [u.serial for u in result.units],
    }
    summary["interrupted"] = result.interrupted
    made = len(result.units) + len(result.errors)
    if args.json:
        _print_json(summary)
    elif result.interrupted:
        print(
            f"batch interrupted: {made} of {result.requested} units made "
            f"({result.passed} passed, {result.failed} failed) in {result.elapsed_s:.1f} s; "
            f"serials: {', '.join(u.serial for u in result.units) or 'none'}"
        )
    else:
        print(
            f"batch: {result.requested} units, {result.passed} passed, {result.failed} failed "
            f"in {result.elapsed_s:.1f} s ({result.units_per_minute:.1f} units/min)"
        )
    if result.interrupted:
        return 130
    return 0 if result.ok else EXIT_FAILED


def _selftest(args: argparse.Namespace) -> int:
    from ...security.secret import Secret
    from .checks import selftest

    report = selftest(
        args.unit,
        args.factory_dir,
        setup_code=Secret(args.setup_code),
        payload=None if args.payload_from_label else Secret(args.payload),
    )
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.summary)
        for check in report.checks:
            mark = "ok  " if check.passed else "FAIL"
            print(f"  {mark} {check.name:<18} {check.duration_ms:8.1f} ms  {check.message}")
    return 0 if report.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
