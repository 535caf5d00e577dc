"""The daemon on the NetworkManager backend, end to end: BlueZoo and the dbusmock NetworkManager on
one private system bus, the real daemon subprocess, the reference client over BLE.

The mock scripts each activation's device states and reason; every scripted failure must reach
the phone as its specific code, and a success as online with the profile saved.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from device_sim.doors.native.flow import provision
from device_sim.network.base import Security
from device_sim.network.nm.defs import Connectivity
from device_sim.network.nm.defs import DeviceStateReason as R
from device_sim.network.simulated import CertificateAuthority, server_ssl_context
from device_sim.security.secret import Secret
from device_sim.testing.nm_mock import NMMock

pytestmark = [pytest.mark.ble, pytest.mark.asyncio(loop_scope="session")]

SSID, PASSPHRASE = b"Home", "correct horse battery"


class Cloud:
    """The TLS endpoint the daemon verifies after a join: 127.0.0.1, a cert for localhost."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = CertificateAuthority("device-sim e2e cloud CA")
        self.ca_file = tmp_path / "cloud-ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Cloud:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        self.server = await asyncio.start_server(
            serve, "127.0.0.1", 0, ssl=server_ssl_context(*self.ca.issue("localhost"))
        )
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest_asyncio.fixture(loop_scope="session")
async def nm(vble, tmp_path: Path) -> AsyncIterator[NMMock]:
    async with NMMock(vble.bus_address, log_path=tmp_path / "nm-mock.log") as mock:
        dev = await mock.add_wifi_device("wlan0")
        await mock.add_access_point(dev, "home", SSID, strength=80, security=Security.WPA2_PSK)
        await mock.add_access_point(
            dev,
            "modern",
            b"Modern",
            bssid="02:00:00:00:00:02",
            frequency=5180,
            strength=60,
            security=Security.WPA3_SAE,
        )
        yield mock


async def _start(device, nm: NMMock, cloud: Cloud) -> dict:
    return await device.start(
        "engineering-wifi",
        "--backend",
        "networkmanager",
        "--interface",
        "wlan0",
        "--cloud-host",
        "localhost",
        "--cloud-port",
        str(cloud.port),
        "--cloud-ca",
        str(cloud.ca_file),
    )


async def test_onboards_through_networkmanager(device, nm, setup_code, tmp_path) -> None:
    async with Cloud(tmp_path) as cloud:
        await _start(device, nm, cloud)
        await nm.on_activate("activated", need_auth=True, after_reply=True)
        result = await provision(
            device.profile,
            device.target(),
            setup_code=setup_code,
            ssid=SSID,
            passphrase=Secret(PASSPHRASE),
        )
    assert (result["state"], result["code_name"]) == ("online", "OK")
    phases = [e["phase"] for e in result["events"]]
    assert {"authenticating", "dhcp", "tls"} <= set(phases)
    ours = [await nm.connection(p) for p in await nm.connections()]
    assert [c["unsaved"] for c in ours] == [False]  # saved only after the checks passed


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (R.NO_SECRETS, "WRONG_CREDENTIALS"),
        (R.SUPPLICANT_DISCONNECT, "WRONG_CREDENTIALS"),
        (R.SSID_NOT_FOUND, "NETWORK_NOT_FOUND"),
        (R.SUPPLICANT_TIMEOUT, "ASSOCIATION_TIMEOUT"),
        (R.IP_CONFIG_UNAVAILABLE, "NO_DHCP_LEASE"),
        (R.DHCP_FAILED, "NO_DHCP_LEASE"),
        (R.CONFIG_FAILED, "JOIN_FAILED"),
    ],
)
async def test_each_failure_reason_reaches_the_phone_as_its_code(
    device, nm, setup_code, tmp_path, reason, code
) -> None:
    async with Cloud(tmp_path) as cloud:
        await _start(device, nm, cloud)
        await nm.on_activate(("failed", int(reason)), after_reply=True)
        result = await provision(
            device.profile,
            device.target(),
            setup_code=setup_code,
            ssid=SSID,
            passphrase=Secret(PASSPHRASE),
        )
    assert (result["state"], result["code_name"]) == ("failed", code)
    assert result["next_step"] == device.profile.code(code).next_step
    assert await nm.connections() == []  # a failed join leaves no stored profile behind
    if code == "JOIN_FAILED":
        assert "CONFIG_FAILED" in result["detail"]  # the raw NetworkManager reason is kept


async def test_a_portal_after_activation_is_a_captive_portal(
    device, nm, setup_code, tmp_path
) -> None:
    async with Cloud(tmp_path) as cloud:
        await _start(device, nm, cloud)
        await nm.on_activate("activated", after_reply=True)
        await nm.set_connectivity(Connectivity.PORTAL)
        result = await provision(
            device.profile,
            device.target(),
            setup_code=setup_code,
            ssid=SSID,
            passphrase=Secret(PASSPHRASE),
        )
    assert (result["state"], result["code_name"]) == ("failed", "CAPTIVE_PORTAL")


async def test_the_daemon_reports_its_preflight_findings_as_events(device, nm, tmp_path) -> None:
    """On NetworkManager the daemon runs the doctor's preflight before it opens the device and
    reports each finding as a `preflight` event with its code and fix: the same findings the
    doctor gives for that configuration on that bus."""
    from dbus_fast import Variant

    from device_sim.apps.doctor import PREFLIGHT, run_checks
    from device_sim.config import DaemonOptions
    from device_sim.doors.ble.options import BleOptions
    from device_sim.doors.supervisor import DoorOptions, Policy
    from device_sim.network.base import BackendKind
    from device_sim.network.options import NetworkOptions

    # a finding every machine has: NetworkManager 1.14 (too old)
    await nm.update_manager({"Version": Variant("s", "1.14.0")})
    async with Cloud(tmp_path) as cloud:
        ready = await _start(device, nm, cloud)
    config = DaemonOptions(
        state_dir=device.state_dir,
        network=NetworkOptions(backend=BackendKind.NETWORK_MANAGER, interface="wlan0"),
        ble=BleOptions(adapter=ready["adapter"]),
        doors=DoorOptions(policy=Policy.BLE_ONLY),
    )
    doctor = await run_checks(config, bus_address=device.vb.bus_address, only=PREFLIGHT)
    expected = {(r.name, r.code.name) for r in doctor if not r.ok and r.code is not None}
    lines = (device.state_dir / "onboarding.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    reported = [e for e in events if e["phase"] == "preflight"]
    assert {(e["data"]["check"], e["code_name"]) for e in reported} == expected
    assert {r.name for r in doctor} == set(PREFLIGHT)
    assert ("networkmanager", "NETWORKMANAGER_TOO_OLD") in expected
    for event in reported:
        assert event["data"]["fix"] and event["code"] > 500  # device-category findings
        assert event["detail"].startswith(event["data"]["check"] + ": ")
