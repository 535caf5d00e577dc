"""The factory step of a production line: serials, certificates, labels, self-test, records.

Re-exports only, resolved lazily (PEP 562) so that wiring ``factory.cli`` into the main CLI does
not import the certificate and label code for every ``device-sim`` command.

============================ ==================================================================
:mod:`.registry`             serial registry (SQLite): ``next_serial``, ``register``
:mod:`.registration`         the fleet registration key programmed into every unit
:mod:`.label`                QR payload, PNG/SVG labels, QR decoding
:mod:`.unit`                 :func:`provision_unit`
:mod:`.checks`               :func:`selftest`: six timed checks, JSON + JUnit XML
:mod:`.outputs`              ``records.jsonl`` and ``cloud-import.json``
:mod:`.line`                 :func:`batch`: N units with a progress bar
:mod:`.cli`                  ``device-sim factory ...``
============================ ==================================================================
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchResult": "line",
    "batch": "line",
    "LabelPayload": "label",
    "make_payload": "label",
    "parse_payload": "label",
    "RegistrationKey": "registration",
    "create_registration_key": "registration",
    "ensure_registration_key": "registration",
    "load_registration_key": "registration",
    "SerialRegistry": "registry",
    "CheckResult": "checks",
    "SelfTestReport": "checks",
    "selftest": "checks",
    "UnitResult": "unit",
    "provision_unit": "unit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
