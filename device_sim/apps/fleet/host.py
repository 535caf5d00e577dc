"""``device-sim fleet``: N emulated devices in one process, on one event loop.

Each member is what ``device-sim run`` serves (:func:`device_sim.daemon.serve_device`): its
own identity, state directory, store, engine, doors and control socket. Over the SoftAP each
listens on its own loopback address (port 8380, home network 8381), so two devices never share
a port space. Over BLE each has its own BlueZoo adapter on one bus (the fleet starts a private
bus unless one is given) and the fleet adds adapters for the phones, named in the index.

The fleet's root holds ``fleet.json`` (the index the phone side, ``ctl`` and ``watch`` read:
names, ids, URLs, adapters; nothing secret) and ``labels.json`` (mode 0600: each device's
label, the setup code a tester would read off the box).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from ...config import DaemonOptions
from ...core.identity import create_identity
from ...core.store import DeviceStore
from ...daemon import ServedDevice, serve_device
from ...doors import registry
from ...doors.supervisor import Policy
from ...errors import ConfigError, DeviceSimError
from ...lifecycle import raise_fd_limit
from ...options import HostPort
from ...profile import Profile, load_profile
from ...security.secret import Secret
from .model import Fleet, Member

__all__ = ["INDEX", "LABELS", "FleetHost", "read_index", "read_labels"]

LOG = logging.getLogger(__name__)
INDEX = "fleet.json"
LABELS = "labels.json"
AP_PORT, LAN_PORT = 8380, 8381
STARTING_AT_ONCE = 32  # devices whose start (bless registration, listeners) overlaps
SPARE_ADDRESSES = 64  # addresses after the members' own, for members whose own is taken


@dataclasses.dataclass
class FleetHost:
    """Runs a :class:`Fleet` under ``root``; ``base`` holds the options every member shares."""

    fleet: Fleet
    root: Path
    base: DaemonOptions
    phones: int = 16  # BLE: phone adapters added for the client side
    setup_code: Secret | None = None  # one code for every device (default: one each)
    bus_address: str | None = None  # BLE: an existing bus (default: start one)
    members: list[tuple[Member, ServedDevice]] = dataclasses.field(default_factory=list)

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Start every device, write the index, print one ready line, serve until ``stop``
        (or SIGTERM/SIGINT). Raises ConfigError, DeviceSimError (naming the device)."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        previous_umask = os.umask(0o077)
        try:
            async with AsyncExitStack() as stack:
                ready = await self.start(stack)
                sys.stdout.write(json.dumps(ready) + "\n")
                sys.stdout.flush()
                await stop.wait()
                LOG.info("fleet: stopping %d devices", len(self.members))
        finally:
            os.umask(previous_umask)
        return 0

    async def start(self, stack: AsyncExitStack) -> dict[str, Any]:
        """Start the fleet inside ``stack`` (closed in reverse order); the ready document."""
        started = time.monotonic()
        raise_fd_limit()  # each device holds a few descriptors: store, log, sockets
        profile = load_profile(self.base.profile)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        members = self.fleet.members()
        bus: dict[str, Any] = {}
        adapters: list[str] = []
        phones: list[str] = []
        bumble = self.fleet.transport == "ble" and self.base.ble.stack == "bumble"
        if bumble:
            from ...bumble_stack import serve_controllers

            # Every device on one in-process link (no bus); the phones' controllers served
            # over TCP for `client provision --fleet` in another process.
            phones = await stack.enter_async_context(serve_controllers(BUMBLE_LINK, self.phones))
            bus["ble_stack"] = "bumble"
        elif self.fleet.transport == "ble":
            bus_address = await self._bus(stack)
            bus["address"] = bus_address
            from ..virtual.bluez_bus import add_free_adapters

            # Indices the bus does not use yet: a bus of its own has only hci0, a given one
            # may hold `virtual-ble up`'s adapters, the public API's or another fleet's.
            adapters = await add_free_adapters(bus_address, len(members), _ble_address)
            phones = await add_free_adapters(bus_address, self.phones, _ble_address)
        labels: dict[str, dict[str, Any]] = {}
        gate = asyncio.Semaphore(STARTING_AT_ONCE)

        spare = iter(range(len(members) + 1, len(members) + 1 + SPARE_ADDRESSES))

        async def start_one(member: Member, adapter: str | None) -> tuple[AsyncExitStack, Any]:
            async with gate:
                own = AsyncExitStack()
                try:
                    # In a thread: key generation and the SRP verifier free the GIL, so
                    # identities are made on another core while started devices run.
                    labels[member.name] = await asyncio.to_thread(self._identity, profile, member)
                    address = None
                    if self.fleet.transport != "ble":
                        address = self._free_address(member, spare)
                    # A killed fleet loses nothing committed; fsyncs are left to checkpoints.
                    served = await serve_device(
                        own, self._options(member, adapter, address), profile, durability="normal"
                    )
                except BaseException as exc:
                    await own.aclose()
                    if isinstance(exc, DeviceSimError | OSError):
                        raise DeviceSimError(f"{member.name}: {exc}") from exc
                    raise
                return own, served

        tasks = [
            asyncio.ensure_future(
                start_one(m, adapters[i] if adapters else ("bumble" if bumble else None))
            )
            for i, m in enumerate(members)
        ]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            for item in done:
                if isinstance(item, tuple):
                    await item[0].aclose()
            raise
        for member, (own, served) in zip(members, results, strict=True):
            stack.push_async_exit(own)
            self.members.append((member, served))
        index = self._index(bus, phones)
        _write_json(self.root / INDEX, index, private=False)
        _write_json(self.root / LABELS, {m.name: labels[m.name] for m in members}, private=True)
        return {
            "ready": True,
            "fleet": self.fleet.name,
            "transport": self.fleet.transport,
            "devices": len(self.members),
            "index": str(self.root / INDEX),
            "phones": phones,
            "bus": bus.get("address"),
            "start_s": round(time.monotonic() - started, 3),
        }

    # -- pieces ---------------------------------------------------------------------------------
    async def _bus(self, stack: AsyncExitStack) -> str:
        """The BlueZoo bus: the one given, or a private one the fleet starts and stops."""
        from ..virtual.harness import BUS_ENV, VirtualBle

        address = self.bus_address or os.environ.get(BUS_ENV)
        if address is None:
            vble = VirtualBle(adapters=1)
            await stack.enter_async_context(vble)
            address = vble.bus_address
        # bless and bleak in this process find the bus here.
        previous = os.environ.get(BUS_ENV)
        os.environ[BUS_ENV] = address
        stack.callback(_restore_env, BUS_ENV, previous)
        return address

    def _identity(self, profile: Profile, member: Member) -> dict[str, Any]:
        """The member's identity, made on its first start; its label fields."""
        state_dir = self.root / member.name
        with DeviceStore(state_dir) as store:
            identity = store.identity()
            code: Secret | None = None
            if identity is None:
                identity, code = create_identity(
                    store,
                    self.setup_code,
                    ap_passphrase_length=profile.softap.passphrase_length,
                )
            local_name = profile.advertising.local_name_pattern.format(short_id=identity.short_id)
            fields = registry.make_labels(store, profile, local_name)
        label: dict[str, Any] = {"device_id": identity.device_id, **fields}
        if code is not None:
            label["setup_code"] = code.reveal()
        else:  # made by an earlier start: its label from then
            label.update(_old_label(self.root / LABELS, member.name))
        return label

    def _free_address(self, member: Member, spare: Iterator[int]) -> str:
        """The member's own loopback address, or, when another process holds one of its ports
        there (another fleet, a local user), the next free spare one: one squatted address
        moves one device (the index says where), it does not stop the fleet. Raises
        DeviceSimError when no spare address is free either."""
        address = member.address
        for _ in range(SPARE_ADDRESSES + 1):
            if not _ports_in_use(address, (AP_PORT, LAN_PORT)):
                if address != member.address:
                    LOG.warning(
                        "%s: a port of %s is in use by another process; serving on %s instead",
                        member.name,
                        member.address,
                        address,
                    )
                return address
            try:
                address = dataclasses.replace(member, index=next(spare)).address
            except StopIteration:
                break
        raise DeviceSimError(
            f"{member.name}: {member.address} and every spare address have a port in use"
        )

    def _options(
        self, member: Member, adapter: str | None, address: str | None = None
    ) -> DaemonOptions:
        base = self.base
        ble = base.ble
        doors = base.doors
        softap = base.softap
        if self.fleet.transport == "ble" and ble.stack == "bumble":
            ble = dataclasses.replace(
                ble, bumble_transport=f"local:{BUMBLE_LINK}", personalities=(member.personality,)
            )
            doors = dataclasses.replace(doors, policy=Policy.BLE_ONLY)
        elif self.fleet.transport == "ble":
            assert adapter is not None
            ble = dataclasses.replace(ble, adapter=adapter, personalities=(member.personality,))
            doors = dataclasses.replace(doors, policy=Policy.BLE_ONLY)
        else:
            ble = dataclasses.replace(ble, personalities=(member.personality,))
            doors = dataclasses.replace(doors, policy=Policy.SOFTAP_ONLY)
            softap = dataclasses.replace(
                softap,
                listen=HostPort(address or member.address, AP_PORT),
                lan=HostPort(address or member.address, LAN_PORT),
                concurrent=registry.get(member.personality).concurrent_ap or softap.concurrent,
                state_dir=None,
            )
        network = dataclasses.replace(base.network, scenario=member.scenario, seed=member.seed)
        return dataclasses.replace(
            base,
            state_dir=self.root / member.name,
            ble=ble,
            doors=doors,
            softap=softap,
            network=network,
            watch=dataclasses.replace(base.watch, enabled=False),
        )

    def _index(self, bus: dict[str, Any], phones: list[str]) -> dict[str, Any]:
        devices = []
        for member, served in self.members:
            doors = served.doors.supervisor.status()
            softap = doors.get("softap") or {}
            devices.append(
                {
                    "name": member.name,
                    "device_id": served.device.identity.device_id,
                    "state_dir": str(self.root / member.name),
                    "scenario": member.scenario,
                    "personality": member.personality,
                    "seed": member.seed,
                    "local_name": served.device.local_name,
                    "adapter": served.options.ble.adapter
                    if self.fleet.transport == "ble"
                    else None,
                    "address": served.ready().get("address"),  # bumble: found by address
                    "ap_url": softap.get("ap_url"),
                    "lan_url": softap.get("lan_url"),
                    "ssid": softap.get("ssid"),
                }
            )
        return {
            "fleet": self.fleet.name,
            "transport": self.fleet.transport,
            "pid": os.getpid(),
            "bus": bus.get("address"),
            "ble_stack": bus.get("ble_stack", "bluez"),
            "phones": phones,
            "devices": devices,
        }


