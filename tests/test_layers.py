"""The layering of docs/architecture.md: imports point down, and none loops back.

Deferred (function-level) and TYPE_CHECKING imports count too: a loop that only
shows at run time is still a loop for the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules(package: str) -> dict[str, Path]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` imports (a package's __init__ excluded)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            candidates = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for target in candidates:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
    return targets


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_djap_django_has_no_import_loop_and_never_imports_djap():
    modules = {**_modules("djap_django"), **_modules("djap")}
    packages = {n for n, p in modules.items() if p.name == "__init__.py"}
    graph = {
        name: _imports(name, path, set(modules)) - packages
        for name, path in modules.items()
        if name.startswith("djap_django")
    }
    up = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if b == "djap" or b.startswith("djap.")
    )
    assert not up, f"djap_django imports the operator layer: {up}"
    inner = {a: {b for b in targets if b in graph} for a, targets in graph.items()}
    assert not _loops(inner), f"import loops inside djap_django: {_loops(inner)}"
