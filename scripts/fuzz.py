#!/usr/bin/env python3
"""The long fuzz run: the suite's targets (tests/fuzz) with many more inputs.

    .venv/bin/python scripts/fuzz.py                 # 100,000 inputs in all (default)
    .venv/bin/python scripts/fuzz.py --total 20000 --json

The same seeded hypothesis targets the test suite runs with 300 inputs each (the wire and Improv
codecs, the session layer, the SoftAP HTTP API, the three loaders) run here with enough
examples per target that the inputs add up to ``--total``. A target stops at its first crash
(an exception that is not its coded error) or uncoded answer; the report lists inputs per target,
crashes and uncoded answers. Exit status 0 only when there are none.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Targets and the inputs one example feeds (a session example is a list of messages; the
# loaders' random-file target feeds each text to three loaders).
TARGETS = {
    "tests/fuzz/test_codecs.py::test_reassembler": 1,
    "tests/fuzz/test_codecs.py::test_message_decoders": 1,
    "tests/fuzz/test_codecs.py::test_improv_codec": 1,
    "tests/fuzz/test_codecs.py::test_esp_codec": 1,
    "tests/fuzz/test_session_and_http.py::test_session_layer": 6,
    "tests/fuzz/test_session_and_http.py::test_http_api": 1,
    "tests/fuzz/test_loaders.py::test_scenario_documents": 1,
    "tests/fuzz/test_loaders.py::test_config_documents": 1,
    "tests/fuzz/test_loaders.py::test_profile_documents": 1,
    "tests/fuzz/test_loaders.py::test_random_text_files": 3,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--total",
        type=int,
        default=100_000,
        help="inputs in all, spread over the targets (default 100000)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    per_target = max(1, args.total // sum(TARGETS.values()))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "counts.json"
        env = {**os.environ, "FUZZ_EXAMPLES": str(per_target), "FUZZ_REPORT": str(report)}
        started = time.monotonic()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--timeout",
                "0",
                "-o",
                "addopts=",
                *TARGETS,
                "tests/fuzz/test_loaders.py",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.monotonic() - started
        counts = json.loads(report.read_text()) if report.exists() else {}
    failures = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    result = {
        "inputs": sum(counts.values()),
        "per_target": counts,
        "crashes_or_uncoded": len(failures),
        "failures": failures,
        "examples_per_target": per_target,
        "seconds": round(elapsed, 1),
        "pytest_exit": run.returncode,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, n in sorted(counts.items()):
            print(f"{n:>9,}  {name}")
        print(
            f"{result['inputs']:>9,}  inputs in {elapsed:.0f} s; crashes or uncoded answers: "
            f"{len(failures)}"
        )
        for line in failures:
            print("  " + line)
    if run.returncode not in (0, 1):
        sys.stderr.write(run.stdout[-3000:] + run.stderr[-3000:])
    return 0 if run.returncode == 0 and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