BUMBLE_LINK = "fleet"  # the in-process link of a bumble fleet


def read_index(root: Path) -> dict[str, Any]:
    """A running (or stopped) fleet's index. Raises ConfigError."""
    path = root / INDEX
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(root), f"no {INDEX}: not a fleet's root (device-sim fleet)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"cannot read the fleet index: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise ConfigError(str(path), "not a fleet index")
    return data


def read_labels(root: Path) -> dict[str, dict[str, Any]]:
    """The fleet's labels (setup codes). Raises ConfigError."""
    path = root / LABELS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"cannot read the fleet's labels: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "not a fleet's labels")
    return data


def _old_label(path: Path, name: str) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        label = json.loads(path.read_text(encoding="utf-8")).get(name)
        if isinstance(label, dict) and "setup_code" in label:
            return {"setup_code": label["setup_code"]}
    raise ConfigError(
        str(path), f"{name} has an identity but its label is lost: remove {name} to make it anew"
    )


def _write_json(path: Path, data: Any, *, private: bool) -> None:
    """Write atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1)
        out.write("\n")
    if not private:
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _ports_in_use(address: str, ports: tuple[int, ...]) -> list[int]:
    """The ``ports`` another socket holds on ``address`` (binding them as the listeners will)."""
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                busy.append(port)
    return busy


def _ble_address(index: int) -> str:
    return f"00:11:22:66:{index // 256:02X}:{index % 256:02X}"


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
