"""The shape of the house, read from the source: who may import whom, and no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import oddeye

ROOT = Path(oddeye.__file__).resolve().parent
HEADS = ("image", "video", "pointcloud", "patrol")
SHARED = ("core", "retrieval", "store", "scale")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """oddeye module -> the oddeye modules it imports anywhere in its source (lazy imports included)."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_nothing_below_the_ui_imports_the_ui():
    bad = {m: sorted(d for d in deps if _package(d) == "ui") for m, deps in import_graph().items()
           if _package(m) in (*SHARED, *HEADS)}
    assert not {m: d for m, d in bad.items() if d}


def test_heads_import_no_other_head_and_shared_code_imports_no_head():
    graph = import_graph()
    for m, deps in graph.items():
        pkg = _package(m)
        others = {_package(d) for d in deps} & set(HEADS)
        if pkg in HEADS:
            assert others <= {pkg}, f"{m} imports another head: {sorted(d for d in deps if _package(d) in others - {pkg})}"
        if pkg in SHARED:
            assert not others, f"{m} imports a head: {sorted(d for d in deps if _package(d) in HEADS)}"


def test_core_imports_nothing_of_ours_outside_core():
    for m, deps in import_graph().items():
        if _package(m) == "core":
            assert {_package(d) for d in deps} <= {"core", ""}, (m, sorted(deps))


def test_the_runtime_imports_only_core():
    for m, deps in import_graph().items():
        if _package(m) == "runtime":
            assert {_package(d) for d in deps} <= {"core", "runtime", ""}, (m, sorted(deps))


def test_no_import_circles():
    graph = import_graph()
    # a package's __init__ is skipped: it only re-exports lazily
    graph = {m: {d for d in deps if not (ROOT.parent / d.replace(".", "/") / "__init__.py").exists()}
             for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("package", [*SHARED, *HEADS, "ui", "live", "export", "runtime"])
def test_every_package_exists(package):
    assert (ROOT / package / "__init__.py").is_file()
