"""The public Python API (issue 26, item 2), used as an app team uses it: devices in their own
processes over BlueZoo and the SoftAP, faults, factory reset, waits, the reference client as a
call, fleets, and errors that say what is wrong. The public names are those docs/api.md lists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim import api
from device_sim.api import (
    Code,
    ConfigError,
    EmulatedDevice,
    EnterpriseSignIn,
    Fleet,
    State,
    VirtualBle,
    provision,
)
from device_sim.testing.cli import clean_env
from device_sim.testing.contracts import holds

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_names_are_the_documented_ones() -> None:
    page = (ROOT / "docs" / "api.md").read_text()
    table = page.split("<!-- public-names")[1].split("\n\n")[0]
    documented = {
        name for row in table.splitlines() if row.startswith("| `")
        for name in re.findall(r"`([A-Za-z_]+)`", row.split("|")[1])
    }  # fmt: skip
    assert documented == set(api.__all__)


def test_importing_the_api_loads_nothing_heavy() -> None:
    heavy = ("bleak", "bless", "dbus_fast", "aiohttp", "device_sim.doors.supervisor")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, device_sim.api; "
         f"print([m for m in {heavy!r} if m in sys.modules])"],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


async def test_a_softap_device_onboards_fails_on_a_fault_and_resets() -> None:
    async with EmulatedDevice(transport="softap", setup_code="11112222") as device:
        assert device.setup_code == "1111-2222" and device.label is not None
        assert device.name == device.label.softap_ssid
        assert device.softap_url is not None and device.softap_url.startswith("http://127.0.0.1:")
        holds("ready", device.ready)
        result = await device.provision()
        holds("provision-result", result)
        assert result["state"] == "online"
        assert (await device.wait_for(State.ONLINE, code=Code.OK))["state"] == "online"

        await device.add_fault("no-dns", "dns")
        assert [f["name"] for f in await device.faults()] == ["no-dns"]
        assert await device.factory_reset() == "unprovisioned"  # the doors reopen
        failed = await device.provision()
        assert (failed["state"], failed["code_name"]) == ("failed", "DNS_FAILURE")
        assert failed["message"] and failed["next_step"]
        events = device.events(last=5)
        recent = [await anext(events) for _ in range(5)]
        await events.aclose()
        for event in recent:
            holds("event", event)
        assert any(e["code_name"] == "DNS_FAILURE" for e in recent)

        await device.remove_fault("no-dns")
        assert (await device.provision())["state"] == "online"  # the next attempt is healthy
        assert await device.factory_reset() == "unprovisioned"
        status = await device.status()
        assert status["state"] == "unprovisioned" and status["saved_networks"] == []
        phases = [e["phase"] for e in device.timeline()]
        assert phases.count("online") == 2 and "dns" in phases, phases
        state_dir, pid = device.state_dir, device.pid
        assert pid is not None
    assert not state_dir.exists() and device.pid is None
    assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


async def test_wait_for_says_what_it_last_saw() -> None:
    async with EmulatedDevice(transport="softap") as device:
        with pytest.raises(TimeoutError, match=r"state=online.*last: unprovisioned OK"):
            await device.wait_for("online", timeout=0.5)


async def test_arguments_are_checked_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match="ble or softap"):
        EmulatedDevice(transport="usb")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="give a VirtualBle"):
        EmulatedDevice(transport="ble")
    with pytest.raises(ConfigError, match="unknown personality"):
        EmulatedDevice(transport="softap", personality="zigbee")
    with pytest.raises(ConfigError, match="does not run over softap"):
        EmulatedDevice(transport="softap", personality="improv")
    with pytest.raises(ConfigError, match="setup_code"):
        EmulatedDevice(transport="softap", setup_code="12")
    with pytest.raises(ConfigError, match="not found"):
        async with EmulatedDevice(transport="softap", scenario="no-such-world"):
            pass
    with pytest.raises(ConfigError, match="required"):
        await provision(ssid="x", softap_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="unknown 'colour'"):
        await provision(ssid="x", setup_code="1234-5678", options={"colour": "red"})


async def test_a_wrong_setup_code_is_the_devices_refusal(tmp_path: Path) -> None:
    async with EmulatedDevice(transport="softap", state_dir=tmp_path / "dev") as device:
        assert device.softap_url is not None
        refused = await provision(
            ssid="EngineeringLab", passphrase="x" * 8, setup_code="0000-0000",
            softap_url=device.softap_url, timeout=10,
        )  # fmt: skip
        holds("provision-result", refused)
        assert (refused["state"], refused["code_name"]) == (None, "WRONG_SETUP_CODE")
        assert refused["next_step"] and "0000" not in str(refused)
        assert (await device.status())["state"] == "unprovisioned"
    assert (tmp_path / "dev" / "device.sqlite3").exists()  # a given state directory stays


@pytest.mark.ble
async def test_ble_devices_of_two_personalities_on_one_virtual_bus() -> None:
    async with VirtualBle(phones=1) as bus:
        assert bus.phones == ["hci1"]
        async with EmulatedDevice(bus, scenario="no-dhcp") as device:
            assert device.ready["local_name"] == device.name
            assert device.address is not None and device.address.startswith("00:11:22:33:66:")
            result = await device.provision()
            assert (result["state"], result["code_name"]) == ("failed", "NO_DHCP_LEASE")
        # ESP's phone side reads its proof of possession from the label the API keeps.
        async with EmulatedDevice(bus, personality="esp") as esp:
            assert esp.label is not None and "esp_qr" in esp.label.extra
            assert (await esp.provision())["state"] == "online"
        # A BLE fleet on the same bus takes the adapter indices nobody uses yet.
        async with Fleet(2, transport="ble", bus=bus) as fleet:
            assert all(m.local_name for m in fleet.members)
            assert (await fleet.provision_all())["summary"]["online"] == 2


async def test_a_fleet_onboards_every_member() -> None:
    async with Fleet(3, transport="softap") as fleet:
        assert [m.name for m in fleet.members] == ["dev-0001", "dev-0002", "dev-0003"]
        assert all(m.setup_code and m.softap_url for m in fleet.members)
        root = fleet.root
        holds("fleet-index", __import__("json").loads((root / "fleet.json").read_text()))
        done = await fleet.provision_all()
        assert done["summary"]["online"] == 3, done
    assert not root.exists()


async def test_a_hidden_wpa3_network_with_and_without_the_security_field() -> None:
    async with EmulatedDevice(transport="softap", scenario="hidden-wpa3") as device:
        assert device.ready["state"] == "unprovisioned"
        wrong = await device.provision(security="wpa2-psk")  # the old bug's guess, sent
        assert (wrong["state"], wrong["code_name"]) == ("failed", "SECURITY_MISMATCH")
        result = await device.provision()  # none sent: SAE first
        assert result["state"] == "online", result
        tried = [
            e["data"].get("key_mgmt") for e in device.timeline() if e["phase"] == "authenticating"
        ]
        assert tried == ["wpa-psk", "sae"]
    with pytest.raises(ConfigError, match="no security field"):
        await provision(ssid="x", security="owe", personality="improv")


async def test_an_enterprise_device_onboards_with_the_scenarios_sign_in_or_the_apps() -> None:
    async with EmulatedDevice(transport="softap", scenario="enterprise-peap") as device:
        wrong = EnterpriseSignIn(
            "peap", "alice@corp.example", password="not-the-password",
            ca_cert=EnterpriseSignIn.simulated_ca("world"), domain="corp.example",
        )  # fmt: skip
        result = await device.provision("Corp", eap=wrong)
        assert (result["state"], result["code_name"]) == ("failed", "EAP_CREDENTIALS_REJECTED")
        assert "not-the-password" not in repr(wrong) and "not-the-password" not in str(result)
        result = await device.provision()  # the scenario's own sign-in (PEAP, the world's CA)
        assert result["state"] == "online", result
        shown = [e["data"].get("eap") for e in device.timeline() if e["phase"] == "credentials"]
        assert shown[-1]["method"] == "peap" and "password" not in shown[-1]
    cert, key = EnterpriseSignIn.simulated_client("sensor-0042@devices.corp.example")
    assert b"BEGIN CERTIFICATE" in cert and "PRIVATE KEY" in key
    with pytest.raises(ConfigError, match="no enterprise"):
        await provision(ssid="Corp", eap=EnterpriseSignIn("tls", "x"), personality="improv")
    with pytest.raises(ConfigError, match="leap"):
        await provision(ssid="Corp", eap=EnterpriseSignIn("leap", "x"))


@pytest.mark.ble
async def test_improv_and_esp_answer_an_enterprise_network_as_their_protocols_allow() -> None:
    """Neither ESP's wifi_config (SSID and passphrase) nor Improv (no security field) can carry
    802.1X: each answers in its own protocol, the specific code on the diagnostics side."""
    ssid, passphrase = "Grand Hotel Staff", "corp-passphrase"  # an 802.1X network
    async with EmulatedDevice(
        transport="softap", personality="esp", scenario="difficult-network"
    ) as esp:
        result = await esp.provision(ssid, passphrase)
        assert (result["esp_state"], result["fail_reason"]) == ("ConnectionFailed", "AuthError")
        assert result["diagnostics"]["code_name"] == "UNSUPPORTED_SECURITY"
    async with (
        VirtualBle(phones=1) as bus,
        EmulatedDevice(
            bus,
            personality="improv",
            scenario="difficult-network",
            options=["--improv-auth", "none"],
        ) as improv,
    ):
        result = await improv.provision(ssid, passphrase)
        assert result["improv_error"] == "UNABLE_TO_CONNECT"
        assert result["code_name"] == "UNSUPPORTED_SECURITY"
