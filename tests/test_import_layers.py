"""Imports point one way (the house plan, ``DESIGN.md``: ``resources <- capability <-
fhir_server -> smart_auth``), read from the source with :mod:`ast`, every import counted:
at module level, inside functions and under ``if TYPE_CHECKING:`` (an import deferred
into a function is still a dependency, and one made only for type hints still says the
modules know each other).

- ``smart_auth`` has no import cycle among its modules: the service and the stores at
  the bottom, the pages and routes on top, assembled in one place
  (:mod:`smart_auth.service`);
- ``smart_auth`` imports nothing from ``fhir_server`` (what it needs from FHIR data is
  handed to it as hooks);
- the storage protocol (``fhir_server/storage/base.py``) imports neither store
  implementation nor a database driver.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, root: Path = ROOT) -> Iterator[tuple[str, int]]:
    """Every module name an import in ``path`` names (``from a.b import c`` gives both
    ``a.b`` and ``a.b.c``: ``c`` may be a module), with the line of the import."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def _graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (anywhere in it)."""
    paths = {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        targets = {target for target, _ in _imported(path) if target in paths}
        graph[module] = targets - {module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_and_type_checking_imports_count(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from smart_auth.service import SmartAuth\n"
        "def f():\n    from smart_auth import pages\n"
    )
    path = tmp_path / "package" / "module.py"
    path.parent.mkdir()
    path.write_text(source + "from . import sibling\n")
    found = {name for name, _ in _imported(path, tmp_path)}
    assert {"smart_auth.service", "smart_auth.pages", "package.sibling"} <= found


def test_smart_auth_has_no_import_cycle() -> None:
    graph = _graph("smart_auth")
    assert {"smart_auth.service", "smart_auth.routes", "smart_auth.pages"} <= set(graph)
    assert _cycles(graph) == []


def test_smart_auth_is_assembled_on_top() -> None:
    """The service (the assembled authorization server) imports the routes; nothing in
    ``smart_auth`` imports the service, and the pages import no route module."""
    graph = _graph("smart_auth")
    assert "smart_auth.routes" in graph["smart_auth.service"]
    importers = sorted(
        module for module, targets in graph.items() if "smart_auth.service" in targets
    )
    assert importers == []
    assert "smart_auth.routes" not in graph["smart_auth.pages"]


def test_smart_auth_imports_nothing_from_fhir_server() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / "smart_auth").rglob("*.py"))
        for name, line in _imported(path)
        if name == "fhir_server" or name.startswith("fhir_server.")
    ]
    assert offending == []


def test_the_storage_protocol_imports_no_store_implementation() -> None:
    path = ROOT / "fhir_server" / "storage" / "base.py"
    implementations = ("fhir_server.storage.sqlite", "fhir_server.storage.mongo")
    drivers = ("sqlite3", "pymongo", "mongomock", "motor", "bson")
    offending = [
        f"line {line}: {name}"
        for name, line in _imported(path)
        if name.startswith(implementations) or name.split(".")[0] in drivers
    ]
    assert offending == []
