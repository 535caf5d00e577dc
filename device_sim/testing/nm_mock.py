"""A scriptable NetworkManager for tests and demos: python-dbusmock's template, extended.

``async with NMMock(bus_address) as nm:`` runs ``python -m dbusmock --system --template
networkmanager`` on that bus and returns once it owns ``org.freedesktop.NetworkManager``. It then
adds what the template lacks: ``AddAndActivateConnection2``, ``LastScan`` with a ``RequestScan``
that bumps it, ``Save``/``Delete``/``GetSecrets`` on connections, IP4Config objects, and access
points with any SSID bytes and WPA/RSN flags (WPA3-SAE included).

The mock runs the activation itself, inside the ``AddAndActivateConnection2`` call (or, with
``after_reply=True``, from the mock's main loop right after the reply): it emits the device's
``StateChanged`` signals prepare -> config -> [need_auth] -> ip_config -> ... -> activated, or
-> failed with the scripted reason, so a client sees the whole sequence without any race.
:meth:`NMMock.on_activate` picks what the following activations do; ``"manual"`` leaves the
device in place for :meth:`NMMock.script_join`.

The activation and the other additions run inside the dbusmock process: see
:mod:`.nm_mock_service`, reached from the code strings the mock's ``AddMethod`` installs.
"""

# Over 500 lines on purpose: python-dbusmock's NetworkManager template driven from the test's side:
# every object the backend reads, and the faults a test plays on them.

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from dbus_fast import Message, Variant

from ..errors import TransportError
from ..lifecycle import Component
from ..network.base import Security
from ..network.nm.client import NMClient, unwrap
from ..network.nm.defs import (
    BUS_NAME,
    CONNECTION_IFACE,
    MANAGER_IFACE,
    MANAGER_PATH,
    SETTINGS_IFACE,
    SETTINGS_PATH,
    ApFlags,
    ApSecurityFlags,
    Connectivity,
    DeviceState,
    DeviceStateReason,
    WifiCapabilities,
)
from .nm_mock_service import CALL

__all__ = ["DEFAULT_CAPS", "EXT_IFACE", "MOCK_IFACE", "NMMock", "flags_for"]

MOCK_IFACE = "org.freedesktop.DBus.Mock"
EXT_IFACE = "org.devicesim.NMMock"  # our additions, on the manager object
MAIN_OBJ = "/org/freedesktop"  # the template's main object (holds its Mock methods)
DEFAULT_CAPS = int(
    WifiCapabilities.CIPHER_CCMP
    | WifiCapabilities.WPA
    | WifiCapabilities.RSN
    | WifiCapabilities.AP
    | WifiCapabilities.FREQ_VALID
    | WifiCapabilities.FREQ_2GHZ
    | WifiCapabilities.FREQ_5GHZ
)
_FAIL_IN = {
    DeviceStateReason.NO_SECRETS: DeviceState.NEED_AUTH,
    DeviceStateReason.SUPPLICANT_DISCONNECT: DeviceState.NEED_AUTH,
    DeviceStateReason.IP_CONFIG_UNAVAILABLE: DeviceState.IP_CONFIG,
    DeviceStateReason.IP_CONFIG_EXPIRED: DeviceState.IP_CONFIG,
    DeviceStateReason.DHCP_START_FAILED: DeviceState.IP_CONFIG,
    DeviceStateReason.DHCP_ERROR: DeviceState.IP_CONFIG,
    DeviceStateReason.DHCP_FAILED: DeviceState.IP_CONFIG,
}


def flags_for(security: Security) -> tuple[int, int, int]:
    """(Flags, WpaFlags, RsnFlags) a real AP with ``security`` advertises."""
    ccmp = ApSecurityFlags.PAIR_CCMP | ApSecurityFlags.GROUP_CCMP
    rsn = {
        Security.WPA2_PSK: ApSecurityFlags.KEY_MGMT_PSK,
        Security.WPA3_SAE: ApSecurityFlags.KEY_MGMT_SAE,
        Security.WPA2_WPA3: ApSecurityFlags.KEY_MGMT_PSK | ApSecurityFlags.KEY_MGMT_SAE,
        Security.ENTERPRISE: ApSecurityFlags.KEY_MGMT_802_1X,
        Security.OWE: ApSecurityFlags.KEY_MGMT_OWE,
    }.get(security)
    if rsn is not None:
        return int(ApFlags.PRIVACY), 0, int(rsn | ccmp)
    return (int(ApFlags.PRIVACY), 0, 0) if security is Security.WEP else (0, 0, 0)


