"""The demo's factory unit and cloud (``device-sim demo --activation``): a unit made on a
temporary factory CA, and the cloud emulator in-process on loopback with the account ``alice``
(the unit's supply-chain account) and a previous owner (for the claim flows)."""

from __future__ import annotations

import contextlib
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..security.secret import Secret

if TYPE_CHECKING:
    from .cloud.admin import CloudAdmin
    from .factory.unit import UnitResult


DEMO_ACCOUNT = "alice"
PREVIOUS_OWNER = "previous-owner"


def factory_unit(tmp: Path, *, claim_ttl_days: int = 365) -> UnitResult:
    """A temporary factory (CA and fleet registration key) and one unit made on it."""
    from ..pki import create_factory_ca
    from .factory.registration import ensure_registration_key
    from .factory.unit import provision_unit

    create_factory_ca(tmp / "factory", "Demo Factory")
    registration = ensure_registration_key(tmp / "factory")
    return provision_unit(
        tmp / "factory",
        tmp / "units",
        station="demo",
        registration=registration,
        claim_ttl_days=claim_ttl_days,
    )


class DemoCloud:
    """The cloud emulator in-process, with the demo account and the unit imported."""

    def __init__(self, tmp: Path, unit: UnitResult, mode: str, behaviour: str = "ok") -> None:
        from .cloud.emulator import CloudEmulator

        self.unit, self.mode, self.tmp, self.behaviour = unit, mode, tmp, behaviour
        self._refusing: socket.socket | None = None
        self.emulator = CloudEmulator(tmp / "cloud", factory_chain=tmp / "factory" / "chain.pem")
        self.password = secrets.token_urlsafe(12)  # the account's; never printed
        self.device_password = Secret(secrets.token_urlsafe(12))
        self._stack = contextlib.AsyncExitStack()
        self.admin: CloudAdmin | None = None

    @property
    def url(self) -> str:
        return self.emulator.url

    async def __aenter__(self) -> DemoCloud:
        from .cloud.admin import CloudAdmin

        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.emulator)
            self.admin = await stack.enter_async_context(
                CloudAdmin(self.emulator.url, self.emulator.ca_file, self.emulator.admin_token)
            )
            await self.admin.import_units(self.tmp / "units" / "cloud-import.json")
            await self.admin.add_account(DEMO_ACCOUNT, self.password)
            if not (self.behaviour == "rejecting" and self.mode == "zero-touch"):
                await self.admin.set_supply_chain(self.unit.serial, DEMO_ACCOUNT)
            if self.behaviour == "claimed_by_another_account":
                # A second-hand unit: its previous owner's binding is still in the cloud.
                await self.admin.add_account(PREVIOUS_OWNER, secrets.token_urlsafe(12))
                await self.emulator.record_binding(self.unit.device_id, PREVIOUS_OWNER, "claim")
            if self.behaviour == "unreachable":
                # Bound, never listening: the device's connection to the cloud is refused.
                self._refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                stack.callback(self._refusing.close)
                self._refusing.bind(("127.0.0.1", 0))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def daemon_args(self) -> list[str]:
        url = self.emulator.url
        if self._refusing is not None:
            url = f"https://127.0.0.1:{self._refusing.getsockname()[1]}"
        return [
            "--activation",
            self.mode,
            "--cloud-url",
            url,
            "--cloud-ca",
            str(self.emulator.ca_file),
        ]

    def inputs(self) -> dict[str, Secret | str | None]:
        """What the app sends with SET_ACTIVATION (claim: the token from the label's QR)."""
        # rejecting: the app names an account the cloud does not know
        account = "nobody" if self.behaviour == "rejecting" else DEMO_ACCOUNT
        if self.mode == "claim":
            return {"account": account, "claim_token": self.unit.claim_token}
        if self.mode == "registration":
            return {"account": account, "device_password": self.device_password}
        return {}

    async def listed(self, device_id: str) -> dict[str, Any] | None:
        assert self.admin is not None
        devices = await self.admin.list_devices(DEMO_ACCOUNT, self.password)
        return next((d for d in devices if d["device_id"] == device_id), None)
