"""This interpreter run as a child process the way a user runs device-sim: no ``DEVICE_SIM_*``
variable of the test's environment leaks in, and ``pythonpath`` (a copy of the package, an
installed wheel) comes before everything else on its path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def python(
    *args: str, cwd: Path, pythonpath: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd`` (``python("-m", "device_sim", "codes")``), its output as text."""
    env = clean_env()
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def clean_env() -> dict[str, str]:
    """The environment without ``DEVICE_SIM_*`` variables (for a daemon a test starts)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_SIM_")}
