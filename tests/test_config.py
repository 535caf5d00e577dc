"""The daemon's options: one model (device_sim.config.DaemonOptions) read from the config file
(TOML), the DEVICE_SIM_* variables and the `device-sim run` flags; the example in packaging/ and
the systemd unit."""

from __future__ import annotations

import configparser
import dataclasses
import shlex
from pathlib import Path

import pytest

from device_sim.apps.cli import build_parser
from device_sim.config import (
    DaemonOptions,
    HostPort,
    load_config,
    parse_config,
    parse_host_port,
    personality_models,
    resolve_options,
)
from device_sim.core.options import CloudOptions, ReconnectOptions, TimeoutOptions
from device_sim.doors import registry
from device_sim.doors.ble.options import BleOptions
from device_sim.doors.esp.options import EspOptions
from device_sim.doors.improv.options import ImprovOptions
from device_sim.doors.softap.door import SoftApOptions
from device_sim.doors.supervisor import DoorOptions, Policy
from device_sim.errors import ConfigError
from device_sim.network.base import BackendKind
from device_sim.network.options import NetworkOptions
from device_sim.options import Sections, all_options, value_of
from device_sim.watch.options import WatchOptions

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "packaging" / "device-sim.toml"
UNIT = ROOT / "packaging" / "device-sim.service"
DOC = ROOT / "docs" / "raspberry-pi.md"

FULL = """\
state_dir = "state"
profile = "/opt/device-sim/gatt_profile.yaml"

[ble]
adapter = "hci1"
personalities = ["native", "improv"]
notify_size = 100
stack = "bumble"
bumble_transport = "tcp-client:127.0.0.1:9001"

[network]
backend = "networkmanager"
interface = "wlan0"
scenario = "weak-signal"
scan_timeout_s = 20
zero_delay = true
time_scale = 0.5
seed = 42
dnsmasq_shared_dir = "/run/nm-shared.d"

[timeouts]
scale = 0.5
idle_s = 30.5

[reconnect]
initial_s = 1.5
max_s = 120
reopen_after_s = 45
check_interval_s = 10
saved_networks = 3

[doors]
policy = "both"
softap_window_s = 0

[softap]
listen = "10.42.0.1:80"
lan = "[::]:8381"
lan_announce = "pi.local"
announce = "setup.local"
captive_mode = "portal"
open = true
concurrent = true
dnsmasq = "wlan0"

[improv]
authorization = "required"
authorization_timeout_s = 90
redirect_url = "https://example.com/welcome"
button = "gpiochip0:17"

[esp]
sec = 1
sec_patch = 0

[watch]
enabled = true
listen = "127.0.0.1:8391"
require_token = true

[cloud]
host = "cloud.example.com"
port = 8443
ca = "ca.pem"
activation = "claim"
url = "https://cloud.example.com:8443"
activation_password = "cloud"
"""

# Every option of FULL, as flags and as environment variables (same values).
FULL_FLAGS = [
    "--state-dir",
    "/srv/state",
    "--profile",
    "/opt/device-sim/gatt_profile.yaml",
    "--adapter",
    "hci1",
    "--personality",
    "native,improv",
    "--notify-size",
    "100",
    "--ble-stack",
    "bumble",
    "--bumble-transport",
    "tcp-client:127.0.0.1:9001",
    "--backend",
    "networkmanager",
    "--interface",
    "wlan0",
    "--scenario",
    "weak-signal",
    "--scan-timeout",
    "20",
    "--zero-delay",
    "--time-scale",
    "0.5",
    "--seed",
    "42",
    "--nm-dnsmasq-dir",
    "/run/nm-shared.d",
    "--timeout-scale",
    "0.5",
    "--idle-timeout",
    "30.5",
    "--reconnect-initial",
    "1.5",
    "--reconnect-max",
    "120",
    "--reopen-after",
    "45",
    "--check-interval",
    "10",
    "--saved-networks",
    "3",
    "--doors",
    "both",
    "--softap-window",
    "0",
    "--softap-listen",
    "10.42.0.1:80",
    "--softap-lan",
    "[::]:8381",
    "--softap-lan-announce",
    "pi.local",
    "--softap-announce",
    "setup.local",
    "--captive-mode",
    "portal",
    "--softap-open",
    "--softap-concurrent",
    "--softap-dnsmasq",
    "wlan0",
    "--improv-auth",
    "required",
    "--improv-auth-timeout",
    "90",
    "--improv-redirect-url",
    "https://example.com/welcome",
    "--improv-button",
    "gpiochip0:17",
    "--esp-sec",
    "1",
    "--esp-sec-patch",
    "0",
    "--watch",
    "--watch-listen",
    "127.0.0.1:8391",
    "--watch-require-token",
    "--cloud-host",
    "cloud.example.com",
    "--cloud-port",
    "8443",
    "--cloud-ca",
    "/srv/ca.pem",
    "--activation",
    "claim",
    "--cloud-url",
    "https://cloud.example.com:8443",
    "--activation-password",
    "cloud",
]


