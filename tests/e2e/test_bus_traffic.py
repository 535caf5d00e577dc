"""What one BLE onboarding asks of the private bus, watched with dbus-monitor.

BlueZoo confirmed every relayed value, notifications included, with a ``Confirm`` call the
peripheral answers with an error (interop quirk 8, device_sim/apps/virtual/bluezoo_launch.py); BlueZ
confirms indications only. The device notifies only characteristics a phone subscribed to, and
does not re-register its advertisement while a phone is connected. All checked on the wire.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import pytest

from device_sim.doors.native.flow import provision
from device_sim.security.secret import Secret

pytestmark = [
    pytest.mark.ble,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.requires_tools("dbus-monitor"),
]

WAIT = 10.0


async def test_an_onboarding_sends_no_confirm_for_notifications(device, setup_code) -> None:
    await device.start("engineering-wifi")
    monitor = await asyncio.create_subprocess_exec(
        "dbus-monitor",
        "--address",
        device.vb.bus_address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert monitor.stdout is not None
    try:
        async with asyncio.timeout(WAIT):  # capturing once it has lost its name
            while b"member=NameLost" not in await monitor.stdout.readline():
                pass
        result = await provision(
            device.profile,
            device.target(phone=1),
            setup_code=setup_code,
            ssid=b"DeviceSim-Lab",
            passphrase=Secret("lab-bench-passphrase"),
        )
    finally:
        monitor.terminate()
        captured, _ = await asyncio.wait_for(monitor.communicate(), WAIT)
    assert (result["state"], result["code_name"]) == ("online", "OK"), result
    # The notifications did travel on this bus (the phone read its events from them) ...
    assert captured.count(b"member=PropertiesChanged") >= 10
    # ... and none was followed by a Confirm (the characteristics only notify).
    assert b"member=Confirm" not in captured
    # The device's own GATT objects (not BlueZ's /org/bluez/hciN/...) changed a value only on
    # the one characteristic the phone subscribed to (its responses).
    changed = Counter(
        re.findall(
            r"path=(/org/bluez/(?!hci)\S+); interface=org.freedesktop.DBus.Properties; "
            r"member=PropertiesChanged\n   string \"org.bluez.GattCharacteristic1\"",
            captured.decode(errors="replace"),
        )
    )
    assert len(changed) == 1, changed
    # The advertisement was left alone while the phone was connected (at most one refresh,
    # after it left).
    assert captured.count(b"member=RegisterAdvertisement") <= 1


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
async def test_the_daemon_unregisters_its_advertisement_when_stopped(
    device, signal_name: str
) -> None:
    """On BlueZ an advertisement outlives a client that hangs instead of leaving the bus, and
    leaked ones fill the adapter's slots (ADVERTISING_SLOTS_FULL): the daemon unregisters its
    own on SIGTERM (systemd) and Ctrl-C, seen as its UnregisterAdvertisement call on the wire."""
    import signal

    await device.start("engineering-wifi")
    monitor = await asyncio.create_subprocess_exec(
        "dbus-monitor",
        "--address",
        device.vb.bus_address,
        "interface='org.bluez.LEAdvertisingManager1'",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert monitor.stdout is not None and device.daemon is not None
    proc = device.daemon.proc
    assert proc is not None
    try:
        async with asyncio.timeout(WAIT):  # capturing once it has lost its name
            while b"member=NameLost" not in await monitor.stdout.readline():
                pass
        proc.send_signal(getattr(signal, signal_name))
        async with asyncio.timeout(WAIT):
            status = await proc.wait()
    finally:
        monitor.terminate()
        captured, _ = await asyncio.wait_for(monitor.communicate(), WAIT)
    assert status == 0, status  # `run` stops cleanly on both (docs/contracts.md)
    assert b"member=UnregisterAdvertisement" in captured, captured.decode(errors="replace")[-800:]
