#!/usr/bin/env python3
"""Check the import rules of ``device_sim/``: imports run downward only and nothing imports in a
circle (issue 12). Reads the source with :mod:`ast` (nothing is imported or run), so every import
counts: at module level, inside functions and under ``TYPE_CHECKING``.

Layers, lowest first (a module may import its own layer or any lower one):

  0 vocabulary  codes, errors, lifecycle, document, ratelimit, guarded_http, wire, dial, options,
                pki*,
                security/
  1 profile/    gatt_profile.yaml as frozen dataclasses
  2 network/    backends (simulated world, NetworkManager) and connectivity checks
  3 core/       engine, events, store, identity, activation
  4 session/    the one door-facing interface
  5 client/     the shared phone-side flow
  6 doors/      base.py, personality.py and the host interfaces (ble/gatt.py; softap/api.py,
                http.py, sessions.py), then one folder per door or personality (ble/ and
                softap/ are the hosts' implementations), then supervisor.py and registry.py
  7 the device's top: stack, daemon, config, control, support/, watch/ (what `run` serves)
  8 apps/       the tools: cli + commands/, demo, bench/, fleet/, factory/, cloud/ (emulator),
                loadtest/, doctor/, virtual/, story; __main__ (the command) and api (the public
                Python API over them)
  9 testing/    test support (python-dbusmock's NetworkManager, a GATT host in memory, the pytest
                plugin over the public API, ...):
                imported by tests and benchmarks only, never by the device or a tool

Further rules:
  * a door skips no layer: doors/ imports session/ and below, never core/ or network/;
  * a door or personality folder does not import another one (shared parts live in doors/base.py
    and the host interfaces);
  * a personality's folder (one with a PERSONALITY entry) is imported by nobody outside it: the
    registry names it, the tools reach it through its entry's capabilities (one allowance:
    ALLOWED below);
  * no code outside a personality's folder (and the registry) names it in a string;
  * no circle among modules.

Exit status 0 when clean; 1 with one line per finding. ``--graph`` prints the module graph.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "device_sim"

VOCABULARY = {
    "codes",
    "errors",
    "lifecycle",
    "document",
    "ratelimit",
    "dial",
    "dbus_call",
    "bumble_stack",  # bumble transports and in-process links, for the host and the phone
    "schema",
    "contracts",
    "options",
    "guarded_http",
    "pki",
    "pki_verify",
    "security",
    "__init__",
}
RANKS = {
    "profile": 1,
    "network": 2,
    "core": 3,
    "session": 4,
    "client": 5,
    "doors": 6,
    "apps": 8,
    "api": 8,
    "__main__": 8,
    "testing": 9,
}
TOP = 7
DOOR_SHARED = {"base", "personality", "__init__"}  # doors/ rank 6.0
HOST_INTERFACES = {"ble.gatt", "softap.api", "softap.http", "softap.sessions"}  # rank 6.0
# Imports of a personality's folder from outside it, each with why.
ALLOWED = {
    # The QA bench's users walk native's SoftAP session step by step (typing, leaving the AP
    # mid-session, rejoining): a model of native's phone, not of every personality's.
    ("device_sim.apps.bench.phone", "device_sim.doors.native.flow"),
}
DOOR_KNOWERS = {"supervisor", "registry"}  # doors/ rank 6.2


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def rank(module: str) -> float:
    parts = module.split(".")[1:]
    if not parts or parts[0] in VOCABULARY:
        return 0
    if parts[0] not in RANKS:
        return TOP
    if parts[0] != "doors" or len(parts) == 1:
        return RANKS[parts[0]]
    if parts[1] in DOOR_SHARED or ".".join(parts[1:3]) in HOST_INTERFACES:
        return 6.0
    if parts[1] in DOOR_KNOWERS:
        return 6.2
    return 6.1


def door_folder(module: str) -> str | None:
    """``device_sim.doors.improv.device`` -> ``improv`` (a door or personality folder)."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "doors" and rank(module) == 6.1:
        return parts[2]
    return None


def imports(path: Path, module: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """The device_sim modules ``path`` imports, with line numbers."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield _nearest(alias.name, known), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:  # `from .pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else _nearest(target, known)), node.lineno


def _nearest(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def personalities(root: Path) -> set[str]:
    """The folders under doors/ whose __init__ defines PERSONALITY."""
    return {
        init.parent.name
        for init in (root / PACKAGE / "doors").glob("*/__init__.py")
        if re.search(r"^PERSONALITY\s*=", init.read_text(), re.MULTILINE)
    }


def named_personalities(path: Path, names: set[str]) -> Iterator[tuple[str, int]]:
    """String constants in ``path`` that are a personality's name."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and node.value in names:
            yield str(node.value), node.lineno


def check(root: Path = ROOT) -> tuple[list[str], dict[str, set[str]]]:
    files = {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    folders = personalities(root)
    known = set(files)
    graph: dict[str, set[str]] = {m: set() for m in files}
    findings: list[str] = []
    for module, path in files.items():
        where = path.relative_to(root)
        for target, line in sorted(set(imports(path, module, known))):
            if target == module or target not in known:
                continue
            graph[module].add(target)
            if target == PACKAGE:
                continue
            if rank(target) > rank(module):
                findings.append(
                    f"{where}:{line}: imports upward: {target} (layer {rank(target):g}) "
                    f"from layer {rank(module):g}"
                )
            if 6 <= rank(module) < TOP and rank(target) in (2, 3):
                findings.append(f"{where}:{line}: a door skips the session layer: {target}")
            mine, theirs = door_folder(module), door_folder(target)
            if mine and theirs and mine != theirs:
                findings.append(f"{where}:{line}: door {mine} imports door {theirs}: {target}")
            owner = target.split(".")[2] if target.startswith(f"{PACKAGE}.doors.") else None
            if (
                owner in folders
                and target.count(".") >= 2
                and mine != owner
                and (module, target) not in ALLOWED
            ):
                findings.append(f"{where}:{line}: imports personality {owner}: {target}")
        if not module.endswith("doors.registry"):
            for name, line in named_personalities(path, folders):
                if door_folder(module) != name:
                    findings.append(f"{where}:{line}: names personality {name!r}")
    for component in cycles(graph):
        findings.append("circular import: " + " -> ".join(component))
    return findings, graph


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", action="store_true", help="print every module's imports")
    args = parser.parse_args(argv)
    findings, graph = check()
    if args.graph:
        for module in sorted(graph):
            print(f"{module} ({rank(module):g}): {', '.join(sorted(graph[module])) or '-'}")
    for finding in findings:
        print(finding)
    print(
        f"check_layers: {len(graph)} modules, "
        f"{sum(len(v) for v in graph.values())} imports, {len(findings)} findings",
        file=sys.stderr,
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