DEFAULT_PERSONAL = Sections({"improv": ImprovOptions(), "esp": EspOptions()})


def write(tmp_path: Path, text: str, name: str = "device-sim.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def expected_full(state_dir: Path, ca: Path) -> DaemonOptions:
    return DaemonOptions(
        state_dir=state_dir,
        profile=Path("/opt/device-sim/gatt_profile.yaml"),
        ble=BleOptions("hci1", ("native", "improv"), 100, "bumble", "tcp-client:127.0.0.1:9001"),
        network=NetworkOptions(
            BackendKind.NETWORK_MANAGER,
            "wlan0",
            "weak-signal",
            20.0,
            True,
            0.5,
            42,
            Path("/run/nm-shared.d"),
        ),
        timeouts=TimeoutOptions(0.5, 30.5),
        reconnect=ReconnectOptions(1.5, 120.0, 45.0, 10.0, 3),
        doors=DoorOptions(Policy.BOTH, 0.0),
        softap=SoftApOptions(
            listen=HostPort("10.42.0.1", 80),
            lan=HostPort("::", 8381),
            lan_announce="pi.local",
            announce="setup.local",
            captive_mode="portal",
            open=True,
            concurrent=True,
            dnsmasq="wlan0",
        ),
        cloud=CloudOptions(
            "cloud.example.com", 8443, ca, "claim", "https://cloud.example.com:8443", "cloud"
        ),
        watch=WatchOptions(True, HostPort("127.0.0.1", 8391), require_token=True),
        personality_options=Sections(
            {
                "improv": ImprovOptions(
                    "required", 90.0, "https://example.com/welcome", "gpiochip0:17"
                ),
                "esp": EspOptions(1, 0),
            }
        ),
    )


def test_full_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    # relative paths are relative to the file's directory
    assert cfg == expected_full(tmp_path / "state", tmp_path / "ca.pem")
    assert cfg.source == tmp_path / "device-sim.toml"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ble.adapter = "hci2"  # type: ignore[misc]


def test_flags_and_environment_set_the_same_options(tmp_path: Path) -> None:
    """One model: every key of the file has a flag and a variable that give the same value."""
    expected = expected_full(Path("/srv/state"), Path("/srv/ca.pem"))
    args = build_parser().parse_args(["run", *FULL_FLAGS])
    assert resolve_options(None, args, environ={}) == expected
    env = {o.env: str(v) for o, v in _option_values(expected).items()}
    env["DEVICE_SIM_BLE_PERSONALITIES"] = "native,improv"
    env["DEVICE_SIM_SOFTAP_LISTEN"] = "10.42.0.1:80"
    assert resolve_options(None, None, environ=env) == expected
    # Every option has its three names, none of them shared.
    options = all_options(DaemonOptions)
    for names in ([o.flag for o in options], [o.env for o in options], [o.place for o in options]):
        assert len(set(names)) == len(names)
    # FULL (and so FULL_FLAGS and the variables) sets every option away from its default.
    defaults = _option_values(DaemonOptions(personality_options=DEFAULT_PERSONAL))
    for o, value in _option_values(expected).items():
        assert value != defaults[o], o.place


def _option_values(opts: DaemonOptions) -> dict:
    out = {}
    for o in all_options(DaemonOptions):
        value = value_of(opts, o)
        out[o] = value.value if hasattr(value, "value") else value
    return out


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[ble]\nadapter = "hci1"\nnotify_size = 100\n[softap]\nlisten = "10.0.0.1:80"\n'
    )
    env = {"DEVICE_SIM_BLE_ADAPTER": "hci2", "DEVICE_SIM_SOFTAP_LISTEN": "[::1]:8080"}
    args = build_parser().parse_args(["run", "--adapter", "hci3"])
    opts = resolve_options(path, args, environ=env)
    assert opts.ble.adapter == "hci3"  # the flag
    assert opts.softap.listen == HostPort("::1", 8080)  # the variable
    assert opts.ble.notify_size == 100  # the file
    assert opts.network == NetworkOptions()  # the defaults
    assert opts.source == path
    # A boolean flag can also turn off what the file turned on.
    path = write(tmp_path, "[softap]\nopen = true\n", "open.toml")
    args = build_parser().parse_args(["run", "--no-softap-open"])
    assert resolve_options(path, args, environ={}).softap.open is False


