"""The small base every door shares: a started/stopped component with a name."""

from __future__ import annotations

from ..lifecycle import Component


class Door(Component):
    """A transport that carries provisioning messages (BLE GATT, SoftAP HTTP, ...).

    A door knows bytes and connections, nothing about Wi-Fi: it hosts the personalities (their
    GATT services, their HTTP routes), which reach the device through their
    :class:`~device_sim.session.port.DoorPort`.
    ``start`` raises TransportError when the door cannot open; ``stop`` is safe to call twice.
    """

    name: str = "door"
