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
    require_token: bool = opt(
        False,
        "require the token (in <state-dir>/watch.token) on loopback too: other local users "
        "cannot watch",
        flag="--watch-require-token",
    )
