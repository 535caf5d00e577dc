"""``device-sim init`` and ``device-sim run``: the device's identity and its daemon.

``run`` merges the daemon config file (or the built-in defaults) with the flags given on the
command line, flags winning, into :class:`~device_sim.daemon.DaemonOptions`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError


def init(args: argparse.Namespace) -> int:
    """Create the identity in ``--state-dir`` and print the label's content once.

    Raises:
        ValueError: ``--setup-code`` is not 8 digits.
        StoreError: the state directory cannot be opened or already holds an identity.
    """
    from ..core.identity import create_identity
    from ..core.store import DeviceStore
    from ..profile import load_profile
    from ..security.ap_credentials import wifi_qr_string
    from ..security.secret import Secret
    from ..security.setup_code import format_setup_code

    profile = load_profile()
    code: Secret | None = args.setup_code  # normalised by the parser (commands.args)
    with DeviceStore(args.state_dir) as store:
        identity, setup_code = create_identity(
            store, code, ap_passphrase_length=profile.softap.passphrase_length
        )
    shown = format_setup_code(setup_code.reveal())
    ap_ssid = profile.softap.ssid_pattern.format(short_id=identity.short_id)
    assert identity.softap_passphrase is not None
    ap_pass = identity.softap_passphrase.reveal()
    qr = wifi_qr_string(ap_ssid, identity.softap_passphrase).reveal()
    # The label's content, printed once: the device keeps the setup code only as a verifier.
    if args.json:
        print(
            json.dumps(
                {
                    "device_id": identity.device_id,
                    "setup_code": shown,
                    "softap_ssid": ap_ssid,
                    "softap_passphrase": ap_pass,
                    "softap_wifi_qr": qr,
                }
            )
        )
    else:
        print(
            f"device id:  {identity.device_id}\nsetup code: {shown}  (print it on the label; "
            "the device keeps only its SRP verifier)\n"
            f"setup Wi-Fi (SoftAP): {ap_ssid}  passphrase {ap_pass}\n"
            f"Wi-Fi QR:   {qr}"
        )
    return 0


async def run(args: argparse.Namespace) -> int:
    """Run the daemon until it is stopped; return its exit code.

    Raises:
        ConfigError: neither ``--state-dir`` nor ``--config``, a bad config file or flag value.
    """
    import dataclasses

    from ..config import DaemonConfig, load_config
    from ..daemon import DaemonOptions, run_daemon
    from ..doors.supervisor import Policy

    if args.config is None and args.state_dir is None:
        raise ConfigError("--state-dir", "give --state-dir or --config")
    # The config file (or the built-in defaults), then every flag given on the command line.
    kwargs = (load_config(args.config) if args.config else DaemonConfig()).to_daemon_options()
    flags = {
        "state_dir": args.state_dir,
        "adapter": args.adapter,
        "backend": args.backend,
        "scenario": args.scenario,
        "timeout_scale": args.timeout_scale,
        "idle_timeout_s": args.idle_timeout,
        "notify_size": args.notify_size,
        "doors": Policy(args.doors) if args.doors else None,
        "softap_window_s": args.softap_window,
        "personalities": _personalities(args.personality),
        "improv_authorization": args.improv_auth,
        "improv_authorization_timeout_s": args.improv_auth_timeout,
        "improv_redirect_url": args.improv_redirect_url,
        "improv_button": args.improv_button,
        "interface": args.interface,
        "cloud_host": args.cloud_host,
        "cloud_port": args.cloud_port,
        "cloud_ca": args.cloud_ca,
        "activation": args.activation,
        "cloud_url": args.cloud_url,
        "activation_password": args.activation_password,
    }
    kwargs.update({k: v for k, v in flags.items() if v is not None})
    softap: dict[str, Any] = {}
    if args.softap_listen:
        softap["listen_host"], softap["listen_port"] = args.softap_listen  # (host, port)
    if args.softap_lan:
        softap["lan_host"], softap["lan_port"] = args.softap_lan
    if args.softap_lan_announce:
        softap["lan_announce"] = args.softap_lan_announce
    if args.captive_mode:
        softap["captive_mode"] = args.captive_mode
    if args.softap_open:
        softap["open_ap"] = True
    if args.softap_dnsmasq:
        softap["dnsmasq_interface"] = args.softap_dnsmasq
    kwargs["softap"] = dataclasses.replace(kwargs["softap"], **softap)
    opts = DaemonOptions(**kwargs, zero_delay=args.zero_delay, time_scale=args.time_scale)
    return await run_daemon(opts)


def _personalities(choice: str | None) -> tuple[str, ...] | None:
    return None if choice is None else ("native", "improv") if choice == "both" else (choice,)
