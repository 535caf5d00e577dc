"""The small base every door shares: an async context manager with a name."""

from __future__ import annotations

import abc
from types import TracebackType


class Door(abc.ABC):
    """A transport that carries provisioning messages (BLE GATT, SoftAP HTTP, ...).

    A door knows bytes and connections, nothing about Wi-Fi: it hands whole messages to the
    :class:`~device_sim.provisioning.ProvisioningService` and sends back what it returns.
    """

    name: str = "door"

    @abc.abstractmethod
    async def start(self) -> None:
        """Start serving. Raises TransportError when the door cannot open."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop serving and release everything; safe to call twice."""

    async def __aenter__(self) -> Door:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
