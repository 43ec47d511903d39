"""The package's layering, read from the source: every import (top-level, inside a function, or a module named by
string for ``importlib``) points to the same or a lower layer, and no group of modules imports itself in a circle.

Layers, lowest first: the shared errors and validation formatting; the pure core; plan files; the simulator;
the shell (CLI, files, Kafka, HTTP). core never imports sim or shell; sim never imports shell.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "gatekeeper"
LAYERS = [  # (module name prefix, layer); the longest matching prefix wins
    ("gatekeeper.errors", 0),
    ("gatekeeper.validation", 0),
    ("gatekeeper.core", 1),
    ("gatekeeper.planfile", 2),
    ("gatekeeper.sim", 3),
    ("gatekeeper.shell", 4),
    ("gatekeeper", 4),  # the package's own __init__ and anything new at the top: highest until placed
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    return max(
        ((len(prefix), layer) for prefix, layer in LAYERS if module == prefix or module.startswith(prefix + "."))
    )[1]


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports: ``import a.b``, ``from a import b`` (b a module or a name in a),
    relative imports, and string constants naming a module (``importlib.import_module("gatekeeper...")``)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:  # a submodule of ``base``, else a name defined in ``base`` itself
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
            found.add(node.value)
    return {name for name in found if name in known and name != me}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known)) for name, path in known.items()}


def test_the_graph_is_read() -> None:
    """The reader finds the imports it must judge (a parser that found nothing would pass everything below)."""
    edges = graph()
    assert {"gatekeeper.core.plan", "gatekeeper.errors"} <= edges["gatekeeper.planfile"]
    assert "gatekeeper.shell.worker.cli" in edges["gatekeeper.shell.cli"]  # named by string for importlib


def test_imports_point_down_or_sideways() -> None:
    """No module imports a module of a higher layer (core -> shell, core -> sim, sim -> shell, ...)."""
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(source)
    )
    assert [] == upward


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    """The cycle finder reports exactly the circular groups."""
    assert expected == cycles(edges)


def test_no_import_cycles() -> None:
    """No modules import each other in a circle, directly or through others (package __init__ files aside:
    a package importing its own modules is how it exports them)."""
    edges = {name: {t for t in targets if not PACKAGE.joinpath(*t.split(".")[1:], "__init__.py").exists()}
             for name, targets in graph().items()}  # fmt: skip
    assert [] == cycles(edges)
