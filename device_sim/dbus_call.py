"""One D-Bus method call over dbus-fast, for every caller in the project (the NetworkManager
client, doctor, the virtual BLE harness): the reply's body, or the error as an exception.

``NO_AUTOSTART`` is always set: a stopped service is reported, never started by asking it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

__all__ = ["DBusError", "call"]


async def call(
    bus: MessageBus,
    destination: str,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: Sequence[Any] = (),
) -> list[Any]:
    """Call ``interface.member`` on ``destination`` at ``path``; the reply's body (Variants
    kept). Raises DBusError for an error reply (its ``type`` is the D-Bus error name), EOFError
    when no reply came (the bus went away)."""
    reply = await bus.call(
        Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
            flags=MessageFlag.NO_AUTOSTART,
        )
    )
    if reply is None:
        raise EOFError(f"no reply to {interface}.{member}")
    if reply.message_type == MessageType.ERROR:
        raise DBusError._from_message(reply)
    return list(reply.body)
