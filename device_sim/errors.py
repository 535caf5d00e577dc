"""The one error tree of device-sim.

Every error that can reach a user carries a diagnostic code from ``gatt_profile.yaml`` (as
:class:`device_sim.codes.Code`) and a detail string that never contains a secret. Leaves also
inherit the matching builtin where one fits, so callers may catch ``ValueError`` for bad input.
"""

from __future__ import annotations

from typing import Any

from .codes import Code


class DeviceSimError(Exception):
    """Root of every device-sim error."""

    code: Code = Code.INTERNAL_ERROR

    def __init__(self, detail: str = "", *, code: Code | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.code.name}: {self.detail}" if self.detail else self.code.name


class OnboardingError(DeviceSimError):
    """A coded failure of an onboarding step, reported to the client as-is."""

    def __init__(
        self,
        code: Code,
        detail: str = "",
        *,
        retry_after_ms: int = 0,
        raw: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, code=code)
        self.retry_after_ms = retry_after_ms
        self.raw = dict(raw or {})


class NetworkError(OnboardingError):
    """A network backend failed to join or verify (codes 1xx, 2xx)."""


class DeviceUnreachable(OnboardingError, ConnectionError):
    """The phone side could not reach the device (the client's own problem, not the device's).

    ``DEVICE_NOT_FOUND`` when nothing was seen advertising, ``DEVICE_UNREACHABLE`` when a device
    named by address or URL did not answer, refused the connection or went silent.
    """

    def __init__(self, detail: str, *, code: Code = Code.DEVICE_UNREACHABLE) -> None:
        super().__init__(code, detail)


class ProtocolError(OnboardingError, ValueError):
    """Bytes from a client that cannot be parsed: MALFORMED_REQUEST, MESSAGE_TOO_LARGE, ..."""


class SessionError(OnboardingError):
    """Secure-session failures: wrong setup code, backoff, replay, busy, timeouts."""


class ConfigError(DeviceSimError, ValueError):
    """A configuration file (profile, scenario, daemon config) is invalid.

    ``where`` names the place in the file, e.g. ``gatt_profile.yaml: codes.BUSY.id``.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}", code=Code.INTERNAL_ERROR)
        self.where = where
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


class ConfigErrors(ConfigError):
    """Every problem of one file at once; ``where`` and ``problem`` are the first one's, so a
    caller that shows one error shows the first, and ``str()`` lists them all, one a line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first.where, first.problem + more)
        self.problem = first.problem
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(f"{e.where}: {e.problem}" for e in self.errors)


class StoreError(DeviceSimError):
    """The device store (SQLite) could not be opened or written."""


class VirtualBleError(DeviceSimError, RuntimeError):
    """The virtual BLE harness (private dbus-daemon + BlueZoo) could not start or stop."""


class TransportError(DeviceSimError, RuntimeError):
    """A door (BLE, HTTP) failed below the protocol: adapter missing, advertising refused."""


class SetupError(DeviceSimError):
    """This machine or its files are not in the state a command needs, and the user can fix it.

    Not a device failure: the command line prints the problem and ``fix`` and exits 2, e.g. an
    identity that already exists, a daemon already running on the state directory, no usable
    BLE adapter, no system bus.
    """

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.detail}\n  fix: {self.fix}"


class IdentityExists(SetupError, StoreError):
    """``init`` on a state directory that already holds a device identity."""


class DaemonAlreadyRunning(SetupError, TransportError):
    """A second daemon on a state directory whose daemon is running (its control socket answers)."""


class NoSystemBus(SetupError, TransportError):
    """No D-Bus system bus at ``DBUS_SYSTEM_BUS_ADDRESS`` (or the default socket)."""


class NoAdapter(SetupError, TransportError):
    """The bus answers but has no usable Bluetooth adapter of that name."""


SYSTEM_BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"
DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"


def bus_address() -> str:
    """The system bus address in force (what a D-Bus client would use)."""
    import os

    return os.environ.get(SYSTEM_BUS_ENV) or DEFAULT_SYSTEM_BUS


def ble_setup_error(exc: BaseException, adapter: str, *, doing: str) -> SetupError:
    """Classify an exception from bless/bleak while opening ``adapter``: no bus, or no adapter."""
    text = str(exc)
    no_bus = isinstance(exc, (FileNotFoundError, ConnectionRefusedError, PermissionError)) or any(
        marker in text
        for marker in (
            "No such file or directory",
            "Connection refused",
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NoServer",
        )
    )
    if no_bus:
        return NoSystemBus(
            f"{doing}: no usable BLE adapter {adapter!r}: no BlueZ on the system D-Bus "
            f"{bus_address()} ({text or type(exc).__name__})",
            "on a machine without Bluetooth start the virtual adapters: "
            'eval "$(device-sim virtual-ble up)"; on a Raspberry Pi: '
            "sudo systemctl start bluetooth (device-sim doctor checks it)",
        )
    return NoAdapter(
        f"{doing}: no usable BLE adapter {adapter!r} ({text or type(exc).__name__})",
        "pick an adapter that exists and is powered with --adapter (device-sim virtual-ble "
        "status lists the virtual ones; on real hardware: bluetoothctl list)",
    )
