"""device-sim's pytest plugin, registered through the ``pytest11`` entry point: an installed
device-sim needs no conftest code.

Fixtures:

* ``virtual_ble`` (session): a private D-Bus with BlueZoo adapters; this process's
  ``DBUS_SYSTEM_BUS_ADDRESS`` points at it for the session, so the test's own bleak finds it.
* ``emulated_device``: a factory, ``emulated_device(scenario=..., personality=...,
  transport=...)``, returning a running device (``.setup_code``, ``.name``, ``.state_dir``,
  ``.label``, ``.provision()``, ``.wait_for()``, ``.add_fault()``, ``.factory_reset()``...).
  Each device is ``device-sim run`` in its own process; everything is torn down after the test.

Both work in plain synchronous tests: the plugin drives :mod:`device_sim.api` on an event loop
of its own, in a thread, so a test needs no pytest-asyncio. On a failing test, each device's
timeline (its recorded events) and its log's tail are attached to the report.

Marker ``device_sim_requires("bluezoo", "dbus")``: the test is skipped, with the reason, when
one is missing, and fails instead under ``CI=true`` or ``--device-sim-strict``.

This module imports only the standard library and pytest: it loads in every pytest run of an
environment where device-sim is installed. :mod:`device_sim.api` (bleak, dbus-fast, ...) is
imported when a fixture is first used.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import threading
from collections.abc import Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

T = TypeVar("T")
_DEVICES = pytest.StashKey[list[Any]]()
_FAIL = pytest.StashKey[str]()
LOG_TAIL_LINES = 40
CALL_TIMEOUT = 600.0  # bounds any one call into the loop (an onboarding's own timeout is less)
TOOLS = {
    "bluezoo": "BlueZoo is not installed: pip install 'device-sim[virtual]'",
    "dbus": "dbus-daemon is not on PATH: apt-get install dbus",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("device-sim")
    group.addoption(
        "--device-sim-strict",
        action="store_true",
        help="fail (do not skip) tests marked device_sim_requires whose tool is missing "
        "(also when CI=true)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "device_sim_requires(*tools): skip when a tool is missing ('bluezoo', 'dbus'); fail "
        "instead under CI=true or --device-sim-strict",
    )


def missing(tool: str) -> str | None:
    """Why ``tool`` cannot be used here, or None when it can."""
    if tool == "bluezoo":
        found = importlib.util.find_spec("bluezoo") is not None or bool(shutil.which("bluezoo"))
    elif tool == "dbus":
        found = shutil.which("dbus-daemon") is not None
    else:
        return f"device_sim_requires: unknown tool {tool!r} (known: {', '.join(TOOLS)})"
    return None if found else TOOLS[tool]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test whose tool is missing is skipped (at its own line) or, strict, fails in setup."""
    for item in items:
        for mark in item.iter_markers("device_sim_requires"):
            for tool in mark.args:
                why = missing(str(tool))
                if why is None:
                    continue
                if why.startswith("device_sim_requires") or _strict(config):
                    item.stash[_FAIL] = why
                else:
                    item.add_marker(pytest.mark.skip(reason=why))


def pytest_runtest_setup(item: pytest.Item) -> None:
    why = item.stash.get(_FAIL, None)
    if why is not None:
        pytest.fail(why, pytrace=False)


def _strict(config: pytest.Config) -> bool:
    return bool(config.getoption("--device-sim-strict")) or os.environ.get("CI") == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield  # an old-style wrapper: pytest 7 users too
    report = outcome.get_result()
    if report.failed and report.when in ("call", "setup"):
        for device in item.stash.get(_DEVICES, []):
            report.sections.append((f"device-sim {device.title()}: timeline", device.report()))


class _Loop:
    """An event loop running in a daemon thread; :meth:`run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="device-sim-fixtures", daemon=True
        )
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = CALL_TIMEOUT) -> T:
        async def call() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.loop.close()


class VirtualBleFixture:
    """The session's virtual bus, for synchronous tests (:class:`device_sim.api.VirtualBle`)."""

    def __init__(self, bus: Any, loop: _Loop) -> None:
        self.api, self._loop = bus, loop

    @property
    def bus_address(self) -> str:
        return str(self.api.bus_address)

    @property
    def phones(self) -> list[str]:
        """Adapters for the test's own phone-side clients, ``["hci1", "hci2"]``."""
        return list(self.api.phones)

    def env(self) -> dict[str, str]:
        return dict(self.api.env())

    def new_adapter(self) -> tuple[str, str]:
        """A fresh adapter (name, address): BlueZoo links a phone to a peripheral only once."""
        return self._loop.run(self.api.new_adapter())


