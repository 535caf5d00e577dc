"""The daemon config file (TOML), the example in packaging/ and the systemd unit."""

from __future__ import annotations

import configparser
import dataclasses
import logging
import re
import shlex
from pathlib import Path

import pytest

from device_sim.config import (
    BACKENDS,
    CAPTIVE_MODES,
    DOOR_POLICIES,
    DaemonConfig,
    load_config,
    parse_config,
    parse_host_port,
)
from device_sim.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "packaging" / "device-sim.toml"
UNIT = ROOT / "packaging" / "device-sim.service"
DOC = ROOT / "README.md"  # its "Run on a Raspberry Pi" section

FULL = """\
state_dir = "state"
profile = "/opt/device-sim/gatt_profile.yaml"

[ble]
adapter = "hci1"
personalities = ["native", "improv"]
notify_size = 100

[network]
backend = "networkmanager"
interface = "wlan0"
scenario = "weak-signal"
scan_timeout_s = 20

[timeouts]
scale = 0.5
idle_s = 30.5

[doors]
policy = "both"
softap_window_s = 0
softap_listen = "10.42.0.1:80"
softap_lan = "[::]:8381"
captive_mode = "portal"
softap_open = true
softap_dnsmasq = "wlan0"

[improv]
authorization = "required"
authorization_timeout_s = 90
redirect_url = "https://example.com/welcome"
button = "gpiochip0:17"

[cloud]
host = "cloud.example.com"
port = 8443
ca = "ca.pem"
"""


