"""device-sim fleet: many devices in one event loop, onboarded together by the phone side.

In process (the fleet and the phones in the test's loop) and through the command line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import stat
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from device_sim.apps.fleet.host import FleetHost, read_index, read_labels
from device_sim.apps.fleet.model import Fleet, Group, fleet_of
from device_sim.apps.fleet.phones import provision_fleet
from device_sim.apps.virtual.harness import BUS_ENV
from device_sim.config import resolve_options
from device_sim.control import control_request
from device_sim.profile import load_profile
from device_sim.testing.contracts import holds

WAIT = 60.0


def base_options():
    base = resolve_options(None, environ={})
    return dataclasses.replace(base, network=dataclasses.replace(base.network, zero_delay=True))


async def test_a_softap_fleet_onboards_together(tmp_path: Path) -> None:
    fleet = Fleet(
        "mixed",
        "softap",
        3,
        (
            Group(3, "engineering-wifi", "native"),
            Group(1, "dns-failure", "native"),
            Group(1, "engineering-wifi", "esp"),
        ),
    )
    async with AsyncExitStack() as stack:
        host = FleetHost(fleet, tmp_path / "fleet", base_options())
        ready = await host.start(stack)
        assert ready["devices"] == 5 and ready["transport"] == "softap"
        index = read_index(tmp_path / "fleet")
        holds("fleet-index", index)  # the shipped contract (device_sim/data/contracts/)
        urls = [d["ap_url"] for d in index["devices"]]
        assert len(set(urls)) == 5 and all(u.startswith("http://127.90.") for u in urls)
        labels = read_labels(tmp_path / "fleet")
        assert stat.S_IMODE(os.stat(tmp_path / "fleet" / "labels.json").st_mode) == 0o600
        assert len({label["setup_code"] for label in labels.values()}) == 5  # one code each
        assert "setup_code" not in json.dumps(index)  # the index holds nothing secret

        done = await asyncio.wait_for(
            provision_fleet(load_profile(), tmp_path / "fleet", timeout=30), WAIT
        )
        by_name = {d["name"]: d for d in done["devices"]}
        assert by_name["dev-0004"]["code_name"] == "DNS_FAILURE"  # its own world
        assert [by_name[n]["state"] for n in ("dev-0001", "dev-0002", "dev-0003", "dev-0005")] == [
            "online"
        ] * 4
        assert done["summary"]["online"] == 4 and done["summary"]["not_online"] == {
            "DNS_FAILURE": 1
        }
        # Each device answers on its own control socket.
        status = await control_request(tmp_path / "fleet" / "dev-0004", "status", {})
        assert status["code_name"] == "DNS_FAILURE"

    # Started again: the same identities (and labels), not new ones.
    async with AsyncExitStack() as stack:
        again = FleetHost(fleet, tmp_path / "fleet", base_options())
        await again.start(stack)
        assert read_labels(tmp_path / "fleet") == labels
        assert [d["device_id"] for d in read_index(tmp_path / "fleet")["devices"]] == [
            d["device_id"] for d in index["devices"]
        ]


async def test_a_squatted_address_moves_one_device_and_the_fleet_goes_on(tmp_path: Path) -> None:
    """A local user binds dev-0002's SoftAP port before the fleet starts: that one device
    serves on a spare address (the index says which), the others on their own, all onboard."""
    fleet = fleet_of(3, "softap", seed=5)
    squatted = fleet.members()[1].address
    async with AsyncExitStack() as stack:
        squatter = stack.enter_context(socket.socket())
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((squatted, 8380))
        squatter.listen(1)
        host = FleetHost(fleet, tmp_path / "fleet", base_options())
        assert (await host.start(stack))["devices"] == 3
        urls = {d["name"]: d["ap_url"] for d in read_index(tmp_path / "fleet")["devices"]}
        assert urls["dev-0001"] == f"http://{fleet.members()[0].address}:8380"
        assert squatted not in urls["dev-0002"] and urls["dev-0002"].startswith("http://127.90.")
        done = await asyncio.wait_for(
            provision_fleet(load_profile(), tmp_path / "fleet", timeout=30), WAIT
        )
        assert done["summary"]["online"] == 3, done["summary"]


@pytest.mark.ble
async def test_a_ble_fleet_of_twelve_onboards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve devices: hci1 and hci10-hci12 exist side by side, which bless alone confuses.
    The phones are another process (bleak keeps one bus connection per event loop, which a
    test's loop must not inherit from another test's bus)."""
    monkeypatch.delenv(BUS_ENV, raising=False)  # the fleet starts its own bus
    async with AsyncExitStack() as stack:
        host = FleetHost(fleet_of(12, "ble"), tmp_path / "fleet", base_options(), phones=4)
        ready = await host.start(stack)
        assert len(ready["phones"]) == 4
        index = read_index(tmp_path / "fleet")
        holds("fleet-index", index)
        assert len({d["adapter"] for d in index["devices"]}) == 12
        phones = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "device_sim",
            "client",
            "provision",
            "--fleet",
            str(tmp_path / "fleet"),
            "--json",
            "--timeout",
            "30",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(phones.communicate(), WAIT)
        done = json.loads(out)
        assert done["summary"]["online"] == 12, [
            (d["name"], d["code_name"], d["detail"])
            for d in done["devices"]
            if d["state"] != "online"
        ]
        assert phones.returncode == 0, err.decode()[-800:]


