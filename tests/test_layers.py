"""The import rules of device_sim/ (scripts/check_layers.py): downward only, no circle, doors
through the session layer, no door importing another."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_layers", ROOT / "scripts" / "check_layers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_keeps_the_rules() -> None:
    findings, graph = _checker().check(ROOT)
    assert findings == []
    assert len(graph) > 100  # it read the package, not an empty tree
    # The personalities and the SoftAP door reach only the session layer below them.
    for module, imports in graph.items():
        if module.startswith("device_sim.doors."):
            assert not {
                i for i in imports if i.startswith(("device_sim.core", "device_sim.network"))
            }, module


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"device_sim/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_it_finds_each_kind_of_breach(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "device_sim/core/__init__.py": "",
            "device_sim/core/engine.py": "from ..session import port\n",  # upward
            "device_sim/session/__init__.py": "",
            "device_sim/session/port.py": "from ..core import engine\n",
            "device_sim/doors/__init__.py": "",
            "device_sim/doors/esp/__init__.py": "",
            "device_sim/doors/esp/device.py": (
                "from ...core.engine import X\n"  # skips session
                "from ..improv import codec\n"
            ),  # another door
            "device_sim/doors/improv/__init__.py": "",
            "device_sim/doors/improv/codec.py": "",
            "device_sim/profile/__init__.py": "",
            "device_sim/profile/a.py": "def f():\n    from . import b\n",  # a lazy circle
            "device_sim/profile/b.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from . import a\n",
        },
    )
    findings, _ = _checker().check(root)
    text = "\n".join(findings)
    assert "device_sim/core/engine.py:1: imports upward: device_sim.session.port" in text
    assert "device_sim/doors/esp/device.py:1: a door skips the session layer" in text
    assert "door esp imports door improv" in text
    assert "circular import: device_sim.profile.a -> device_sim.profile.b" in text
    assert "circular import: device_sim.core.engine -> device_sim.session.port" in text
    assert len(findings) == 5


def test_a_personality_is_reached_only_through_its_registry_entry(tmp_path: Path) -> None:
    """Outside its folder, nobody imports a personality or names it: the registry does, and
    the tools read its capabilities. The host interfaces are shared by every personality."""
    root = _tree(
        tmp_path,
        {
            "device_sim/doors/__init__.py": "",
            "device_sim/doors/registry.py": 'FOLDERS = {"alpha": "device_sim.doors.alpha"}\n',
            "device_sim/doors/alpha/__init__.py": "PERSONALITY = None\n",
            "device_sim/doors/alpha/wire.py": "",
            "device_sim/doors/alpha/device.py": (
                "from ..ble.gatt import GattChar\n"
                "from ..softap.api import SoftApHost\n"
                "from . import wire\n"
            ),
            "device_sim/doors/ble/__init__.py": "",
            "device_sim/doors/ble/gatt.py": "",
            "device_sim/doors/softap/__init__.py": "",
            "device_sim/doors/softap/api.py": "",
            "device_sim/demo.py": (
                "from .doors.alpha import wire\n"  # imports it
                "if name == 'alpha':\n    pass\n"
            ),  # names it
        },
    )
    findings, _ = _checker().check(root)
    assert sorted(findings) == [
        "device_sim/demo.py:1: imports personality alpha: device_sim.doors.alpha.wire",
        "device_sim/demo.py:2: names personality 'alpha'",
    ]


def test_the_device_never_imports_a_tool_nor_test_support(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "device_sim/daemon.py": "from .apps import demo\n",  # the device imports a tool
            "device_sim/apps/__init__.py": "",
            "device_sim/apps/demo.py": "from ..testing import nm_mock\n",  # a tool, test support
            "device_sim/testing/__init__.py": "",
            "device_sim/testing/nm_mock.py": "",
        },
    )
    findings, _ = _checker().check(root)
    assert sorted(findings) == [
        "device_sim/apps/demo.py:1: imports upward: device_sim.testing.nm_mock (layer 9) "
        "from layer 8",
        "device_sim/daemon.py:1: imports upward: device_sim.apps.demo (layer 8) from layer 7",
    ]
