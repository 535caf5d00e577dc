"""The watch listener's options (the config file's ``[watch]`` section)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import HostPort, opt


@dataclass(frozen=True)
class WatchOptions:
    enabled: bool = opt(
        False,
        "serve the read-only event stream (Server-Sent Events) on a local listener",
        flag="--watch",
    )
    listen: HostPort = opt(
        HostPort("127.0.0.1", 8390),
        "where (port 0: any free port); a token is required when not on loopback",
        flag="--watch-listen",
    )
