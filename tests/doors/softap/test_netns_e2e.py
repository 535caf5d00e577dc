"""The SoftAP door end to end in real network namespaces: a phone joins the device's access point.

The daemon (``device-sim run --doors softap-only --softap-dnsmasq IFACE``) runs inside the device
namespace with the AP address 192.168.4.1; every phone step runs inside the phone namespace as a
separate process: a DHCP lease with option 114 (udhcpc), captive-portal detection through the
device's catch-all DNS (``device-sim client portal``), then provisioning with the reference client
(``device-sim client provision --softap``): wrong passphrase first (the AP comes back), then the
right one (the outcome is read on the lan listener after the AP went down).

No name or packet leaves the namespaces: DNS is answered by the device's dnsmasq and every HTTP
request goes to 192.168.4.1. Every wait is bounded; the daemon, anything left in the namespaces
and the namespaces themselves are removed even when a step fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from device_sim.apps.virtual.netns import VethLink, netns_unavailable_reason, reap, run
from device_sim.client.dhcp import take_lease
from device_sim.network.scenario import load_scenario

SETUP_CODE = "2468-1357"
AP = "192.168.4.1"
AP_URL = f"http://{AP}"
API_URL = f"{AP_URL}/captive-portal/api"
PROBE_URL = "http://connectivitycheck.gstatic.com/generate_204"
READY_TIMEOUT = 20.0
STEP_TIMEOUT = 30.0  # one phone-side command
STOP_TIMEOUT = 10.0  # SIGTERM -> exit, before SIGKILL


def _unavailable() -> str | None:
    missing = [tool for tool in ("dnsmasq", "udhcpc") if shutil.which(tool) is None]
    reason = (
        f"needs {' and '.join(missing)} (apt install dnsmasq-base udhcpc)"
        if missing
        else netns_unavailable_reason()
    )
    return reason


REASON = _unavailable()
pytestmark = [pytest.mark.requires(REASON), pytest.mark.timeout(90)]

STATE_SCRIPT = (
    "import json, sys, urllib.request; "
    "t = float(sys.argv[2]) if len(sys.argv) > 2 else 5; "
    "print(json.dumps(json.load(urllib.request.urlopen(sys.argv[1], timeout=t))))"
)


async def execute(argv: Sequence[str], *, timeout: float = STEP_TIMEOUT) -> tuple[int, str, str]:
    """Run ``argv``: (exit code, stdout, stderr); killed and reaped after ``timeout``."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except BaseException:
        await reap(proc)
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def exec_in(ns: str, argv: Sequence[str]) -> tuple[int, str, str]:
    """:func:`execute` inside namespace ``ns``."""
    return await execute(VethLink.exec_argv(ns, argv))


async def device_sim_in(ns: str, *args: str, expect_rc: int = 0) -> dict[str, Any]:
    """``python -m device_sim ARGS`` inside ``ns``; its JSON output, asserting its exit code."""
    rc, out, err = await exec_in(ns, [sys.executable, "-m", "device_sim", *args])
    assert rc == expect_rc, f"device-sim {' '.join(args[:2])}: exit {rc}\n{out}\n{err}"
    try:
        data = json.loads(out)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"device-sim {' '.join(args[:2])}: no JSON ({exc})\n{out}\n{err}"
        ) from None
    assert isinstance(data, dict)
    return data


async def public_state(ns: str, url: str) -> dict[str, Any]:
    rc, out, err = await exec_in(ns, [sys.executable, "-c", STATE_SCRIPT, url])
    assert rc == 0, f"GET {url}: exit {rc}\n{err}"
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


async def namespaces() -> set[str]:
    return {
        line.split()[0]
        for line in (await run(["ip", "netns", "list"])).splitlines()
        if line.strip()
    }


