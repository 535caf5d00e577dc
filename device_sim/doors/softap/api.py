"""The SoftAP host interface, neutral to personalities: what a personality's HTTP routes may
use of the door that serves them (:class:`SoftApHost`), next to the door's small HTTP pieces
(:mod:`.http`) and its cookie-bound clients (:mod:`.sessions`).

A personality serves HTTP by returning :class:`~device_sim.doors.personality.HttpRoute`\\ s from
``http_routes(host)``; the door adds them to its listeners beside its own endpoints (the
browser page, the captive-portal API, the OS probes, the public state).
"""

from __future__ import annotations

from typing import Any, Protocol

from ...ratelimit import LimitedLog
from .sessions import HttpClients

__all__ = ["HttpClients", "SoftApHost"]


class SoftApHost(Protocol):
    """The SoftAP door as a personality's routes see it."""

    clients: HttpClients  # cookie tokens bound to client addresses, with their outboxes
    rejected: LimitedLog  # rejected requests, logged at a bounded rate
    closing: bool  # a listener is going down: long polls answer at once

    def describe(self) -> dict[str, Any]:
        """Where a phone reaches the device: ap_url, lan_url, captive_mode, ..."""
        ...
