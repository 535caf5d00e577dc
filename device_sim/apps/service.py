"""``device-sim service install|uninstall``: the daemon as a systemd service, run from the
virtualenv this command runs in (``sudo /opt/device-sim/bin/device-sim service install``).

``install`` writes the unit (``packaging/device-sim.service`` with ``ExecStart=`` naming this
virtualenv's ``device-sim`` and ``Documentation=`` the Raspberry Pi page shipped in the
package), the commented config unless one exists, the state directory the config names (mode
0700), the link ``/usr/local/bin/device-sim`` (sudo's ``secure_path`` sees it), and the
``multi-user.target.wants`` link that enables the unit, as ``systemctl enable`` makes it. On a
running systemd it then reloads systemd; it starts nothing (the device needs its identity
first: ``device-sim init``). ``uninstall`` stops and disables the unit and removes what
``install`` wrote, except the config and the state directory (the device's identity), which
``--purge`` removes too.

Every path is under ``root`` (default ``/``), so a package build or a test installs into a
directory of its own. Nothing is overwritten that is not ours without ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..config import DEFAULT_CONFIG_PATH, load_config
from ..errors import ConfigError

__all__ = [
    "Layout",
    "Outcome",
    "add_parser",
    "command_on_path",
    "install",
    "problems",
    "run",
    "uninstall",
]

UNIT_NAME = "device-sim.service"
SHIPPED_BINARY = "/opt/device-sim/bin/device-sim"  # the path packaging/device-sim.service names
LINK = Path("/usr/local/bin/device-sim")
UNIT_DIR = Path("/etc/systemd/system")
SYSTEMCTL_TIMEOUT = 30.0
HIDDEN = (Path("/home"), Path("/root"), Path("/run/user"))  # what ProtectHome=yes hides


def packaged(name: str) -> Path:
    """A file of ``device_sim/data/`` (the unit, the config, the Raspberry Pi page)."""
    return Path(str(resources.files("device_sim") / "data" / name))


def this_binary() -> Path:
    """The ``device-sim`` of the environment this runs in."""
    return Path(sys.prefix) / "bin" / "device-sim"


def command_on_path(root: Path = Path("/")) -> str:
    """How a fix names device-sim: ``device-sim`` when sudo's PATH reaches it (the link, or
    PATH itself), else this environment's binary by its full path."""
    linked = root / LINK.relative_to("/")
    if (linked.exists() and os.access(linked, os.X_OK)) or shutil.which("device-sim"):
        return "device-sim"
    return str(this_binary())


@dataclass(frozen=True)
class Layout:
    """Where an install puts each file, under ``root``."""

    root: Path = Path("/")
    binary: Path = field(default_factory=this_binary)

    def at(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    @property
    def unit(self) -> Path:
        return self.at(UNIT_DIR / UNIT_NAME)

    @property
    def wants(self) -> Path:
        return self.at(UNIT_DIR / "multi-user.target.wants" / UNIT_NAME)

    @property
    def config(self) -> Path:
        return self.at(DEFAULT_CONFIG_PATH)

    @property
    def link(self) -> Path:
        return self.at(LINK)

    @property
    def live(self) -> bool:
        """The real root of a machine running systemd: systemctl is asked to reload."""
        return self.root == Path("/") and Path("/run/systemd/system").is_dir()


@dataclass
class Outcome:
    """What an install or uninstall did, what it left in place, and what to do next."""

    installed: bool
    done: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    next: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "installed": self.installed,
            "done": self.done,
            "kept": self.kept,
            "next": self.next,
        }

    def text(self) -> str:
        lines = [*self.done, *(f"kept {path} (--purge removes it)" for path in self.kept)]
        if self.next:
            lines += ["next:", *(f"  {step}" for step in self.next)]
        return "\n".join(lines)


