"""Argument checking for the command line: every value is checked when it is parsed.

:class:`Parser` answers a bad invocation with one line that names the command and the flag, and
exit status 2 (argparse prints its whole usage first; ``-h`` still shows it). The ``type=``
functions below turn a bad value into that line before the command does anything.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn
from urllib.parse import urlsplit

from ...security.secret import Secret

__all__ = [
    "Parser",
    "hex_bytes",
    "http_url",
    "positive_float",
    "positive_int",
    "setup_code",
]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``device-sim demo: argument --x: why``."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments") and re.search(
            r"(?:^|\s)(?:-v+|--verbose)(?:\s|$)", message.split(":", 1)[-1]
        ):
            words = [a for a in sys.argv[1:] if not re.fullmatch(r"-v+|--verbose", a)]
            command = " ".join(words[:1]) or "COMMAND"
            message += f" (-v goes before the command: {self.prog} -v {command} ...)"
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _number(text: str, convert: type[float] | type[int], lowest: float, rule: str) -> float:
    """``text`` as a finite number of at least ``lowest``; ``rule`` words the limit."""
    try:
        value = convert(text)
    except ValueError:
        what = "a whole number" if convert is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
    if not value >= lowest or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{rule}, not {text!r}")
    return value


def positive_float(text: str) -> float:
    value = float(_number(text, float, 0.0, "must be a positive number"))
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def positive_int(text: str) -> int:
    return int(_number(text, int, 1, "must be 1 or more"))


def hex_bytes(text: str) -> bytes:
    """``--ssid-hex``: 1-32 bytes written as hex digits."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected hex digits in pairs (e.g. 4d696c6c6572), not {text!r}"
        ) from None
    if not 1 <= len(value) <= 32:
        raise argparse.ArgumentTypeError(f"an SSID is 1-32 bytes, not {len(value)}")
    return value


def setup_code(text: str) -> Secret:
    """``--setup-code``: 8 digits, normalised; kept as a Secret so it is never printed."""
    from ...security.setup_code import normalize_setup_code

    try:
        return Secret(normalize_setup_code(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def http_url(text: str) -> str:
    """``--softap``, ``--cloud-url``: an http(s) URL with a host."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"expected http://HOST[:PORT] (e.g. http://192.168.4.1), not {text!r}"
        )
    return text
