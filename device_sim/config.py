"""The daemon's options: one model, read from the config file, the environment and the flags.

:class:`DaemonOptions` gathers each component's options model (``[ble]``, ``[network]``,
``[timeouts]``, ``[doors]``, ``[softap]``, ``[cloud]``, and one section per personality that
has options, e.g. ``[improv]``, from the door registry). :mod:`device_sim.options` derives the
TOML keys, the ``device-sim run`` flags and the ``DEVICE_SIM_*`` variables from it; nothing here
lists them again.

``load_config(path)`` reads a file such as ``packaging/device-sim.toml``; every key is optional
and unknown sections, keys or bad values raise :class:`~device_sim.errors.ConfigError` naming the
place, e.g. ``device-sim.toml: network.interface``. Relative paths (``state_dir``, ``profile``,
``cloud.ca``, a scenario file) are resolved against the directory holding the file, so a systemd
unit (working directory ``/``) reads it the same way.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import options as opts
from .core.options import CloudOptions, ReconnectOptions, TimeoutOptions
from .document import check_document, parse_errors
from .doors import registry
from .doors.ble.options import BleOptions
from .doors.softap.options import SoftApOptions
from .doors.supervisor import DoorOptions
from .errors import ConfigError
from .network.options import NetworkOptions
from .options import HostPort, Sections, opt, parse_host_port, section, sections
from .watch.options import WatchOptions

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "DaemonOptions",
    "HostPort",
    "add_run_flags",
    "load_config",
    "parse_config",
    "parse_host_port",
    "personality_models",
    "resolve_options",
]

DEFAULT_CONFIG_PATH = Path("/etc/device-sim/device-sim.toml")
DEFAULT_STATE_DIR = Path("/var/lib/device-sim")
GROUP_TITLES = {
    "": "the device",
    "ble": "BLE (the personalities' GATT services)",
    "network": "network backend",
    "timeouts": "timeouts",
    "reconnect": "the connected life (watching the connection, retries, saved networks)",
    "doors": "doors (BLE and the SoftAP fallback)",
    "softap": "the SoftAP door",
    "cloud": "cloud",
    "watch": "watching onboarding (a read-only event stream)",
}


@dataclass(frozen=True)
class DaemonOptions:
    state_dir: Path = opt(
        DEFAULT_STATE_DIR,
        "where the device keeps its identity, store, log and control socket",
        metavar="DIR",
    )
    profile: Path | None = opt(None, "the GATT/diagnostic profile (default: gatt_profile.yaml)")
    ble: BleOptions = section(BleOptions)
    network: NetworkOptions = section(NetworkOptions)
    timeouts: TimeoutOptions = section(TimeoutOptions)
    reconnect: ReconnectOptions = section(ReconnectOptions)
    doors: DoorOptions = section(DoorOptions)
    softap: SoftApOptions = section(SoftApOptions)
    cloud: CloudOptions = section(CloudOptions)
    watch: WatchOptions = section(WatchOptions)
    # Each personality's own options section (its model's values), by name: the registry says
    # which personalities have one (personality_models below).
    personality_options: Sections = sections(lambda: personality_models())
    source: Path | None = field(default=None, compare=False)  # the config file, if any


def personality_models() -> dict[str, type]:
    """The options model of every personality that has one, by name (its config section)."""
    models = {}
    for name in registry.names():
        model = registry.get(name).options
        if model is not None:
            models[name] = model
    return models


def parse_config(data: Mapping[str, Any], source: Path) -> DaemonOptions:
    """Validate a parsed TOML document read from ``source``. Raises ConfigError."""
    check_document(data, str(source))
    values = opts.from_toml(data, source, DaemonOptions)
    return _finish([values], source, f"{source.name}: ")


def load_config(path: Path) -> DaemonOptions:
    """Read and validate the TOML file ``path``.

    Raises ConfigError when the file cannot be read, is not TOML, or fails validation.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    try:
        with parse_errors(str(path)):
            data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return parse_config(data, path)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """``device-sim run``'s flags: one per option of :class:`DaemonOptions`."""
    opts.add_flags(parser, DaemonOptions, GROUP_TITLES)


def resolve_options(
    config: Path | None,
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
) -> DaemonOptions:
    """The daemon's options: defaults, then the file ``config``, then ``DEVICE_SIM_*``
    variables, then the flags in ``args`` (parsed with :func:`add_run_flags`).

    Raises ConfigError naming the file's key, the variable or the flag at fault.
    """
    layers: list[opts.Values] = []
    source = None
    if config is not None:
        from_file = load_config(config)
        source = from_file.source
        layers.append(_values_of(from_file))
    layers.append(opts.from_env(os.environ if environ is None else environ, DaemonOptions))
    if args is not None:
        layers.append(opts.from_flags(args, DaemonOptions))
    return _finish(layers, source, "")


def _values_of(options: DaemonOptions) -> opts.Values:
    """Every option value of a built model, as a layer."""
    return {(o.section, o.key): opts.value_of(options, o) for o in opts.all_options(DaemonOptions)}


def _finish(layers: list[opts.Values], source: Path | None, where: str) -> DaemonOptions:
    result = opts.build(DaemonOptions, layers, source=source)
    for name in result.ble.personalities or ():
        registry.get(name, f"{where}ble.personalities" if where else "--personality")
    if result.cloud.activation and not result.cloud.url:
        raise ConfigError(
            f"{where}cloud.url" if where else "--cloud-url", "activation needs the cloud's URL"
        )
    return result