def test_empty_file_gives_the_run_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg == DaemonOptions(personality_options=DEFAULT_PERSONAL)
    assert cfg.state_dir == Path("/var/lib/device-sim") and cfg.profile is None
    assert (cfg.ble.adapter, cfg.ble.personalities, cfg.ble.notify_size) == ("hci0", None, 244)
    assert cfg.network.backend is BackendKind.SIMULATED and cfg.network.scenario == "typical-home"
    assert cfg.doors.policy is Policy.BLE_THEN_SOFTAP and cfg.doors.softap_window_s == 60.0
    assert cfg.softap.listen == ("127.0.0.1", 8380) and cfg.softap.lan == ("127.0.0.1", 8381)
    assert resolve_options(None, build_parser().parse_args(["run"]), environ={}) == cfg


def test_personality_sections_come_from_the_registry() -> None:
    models = personality_models()
    assert models == {
        name: registry.get(name).options
        for name in registry.names()
        if registry.get(name).options is not None
    }
    assert models["improv"] is ImprovOptions and models["esp"] is EspOptions


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("state_dir = 3", "state_dir"),
        ('statedir = "/x"', "statedir"),
        ('[bel]\nadapter = "hci0"', "bel"),
        ('ble = "hci0"', "ble"),
        ('[ble]\nadapter = "wlan0"', "ble.adapter"),
        ('[ble]\nadaptor = "hci0"', "ble.adaptor"),
        ('[ble]\npersonalities = ["native", "native"]', "ble.personalities"),
        ('[ble]\npersonalities = ["nativ"]', "ble.personalities"),
        ("[ble]\npersonalities = []", "ble.personalities"),
        ('[ble]\npersonalities = "native"', "ble.personalities"),
        ("[ble]\nnotify_size = 10", "ble.notify_size"),
        ("[ble]\nnotify_size = 100.5", "ble.notify_size"),
        ("[ble]\nnotify_size = true", "ble.notify_size"),
        ('[network]\nbackend = "nm"', "network.backend"),
        ('[network]\ninterface = "wlan 0"', "network.interface"),
        ('[network]\ninterface = "a-very-long-interface-name"', "network.interface"),
        ('[network]\ninterface = ""', "network.interface"),
        ("[network]\nscan_timeout_s = 0", "network.scan_timeout_s"),
        ('[network]\nscan_timeout_s = "10"', "network.scan_timeout_s"),
        ("[network]\nscan_timeout_s = inf", "network.scan_timeout_s"),
        ("[network]\nscan_timeout_s = 121", "network.scan_timeout_s"),
        ('[network]\nssid = "x"', "network.ssid"),
        ("[network]\nzero_delay = 1", "network.zero_delay"),
        ("[timeouts]\nscale = 0", "timeouts.scale"),
        ("[timeouts]\nscale = -1.0", "timeouts.scale"),
        ("[timeouts]\nscale = nan", "timeouts.scale"),
        ("[timeouts]\nidle_s = 0", "timeouts.idle_s"),
        ("[timeouts]\nidle = 5", "timeouts.idle"),
        ('[doors]\npolicy = "ble-first"', "doors.policy"),
        ("[doors]\nsoftap_window_s = -1", "doors.softap_window_s"),
        ('[doors]\nsoftap_listen = "10.0.0.1:80"', "doors.softap_listen"),
        ('[softap]\nlisten = "8380"', "softap.listen"),
        ('[softap]\nlisten = "0.0.0.0:http"', "softap.listen"),
        ('[softap]\nlan = "0.0.0.0:65536"', "softap.lan"),
        ('[softap]\nlan = ":8381"', "softap.lan"),
        ('[softap]\nlan = "::1:8381"', "softap.lan"),
        ('[softap]\ncaptive_mode = "captive"', "softap.captive_mode"),
        ('[softap]\nopen = "yes"', "softap.open"),
        ('[softap]\ndnsmasq = "wlan0/x"', "softap.dnsmasq"),
        ('[improv]\nauthorization = "optional"', "improv.authorization"),
        ("[improv]\nauthorization_timeout_s = 0", "improv.authorization_timeout_s"),
        ('[improv]\nredirect_url = "example.com"', "improv.redirect_url"),
        ('[improv]\nbutton = "17"', "improv.button"),
        ('[improv]\nbutton = "gpiochip0:x"', "improv.button"),
        ("[native]\nx = 1", "native"),
        ("[cloud]\nport = 0", "cloud.port"),
        ("[cloud]\nport = 65536", "cloud.port"),
        ('[cloud]\nport = "443"', "cloud.port"),
        ('[cloud]\nhost = "https://cloud.example.com"', "cloud.host"),
        ("[cloud]\nca = 5", "cloud.ca"),
        ('[cloud]\nurl = "x"', "cloud.url"),
        ('[cloud]\nurl = "http://cloud.example.com"', "cloud.url"),
        ('[cloud]\nactivation = "claim"', "cloud.url"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.where == f"device-sim.toml: {where}"
    assert str(info.value).startswith(f"device-sim.toml: {where}: ")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--adapter", "wlan0"], "argument --adapter: expected hciN"),
        (["--softap-listen", "::1:8380"], "argument --softap-listen: expected HOST:PORT"),
        (["--notify-size", "10"], "argument --notify-size: must be >= 20"),
        (["--doors", "ble-first"], "argument --doors"),
        (["--cloud-url", "http://x"], "argument --cloud-url: expected an https:// URL"),
    ],
)
def test_invalid_flags_are_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"DEVICE_SIM_BLE_ADAPTER": "wlan0"}, "DEVICE_SIM_BLE_ADAPTER"),
        ({"DEVICE_SIM_SOFTAP_OPEN": "maybe"}, "DEVICE_SIM_SOFTAP_OPEN"),
        ({"DEVICE_SIM_TIMEOUTS_SCALE": "fast"}, "DEVICE_SIM_TIMEOUTS_SCALE"),
        ({"DEVICE_SIM_BLE_PERSONALITIES": "native,nativ"}, "--personality"),
        ({"DEVICE_SIM_CLOUD_ACTIVATION": "claim"}, "--cloud-url"),
    ],
)
def test_invalid_environment_names_the_variable(env: dict[str, str], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_options(None, None, environ=env)
    assert info.value.where == where


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[network]\nbackend = "simulated"\ninterfase = "wlan0"'))
    assert info.value.where == "device-sim.toml: network.interfase"
    assert "unknown key" in info.value.problem and "interface" in info.value.problem


def test_not_toml_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(write(tmp_path, "[ble\nadapter = 1"))
    assert info.value.where == str(tmp_path / "device-sim.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'state_dir = "/caf\xe9"')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8380", ("127.0.0.1", 8380)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:80", ("::1", 80)),
        ("[::]:65535", ("::", 65535)),
        ("device.local:8080", ("device.local", 8080)),
    ],
)
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected
    assert parse_host_port(str(parse_host_port(text))) == expected  # it prints as it parses