class NMMock(Component):
    """python-dbusmock's NetworkManager on ``bus_address``, as an async context manager.

    ``log_path`` receives the mock's output (every call, with arguments: bench use only).
    Raises TransportError when the mock does not start within ``timeout`` seconds.
    """

    def __init__(
        self,
        bus_address: str,
        *,
        version: str = "1.42.4",
        timeout: float = 10.0,
        log_path: Path | None = None,
    ) -> None:
        self.bus_address = bus_address
        self._version, self._timeout, self._log_path = version, timeout, log_path
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.client = NMClient(bus_address)

    # -- process --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the mock, wait until it owns the name, install the extensions."""
        await self.client.connect()
        try:
            owned = asyncio.Event()
            unsubscribe = await self.client.subscribe(
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameOwnerChanged",
                lambda msg: owned.set() if msg.body[0] == BUS_NAME else None,
            )
            try:
                await self._spawn()
                async with asyncio.timeout(self._timeout):
                    await self._wait_owned(owned)
            finally:
                await unsubscribe()
            await self._install()
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, TimeoutError):
                raise TransportError(
                    f"the NetworkManager mock did not start within "
                    f"{self._timeout:g} s (log: {self._log_path})"
                ) from None
            raise

    async def _spawn(self) -> None:
        # So the mock can import device_sim (resolve() touches the disk once, locally).
        root = str(Path(__file__).resolve().parents[2])  # noqa: ASYNC240
        env = {
            **os.environ,
            "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        }
        argv = [
            sys.executable,
            "-m",
            "dbusmock",
            "--system",
            "--template",
            "networkmanager",
            "-p",
            json.dumps({"Version": self._version}),
        ]
        out = open(self._log_path, "wb") if self._log_path else None  # noqa: SIM115, ASYNC230
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out or asyncio.subprocess.DEVNULL,
                stderr=out or asyncio.subprocess.DEVNULL,
            )
        finally:
            if out is not None:
                out.close()

    async def _wait_owned(self, owned: asyncio.Event) -> None:
        assert self._proc is not None
        exited = asyncio.ensure_future(self._proc.wait())
        try:
            while True:
                owned.clear()
                with contextlib.suppress(Exception):
                    owner = (
                        await self.client.call(
                            "/org/freedesktop/DBus",
                            "org.freedesktop.DBus",
                            "GetNameOwner",
                            "s",
                            [BUS_NAME],
                            destination="org.freedesktop.DBus",
                        )
                    )[0]
                    pid = (
                        await self.client.call(
                            "/org/freedesktop/DBus",
                            "org.freedesktop.DBus",
                            "GetConnectionUnixProcessID",
                            "s",
                            [owner],
                            destination="org.freedesktop.DBus",
                        )
                    )[0]
                    if pid == self._proc.pid:
                        return
                woke = asyncio.ensure_future(owned.wait())
                await asyncio.wait({woke, exited}, return_when=asyncio.FIRST_COMPLETED)
                woke.cancel()
                if exited.done():
                    raise TransportError(
                        f"the NetworkManager mock exited ({exited.result()}); log: {self._log_path}"
                    )
        finally:
            exited.cancel()

    async def stop(self) -> None:
        """Terminate and reap the mock; close the bus connection. Idempotent."""
        proc, self._proc = self._proc, None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(self._timeout):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    # -- plumbing -------------------------------------------------------------------------------
    async def call(
        self, path: str, iface: str, member: str, signature: str = "", body: list[Any] | None = None
    ) -> list[Any]:
        """A call to the mock (raises DBusError on an error reply)."""
        return await self.client.call(path, iface, member, signature, body)

    async def add_method(
        self, path: str, iface: str, member: str, in_sig: str, out_sig: str, code: str
    ) -> None:
        """dbusmock's AddMethod: ``code`` runs in the mock (``self``, ``args``, ``ret``)."""
        await self.call(
            path, MOCK_IFACE, "AddMethod", "sssss", [iface, member, in_sig, out_sig, code]
        )

    async def _install(self) -> None:
        for member, in_sig, out_sig in (
            ("Configure", "s", ""),
            ("AddWifiDevice", "suu", "s"),
            ("AddAccessPoint", "ssaysuyuuu", "s"),
            ("ScriptJoin", "os", ""),
            ("DropConnection", "ou", ""),
            ("RemoveAccessPoint", "oo", ""),
        ):
            await self.add_method(
                MANAGER_PATH, EXT_IFACE, member, in_sig, out_sig, CALL.format(member.lower())
            )
        await self.add_method(
            MANAGER_PATH,
            MANAGER_IFACE,
            "AddAndActivateConnection2",
            "a{sa{sv}}ooa{sv}",
            "ooa{sv}",
            CALL.format("add_and_activate2"),
        )
        await self.on_activate()

    # -- scripting ------------------------------------------------------------------------------
    async def add_wifi_device(
        self,
        iface: str = "wlan0",
        *,
        caps: int = DEFAULT_CAPS,
        state: int = DeviceState.DISCONNECTED,
    ) -> str:
        """A Wi-Fi device with LastScan, ActiveAccessPoint and Ip4Config; returns its path."""
        return str(
            (
                await self.call(
                    MANAGER_PATH, EXT_IFACE, "AddWifiDevice", "suu", [iface, int(caps), int(state)]
                )
            )[0]
        )

    async def add_ethernet_device(self, iface: str = "eth0") -> str:
        return str(
            (
                await self.call(
                    MAIN_OBJ,
                    MOCK_IFACE,
                    "AddEthernetDevice",
                    "ssi",
                    [iface, iface, int(DeviceState.ACTIVATED)],
                )
            )[0]
        )

    async def add_access_point(
        self,
        device: str,
        name: str,
        ssid: bytes,
        *,
        bssid: str = "02:00:00:00:00:01",
        frequency: int = 2437,
        strength: int = 70,
        security: Security | None = None,
        flags: int = 0,
        wpa_flags: int = 0,
        rsn_flags: int = 0,
    ) -> str:
        """An AP seen by ``device``; ``security`` sets the three flag words (else given raw)."""
        if security is not None:
            flags, wpa_flags, rsn_flags = flags_for(security)
        return str(
            (
                await self.call(
                    MANAGER_PATH,
                    EXT_IFACE,
                    "AddAccessPoint",
                    "ssaysuyuuu",
                    [
                        device,
                        name,
                        bytes(ssid),
                        bssid,
                        frequency,
                        strength,
                        flags,
                        wpa_flags,
                        rsn_flags,
                    ],
                )
            )[0]
        )

    async def on_activate(
        self,
        outcome: str | tuple[str, int] = "activated",
        *,
        fail_in: int | None = None,
        need_auth: bool = False,
        ip: str = "192.168.1.50",
        prefix: int = 24,
        gateway: str = "192.168.1.1",
        dns: tuple[str, ...] = ("192.168.1.1",),
        after_reply: bool = False,
    ) -> None:
        """What every following activation does: ``"activated"``, ``("failed", reason)`` (failing
        in ``fail_in``, by default the state the reason belongs to) or ``"manual"`` (nothing)."""
        await self.call(
            MANAGER_PATH,
            EXT_IFACE,
            "Configure",
            "s",
            [
                json.dumps(
                    {
                        "outcome": _outcome(
                            outcome, fail_in, need_auth, ip, prefix, gateway, dns, after_reply
                        )
                    }
                )
            ],
        )

    async def refuse_key_mgmt(self, refused: dict[str, int]) -> None:
        """Activations whose ``key-mgmt`` (``none`` without a security section) is a key of
        ``refused`` fail with its reason, as for an access point that does not take it (a
        hidden WPA2 network asked for SAE); the others follow :meth:`on_activate`."""
        table = {
            key: {"reason": int(reason), "fail_in": int(_FAIL_IN.get(reason, DeviceState.CONFIG))}  # type: ignore[call-overload]
            for key, reason in refused.items()
        }
        await self.call(
            MANAGER_PATH, EXT_IFACE, "Configure", "s", [json.dumps({"refuse_key_mgmt": table})]
        )

    async def script_join(
        self,
        device: str,
        outcome: str | tuple[str, int] = "activated",
        *,
        fail_in: int | None = None,
        need_auth: bool = False,
        ip: str = "192.168.1.50",
        gateway: str = "192.168.1.1",
        dns: tuple[str, ...] = ("192.168.1.1",),
    ) -> None:
        """Run the state sequence now for ``device``'s current activation (after "manual")."""
        await self.call(
            MANAGER_PATH,
            EXT_IFACE,
            "ScriptJoin",
            "os",
            [
                device,
                json.dumps(_outcome(outcome, fail_in, need_auth, ip, 24, gateway, dns, False)),
            ],
        )

    async def remove_access_point(self, device: str, ap: str) -> None:
        """The access point ``ap`` (a path add_access_point returned) goes off the air."""
        await self.call(MANAGER_PATH, EXT_IFACE, "RemoveAccessPoint", "oo", [device, ap])

    async def drop_connection(self, device: str, reason: int) -> None:
        """The device's established connection ends on its own with ``reason`` (an
        NMDeviceStateReason: SSID_NOT_FOUND, SUPPLICANT_DISCONNECT, IP_CONFIG_EXPIRED, ...)."""
        await self.call(MANAGER_PATH, EXT_IFACE, "DropConnection", "ou", [device, int(reason)])

    async def set_scan(self, mode: str) -> None:
        """RequestScan behaviour: ``"ok"`` (bumps LastScan), ``"refuse"`` or ``"stale"``."""
        await self.call(MANAGER_PATH, EXT_IFACE, "Configure", "s", [json.dumps({"scan": mode})])

    async def update_manager(self, props: dict[str, Variant]) -> None:
        """Change NetworkManager's own properties (``Version``, ``WirelessHardwareEnabled``...),
        as dbusmock's ``UpdateProperties`` does (with PropertiesChanged)."""
        await self.call(
            MANAGER_PATH, "org.freedesktop.DBus.Mock", "UpdateProperties", "sa{sv}",
            [MANAGER_IFACE, props],
        )  # fmt: skip

    async def set_connectivity(self, connectivity: Connectivity) -> None:
        await self.call(MAIN_OBJ, MOCK_IFACE, "SetConnectivity", "u", [int(connectivity)])

    async def raise_on(
        self,
        path: str,
        iface: str,
        member: str,
        in_sig: str,
        out_sig: str,
        error_name: str,
        message: str = "scripted failure",
    ) -> None:
        """Make ``iface.member`` on ``path`` answer with the D-Bus error ``error_name``."""
        await self.add_method(
            path,
            iface,
            member,
            in_sig,
            out_sig,
            f"raise dbus.exceptions.DBusException({message!r}, name={error_name!r})",
        )

    async def expect_call(self, member: str, path: str = MANAGER_PATH) -> asyncio.Future[list[Any]]:
        """A future for the arguments of the next call of ``member`` on ``path`` (MethodCalled)."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def on_called(msg: Message) -> None:
            if msg.path == path and msg.body[0] == member and not future.done():
                future.set_result(unwrap(msg.body[1]))

        unsubscribe = await self.client.subscribe(path, MOCK_IFACE, "MethodCalled", on_called)

        def done(_: object) -> None:
            task = asyncio.ensure_future(unsubscribe())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        future.add_done_callback(done)
        return future

    async def add_user_connection(self, ssid: bytes, psk: str | None = None) -> str:
        """A saved profile made by someone else (Settings.AddConnection); returns its path."""
        settings: dict[str, dict[str, Variant]] = {
            "connection": {
                "id": Variant("s", "user profile"),
                "type": Variant("s", "802-11-wireless"),
                "autoconnect": Variant("b", False),
            },
            "802-11-wireless": {"ssid": Variant("ay", bytes(ssid))},
        }
        if psk is not None:
            settings["802-11-wireless-security"] = {
                "key-mgmt": Variant("s", "wpa-psk"),
                "psk": Variant("s", psk),
            }
        return str(
            (
                await self.call(
                    SETTINGS_PATH, SETTINGS_IFACE, "AddConnection", "a{sa{sv}}", [settings]
                )
            )[0]
        )

    async def connections(self) -> list[str]:
        return [
            str(p) for p in (await self.call(SETTINGS_PATH, SETTINGS_IFACE, "ListConnections"))[0]
        ]

    async def connection(self, path: str) -> dict[str, Any]:
        """``{"settings": ..., "secrets": ..., "eap_secrets": ..., "unsaved": bool}`` of one of
        our connections (the secrets as GetSecrets gives them, by setting)."""
        settings = unwrap((await self.call(path, CONNECTION_IFACE, "GetSettings"))[0])
        secrets = {
            group: unwrap(
                (await self.call(path, CONNECTION_IFACE, "GetSecrets", "s", [group]))[0]
            ).get(group, {})
            for group in ("802-11-wireless-security", "802-1x")
        }
        unsaved = await self.client.get(path, CONNECTION_IFACE, "Unsaved")
        return {
            "settings": settings,
            "secrets": secrets["802-11-wireless-security"],
            "eap_secrets": secrets["802-1x"],
            "unsaved": bool(unsaved),
        }


def _outcome(
    outcome: str | tuple[str, int],
    fail_in: int | None,
    need_auth: bool,
    ip: str,
    prefix: int,
    gateway: str,
    dns: tuple[str, ...],
    after_reply: bool,
) -> dict[str, Any]:
    result, reason = (outcome, 0) if isinstance(outcome, str) else outcome
    if result not in ("activated", "failed", "manual"):
        raise ValueError(f"unknown outcome {outcome!r}")
    if result == "failed" and fail_in is None:
        fail_in = _FAIL_IN.get(reason, DeviceState.CONFIG)  # type: ignore[call-overload]
    return {
        "result": result,
        "reason": int(reason),
        "fail_in": int(fail_in or 0),
        "need_auth": need_auth,
        "ip": ip,
        "prefix": prefix,
        "gateway": gateway,
        "dns": list(dns),
        "after_reply": after_reply,
    }