def write(tmp_path: Path, text: str, name: str = "device-sim.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.state_dir == tmp_path / "state"          # relative to the file's directory
    assert cfg.profile == Path("/opt/device-sim/gatt_profile.yaml")
    assert (cfg.ble.adapter, cfg.ble.personalities, cfg.ble.notify_size) == \
        ("hci1", ("native", "improv"), 100)
    assert cfg.network.backend == "networkmanager" and cfg.network.interface == "wlan0"
    assert cfg.network.scenario == "weak-signal" and cfg.network.scan_timeout_s == 20.0
    assert (cfg.timeouts.scale, cfg.timeouts.idle_s) == (0.5, 30.5)
    d = cfg.doors
    assert (d.policy, d.softap_window_s, d.captive_mode, d.softap_open, d.softap_dnsmasq) == \
        ("both", 0.0, "portal", True, "wlan0")
    assert d.softap_listen == ("10.42.0.1", 80) and d.softap_lan == ("::", 8381)
    assert cfg.improv.authorization == "required"
    assert cfg.improv.authorization_timeout_s == 90.0
    assert cfg.improv.redirect_url == "https://example.com/welcome"
    assert cfg.improv.button == "gpiochip0:17"
    assert (cfg.cloud.host, cfg.cloud.port, cfg.cloud.ca) == \
        ("cloud.example.com", 8443, tmp_path / "ca.pem")
    assert cfg.source == tmp_path / "device-sim.toml"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ble.adapter = "hci2"  # type: ignore[misc]


def test_empty_file_gives_the_run_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg == DaemonConfig()
    assert cfg.state_dir == Path("/var/lib/device-sim") and cfg.profile is None
    assert (cfg.ble.adapter, cfg.ble.personalities, cfg.ble.notify_size) == ("hci0", None, 244)
    assert (cfg.network.backend, cfg.network.interface, cfg.network.scenario) == \
        ("simulated", None, "typical-home")
    assert (cfg.timeouts.scale, cfg.timeouts.idle_s) == (1.0, None)
    assert cfg.doors.policy == "ble-then-softap" and cfg.doors.softap_window_s == 60.0
    assert cfg.doors.softap_listen == ("127.0.0.1", 8380)
    assert cfg.doors.softap_lan == ("127.0.0.1", 8381)
    assert (cfg.doors.captive_mode, cfg.doors.softap_open, cfg.doors.softap_dnsmasq) == \
        ("app", False, None)
    assert cfg.improv == type(cfg.improv)()
    assert (cfg.cloud.host, cfg.cloud.port, cfg.cloud.ca) == (None, 443, None)


def test_defaults_match_device_sim_run() -> None:
    """The defaults equal DaemonOptions' and those of every `device-sim run` flag that has one."""
    from device_sim.cli import build_parser
    from device_sim.daemon import DaemonOptions
    from device_sim.doors.ble.host import DEFAULT_NOTIFY_SIZE
    from device_sim.doors.softap.door import CAPTIVE_MODES as DOOR_CAPTIVE_MODES
    from device_sim.doors.supervisor import Policy

    cfg = DaemonConfig()
    assert DaemonOptions(**cfg.to_daemon_options()) == \
        DaemonOptions(state_dir=Path("/var/lib/device-sim"))
    assert cfg.ble.notify_size == DEFAULT_NOTIFY_SIZE
    args = build_parser().parse_args(["run", "--state-dir", "/x"])
    expected = {"adapter": cfg.ble.adapter, "backend": cfg.network.backend,
                "scenario": cfg.network.scenario, "timeout_scale": cfg.timeouts.scale,
                "idle_timeout": cfg.timeouts.idle_s, "notify_size": None,
                "doors": cfg.doors.policy, "softap_window": cfg.doors.softap_window_s,
                "softap_listen": cfg.doors.softap_listen, "softap_lan": cfg.doors.softap_lan,
                "captive_mode": cfg.doors.captive_mode, "softap_open": cfg.doors.softap_open,
                "softap_dnsmasq": cfg.doors.softap_dnsmasq, "personality": None,
                "improv_auth": None, "improv_auth_timeout": None, "improv_redirect_url": None,
                "improv_button": None}
    for flag, value in expected.items():
        given = getattr(args, flag)
        if given is None:  # no default of its own: the config's (or the profile's) applies
            continue
        if flag in ("softap_listen", "softap_lan"):
            given = parse_host_port(given)
        assert given == value, flag
    assert set(DOOR_POLICIES) == {p.value for p in Policy}
    assert set(CAPTIVE_MODES) == set(DOOR_CAPTIVE_MODES)
    assert "networkmanager" in BACKENDS


def test_to_daemon_options_builds_the_daemon_objects(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from device_sim.daemon import DaemonOptions
    from device_sim.doors.supervisor import Policy

    cfg = load_config(write(tmp_path, FULL))
    with caplog.at_level(logging.WARNING, logger="device_sim.config"):
        kwargs = cfg.to_daemon_options()
    opts = DaemonOptions(**kwargs)
    assert opts.doors is Policy.BOTH and opts.softap.listen_port == 80
    assert opts.softap.lan_host == "::" and opts.softap.open_ap is True
    assert opts.personalities == ("native", "improv") and opts.profile_path == cfg.profile
    assert opts.improv_button == "gpiochip0:17" and opts.idle_timeout_s == 30.5
    # Settings DaemonOptions has no field for yet are dropped, loudly when not the default.
    missing = set(cfg.option_values()) - {f.name for f in dataclasses.fields(DaemonOptions)}
    for name in missing:
        assert name not in kwargs
        assert name in caplog.text


@pytest.mark.parametrize(("text", "where"), [
    ('state_dir = 3', "state_dir"),
    ('statedir = "/x"', "statedir"),
    ('[bel]\nadapter = "hci0"', "bel"),
    ('ble = "hci0"', "ble"),
    ('[ble]\nadapter = "wlan0"', "ble.adapter"),
    ('[ble]\nadaptor = "hci0"', "ble.adaptor"),
    ('[ble]\npersonalities = ["native", "native"]', "ble.personalities"),
    ('[ble]\npersonalities = ["nativ"]', "ble.personalities"),
    ('[ble]\npersonalities = []', "ble.personalities"),
    ('[ble]\npersonalities = "native"', "ble.personalities"),
    ('[ble]\nnotify_size = 10', "ble.notify_size"),
    ('[ble]\nnotify_size = 100.5', "ble.notify_size"),
    ('[ble]\nnotify_size = true', "ble.notify_size"),
    ('[network]\nbackend = "nm"', "network.backend"),
    ('[network]\ninterface = "wlan 0"', "network.interface"),
    ('[network]\ninterface = "a-very-long-interface-name"', "network.interface"),
    ('[network]\ninterface = ""', "network.interface"),
    ('[network]\nscan_timeout_s = 0', "network.scan_timeout_s"),
    ('[network]\nscan_timeout_s = "10"', "network.scan_timeout_s"),
    ('[network]\nscan_timeout_s = inf', "network.scan_timeout_s"),
    ('[network]\nscan_timeout_s = 121', "network.scan_timeout_s"),
    ('[network]\nssid = "x"', "network.ssid"),
    ('[timeouts]\nscale = 0', "timeouts.scale"),
    ('[timeouts]\nscale = -1.0', "timeouts.scale"),
    ('[timeouts]\nscale = nan', "timeouts.scale"),
    ('[timeouts]\nidle_s = 0', "timeouts.idle_s"),
    ('[timeouts]\nidle = 5', "timeouts.idle"),
    ('[doors]\npolicy = "ble-first"', "doors.policy"),
    ('[doors]\nsoftap_window_s = -1', "doors.softap_window_s"),
    ('[doors]\nsoftap_listen = "8380"', "doors.softap_listen"),
    ('[doors]\nsoftap_listen = "0.0.0.0:http"', "doors.softap_listen"),
    ('[doors]\nsoftap_lan = "0.0.0.0:65536"', "doors.softap_lan"),
    ('[doors]\nsoftap_lan = ":8381"', "doors.softap_lan"),
    ('[doors]\nsoftap_lan = "::1:8381"', "doors.softap_lan"),
    ('[doors]\ncaptive_mode = "captive"', "doors.captive_mode"),
    ('[doors]\nsoftap_open = "yes"', "doors.softap_open"),
    ('[doors]\nsoftap_dnsmasq = "wlan0/x"', "doors.softap_dnsmasq"),
    ('[improv]\nauthorization = "optional"', "improv.authorization"),
    ('[improv]\nauthorization_timeout_s = 0', "improv.authorization_timeout_s"),
    ('[improv]\nredirect_url = "example.com"', "improv.redirect_url"),
    ('[improv]\nbutton = "17"', "improv.button"),
    ('[improv]\nbutton = "gpiochip0:x"', "improv.button"),
    ('[cloud]\nport = 0', "cloud.port"),
    ('[cloud]\nport = 65536', "cloud.port"),
    ('[cloud]\nport = "443"', "cloud.port"),
    ('[cloud]\nhost = "https://cloud.example.com"', "cloud.host"),
    ('[cloud]\nca = 5', "cloud.ca"),
    ('[cloud]\nurl = "x"', "cloud.url"),
])
def test_invalid_values_name_the_key(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.where == f"device-sim.toml: {where}"
    assert str(info.value).startswith(f"device-sim.toml: {where}: ")


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


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8380", ("127.0.0.1", 8380)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("[::1]:80", ("::1", 80)),
    ("[::]:65535", ("::", 65535)),
    ("device.local:8080", ("device.local", 8080)),
])
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["", "8380", "host:", ":80", "host:-1", "host:99999", "::1:80",
                                  "[]:80", "ho st:80", "host:8o"])
