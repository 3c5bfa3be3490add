"""No import circle inside a package of the library, imports inside functions and under TYPE_CHECKING included.

The layer contract (`[tool.importlinter]` in pyproject.toml, run by `lint-imports` in CI) orders the packages;
within one package its modules may import each other, and this keeps those imports a tree: a circle hidden by an
import inside a function (train/loop <-> train/tracker, tune/cluster <-> tune/driver) fails here, naming it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "pipeline"


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the library that `path` imports anywhere in its body (`from a.b import c` names a.b.c when
    that is a module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found & modules


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {m: _imports(p, set(files)) - {m} for m, p in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of `graph` (a list of nodes ending where it starts), or None."""
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            if state[nxt] == 0 and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state[node] == 0 and (found := visit(node)):
            return found
    return None


def test_no_package_of_the_library_has_an_import_circle():
    graph = _graph()
    packages = {m.rpartition(".")[0] for m in graph} | {"pipeline"}
    for package in sorted(packages):
        inside = {m for m in graph if m.rpartition(".")[0] == package and m != package}
        circle = _cycle({m: graph[m] & inside for m in inside})
        assert circle is None, f"import circle in {package}: {' -> '.join(circle)}"


def test_the_checker_finds_a_circle_hidden_in_a_function():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
