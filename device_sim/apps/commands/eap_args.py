"""The ``--eap-*`` flags of ``client provision`` and ``demo``: an enterprise network's sign-in.

``client provision`` reads certificates and keys from PEM files (``--eap-ca``,
``--eap-client-cert``, ``--eap-private-key``); ``demo`` also takes the simulated world's names
(``--eap-ca world|public|other``, ``--eap-client-cert valid|expired``: :mod:`device_sim.network.
radius`) and starts from the scenario's own sign-in, which the flags change one by one. The
password may come from ``DEVICE_SIM_EAP_PASSWORD`` instead of the command line.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ConfigError
from ...security.secret import Secret

if TYPE_CHECKING:
    from ...network.eap import EapSettings
    from ...network.scenario.model import EapRecipe

__all__ = ["add_eap_flags", "eap_from_args"]

ENV_PASSWORD = "DEVICE_SIM_EAP_PASSWORD"
_FLAGS = (
    "eap_method",
    "eap_phase2",
    "eap_identity",
    "eap_anonymous_identity",
    "eap_password",
    "eap_ca",
    "eap_domain",
    "eap_client_cert",
    "eap_private_key",
)


def add_eap_flags(p: argparse.ArgumentParser, *, world: bool) -> None:
    """The flags; ``world``: the demo's, which also name the simulated world's certificates."""
    g = p.add_argument_group(
        "enterprise (802.1X) networks (native, protocol revision 4)"
        + ("; the scenario's sign-in unless changed here" if world else "")
    )
    g.add_argument("--eap-method", choices=("peap", "ttls", "tls"), help="the EAP method")
    g.add_argument("--eap-phase2", choices=("mschapv2", "pap"), help="PEAP/TTLS's inner method")
    g.add_argument("--eap-identity", metavar="NAME", help="the user name (e.g. alice@corp.example)")
    g.add_argument(
        "--eap-anonymous-identity", metavar="NAME", help="the outer identity sent in clear"
    )
    g.add_argument(
        "--eap-password", metavar="PASSWORD", help=f"PEAP/TTLS's password (or ${ENV_PASSWORD})"
    )
    g.add_argument(
        "--eap-ca",
        metavar="FILE" + ("|world|public|other" if world else "") + "|none",
        help="the CA certificate that checks the server (PEM); none: the device's system store",
    )
    g.add_argument("--eap-domain", metavar="DOMAIN", help="the server's domain to match")
    g.add_argument(
        "--eap-client-cert",
        metavar="FILE" + ("|valid|expired" if world else ""),
        help="EAP-TLS: the device's certificate (PEM)",
    )
    g.add_argument("--eap-private-key", metavar="FILE", help="EAP-TLS: its key (PEM, unencrypted)")


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(flag, f"cannot read {path}: {exc.strerror}") from None


def eap_from_args(args: argparse.Namespace, recipe: EapRecipe | None = None) -> EapSettings | None:
    """The sign-in the flags (over ``recipe``, the scenario's) describe; None when there is
    none. Raises ConfigError naming the flag."""
    from ...network.eap import EapMethod, EapSettings, Phase2

    given = {f: getattr(args, f, None) for f in _FLAGS}
    password = given["eap_password"] or os.environ.get(ENV_PASSWORD)
    if recipe is None and not any(given.values()):
        return None
    if recipe is not None:
        from ...network.radius import eap_settings

        eap = eap_settings(recipe)
    elif given["eap_method"] is None or given["eap_identity"] is None:
        raise ConfigError(
            "--eap-method" if given["eap_method"] is None else "--eap-identity",
            "required with the other --eap- options",
        )
    else:
        eap = EapSettings(EapMethod(given["eap_method"]), given["eap_identity"])
    changes: dict[str, object] = {}
    if given["eap_method"]:
        changes["method"] = EapMethod(given["eap_method"])
        if changes["method"] is not eap.method:  # another method: its own phase 2, no leftovers
            changes |= {"phase2": None, "client_cert": None, "private_key": None}
    if given["eap_phase2"]:
        changes["phase2"] = Phase2(given["eap_phase2"])
    for flag in ("identity", "anonymous_identity", "domain"):
        if given[f"eap_{flag}"] is not None:
            changes[flag] = given[f"eap_{flag}"]
    if password is not None:
        changes["password"] = Secret(password)
    ca = given["eap_ca"]
    if ca is not None:
        changes["ca_cert"] = None if ca == "none" else _world_or_file(ca, "--eap-ca")
    cert = given["eap_client_cert"]
    if cert is not None:
        if cert in ("valid", "expired") and not Path(cert).exists():
            from ...network.radius import world_pki

            pem, key = world_pki().client(
                str(changes.get("identity", eap.identity)), expired=cert == "expired"
            )
            changes |= {"client_cert": pem, "private_key": Secret(key.decode("ascii"))}
        else:
            changes["client_cert"] = _read(cert, "--eap-client-cert")
    if given["eap_private_key"] is not None:
        key_pem = _read(given["eap_private_key"], "--eap-private-key")
        try:
            changes["private_key"] = Secret(key_pem.decode("ascii"))
        except UnicodeDecodeError:
            raise ConfigError("--eap-private-key", "not a PEM file") from None
    return replace(eap, **changes)  # type: ignore[arg-type]


def _world_or_file(value: str, flag: str) -> bytes:
    from ...network.scenario.model import ISSUERS

    if value in ISSUERS and not Path(value).exists():
        from ...network.radius import world_pki

        return world_pki().ca_pem(value)
    return _read(value, flag)