def render_unit(binary: Path) -> str:
    """The shipped unit, running ``binary`` and documented by the page shipped with it."""
    text = packaged("packaging/device-sim.service").read_text(encoding="utf-8")
    page = packaged("raspberry-pi.md").resolve()
    lines = []
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            line = line.replace(SHIPPED_BINARY, str(binary), 1)
        elif line.startswith("Documentation="):
            line = f"Documentation=file://{page}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def install(layout: Layout, *, force: bool = False) -> Outcome:
    """Install and enable the unit; returns what was done and what to do next.

    Raises ConfigError: no ``device-sim`` in this environment, a virtualenv the unit could not
    run (under a hidden home), a file in the way (without ``force``), a bad existing config."""
    binary = layout.binary
    if any(binary.is_relative_to(hidden) for hidden in HIDDEN):
        raise ConfigError(
            "service install",
            f"{binary} is under a home directory, which the unit's ProtectHome=yes hides: "
            "install device-sim into a virtualenv under /opt (python3 -m venv /opt/device-sim)",
        )
    if not os.access(binary, os.X_OK):
        raise ConfigError(
            "service install",
            f"no device-sim at {binary}: run this command with the device-sim of a virtualenv "
            "(python3 -m venv /opt/device-sim && /opt/device-sim/bin/pip install device-sim)",
        )
    out = Outcome(installed=True)
    done = out.done
    unit_text = render_unit(binary)
    if layout.unit.is_file() and layout.unit.read_text(encoding="utf-8") == unit_text:
        done.append(f"unit {layout.unit}: unchanged")
    else:
        existed = layout.unit.exists()
        _write(layout.unit, unit_text, 0o644)
        done.append(f"unit {layout.unit}: {'updated' if existed else 'written'} (runs {binary})")
    if layout.config.exists():
        done.append(f"config {layout.config}: kept (yours)")
    else:
        shipped = packaged("packaging/device-sim.toml").read_text(encoding="utf-8")
        _write(layout.config, shipped, 0o644)
        done.append(f"config {layout.config}: written (commented; every key optional)")
    state = load_config(layout.config).state_dir.absolute()  # as the unit's daemon sees it
    state_dir = layout.at(state)
    if state_dir.is_dir():
        done.append(f"state directory {state_dir}: kept")
    else:
        state_dir.mkdir(mode=0o700, parents=True)
        done.append(f"state directory {state_dir}: made (0700)")
    _link(layout.link, binary, force)
    done.append(f"link {layout.link} -> {binary}")
    _link(layout.wants, UNIT_DIR / UNIT_NAME, True)
    done.append(f"enabled: {layout.wants}")
    if layout.live:
        _systemctl("daemon-reload")
        done.append("systemctl daemon-reload")
    identity = (state_dir / "device.sqlite3").exists()
    if not identity:
        out.next.append(f"sudo device-sim init --state-dir {state}  (prints the label once)")
    out.next += [
        f"sudoedit {DEFAULT_CONFIG_PATH}",
        f"sudo device-sim doctor --config {DEFAULT_CONFIG_PATH}",
        "sudo systemctl start device-sim && journalctl -u device-sim -f",
    ]
    return out


def uninstall(layout: Layout, *, purge: bool = False) -> Outcome:
    """Stop and disable the unit, remove what ``install`` wrote; ``purge``: the config and the
    state directory (the device's identity) too."""
    out = Outcome(installed=False)
    done = out.done
    if layout.live and layout.unit.exists():
        _systemctl("stop", UNIT_NAME, check=False)
        done.append("systemctl stop device-sim")
    state_dir = None
    if layout.config.is_file():
        try:
            state_dir = layout.at(load_config(layout.config).state_dir.absolute())
        except ConfigError:
            state_dir = None
    for path, what in ((layout.wants, "disabled"), (layout.unit, "removed unit")):
        if path.is_symlink() or path.exists():
            path.unlink()
            done.append(f"{what}: {path}")
    if layout.link.is_symlink() and Path(os.readlink(layout.link)).name == "device-sim":
        layout.link.unlink()
        done.append(f"removed link {layout.link}")
    for path in [p for p in (layout.config, state_dir) if p is not None]:
        if not path.exists():
            continue
        if purge:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
                with_parent = path.parent
                if with_parent.is_dir() and not any(with_parent.iterdir()):
                    with_parent.rmdir()
            done.append(f"purged {path}")
        else:
            out.kept.append(str(path))
    if layout.live:
        _systemctl("daemon-reload")
        done.append("systemctl daemon-reload")
    return out


def problems(layout: Layout) -> list[tuple[str, str]]:
    """What is wrong with an installed service: (detail, fix) pairs; none when it is well."""
    fix = f"sudo {layout.binary} service install"
    if not layout.unit.is_file():
        return [(f"no unit at {layout.unit}", fix)]
    found: list[tuple[str, str]] = []
    exec_start = next(
        (ln for ln in layout.unit.read_text().splitlines() if ln.startswith("ExecStart=")), ""
    )
    program = Path(exec_start.removeprefix("ExecStart=").split(" ", 1)[0] or "/nonexistent")
    if not os.access(program, os.X_OK):
        found.append((f"the unit runs {program}, which is not an executable", fix))
    if not layout.wants.is_symlink():
        found.append(("the unit is not enabled", "sudo systemctl enable device-sim"))
    if not (layout.link.exists() and os.access(layout.link, os.X_OK)):
        found.append((f"{layout.link} does not reach device-sim (not on sudo's PATH)", fix))
    return found


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)


def _link(path: Path, target: Path, force: bool) -> None:
    if path.exists() and not path.is_symlink() and not force:
        raise ConfigError(
            "service install", f"{path} exists and is not a link: move it, or use --force"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def _systemctl(*args: str, check: bool = True) -> None:
    try:
        subprocess.run(
            ["systemctl", *args], check=check, capture_output=True, timeout=SYSTEMCTL_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError("systemctl", f"systemctl {' '.join(args)} failed: {exc}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "service",
        help="install or remove the daemon as a systemd service (from this virtualenv)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    what = p.add_subparsers(dest="service_command", required=True)
    add = what.add_parser("install", help="write and enable the unit, the config, the link")
    add.add_argument("--force", action="store_true", help="replace a file in the link's place")
    remove = what.add_parser("uninstall", help="stop, disable and remove the service")
    remove.add_argument(
        "--purge", action="store_true", help="also the config and the state (the identity)"
    )
    for q in (add, remove):
        q.add_argument("--root", type=Path, default=Path("/"), help="install under this root")
        q.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Raises ConfigError (see :func:`install`)."""
    layout = Layout(root=args.root.absolute())
    if args.service_command == "install":
        result = install(layout, force=args.force)
    else:
        result = uninstall(layout, purge=args.purge)
    print(json.dumps(result.to_json()) if args.json else result.text())
    return 0
