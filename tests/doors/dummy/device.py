"""The dummy personality, device side: a GATT service through the host interface."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from device_sim.codes import Code
from device_sim.doors.ble.gatt import Advertised, GattChar, GattHost, GattService
from device_sim.doors.personality import Handler, HttpRoute
from device_sim.errors import OnboardingError
from device_sim.profile import Profile
from device_sim.security.secret import Secret
from device_sim.session.port import DiagnosticEvent, DoorPort

SERVICE = "0000d000-0000-1000-8000-00805f9b34fb"
WRITE = "0000d001-0000-1000-8000-00805f9b34fb"
STATUS = "0000d002-0000-1000-8000-00805f9b34fb"


def reports(profile: Profile, code: Any) -> str:
    return f"its status characteristic reads `failed {code.name}`"


class DummyPersonality:
    name = "dummy"

    def __init__(self, port: DoorPort, greeting: str) -> None:
        self.port, self.greeting = port, greeting
        self._host: GattHost | None = None
        self._unsubscribe = lambda: None

    def gatt(self) -> list[GattService]:
        return [
            GattService(
                SERVICE,
                [
                    GattChar(WRITE, ("write",), b""),
                    GattChar(STATUS, ("read", "notify"), self.greeting.encode()),
                ],
            )
        ]

    def advertised(self) -> Advertised:
        return Advertised([SERVICE], {}, {})

    def attach(self, host: GattHost) -> None:
        self._host = host
        self._unsubscribe = self.port.subscribe(self._on_event)

    def on_write(self, char_uuid: str, value: bytes, central: str | None) -> None:
        ssid, _, passphrase = value.partition(b"\0")
        try:
            secret = Secret(passphrase.decode()) if passphrase else None
            self.port.direct_provision(self._peer(central), ssid, secret, False)
        except (OnboardingError, UnicodeDecodeError) as exc:
            code = exc.code if isinstance(exc, OnboardingError) else Code.MALFORMED_REQUEST
            self._status(f"failed {code.name}")

    def on_connections(self, connected: frozenset[str], gone: frozenset[str]) -> None:
        for central in gone:
            if self.port.session_peer == self._peer(central):
                self.port.peer_gone(self._peer(central))

    def _on_event(self, event: DiagnosticEvent) -> None:
        self._status(f"{event.state.wire_name} {event.code.name}")
        holder = self.port.session_peer
        mine = isinstance(holder, tuple) and holder[:1] == ("dummy",)  # its own phone's session
        if mine and event.state.wire_name in ("online", "failed"):
            self.port.release(holder)  # the outcome is told

    def _status(self, text: str) -> None:
        if self._host is not None:
            self._host.notify(STATUS, text.encode())

    @staticmethod
    def _peer(central: str | None) -> Hashable:
        return ("dummy", central)

    def commands(self) -> dict[str, Handler]:
        return {}

    def press_button(self, source: str) -> dict[str, object] | None:
        return None

    def http_routes(self, host: object) -> list[HttpRoute]:
        return []

    async def stop(self) -> None:
        self._unsubscribe()
        self._host = None
