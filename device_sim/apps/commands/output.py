"""One rule for command output: the JSON document with ``--json``, else the human text."""

from __future__ import annotations

import argparse
import contextlib
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
    details. The data goes to a new file beside it that then replaces ``path``: an existing
    file's wider mode is not kept, a symbolic link at ``path`` is replaced rather than written
    through, and a reader never sees half a file. Raises ConfigError naming the file when it
    cannot be written."""
    import tempfile

    from ...errors import ConfigError

    if path.is_dir():
        raise ConfigError(str(path), "is a directory; name a file")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    except OSError as exc:
        raise ConfigError(str(path), f"cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise ConfigError(str(path), f"cannot write: {exc.strerror or exc}") from None
