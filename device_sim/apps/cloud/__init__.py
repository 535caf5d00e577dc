"""The cloud emulator: a loopback HTTPS activation service (zero-touch, claim, registration).

See ``API.md`` in this package for the HTTP API; :class:`CloudEmulator` runs it,
:class:`CloudAdmin` administers it, ``device-sim cloud ...`` (:mod:`.cli`) does both from a shell.
"""

from .admin import CloudAdmin
from .emulator import CloudEmulator
from .errors import CloudApiError

__all__ = ["CloudAdmin", "CloudApiError", "CloudEmulator"]