class EmulatedDeviceFixture:
    """A running emulated device, for synchronous tests: the blocking face of
    :class:`device_sim.api.EmulatedDevice` (same names, same arguments)."""

    def __init__(self, device: Any, loop: _Loop) -> None:
        self.api, self._loop = device, loop

    def __repr__(self) -> str:
        return f"<emulated device {self.title()}>"

    def title(self) -> str:
        """Its name, or its directory before it had one (a start that failed)."""
        label = self.api.label
        return self.name if label is not None else str(self.api.log_path or "not started")

    @property
    def setup_code(self) -> str:
        return str(self.api.setup_code)

    @property
    def name(self) -> str:
        return str(self.api.name)

    @property
    def state_dir(self) -> Path:
        return Path(self.api.state_dir)

    @property
    def label(self) -> Any:
        return self.api.label

    @property
    def address(self) -> str | None:
        return self.api.address

    @property
    def softap_url(self) -> str | None:
        return self.api.softap_url

    @property
    def ready(self) -> dict[str, Any]:
        return dict(self.api.ready)

    @property
    def pid(self) -> int | None:
        return self.api.pid

    def provision(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._call(self.api.provision, *args, **kwargs)

    def status(self) -> dict[str, Any]:
        return self._call(self.api.status)

    def wait_for(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._call(self.api.wait_for, *args, **kwargs)

    def add_fault(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._call(self.api.add_fault, *args, **kwargs)

    def remove_fault(self, name: str) -> dict[str, Any]:
        return self._call(self.api.remove_fault, name)

    def faults(self) -> list[dict[str, Any]]:
        return self._call(self.api.faults)

    def factory_reset(self) -> str:
        return self._call(self.api.factory_reset)

    def press_button(self, hold_s: float = 0.2) -> dict[str, Any]:
        return self._call(self.api.press_button, hold_s)

    def start(self) -> dict[str, Any]:
        return self._call(self.api.start)

    def stop(self) -> int | None:
        return self._call(self.api.stop)

    def kill(self) -> None:
        self._call(self.api.kill)

    def timeline(self) -> list[dict[str, Any]]:
        return list(self.api.timeline())

    def report(self) -> str:
        """The timeline and the log's tail, as a failing test's report shows them."""
        lines = [_event_line(e) for e in self.timeline()] or ["(no event recorded)"]
        log = self.api.log_path
        tail: list[str] = []
        if log is not None:
            try:
                tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            except OSError:
                tail = []
        if tail:
            lines += ["", f"daemon log ({log}), last {len(tail)} lines:", *tail]
        return "\n".join(lines)

    def _call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return self._loop.run(method(*args, **kwargs))


def _event_line(event: dict[str, Any]) -> str:
    at = str(event.get("at", ""))[11:23]
    return (
        f"{at:<12} {event.get('t_ms', ''):>7} ms  {event.get('state', ''):<20} "
        f"{event.get('phase', ''):<16} {event.get('code_name', ''):<22} {event.get('detail', '')}"
    )


@pytest.fixture(scope="session")
def _device_sim_loop() -> Iterator[_Loop]:
    loop = _Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def virtual_ble(_device_sim_loop: _Loop) -> Iterator[VirtualBleFixture]:
    """A private D-Bus with BlueZoo virtual BLE adapters, for the whole session.

    ``.bus_address``, ``.phones`` (adapters for the test's own clients), ``.env()`` and
    ``.new_adapter()``. This process's ``DBUS_SYSTEM_BUS_ADDRESS`` points at the bus while it
    runs, so bleak in the test finds the emulated devices. Fails with the reason when BlueZoo or
    dbus-daemon is missing (mark tests ``device_sim_requires("bluezoo", "dbus")`` to skip)."""
    from device_sim.api import DeviceSimError, VirtualBle

    bus = VirtualBle()
    try:
        _device_sim_loop.run(bus.__aenter__())
    except DeviceSimError as exc:
        pytest.fail(f"virtual_ble: {exc}", pytrace=False)
    previous = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.bus_address
    try:
        yield VirtualBleFixture(bus, _device_sim_loop)
    finally:
        if previous is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = previous
        _device_sim_loop.run(bus.close())


@pytest.fixture
def emulated_device(
    request: pytest.FixtureRequest, _device_sim_loop: _Loop
) -> Iterator[Callable[..., EmulatedDeviceFixture]]:
    """A factory of running emulated devices: ``emulated_device(scenario="typical-home",
    personality=None, transport="ble", **more)`` (``more``: the other arguments of
    :class:`device_sim.api.EmulatedDevice`, e.g. ``setup_code``, ``doors``, ``options``).

    Each device is a new identity and ``device-sim run`` in its own process, on the session's
    ``virtual_ble`` when it opens a BLE door. It has ``.setup_code``, ``.name``, ``.state_dir``,
    ``.label``, ``.softap_url``, and ``.provision()``, ``.status()``, ``.wait_for()``,
    ``.add_fault()``, ``.factory_reset()``, ``.press_button()``, ``.timeline()``. Every device
    is stopped and its files removed after the test; a failing test's report shows each
    device's timeline."""
    from device_sim.api import EmulatedDevice

    made: list[EmulatedDeviceFixture] = []
    request.node.stash[_DEVICES] = made

    def make(
        scenario: str = "engineering-wifi",
        personality: Any = None,
        transport: Literal["ble", "softap"] = "ble",
        **more: Any,
    ) -> EmulatedDeviceFixture:
        doors = more.get("doors") or ("softap-only" if transport == "softap" else "ble")
        bus = request.getfixturevalue("virtual_ble").api if doors != "softap-only" else None
        device = EmulatedDevice(
            bus, scenario=scenario, personality=personality, transport=transport, **more
        )
        handle = EmulatedDeviceFixture(device, _device_sim_loop)
        made.append(handle)
        _device_sim_loop.run(device.start())
        return handle

    try:
        yield make
    finally:
        for handle in reversed(made):
            _device_sim_loop.run(handle.api.close())
