"""The code's shape, kept by tests: no import cycle, no oversized source file."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "wsprof"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Every import of a wsprof module by a wsprof module, lazy (in-function) ones included."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import sub` imports the submodule; `from mod import name`, the module.
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [s for s in subs if s in modules] or [node.module]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = _import_graph()
    assert graph.get("wsprof.scenario.runner")
    assert _cycles(graph) == []


def test_no_package_imports_a_package_that_imports_it_back() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _import_graph().items():
        deps = packages.setdefault(_package(module), set())
        deps.update(_package(t) for t in targets if _package(t) != _package(module))
    for package in list(packages.values()):
        for dep in package:
            packages.setdefault(dep, set())
    # __init__ re-exports make "wsprof" itself a hub; the rule is about sub-packages.
    packages.pop("wsprof", None)
    for deps in packages.values():
        deps.discard("wsprof")
    assert _cycles(packages) == []


def test_measuring_code_never_draws_on_the_terminal() -> None:
    """Progress reaches the console through a callback; only report/ and commands/ use rich."""
    graph_sources = {_module_name(p): p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}
    drawing = sorted(
        name for name, text in graph_sources.items() if "import rich" in text or "from rich" in text
    )
    assert drawing, "rich is wsprof's terminal library; something must use it"
    assert all(name.startswith(("wsprof.report", "wsprof.commands")) for name in drawing), drawing


def test_no_source_file_over_600_lines() -> None:
    sources = [*SRC.rglob("*.py"), *(ROOT / "ext").rglob("*.pyx"), *(ROOT / "ext").rglob("*.pxd")]
    assert len(sources) > 20
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in sources
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}
