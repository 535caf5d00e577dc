"""A physical button for Improv's authorization: a GPIO line on a Raspberry Pi.

``--improv-button gpiochip0:17`` watches line 17 of ``/dev/gpiochip0`` for a falling edge (a
button to ground with the internal pull-up) through libgpiod's Python bindings (Debian's
``python3-libgpiod`` or PyPI's ``gpiod`` 2.x), debounced, and calls the callback on the event
loop. Machines without GPIO use ``device-sim ctl improv-authorize`` instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ...errors import ConfigError, TransportError
from ...lifecycle import Component

LOG = logging.getLogger(__name__)


def parse_line(spec: str) -> tuple[str, int]:
    """``gpiochip0:17`` -> ("/dev/gpiochip0", 17). Raises ConfigError."""
    chip, sep, line = spec.rpartition(":")
    if not sep or not chip or not line.isdigit():
        raise ConfigError("--improv-button", f"expected CHIP:LINE (gpiochip0:17), not {spec!r}")
    return (chip if chip.startswith("/") else f"/dev/{chip}"), int(line)


class GpioButton(Component):
    """Calls ``on_press`` (on the event loop) for each debounced press of a GPIO button."""

    def __init__(self, spec: str, on_press: Callable[[], Any], debounce_ms: int = 50) -> None:
        self.chip, self.line = parse_line(spec)
        self.on_press = on_press
        self.debounce_ms = debounce_ms
        self._request: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    async def start(self) -> None:
        try:
            import gpiod
            from gpiod.line import Bias, Edge
        except ImportError:
            raise ConfigError(
                "--improv-button",
                "libgpiod's Python bindings are not installed "
                "(apt install python3-libgpiod, or pip install gpiod)",
            ) from None
        try:
            self._request = gpiod.request_lines(
                self.chip,
                consumer="device-sim improv button",
                config={
                    self.line: gpiod.LineSettings(
                        edge_detection=Edge.FALLING,
                        bias=Bias.PULL_UP,
                        debounce_period=timedelta(milliseconds=self.debounce_ms),
                    )
                },
            )
        except OSError as exc:
            raise TransportError(f"cannot watch {self.chip} line {self.line}: {exc}") from exc
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._watch, args=(loop,), daemon=True, name="improv-button"
        )
        self._thread.start()
        LOG.info("improv: button on %s line %d", self.chip, self.line)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.is_set():
            if self._request.wait_edge_events(timedelta(milliseconds=200)):
                for _ in self._request.read_edge_events():
                    loop.call_soon_threadsafe(self.on_press)

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
            self._thread = None
        if self._request is not None:
            self._request.release()
            self._request = None
