"""One rule for command output: the JSON document with ``--json``, else the human text."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def emit(args: argparse.Namespace, data: Any, human: Callable[[], str]) -> None:
    """Print ``data`` as indented JSON when ``args.json`` is set, else ``human()``."""
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else human())
