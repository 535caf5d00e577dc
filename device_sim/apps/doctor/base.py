"""What a doctor check gets and gives: the shared :class:`Context` in, a :class:`CheckResult` out.

A check returns the detail of its pass, or raises :class:`Failed` with what is wrong and the fix;
the runner turns both (and anything unexpected) into a :class:`CheckResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast.aio import MessageBus

from ...codes import Code
from ...config import DaemonOptions
from ...errors import ConfigError

__all__ = ["Check", "CheckResult", "Context", "Failed", "run_tool"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # what to run or change; empty when ok
    code: Code | None = None  # the finding's diagnostic code (docs/codes.md); None when ok

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix or None,
            "code": int(self.code) if self.code is not None else None,
            "code_name": self.code.name if self.code is not None else None,
        }


class Failed(Exception):
    """A check's verdict: what is wrong, how to fix it and, when the check can tell, which
    finding it is (else the check's own code)."""

    def __init__(self, detail: str, fix: str, code: Code | None = None) -> None:
        super().__init__(detail)
        self.detail, self.fix, self.code = detail, fix, code


@dataclass
class Context:
    config: DaemonOptions
    config_error: ConfigError | None
    bus_address: str | None
    defaults: bool = False  # no config given: a Raspberry Pi install's defaults
    root: Path = Path("/")  # where the service is installed (a directory tree in tests)
    bus: MessageBus | None = None
    nm_up: bool = False
    wifi_path: str | None = None  # the Wi-Fi device the networkmanager check chose
    wifi_iface: str | None = None

    @property
    def nm_needed(self) -> bool:
        return self.config.network.backend == "networkmanager"


Check = Callable[[Context], Awaitable[str]]


async def run_tool(argv: list[str]) -> tuple[int, str]:
    """Run ``argv``; (exit status, stdout + stderr). The caller's timeout bounds it."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "LC_ALL": "C"},
    )
    try:
        out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    return int(proc.returncode or 0), out.decode("utf-8", "replace")