@pytest.mark.parametrize(
    "text",
    ["", "8380", "host:", ":80", "host:-1", "host:99999", "::1:80", "[]:80", "ho st:80", "host:8o"],
)
def test_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_host_port(text)


def test_scenario_path_is_relative_to_the_file(tmp_path: Path) -> None:
    cfg = parse_config({"network": {"scenario": "worlds/home.yaml"}}, tmp_path / "c.toml")
    assert cfg.network.scenario == str(tmp_path / "worlds" / "home.yaml")
    assert (
        parse_config(
            {"network": {"scenario": "captive-portal"}}, tmp_path / "c.toml"
        ).network.scenario
        == "captive-portal"
    )


# --- packaging ---------------------------------------------------------------------------------


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.network.backend == "networkmanager" and cfg.network.interface == "wlan0"
    assert cfg.ble.adapter == "hci0" and cfg.doors.policy is Policy.BLE_THEN_SOFTAP
    assert cfg.softap.captive_mode == "portal" and cfg.softap.lan_announce == "raspberrypi.local"
    assert cfg.state_dir == Path("/var/lib/device-sim")


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(
        strict=False, delimiters=("=",), comment_prefixes=("#", ";"), interpolation=None
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_systemd_unit() -> None:
    unit = _unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    u, s = unit["Unit"], unit["Service"]
    for target in ("bluetooth.service", "NetworkManager.service", "network-pre.target"):
        assert target in u["After"].split()
    for target in ("bluetooth.service", "NetworkManager.service"):
        assert target in u["Wants"].split()
    assert s["Type"] == "simple"
    assert s["Restart"] == "on-failure" and s["RestartSec"] == "2"
    assert s["StandardOutput"] == "journal" and s["StandardError"] == "journal"
    assert s["StateDirectory"] == "device-sim" and s["StateDirectoryMode"] == "0700"
    assert s["ProtectSystem"] == "strict" and s["ProtectHome"] == "yes"
    assert s["NoNewPrivileges"] == "yes" and s["PrivateTmp"] == "yes"
    writable = [p.lstrip("-") for p in s["ReadWritePaths"].split()]
    assert "/var/lib/device-sim" in writable
    assert "/etc/NetworkManager/dnsmasq-shared.d" in writable
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_execstart_matches_the_docs_and_the_example() -> None:
    argv = shlex.split(_unit()["Service"]["ExecStart"])
    from device_sim.apps.service import SHIPPED_BINARY

    assert argv[0] == SHIPPED_BINARY == "/opt/device-sim/bin/device-sim" and argv[1] == "run"
    config_path = argv[argv.index("--config") + 1]
    assert config_path == "/etc/device-sim/device-sim.toml"
    doc = DOC.read_text(encoding="utf-8")
    # The venv the docs create is the one the unit runs, installed by its own binary; the
    # docs check the config where the unit reads it.
    assert "sudo python3 -m venv /opt/device-sim\n" in doc
    assert f"sudo {SHIPPED_BINARY} service install" in doc
    assert f"doctor --config {config_path}" in doc
    from device_sim.config import DEFAULT_CONFIG_PATH

    assert str(DEFAULT_CONFIG_PATH) == config_path
    state_dir = load_config(EXAMPLE).state_dir
    assert state_dir == Path("/var/lib") / _unit()["Service"]["StateDirectory"]
    assert f"--state-dir {state_dir}" in doc


def test_personality_sections_are_typed_sections_of_the_model() -> None:
    args = build_parser().parse_args(["run", "--esp-sec", "1"])
    cfg = resolve_options(None, args, environ={})
    sections = cfg.personality_options
    assert set(sections) == set(personality_models())  # every section, built from the registry
    assert sections.of("esp", EspOptions) == EspOptions(sec=1)
    assert sections.of("improv", ImprovOptions) == ImprovOptions()
    with pytest.raises(TypeError, match="holds a EspOptions"):
        sections.of("esp", ImprovOptions)
    assert Sections().of("esp", EspOptions) == EspOptions()  # absent: the model's defaults