def test_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_host_port(text)


def test_scenario_path_is_relative_to_the_file(tmp_path: Path) -> None:
    cfg = parse_config({"network": {"scenario": "worlds/home.yaml"}}, tmp_path / "c.toml")
    assert cfg.network.scenario == str(tmp_path / "worlds" / "home.yaml")
    assert parse_config({"network": {"scenario": "captive-portal"}},
                        tmp_path / "c.toml").network.scenario == "captive-portal"


# --- packaging ---------------------------------------------------------------------------------


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.network.backend == "networkmanager" and cfg.network.interface == "wlan0"
    assert cfg.ble.adapter == "hci0" and cfg.doors.policy == "ble-then-softap"
    assert cfg.doors.captive_mode == "portal"
    assert cfg.state_dir == Path("/var/lib/device-sim")


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",),
                                          comment_prefixes=("#", ";"), interpolation=None)
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
    assert argv[0] == "/opt/device-sim/.venv/bin/device-sim" and argv[1] == "run"
    config_path = argv[argv.index("--config") + 1]
    assert config_path == "/etc/device-sim/device-sim.toml"
    doc = DOC.read_text(encoding="utf-8")
    # The docs install the example config where the unit reads it, and the unit where systemd
    # looks; the venv the unit runs is the one the docs create.
    assert re.search(rf"packaging/device-sim\.toml\s+{re.escape(config_path)}", doc)
    assert f"doctor --config {config_path}" in doc
    assert "sudo cp packaging/device-sim.service /etc/systemd/system/" in doc
    assert "python3 -m venv /opt/device-sim/.venv" in doc
    from device_sim.config import DEFAULT_CONFIG_PATH
    assert str(DEFAULT_CONFIG_PATH) == config_path
    state_dir = load_config(EXAMPLE).state_dir
    assert state_dir == Path("/var/lib") / _unit()["Service"]["StateDirectory"]
    assert f"--state-dir {state_dir}" in doc
