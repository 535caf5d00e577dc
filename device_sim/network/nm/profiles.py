"""The NetworkManager connections device-sim creates: recorded, activated, deactivated, deleted.

Every connection device-sim makes goes into a :class:`Ledger` (the device store under
:data:`STORE_KEY` when one is given, else memory) before NetworkManager is even asked, so a
cancelled request still leaves nothing behind, and deleting "ours" never touches a user's own
profiles. :func:`activate` adds and activates one with ``persist=memory`` and follows the Wi-Fi
device's ``StateChanged`` signal to the activation's end.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from dbus_fast import Variant
from dbus_fast.errors import DBusError

from ...codes import Code
from . import mapping
from .client import NMClient, translate
from .defs import (
    ACTIVE_IFACE,
    CONNECTION_IFACE,
    DEVICE_IFACE,
    ERR_ACCESS_DENIED,
    ERR_NAME_HAS_NO_OWNER,
    ERR_NM_PERMISSION_DENIED,
    ERR_SERVICE_UNKNOWN,
    MANAGER_IFACE,
    MANAGER_PATH,
    SETTINGS_IFACE,
    SETTINGS_PATH,
)

if TYPE_CHECKING:
    from ..base import SettingsStore

__all__ = [
    "FATAL",
    "STORE_KEY",
    "Ledger",
    "Profile",
    "activate",
    "deactivate",
    "delete",
    "keep",
    "resolve",
    "save",
]

log = logging.getLogger(__name__)

STORE_KEY = "nm.connections"
FATAL = frozenset(
    {ERR_ACCESS_DENIED, ERR_NM_PERMISSION_DENIED, ERR_SERVICE_UNKNOWN, ERR_NAME_HAS_NO_OWNER}
)
"""D-Bus errors that mean NetworkManager refuses us or is gone: never skipped over."""


@dataclass
class Profile:
    """One NetworkManager connection device-sim created (``purpose``: station or hotspot)."""

    uuid: str
    path: str
    ssid_hex: str
    purpose: str
    saved: bool = False


class Ledger:
    """The connections device-sim created: in the store under :data:`STORE_KEY`, else memory.

    ``client`` returns the live NetworkManager client (or raises): :meth:`discard` uses it.
    """

    def __init__(self, store: SettingsStore | None, client: Callable[[], NMClient]) -> None:
        self._store = store
        self._client = client
        self._memory: list[Profile] = []

    def all(self) -> list[Profile]:
        if self._store is None:
            return list(self._memory)
        raw = self._store.setting(STORE_KEY)
        try:
            return [Profile(**entry) for entry in json.loads(raw or "[]")]
        except (ValueError, TypeError):
            log.warning("the store's %s is unreadable; starting a new list", STORE_KEY)
            return []

    def _write(self, profiles: list[Profile]) -> None:
        if self._store is None:
            self._memory = profiles
        else:
            self._store.set_setting(STORE_KEY, json.dumps([asdict(p) for p in profiles]))

    def put(self, profile: Profile) -> None:
        self._write([p for p in self.all() if p.uuid != profile.uuid] + [profile])

    def remove(self, uuid: str) -> None:
        self._write([p for p in self.all() if p.uuid != uuid])

    async def discard(self, profile: Profile) -> None:
        """Best-effort delete after a failure (the failure is the error that matters)."""
        try:
            await delete(self._client(), profile)
        except Exception as exc:
            log.warning("could not delete profile %s: %s", profile.uuid, exc)
            return
        self.remove(profile.uuid)


async def activate(
    client: NMClient,
    ledger: Ledger,
    settings: mapping.Settings,
    purpose: str,
    ssid: bytes,
    on_state: Callable[[int], None],
    *,
    device: str,
    iface: str,
    timeout: float,
    doing: str,
    code: Code,
) -> tuple[Profile, mapping.Outcome]:
    """AddAndActivateConnection2 (persist=memory) on ``device``, recorded, followed to its end.

    Raises NetworkError(code) when NetworkManager refuses the request.
    """
    events: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
    try:
        unsubscribe = await client.subscribe(
            device,
            DEVICE_IFACE,
            "StateChanged",
            lambda msg: events.put_nowait((int(msg.body[0]), int(msg.body[1]), int(msg.body[2]))),
        )
        # Recorded by UUID first: a cancelled call still leaves nothing behind.
        profile = Profile(settings["connection"]["uuid"].value, "", ssid.hex(), purpose)
        ledger.put(profile)
        try:
            path, _active, _ = await client.call(
                MANAGER_PATH,
                MANAGER_IFACE,
                "AddAndActivateConnection2",
                "a{sa{sv}}ooa{sv}",
                [settings, device, "/", {"persist": Variant("s", "memory")}],
            )
            profile.path = str(path)
            ledger.put(profile)
            return profile, await _follow(events, on_state, iface=iface, timeout=timeout)
        except BaseException:
            await ledger.discard(profile)
            raise
        finally:
            await unsubscribe()
    except (DBusError, OSError, EOFError) as exc:
        raise translate(exc, doing=doing, code=code, interface=iface) from None


async def _follow(
    events: asyncio.Queue[tuple[int, int, int]],
    on_state: Callable[[int], None],
    *,
    iface: str,
    timeout: float,
) -> mapping.Outcome:
    """Read device StateChanged events until the activation ends or the timeout."""
    activation = mapping.Activation()
    try:
        async with asyncio.timeout(timeout):
            while activation.outcome is None:
                new, old, reason = await events.get()
                log.debug("device %s: %s -> %s", iface, old, mapping.describe(new, reason))
                if activation.feed(new, old, reason):
                    on_state(new)
            return activation.outcome
    except TimeoutError:
        return activation.timed_out()


async def save(client: NMClient, ledger: Ledger, profile: Profile) -> None:
    """Persist the verified profile; drop the older device-sim profile of the same SSID (one
    profile per saved network; which networks stay is :func:`keep`'s). Profiles the user made
    are not touched. Raises NetworkError(JOIN_FAILED) when NetworkManager cannot save it.
    """
    try:
        await client.call(profile.path, CONNECTION_IFACE, "Save")
    except (DBusError, OSError, EOFError) as exc:
        raise translate(exc, doing="saving the network profile", code=Code.JOIN_FAILED) from None
    profile.saved = True
    ledger.put(profile)
    for old in ledger.all():
        same = old.purpose == "station" and old.ssid_hex == profile.ssid_hex
        if same and old.uuid != profile.uuid:
            await ledger.discard(old)
    log.info("saved the profile for %s", mapping.ssid_label(bytes.fromhex(profile.ssid_hex)))


async def keep(
    client: NMClient, ledger: Ledger, saved_hex: list[str], current: str | None = None
) -> None:
    """Our station profiles become the saved networks: those of other SSIDs, and unsaved ones
    but ``current`` (the join in flight), are deleted, and so is an older profile of an SSID
    that has a newer saved one (a re-onboarding to the same network saves a second one);
    each kept one gets ``connection.autoconnect-priority`` by its place (the most recent the
    highest), autoconnect off. Raises DBusError."""
    order = {ssid: len(saved_hex) - i for i, ssid in enumerate(saved_hex)}
    newest: dict[str, str] = {}  # ssid -> the uuid of its newest saved profile (ledger order)
    for profile in ledger.all():
        if profile.purpose == "station" and profile.saved:
            newest[profile.ssid_hex] = profile.uuid
    for profile in ledger.all():
        if profile.purpose != "station" or (profile.uuid == current and not profile.saved):
            continue
        if (
            profile.ssid_hex not in order
            or not profile.saved
            or newest.get(profile.ssid_hex) != profile.uuid
        ):
            await delete(client, profile)
            ledger.remove(profile.uuid)
            continue
        path = await resolve(client, profile)
        if path is None:  # gone from NetworkManager (deleted by someone, or before a crash)
            ledger.remove(profile.uuid)
            continue
        profile.path = path
        await _prioritize(client, profile, order[profile.ssid_hex])


async def resolve(client: NMClient, profile: Profile) -> str | None:
    """The profile's object path now (found by UUID), or None when NetworkManager no longer
    has it. Raises DBusError when NetworkManager refuses us or is gone."""
    try:
        found = await client.call(
            SETTINGS_PATH, SETTINGS_IFACE, "GetConnectionByUuid", "s", [profile.uuid]
        )
    except DBusError as exc:
        if exc.type in FATAL:
            raise
        return None
    return str(found[0])


async def _prioritize(client: NMClient, profile: Profile, priority: int) -> None:
    """Set the profile's priority (Update takes every setting: its secrets are read first)."""
    path = profile.path
    settings = await client.call(path, CONNECTION_IFACE, "GetSettings")
    current = settings[0]
    connection = current.get("connection", {})
    old = connection.get("autoconnect-priority")
    if old is not None and int(old.value) == priority:
        return
    if "802-11-wireless-security" in current:
        secrets = await client.call(
            path, CONNECTION_IFACE, "GetSecrets", "s", ["802-11-wireless-security"]
        )
        current["802-11-wireless-security"].update(secrets[0].get("802-11-wireless-security", {}))
    connection["autoconnect-priority"] = Variant("i", priority)
    connection["autoconnect"] = Variant("b", False)
    current["connection"] = connection
    await client.call(path, CONNECTION_IFACE, "Update", "a{sa{sv}}", [current])


async def deactivate(client: NMClient, device: str, profile: Profile) -> None:
    """Deactivate ``profile`` if it is what ``device`` runs. Raises DBusError."""
    active = str(await client.get(device, DEVICE_IFACE, "ActiveConnection"))
    if active != "/" and str(await client.get(active, ACTIVE_IFACE, "Connection")) == profile.path:
        await client.call(MANAGER_PATH, MANAGER_IFACE, "DeactivateConnection", "o", [active])


async def delete(client: NMClient, profile: Profile) -> None:
    """Delete ``profile`` (found by UUID, else its recorded path). Raises DBusError."""
    path = profile.path
    try:
        path = str(
            (
                await client.call(
                    SETTINGS_PATH, SETTINGS_IFACE, "GetConnectionByUuid", "s", [profile.uuid]
                )
            )[0]
        )
    except DBusError as exc:
        if exc.type in FATAL:
            raise
    if not path:
        return  # NetworkManager never made it
    try:
        await client.call(path, CONNECTION_IFACE, "Delete")
    except DBusError as exc:
        if exc.type in FATAL:
            raise
        log.debug("profile %s already gone (%s)", profile.uuid, exc.type)