def test_the_command_line_fleet(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    env = {k: v for k, v in os.environ.items() if k != BUS_ENV}
    fleet = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_sim",
            "fleet",
            "--root",
            str(root),
            "--count",
            "3",
            "--zero-delay",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert fleet.stdout is not None
        ready = json.loads(fleet.stdout.readline())
        assert ready["ready"] is True and ready["devices"] == 3
        provision = subprocess.run(
            [
                sys.executable,
                "-m",
                "device_sim",
                "client",
                "provision",
                "--fleet",
                str(root),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert provision.returncode == 0, provision.stderr[-800:]
        assert json.loads(provision.stdout)["summary"]["online"] == 3
        ctl = subprocess.run(
            [sys.executable, "-m", "device_sim", "ctl", "--fleet", str(root), "--json", "status"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert ctl.returncode == 0, ctl.stderr
        states = json.loads(ctl.stdout)
        assert sorted(states) == ["dev-0001", "dev-0002", "dev-0003"]
        assert {s["state"] for s in states.values()} == {"online"}
        # watch follows every device of the fleet (ROOT), each line naming its device.
        watch = subprocess.run(
            [
                sys.executable,
                "-m",
                "device_sim",
                "watch",
                "--state-dir",
                str(root),
                "--json",
                "--until-outcome",
                "--timeout",
                "30",
                "--last",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert watch.returncode == 0, watch.stderr  # every device's outcome: online
        named = {json.loads(line).get("device") for line in watch.stdout.splitlines()}
        assert named == {"dev-0001", "dev-0002", "dev-0003"}
        one = subprocess.run(
            [
                sys.executable,
                "-m",
                "device_sim",
                "ctl",
                "--fleet",
                str(root),
                "--device",
                "dev-0009",
                "status",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert one.returncode == 2 and "no dev-0009 in the fleet" in one.stderr
        assert "Traceback" not in one.stderr
    finally:
        fleet.terminate()
        _, err = fleet.communicate(timeout=30)
    assert fleet.returncode == 0, err[-800:]
    assert "Traceback" not in err


@pytest.mark.requires_tools(modules=("bumble",))
async def test_a_bumble_fleet_onboards_without_a_bus(tmp_path: Path) -> None:
    """Twenty devices on one in-process link of bumble's virtual controllers (the indexed link:
    a CONNECT_IND to its advertiser, advertisements to scanners), onboarded by a phone process
    through two controllers the fleet serves over TCP."""
    base = base_options()
    base = dataclasses.replace(base, ble=dataclasses.replace(base.ble, stack="bumble"))
    async with AsyncExitStack() as stack:
        host = FleetHost(fleet_of(20, "ble"), tmp_path / "fleet", base, phones=2)
        ready = await host.start(stack)
        index = read_index(tmp_path / "fleet")
        holds("fleet-index", index)
        assert index["ble_stack"] == "bumble" and index["bus"] is None
        assert all(p.startswith("tcp-client:127.0.0.1:") for p in ready["phones"])
        assert len({d["address"] for d in index["devices"]}) == 20  # one address each
        env = {k: v for k, v in os.environ.items() if k != BUS_ENV}
        phones = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "device_sim", "client", "provision", "--fleet",
            str(tmp_path / "fleet"), "--json", "--timeout", "30",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(phones.communicate(), WAIT)
        assert phones.returncode == 0, err.decode()[-800:]
        done = json.loads(out)
        assert done["summary"]["online"] == 20, done["summary"]
