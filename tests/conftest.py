"""Suite-wide rules.

A test that needs something this machine may lack (a tool, a module, network namespaces, a
browser) says so with a marker instead of ``skipif``:

    @pytest.mark.requires_tools("dbus-daemon", "udhcpc", modules=("bluezoo",))
    @pytest.mark.requires(reason_or_none)      # a reason computed by the test module

Where it is missing the test is skipped with the reason, except with ``CI`` set (``CI=true``,
as ``.ci/run`` runs): then it fails with the reason, so a CI run never passes by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from device_sim.profile import Profile, load_profile

_SBIN = ("/usr/sbin", "/sbin")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing_tool(tool: str) -> bool:
    if shutil.which(tool) is not None:
        return False
    return not any(os.access(os.path.join(d, tool), os.X_OK) for d in _SBIN)


def missing_reason(tools: tuple[str, ...] = (), modules: tuple[str, ...] = ()) -> str | None:
    """Why a test that needs ``tools`` and ``modules`` cannot run here; None when it can."""
    lacking = [t for t in tools if _missing_tool(t)]
    lacking += [f"python module {m}" for m in modules if importlib.util.find_spec(m) is None]
    if not lacking:
        return None
    return f"needs {', '.join(lacking)} (bash scripts/bootstrap.sh test installs them)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(reason): skip with reason (fail under CI) when reason is not None"
    )
    config.addinivalue_line(
        "markers",
        "requires_tools(*tools, modules=()): programs on PATH "
        "and importable modules the test needs",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    reasons = [m.args[0] for m in item.iter_markers("requires") if m.args and m.args[0]]
    for mark in item.iter_markers("requires_tools"):
        reason = missing_reason(tuple(mark.args), tuple(mark.kwargs.get("modules", ())))
        if reason:
            reasons.append(reason)
    if not reasons:
        return
    reason = "; ".join(dict.fromkeys(reasons))
    if in_ci():
        pytest.fail(f"CI is set, but this machine cannot run this test: {reason}", pytrace=False)
    pytest.skip(reason)


def require(reason: str | None) -> None:
    """In a fixture or test body: skip with ``reason`` (fail under CI) unless it is None."""
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI is set, but this machine cannot run this test: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(name="require", scope="session")
def require_fixture() -> object:
    """:func:`require` for fixtures and tests of any package (no import of this conftest)."""
    return require


@pytest.fixture(scope="session")
def profile() -> Profile:
    """The repository's gatt_profile.yaml, loaded once for the whole run."""
    return load_profile()
