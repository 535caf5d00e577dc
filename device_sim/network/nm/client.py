"""A thin async client for NetworkManager on the system D-Bus (dbus-fast), and error translation.

:class:`NMClient` sends method calls and reads properties, returning plain Python values
(Variants unwrapped), and subscribes to signals. D-Bus error replies surface as
:class:`dbus_fast.errors.DBusError`; :func:`translate` is the one place that turns them (and bus
connection failures) into device-sim errors that say what went wrong and what to do.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, DBusError

from ...codes import Code
from ...dbus_call import call
from ...errors import DeviceSimError, NetworkError, TransportError
from .defs import (
    BUS_NAME,
    ERR_ACCESS_DENIED,
    ERR_NAME_HAS_NO_OWNER,
    ERR_NM_PERMISSION_DENIED,
    ERR_NM_UNKNOWN_DEVICE,
    ERR_SERVICE_UNKNOWN,
    ERR_UNKNOWN_METHOD,
    PROPS_IFACE,
)

__all__ = ["NMClient", "SignalCallback", "Unsubscribe", "translate", "unwrap"]

log = logging.getLogger(__name__)

SignalCallback = Callable[[Message], None]
Unsubscribe = Callable[[], Awaitable[None]]

_DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")

POLKIT_HINT = (
    "run device-sim as root or grant the polkit action "
    "org.freedesktop.NetworkManager.network-control (and "
    "org.freedesktop.NetworkManager.settings.modify.system) to its user"
)
NOT_RUNNING_HINT = "start it with `systemctl start NetworkManager`"


def unwrap(value: Any) -> Any:
    """``value`` with every dbus-fast Variant replaced by its value, recursively."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def translate(
    error: BaseException, *, doing: str, code: Code | None = None, interface: str | None = None
) -> DeviceSimError:
    """A device-sim error for a failed NetworkManager request ``doing`` (e.g. "joining 'Home'").

    ``error`` is a :class:`DBusError` reply, or the exception a bus connection raised. With
    ``code`` the result is a NetworkError with that code (failures during a join, scan or access
    point start); without it a TransportError (infrastructure failures at start-up). The message
    says what to do: polkit/root for permission errors, ``systemctl start NetworkManager`` when
    NetworkManager is not on the bus, ``nmcli device`` for an unknown ``interface``.
    """
    raw: dict[str, Any] = {}
    if isinstance(error, DBusError):
        raw = {"dbus_error": error.type, "dbus_message": error.text}
        if error.type in (ERR_ACCESS_DENIED, ERR_NM_PERMISSION_DENIED):
            what = f"NetworkManager refused permission ({error.text}); {POLKIT_HINT}"
        elif error.type in (ERR_SERVICE_UNKNOWN, ERR_NAME_HAS_NO_OWNER):
            what = f"NetworkManager is not running (nothing owns {BUS_NAME}); {NOT_RUNNING_HINT}"
        elif error.type == ERR_NM_UNKNOWN_DEVICE:
            what = (
                f"the Wi-Fi interface {interface or '?'} does not exist or is not managed by "
                f"NetworkManager; see `nmcli device`"
            )
        elif error.type == ERR_UNKNOWN_METHOD:
            what = (
                f"NetworkManager does not know this request ({error.text}); device-sim needs "
                f"NetworkManager 1.16 or later"
            )
        else:
            what = f"NetworkManager answered {error.type}: {error.text}"
    elif isinstance(error, OSError | EOFError | AuthError):
        what = (
            f"cannot talk to the system D-Bus ({type(error).__name__}: {error}); is dbus "
            f"running, and DBUS_SYSTEM_BUS_ADDRESS right if set?"
        )
        raw = {"reason": str(error) or type(error).__name__}
    else:
        what = f"D-Bus request failed: {type(error).__name__}: {error}"
        raw = {"reason": str(error) or type(error).__name__}
    detail = f"{doing}: {what}"
    if code is None:
        return TransportError(detail, code=Code.INTERNAL_ERROR)
    return NetworkError(code, detail, raw=raw)


class NMClient:
    """One connection to the system bus for talking to NetworkManager.

    ``bus_address`` None means the system bus (dbus-fast honours ``DBUS_SYSTEM_BUS_ADDRESS``).
    """

    def __init__(self, bus_address: str | None = None, *, destination: str = BUS_NAME) -> None:
        self._address = bus_address
        self._destination = destination
        self._bus: MessageBus | None = None

    @property
    def connected(self) -> bool:
        return self._bus is not None and self._bus.connected

    async def connect(self) -> None:
        """Connect to the bus. Raises what dbus-fast raises (OSError, AuthError): see translate."""
        if self._bus is not None:
            return
        bus = MessageBus(bus_address=self._address, bus_type=BusType.SYSTEM)
        await bus.connect()
        self._bus = bus

    async def close(self) -> None:
        """Disconnect; safe to call twice."""
        bus, self._bus = self._bus, None
        if bus is None:
            return
        bus.disconnect()
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()

    def _require(self) -> MessageBus:
        if self._bus is None:
            raise EOFError("not connected to the system bus")
        return self._bus

    async def call(
        self,
        path: str,
        iface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        destination: str | None = None,
    ) -> list[Any]:
        """Call ``iface.member`` on ``path``; return the reply body (Variants kept).

        Raises DBusError for an error reply; EOFError or OSError when the bus is gone.
        """
        return await call(
            self._require(),
            destination or self._destination,
            path,
            iface,
            member,
            signature,
            body or [],
        )

    async def get(self, path: str, iface: str, prop: str) -> Any:
        """One property's value (unwrapped). Raises like :meth:`call`."""
        body = await self.call(path, PROPS_IFACE, "Get", "ss", [iface, prop])
        return unwrap(body[0])

    async def get_all(self, path: str, iface: str) -> dict[str, Any]:
        """Every property of ``iface`` on ``path`` (unwrapped). Raises like :meth:`call`."""
        body = await self.call(path, PROPS_IFACE, "GetAll", "s", [iface])
        return {str(k): unwrap(v) for k, v in body[0].items()}

    async def subscribe(
        self, path_prefix: str, iface: str, member: str, callback: SignalCallback
    ) -> Unsubscribe:
        """Call ``callback(message)`` for each ``iface.member`` signal at or below ``path_prefix``.

        The match is registered with the bus before this returns, so no signal sent after it is
        missed. Returns an async function that unsubscribes (it never raises).
        Raises DBusError when the bus refuses the match rule.
        """
        bus = self._require()
        rule = f"type='signal',interface='{iface}',member='{member}',path_namespace='{path_prefix}'"

        def on_message(msg: Message) -> None:
            if (
                msg.message_type == MessageType.SIGNAL
                and msg.interface == iface
                and msg.member == member
                and msg.path is not None
                and (msg.path == path_prefix or msg.path.startswith(path_prefix.rstrip("/") + "/"))
            ):
                try:
                    callback(msg)
                except Exception:  # a broken callback must not break the bus's reader
                    log.exception("signal handler for %s.%s failed", iface, member)

        bus.add_message_handler(on_message)
        try:
            await self.call(_DBUS[1], _DBUS[2], "AddMatch", "s", [rule], destination=_DBUS[0])
        except BaseException:
            bus.remove_message_handler(on_message)
            raise

        async def unsubscribe() -> None:
            bus.remove_message_handler(on_message)
            if bus.connected:
                with contextlib.suppress(Exception):
                    await self.call(
                        _DBUS[1], _DBUS[2], "RemoveMatch", "s", [rule], destination=_DBUS[0]
                    )

        return unsubscribe
