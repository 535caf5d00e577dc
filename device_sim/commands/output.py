"""One rule for command output: the JSON document with ``--json``, else the human text."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def emit(args: argparse.Namespace, data: Any, human: Callable[[], str]) -> None:
    """Print ``data`` as indented JSON when ``args.json`` is set, else ``human()``."""
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else human())


def write_out(path: Path, data: bytes) -> None:
    """Write a file the user asked for (``--out``): mode 0600, it may hold a device's
    details. Raises ConfigError naming the file when it cannot be written."""
    from ..errors import ConfigError

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot write: {exc.strerror or exc}") from None