async def pids_in(ns: str) -> list[int]:
    try:
        out = await run(["ip", "netns", "pids", ns])
    except Exception:
        return []
    return [int(pid) for pid in out.split()]


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (e.g. this test's tmp_path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


class Daemon:
    """``device-sim run`` inside the device namespace; stderr into ``log_path``."""

    def __init__(self, link: VethLink, state_dir: Path, log_path: Path) -> None:
        self.argv = VethLink.exec_argv(
            link.device_ns,
            [
                sys.executable,
                "-m",
                "device_sim",
                "run",
                "--state-dir",
                str(state_dir),
                "--doors",
                "softap-only",
                "--softap-listen",
                f"{AP}:80",
                "--softap-lan",
                f"{AP}:8081",
                "--captive-mode",
                "portal",
                "--softap-dnsmasq",
                link.device_if,
                "--scenario",
                "typical-home",
                "--zero-delay",
            ],
        )
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    async def start(self) -> dict[str, Any]:
        """Start and wait for the ready line; AssertionError with the daemon's stderr if none."""
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
            )
        assert self.proc.stdout is not None
        line = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_TIMEOUT):
                line = await self.proc.stdout.readline()
        try:
            ready = json.loads(line) if line else {}
        except json.JSONDecodeError:
            ready = {}
        if not isinstance(ready, dict) or not ready.get("ready"):
            why = f"not ready within {READY_TIMEOUT:g} s"
            if self.proc.stdout.at_eof():  # stdout closed: the daemon is exiting
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_TIMEOUT):
                        why = f"exited with status {await self.proc.wait()}"
            await self.stop()
            raise AssertionError(f"daemon {why} (stdout {line!r}); its stderr:\n{self.log()}")
        return ready

    async def stop(self) -> int | None:
        """SIGTERM, SIGKILL after STOP_TIMEOUT; reads stdout to EOF so its pipe gets closed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await proc.wait()
        await reap(proc)  # kills it if SIGTERM was not enough
        return proc.returncode


async def test_phone_joins_softap_detects_portal_and_provisions(tmp_path: Path) -> None:
    started = time.monotonic()
    creds = load_scenario("typical-home").default_credentials
    ssid = creds.ssid.decode()
    assert creds.passphrase
    wrong = "definitely-not-" + creds.passphrase
    state_dir = tmp_path / "device"
    link = VethLink()
    names = {link.device_ns, link.phone_ns}

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(link)

        async def kill_leftovers() -> None:
            # Anything still inside a namespace keeps it alive: kill those pids (all started by
            # this test: the daemon, its dnsmasq, a client) before the link deletes them.
            for ns in names:
                for pid in await pids_in(ns):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)

        stack.push_async_callback(kill_leftovers)

        rc, _, err = await execute(
            [
                sys.executable,
                "-m",
                "device_sim",
                "init",
                "--state-dir",
                str(state_dir),
                "--setup-code",
                SETUP_CODE,
                "--json",
            ]
        )
        assert rc == 0, err

        daemon = Daemon(link, state_dir, tmp_path / "daemon.log")
        stack.push_async_callback(daemon.stop)
        ready = await daemon.start()
        softap = ready["doors"]["softap"]
        assert softap["ap_url"] == AP_URL and softap["up"] is True, softap

        # The phone joins the AP: a DHCP lease from the device's dnsmasq, with option 114.
        lease = await take_lease(link.phone_if, netns=link.phone_ns, timeout=10.0)
        assert ipaddress.IPv4Address(lease.ip) in ipaddress.IPv4Network("192.168.4.0/24")
        assert lease.router == AP
        assert lease.dns == (AP,)
        assert lease.captive_portal_api == API_URL
        link.write_resolv_conf(link.phone_ns, AP)

        # The phone OS probes for a captive portal: the public probe name resolves to the device.
        portal = await device_sim_in(
            link.phone_ns,
            "client",
            "portal",
            "--probe-url",
            PROBE_URL,
            "--api-url",
            lease.captive_portal_api,
            "--json",
        )
        assert portal["resolved"] == [AP], portal
        assert portal["captive"] is True, portal
        assert portal["portal_url"] == f"{AP_URL}/", portal
        assert portal["api"]["captive"] is True, portal

        # Wrong passphrase: the join fails and the AP (listener + dnsmasq) comes back.
        provision = [
            "client",
            "provision",
            "--softap",
            AP_URL,
            "--ssid",
            ssid,
            "--setup-code",
            SETUP_CODE,
            "--timeout",
            "20",
            "--json",
        ]
        failed = await device_sim_in(link.phone_ns, *provision, "--passphrase", wrong, expect_rc=1)
        assert failed["state"] == "failed", failed
        assert failed["code_name"] == "WRONG_CREDENTIALS", failed
        assert failed["transport"] == "softap", failed

        again = await device_sim_in(
            link.phone_ns,
            "client",
            "portal",
            "--probe-url",
            PROBE_URL,
            "--api-url",
            API_URL,
            "--json",
        )
        assert again["resolved"] == [AP] and again["captive"] is True, again
        state = await public_state(link.phone_ns, f"{AP_URL}/api/v1/state")
        assert state["state"] == "failed", state
        assert state["code_name"] == "WRONG_CREDENTIALS", state

        # Right passphrase: online; the AP goes down and the outcome arrives over the lan URL.
        online = await device_sim_in(link.phone_ns, *provision, "--passphrase", creds.passphrase)
        assert online["state"] == "online", online
        assert online["transport"] == "softap", online
        assert online["device"]["lan_url"] == f"{AP_URL}:8081", online
        # The AP stays off the air: its socket holds the request unanswered (a phone asking
        # an AP that is gone gets no answer), it is not served.
        rc, _, err = await exec_in(
            link.phone_ns, [sys.executable, "-c", STATE_SCRIPT, f"{AP_URL}/api/v1/state", "1"]
        )
        assert rc != 0 and "timed out" in err, "the AP listener is still up after online"

        code = await daemon.stop()
        assert code == 0, f"daemon exit {code}; its stderr:\n{daemon.log()}"
        assert not await pids_in(link.device_ns), "processes left in the device namespace"

    assert not names & await namespaces()
    assert not pids_mentioning(str(tmp_path)), "dnsmasq/daemon processes of this test remain"
    assert not pids_mentioning(link.phone_if), "udhcpc of this test remains"
    assert time.monotonic() - started < 60
