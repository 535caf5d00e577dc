"""The established station connection, watched over D-Bus until NetworkManager says it ended.

After the checks pass, :class:`LinkWatch` follows the Wi-Fi device's ``StateChanged`` and the
active connection's own ``StateChanged``. A device that leaves ``activated``, or an active
connection that goes ``deactivating``/``deactivated``, ends the link with LINK_LOST (the access
point went away, a deauthentication, a lost carrier) or LEASE_LOST (NetworkManager's DHCP
client lost the lease: ``ip-config-expired``, ``dhcp-*``). The backend's own doings (a new join,
a disconnect, its access point) first :meth:`LinkWatch.close` the watch, so they are never
taken for a loss.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from dbus_fast import Message
from dbus_fast.errors import DBusError

from ...codes import Code
from ...errors import NetworkError
from . import mapping
from .client import NMClient
from .defs import ACTIVE_IFACE, DEVICE_IFACE, ActiveState, DeviceState, DeviceStateReason

__all__ = ["LinkWatch", "loss_for"]

log = logging.getLogger(__name__)

_LEASE = frozenset(
    {
        DeviceStateReason.IP_CONFIG_EXPIRED,
        DeviceStateReason.IP_CONFIG_UNAVAILABLE,
        DeviceStateReason.DHCP_START_FAILED,
        DeviceStateReason.DHCP_ERROR,
        DeviceStateReason.DHCP_FAILED,
    }
)


def loss_for(state: int, reason: int, label: str) -> NetworkError:
    """The loss a device state change out of ``activated`` means (pure)."""
    try:
        why = DeviceStateReason(reason)
    except ValueError:
        why = DeviceStateReason.UNKNOWN
    said = mapping.describe(state, reason)
    if why in _LEASE:
        return NetworkError(
            Code.LEASE_LOST,
            f"the lease on {label} was not renewed (NetworkManager: {said})",
            raw=mapping.nm_raw(state, reason),
        )
    return NetworkError(
        Code.LINK_LOST,
        f"the connection to {label} dropped (NetworkManager: {said})",
        raw=mapping.nm_raw(state, reason),
    )


class LinkWatch:
    """One established connection: ``lost`` is set, with ``loss``, when it ends on its own."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.lost = asyncio.Event()
        self.loss: NetworkError | None = None
        self._stops: list[Callable[[], Awaitable[None]]] = []
        self._closed = False

    @classmethod
    async def start(cls, client: NMClient, device: str, label: str) -> LinkWatch:
        """Subscribe to the device's and its active connection's state. Raises DBusError."""
        watch = cls(label)
        watch._stops.append(
            await client.subscribe(device, DEVICE_IFACE, "StateChanged", watch._on_device)
        )
        active = str(await client.get(device, DEVICE_IFACE, "ActiveConnection"))
        if active != "/":
            watch._stops.append(
                await client.subscribe(active, ACTIVE_IFACE, "StateChanged", watch._on_active)
            )
        state = int(await client.get(device, DEVICE_IFACE, "State"))
        if state != DeviceState.ACTIVATED:  # gone before the watch began
            watch._lose(loss_for(state, int(DeviceStateReason.UNKNOWN), label))
        return watch

    def _on_device(self, msg: Message) -> None:
        new, old, reason = (int(v) for v in msg.body[:3])
        if old == DeviceState.ACTIVATED and new != DeviceState.ACTIVATED:
            self._lose(loss_for(new, reason, self.label))

    def _on_active(self, msg: Message) -> None:
        state, reason = int(msg.body[0]), int(msg.body[1])
        if state in (ActiveState.DEACTIVATING, ActiveState.DEACTIVATED):
            # The active connection's reason is NMActiveConnectionStateReason; the device's
            # signal (which follows) carries the device's reason, the more specific one.
            log.debug("active connection of %s: state %d reason %d", self.label, state, reason)
            self._lose(loss_for(int(DeviceState.DISCONNECTED), 0, self.label), weak=True)

    def _lose(self, loss: NetworkError, *, weak: bool = False) -> None:
        if self._closed or self.lost.is_set():
            return
        if weak:
            # Wait a moment for the device's own signal and its reason; it replaces this one.
            asyncio.get_running_loop().call_later(0.2, self._settle, loss)
            return
        self.loss = loss
        self.lost.set()
        log.info("link lost: %s", loss.detail)

    def _settle(self, loss: NetworkError) -> None:
        if not self._closed and not self.lost.is_set():
            self.loss = loss
            self.lost.set()
            log.info("link lost: %s", loss.detail)

    async def close(self) -> None:
        """Stop watching (the backend's own doing from here on)."""
        self._closed = True
        stops, self._stops = self._stops, []
        for stop in stops:
            try:
                await stop()
            except (DBusError, OSError, EOFError):
                pass

    async def wait(self) -> NetworkError:
        await self.lost.wait()
        assert self.loss is not None
        return self.loss
