"""The GPIO button hook for Improv authorization: its argument and its missing-library error."""

from __future__ import annotations

import importlib.util

import pytest

from device_sim.doors.improv.button import GpioButton, parse_line
from device_sim.errors import ConfigError


def test_line_specs() -> None:
    assert parse_line("gpiochip0:17") == ("/dev/gpiochip0", 17)
    assert parse_line("/dev/gpiochip4:3") == ("/dev/gpiochip4", 3)
    for bad in ("gpiochip0", "gpiochip0:x", ":4", "17"):
        with pytest.raises(ConfigError, match="CHIP:LINE"):
            parse_line(bad)


@pytest.mark.skipif(
    importlib.util.find_spec("gpiod") is not None,
    reason="libgpiod bindings are installed here: the button would be real",
)
async def test_without_libgpiod_the_daemon_says_what_to_install() -> None:
    with pytest.raises(ConfigError, match="python3-libgpiod"):
        await GpioButton("gpiochip0:17", lambda: None).start()
