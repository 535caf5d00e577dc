"""Emulated devices as Locust users: each user is one factory-made unit activating itself with
the cloud (zero-touch, over mutual TLS with its factory certificate), so Locust's own engine
spreads thousands of devices over processes and machines (``--processes N``, or a master and
workers) and reports the cloud's activation path under load.

    locust -f device_sim/apps/loadtest/locustfile.py --host https://127.0.0.1:8443 \\
        --headless --processes 2 -u 200 -r 50 --run-time 5m --csv out/activation

Environment:

* ``DEVICE_SIM_UNITS``: the factory's output directory (``device-sim factory batch --out``);
  every ``<serial>/state`` in it with ``unit.json`` and its key and certificate is one device.
* ``DEVICE_SIM_CLOUD_CA``: the cloud's ``server-ca.pem``.
* ``DEVICE_SIM_LOAD_WORKERS``: how many worker processes share the units (default: Locust's
  ``--processes``, else 1). Worker *i* takes units *i*, *i + N*, *i + 2N*, ...: no two users
  anywhere activate the same unit.

Each user activates its unit once (a fresh request id, as a device does after a factory reset
or on its first boot), marks the request a failure unless the cloud bound the unit in
zero-touch mode, then stops; a process whose units are all done quits, and the run ends when
the last one has (``--run-time`` bounds it). The request body and the client certificate chain
come from the device's own activation client
(:class:`device_sim.core.activation.CloudActivator`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, constant, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

from device_sim.apps.loadtest.units import CA_ENV, REQUEST_NAME, UNITS_ENV, WORKERS_ENV, unit_dirs
from device_sim.core.activation import ActivationConfig, CloudActivator
from device_sim.core.store import CloudBinding

FIRST_BOOT = CloudBinding(
    status="none",
    mode=None,
    request_id=None,
    account=None,
    generation=None,
    token=None,
    device_user=None,
    device_password=None,
    after_reset=False,
    in_account=None,
    in_claim_token=None,
    in_device_password=None,
)


class _Share:
    """This process's units, handed out one per user (users start on several greenlets), and
    how many of them have yet to finish: the last one ends this process's run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._units: Iterator[Path] | None = None
        self.left = 0
        self.finishing = False  # this process is on its way out

    def take(self, environment: Any) -> Path | None:
        with self._lock:
            if self._units is None:
                root = Path(os.environ[UNITS_ENV])
                runner = environment.runner
                index = int(getattr(runner, "worker_index", 0) or 0)
                options = environment.parsed_options
                processes = int(getattr(options, "processes", 0) or 0) if options else 0
                count = int(os.environ.get(WORKERS_ENV) or (processes if processes > 0 else 1))
                mine = unit_dirs(root)[index::count]
                self.left = len(mine)
                self._units = iter(mine)
            return next(self._units, None)

    def done(self) -> bool:
        """One unit finished; True when it was this process's last."""
        with self._lock:
            self.left -= 1
            return self.left <= 0


SHARE = _Share()


class DeviceUser(HttpUser):
    """One emulated device: its unit's identity, certificate and key; one activation."""

    wait_time = constant(0)

    def on_start(self) -> None:
        unit = SHARE.take(self.environment)
        if unit is None:  # this process's units are all taken
            if SHARE.left <= 0:  # and done (or it had none): this process's run is over
                _finish(self.environment)
            raise StopUser()
        info = json.loads((unit / "unit.json").read_text())
        ca = os.environ.get(CA_ENV)
        self.activator = CloudActivator(
            ActivationConfig("zero-touch", self.host or "", Path(ca) if ca else None),
            unit,
            str(info["device_id"]),
        )
        self.serial = str(info["serial"])
        self.verify: str | bool = ca if ca else True

    @task
    def activate(self) -> None:
        body = self.activator.request_body(FIRST_BOOT, self.activator.new_request_id())
        with self.client.post(
            "/v1/activate",
            json=body,
            cert=(str(self.activator.client_chain()), str(self.activator.key)),
            verify=self.verify,
            name=REQUEST_NAME,
            catch_response=True,
        ) as resp:
            try:
                data = resp.json()
            except ValueError:
                data = {}
            if resp.status_code != 200:
                resp.failure(f"{self.serial}: {resp.status_code} {data.get('error', '')}")
            elif data.get("mode") != "zero-touch" or not data.get("credentials"):
                resp.failure(f"{self.serial}: not bound in zero-touch mode")
            else:
                resp.success()
        if SHARE.done():  # every unit of this process activated: its part of the run is over
            _finish(self.environment)
        raise StopUser()  # a device activates once


def _finish(environment: Any) -> None:
    """End this process's part of the run. A worker first lets its next report carry the last
    activations to the master (a worker that quits sends none), then quits; the master ends
    the run when its last worker has quit."""
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        runner.quit()
        return
    if SHARE.finishing:
        return
    SHARE.finishing = True

    def after_report(client_id: str, data: dict[str, Any]) -> None:
        gevent.spawn(runner.quit)  # runs once this report has been sent

    environment.events.report_to_master.add_listener(after_report)
