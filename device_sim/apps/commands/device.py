"""``device-sim init`` and ``device-sim run``: the device's identity and its daemon.

``run`` reads :class:`~device_sim.config.DaemonOptions` from the config file (or the built-in
defaults), the ``DEVICE_SIM_*`` variables and the flags, in that order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...security.secret import Secret


def init(args: argparse.Namespace) -> int:
    """Create the identity in ``--state-dir`` and print the label's content once.

    Raises:
        ValueError: ``--setup-code`` is not 8 digits.
        StoreError: the state directory cannot be opened or already holds an identity.
        ConfigError: ``--scenario`` is unknown or gives the device no history.
    """
    label = new_identity(args.state_dir, args.setup_code, getattr(args, "scenario", None))
    if args.json:
        print(json.dumps(label))
        return 0
    print(
        f"device id:  {label['device_id']}\nsetup code: {label['setup_code']}  (print it on the "
        "label; the device keeps only its SRP verifier)\n"
        f"setup Wi-Fi (SoftAP): {label['softap_ssid']}  passphrase {label['softap_passphrase']}\n"
        f"Wi-Fi QR:   {label['softap_wifi_qr']}"
    )
    for key, value in label.items():
        if key not in _SHOWN:
            print(f"{key}: {value}")
    return 0


_SHOWN = {"device_id", "setup_code", "softap_ssid", "softap_passphrase", "softap_wifi_qr"}


def new_identity(state_dir: Path, code: Secret | None, scenario: str | None) -> dict[str, str]:
    """A new identity in ``state_dir`` (``code``, or a random setup code) and, with
    ``scenario``, the scenario's history; returns the label's content (``init --json``, the
    public API's :class:`~device_sim.api.Label`), which is shown once: the device keeps the
    setup code only as a verifier.

    Raises ConfigError (an unknown scenario, or one without history: before any file is made),
    StoreError (the directory cannot be opened or already holds an identity)."""
    from ...core.identity import create_identity
    from ...core.store import DeviceStore
    from ...doors import registry
    from ...profile import load_profile
    from ...security.ap_credentials import wifi_qr_string
    from ...security.setup_code import format_setup_code

    profile = load_profile()
    history = None
    if scenario:
        from ...network.scenario import load_scenario

        history = load_scenario(scenario).history
        if history is None:
            raise ConfigError("--scenario", f"{scenario} gives the device no history")
    with DeviceStore(state_dir) as store:
        identity, setup_code = create_identity(
            store, code, ap_passphrase_length=profile.softap.passphrase_length
        )
        local_name = profile.advertising.local_name_pattern.format(short_id=identity.short_id)
        labels = registry.make_labels(store, profile, local_name)  # the personalities' lines
        if history is not None:  # the scenario's past: its saved networks, online on the first
            from ...core.store import Credentials

            store.remember_history(
                [
                    Credentials(n.ssid, Secret(n.passphrase) if n.passphrase else None, n.hidden)
                    for n in history.networks
                ],
                online=history.online,
            )
    ap_ssid = profile.softap.ssid_pattern.format(short_id=identity.short_id)
    assert identity.softap_passphrase is not None
    return {
        "device_id": identity.device_id,
        "setup_code": format_setup_code(setup_code.reveal()),
        "softap_ssid": ap_ssid,
        "softap_passphrase": identity.softap_passphrase.reveal(),
        "softap_wifi_qr": wifi_qr_string(ap_ssid, identity.softap_passphrase).reveal(),
        **labels,
    }


async def run(args: argparse.Namespace) -> int:
    """Run the daemon until it is stopped; return its exit code.

    Raises:
        ConfigError: no state directory given (``--state-dir``, ``DEVICE_SIM_STATE_DIR`` or
            ``--config``), a bad config file, variable or flag value.
    """
    import os

    from ...config import resolve_options
    from ...daemon import run_daemon

    given = hasattr(args, "opt__state_dir") or "DEVICE_SIM_STATE_DIR" in os.environ
    if args.config is None and not given:
        raise ConfigError("--state-dir", "give --state-dir or --config")
    # The config file (or the built-in defaults), the DEVICE_SIM_* variables, then the flags.
    return await run_daemon(resolve_options(args.config, args), preflight=_preflight)


async def _preflight(opts: Any) -> list[dict[str, Any]]:
    """The doctor's preflight for a device on NetworkManager (a Pi, or a bench with real
    radios: the findings the daemon reports as events). The simulated world runs none: its
    machine is a CI runner or a bench whose doctor is run by hand, and an idle daemon stays
    lean (the doctor's D-Bus library is not loaded; tests/e2e/test_lean_daemon.py)."""
    from ...network.base import BackendKind

    if opts.network.backend is not BackendKind.NETWORK_MANAGER:
        return []
    from ..doctor import preflight

    return list(await preflight(opts))
