"""The daemon's configuration file (TOML), validated into frozen dataclasses.

``load_config(path)`` reads a file such as ``packaging/device-sim.toml``. Every key is optional;
the defaults are those of ``device-sim run``. Unknown sections or keys and bad values raise
:class:`~device_sim.errors.ConfigError` naming the place, e.g.
``device-sim.toml: network.interface``.
Relative paths (``state_dir``, ``profile``, ``cloud.ca``, a scenario file) are resolved against
the directory holding the config file, so a systemd unit (working directory ``/``) reads the
same file the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .document import check_document, parse_errors
from .errors import ConfigError

__all__ = [
    "BACKENDS",
    "CAPTIVE_MODES",
    "DEFAULT_CONFIG_PATH",
    "DOOR_POLICIES",
    "BleConfig",
    "CloudConfig",
    "DaemonConfig",
    "DoorsConfig",
    "ImprovConfig",
    "NetworkConfig",
    "TimeoutsConfig",
    "load_config",
    "parse_config",
    "parse_host_port",
]

LOG = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/device-sim/device-sim.toml")
DEFAULT_STATE_DIR = Path("/var/lib/device-sim")
DEFAULT_NOTIFY_SIZE = 244  # device_sim.doors.ble.host.DEFAULT_NOTIFY_SIZE (not imported: bless)

BACKENDS = ("simulated", "networkmanager")  # network.base.BackendKind
PERSONALITIES = ("native", "improv")  # profile.PERSONALITIES
DOOR_POLICIES = ("ble-only", "softap-only", "ble-then-softap", "both")  # doors.Policy
CAPTIVE_MODES = ("app", "portal")  # transports.softap.door.CAPTIVE_MODES
AUTHORIZATIONS = ("none", "required")

_ADAPTER_RE = re.compile(r"^hci[0-9]{1,3}$")
_IFNAME_RE = re.compile(r"^[^\s/:]{1,15}$")  # Linux IFNAMSIZ - 1, no '/', ':' or space
_HOST_RE = re.compile(r"^[A-Za-z0-9._:-]+$")
_GPIO_RE = re.compile(r"^[^\s:]+:[0-9]{1,4}$")


# --- the dataclass tree ------------------------------------------------------------------------


@dataclass(frozen=True)
class BleConfig:
    adapter: str = "hci0"
    personalities: tuple[str, ...] | None = None  # None: the profile's `personalities`
    notify_size: int = DEFAULT_NOTIFY_SIZE


@dataclass(frozen=True)
class NetworkConfig:
    backend: str = "simulated"
    interface: str | None = None  # the Wi-Fi interface (networkmanager); None: the first
    scenario: str = "typical-home"  # the simulated backend's world: a name or a YAML path
    scan_timeout_s: float = 10.0  # NetworkManagerBackend's scan_timeout (at most 120)


@dataclass(frozen=True)
class TimeoutsConfig:
    scale: float = 1.0  # multiplies the profile's state timeouts
    idle_s: float | None = None  # session idle timeout; None: the profile's


@dataclass(frozen=True)
class DoorsConfig:
    policy: str = "ble-then-softap"
    softap_window_s: float = 60.0
    softap_listen: tuple[str, int] = ("127.0.0.1", 8380)
    softap_lan: tuple[str, int] = ("127.0.0.1", 8381)
    softap_lan_announce: str | None = None  # the LAN host name phones are told (e.g. pi.local)
    captive_mode: str = "app"
    softap_open: bool = False
    softap_dnsmasq: str | None = None


@dataclass(frozen=True)
class ImprovConfig:
    authorization: str | None = None  # None: the profile's improv.authorization
    authorization_timeout_s: float | None = None
    redirect_url: str | None = None
    button: str | None = None  # CHIP:LINE, e.g. gpiochip0:17


@dataclass(frozen=True)
class CloudConfig:
    """The TLS endpoint the connectivity check verifies after a join (networkmanager backend)."""

    host: str | None = None  # None: the backend's default
    port: int = 443
    ca: Path | None = None  # a PEM CA bundle; None: the system's trust store
    activation: str | None = None  # zero-touch | claim | registration; None: none
    url: str | None = None  # the cloud's https://host:port for activation
    activation_password: str = "user"  # registration: the password comes from user|cloud


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: Path = DEFAULT_STATE_DIR
    profile: Path | None = None
    ble: BleConfig = field(default_factory=BleConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    doors: DoorsConfig = field(default_factory=DoorsConfig)
    improv: ImprovConfig = field(default_factory=ImprovConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    source: Path | None = field(default=None, compare=False)  # the file it came from

    def option_values(self) -> dict[str, Any]:
        """Every setting as a DaemonOptions-style keyword (including ones DaemonOptions lacks).

        ``doors`` and ``softap`` are built as the daemon wants them (Policy, SoftApOptions).
        """
        from .doors.softap.door import SoftApOptions
        from .doors.supervisor import Policy

        d = self.doors
        softap = SoftApOptions(
            listen_host=d.softap_listen[0],
            listen_port=d.softap_listen[1],
            lan_host=d.softap_lan[0],
            lan_port=d.softap_lan[1],
            lan_announce=d.softap_lan_announce,
            captive_mode=d.captive_mode,
            open_ap=d.softap_open,
            dnsmasq_interface=d.softap_dnsmasq,
        )
        return {
            "state_dir": self.state_dir,
            "adapter": self.ble.adapter,
            "backend": self.network.backend,
            "scenario": self.network.scenario,
            "timeout_scale": self.timeouts.scale,
            "idle_timeout_s": self.timeouts.idle_s,
            "notify_size": self.ble.notify_size,
            "profile_path": self.profile,
            "doors": Policy(d.policy),
            "softap_window_s": d.softap_window_s,
            "softap": softap,
            "personalities": self.ble.personalities,
            "improv_authorization": self.improv.authorization,
            "improv_authorization_timeout_s": self.improv.authorization_timeout_s,
            "improv_redirect_url": self.improv.redirect_url,
            "improv_button": self.improv.button,
            # Not (yet) fields of DaemonOptions: kept when it gains them, under these names.
            "interface": self.network.interface,
            "scan_timeout_s": self.network.scan_timeout_s,
            "cloud_host": self.cloud.host,
            "cloud_port": self.cloud.port,
            "cloud_ca": self.cloud.ca,
            "activation": self.cloud.activation,
            "cloud_url": self.cloud.url,
            "activation_password": self.cloud.activation_password,
        }

    def to_daemon_options(self) -> dict[str, Any]:
        """Keyword arguments for ``DaemonOptions(**...)``: the fields it has today.

        A setting DaemonOptions has no field for is dropped; one that differs from its default
        is logged as a warning, so a configured value is never ignored silently.
        """
        from .daemon import DaemonOptions

        known = {f.name for f in dataclasses.fields(DaemonOptions)}
        values = self.option_values()
        defaults = DaemonConfig(state_dir=self.state_dir).option_values()
        for name in sorted(set(values) - known):
            if values[name] != defaults[name]:
                LOG.warning(
                    "%s = %r is set but this daemon does not support it yet; ignored",
                    name,
                    values[name],
                )
        return {k: v for k, v in values.items() if k in known}


# --- parsing -----------------------------------------------------------------------------------

T = TypeVar("T")


class _Table:
    """One TOML table being read: typed getters that name the key on error, then done()."""

    def __init__(self, data: Any, where: str, prefix: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}{prefix.rstrip('.')}", "must be a table")
        self.data, self.where, self.prefix = data, where, prefix
        self.used: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.where}{self.prefix}{key}"

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.at(key), problem)

    def string(
        self,
        key: str,
        default: T,
        *,
        choices: tuple[str, ...] = (),
        pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str | T:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        if choices and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}; not {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, f"expected {what}, not {value!r}")
        return value

    def number(
        self,
        key: str,
        default: T,
        *,
        minimum: float = 0.0,
        exclusive: bool = True,
        maximum: float = math.inf,
    ) -> float | T:
        value = self.raw(key)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(key, f"must be a number, not {value!r}")
        low_ok = value > minimum if exclusive else value >= minimum
        if not low_ok or value > maximum:
            bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
            upper = "" if maximum == math.inf else f" and <= {maximum:g}"
            raise self.fail(key, f"must be {bound}{upper}, not {value!r}")
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be an integer from {low} to {high}, not {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def path(self, key: str, default: T, base: Path) -> Path | T:
        value = self.string(key, None)
        if value is None:
            return default
        if "\0" in value:
            raise self.fail(key, "must be a path")
        return base / Path(value).expanduser()  # an absolute value replaces base

    def host_port(self, key: str, default: tuple[str, int]) -> tuple[str, int]:
        value = self.string(key, None)
        if value is None:
            return default
        try:
            return parse_host_port(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def table(self, key: str) -> _Table:
        self.used.add(key)
        return _Table(self.data.get(key, {}), self.where, f"{self.prefix}{key}.")

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used, key=str)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.fail(str(unknown[0]), f"unknown key (known here: {known})")


def parse_host_port(text: str) -> tuple[str, int]:
    """``"0.0.0.0:80"`` / ``"[::1]:8380"`` -> (host, port); port 0 means any free port.

    Raises ValueError with a message naming the expected form.
    """
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address must be bracketed
    if not sep or not host or not _HOST_RE.match(host) or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT (IPv6 as [::1]:8380), not {text!r}")
    return host, int(port)


def load_config(path: Path) -> DaemonConfig:
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


def parse_config(data: Mapping[str, Any], source: Path) -> DaemonConfig:
    """Validate a parsed TOML document read from ``source``. Raises ConfigError."""
    check_document(data, str(source))
    base = source.parent.absolute()
    root = _Table(data, f"{source.name}: ", "")
    d = DaemonConfig()
    state_dir = root.path("state_dir", d.state_dir, base)
    profile = root.path("profile", None, base)

    t = root.table("ble")
    personalities = t.raw("personalities")
    if personalities is not None:
        if (
            not isinstance(personalities, list)
            or not personalities
            or not all(isinstance(p, str) and p in PERSONALITIES for p in personalities)
            or len(set(personalities)) != len(personalities)
        ):
            raise t.fail(
                "personalities",
                f"must be a non-empty list of distinct names from "
                f"{list(PERSONALITIES)}, not {personalities!r}",
            )
        personalities = tuple(personalities)
    ble = BleConfig(
        adapter=t.string("adapter", d.ble.adapter, pattern=_ADAPTER_RE, what="hciN"),
        personalities=personalities,
        notify_size=t.integer("notify_size", d.ble.notify_size, 20, 512),
    )
    t.done()

    t = root.table("network")
    scenario = t.string("scenario", d.network.scenario)
    if scenario.endswith((".yaml", ".yml")) or "/" in scenario:
        scenario = str(base / Path(scenario).expanduser())
    network = NetworkConfig(
        backend=t.string("backend", d.network.backend, choices=BACKENDS),
        interface=t.string("interface", None, pattern=_IFNAME_RE, what="an interface name"),
        scenario=scenario,
        scan_timeout_s=t.number("scan_timeout_s", d.network.scan_timeout_s, maximum=120),
    )
    t.done()

    t = root.table("timeouts")
    timeouts = TimeoutsConfig(
        scale=t.number("scale", d.timeouts.scale, maximum=1000),
        idle_s=t.number("idle_s", None, maximum=86400),
    )
    t.done()

    t = root.table("doors")
    doors = DoorsConfig(
        policy=t.string("policy", d.doors.policy, choices=DOOR_POLICIES),
        softap_window_s=t.number(
            "softap_window_s", d.doors.softap_window_s, exclusive=False, maximum=86400
        ),
        softap_listen=t.host_port("softap_listen", d.doors.softap_listen),
        softap_lan=t.host_port("softap_lan", d.doors.softap_lan),
        softap_lan_announce=t.string("softap_lan_announce", None),
        captive_mode=t.string("captive_mode", d.doors.captive_mode, choices=CAPTIVE_MODES),
        softap_open=t.boolean("softap_open", d.doors.softap_open),
        softap_dnsmasq=t.string(
            "softap_dnsmasq", None, pattern=_IFNAME_RE, what="an interface name"
        ),
    )
    t.done()

    t = root.table("improv")
    redirect = t.string("redirect_url", None)
    if redirect is not None:
        parts = urlsplit(redirect)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise t.fail("redirect_url", f"expected an http(s) URL, not {redirect!r}")
    improv = ImprovConfig(
        authorization=t.string("authorization", None, choices=AUTHORIZATIONS),
        authorization_timeout_s=t.number("authorization_timeout_s", None, maximum=86400),
        redirect_url=redirect,
        button=t.string("button", None, pattern=_GPIO_RE, what="CHIP:LINE (gpiochip0:17)"),
    )
    t.done()

    t = root.table("cloud")
    cloud = CloudConfig(
        host=t.string("host", None, pattern=_HOST_RE, what="a host name or IP address"),
        port=t.integer("port", d.cloud.port, 1, 65535),
        ca=t.path("ca", None, base),
        activation=t.string("activation", None, choices=("zero-touch", "claim", "registration")),
        url=t.string(
            "url", None, pattern=re.compile(r"^https://[^/\s]+(/\S*)?$"), what="an https:// URL"
        ),
        activation_password=t.string(
            "activation_password", d.cloud.activation_password, choices=("user", "cloud")
        ),
    )
    if cloud.activation and not cloud.url:
        raise ConfigError(f"{source.name}: cloud.url", "activation needs the cloud's URL")
    t.done()

    root.done()
    return DaemonConfig(
        state_dir=state_dir,
        profile=profile,
        ble=ble,
        network=network,
        timeouts=timeouts,
        doors=doors,
        improv=improv,
        cloud=cloud,
        source=source,
    )
