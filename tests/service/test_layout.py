"""The service package is layered: ``app`` wires, routers route, ``deps``/``errors`` are
shared, ``runtime``/``freshness``/``metrics`` run. No module of it imports another that
(directly or through others, lazily or not) imports it back — an import circle is what made
``live`` reach into ``app`` for its error class."""

from __future__ import annotations

import ast
from pathlib import Path

import journey.service

PACKAGE = Path(journey.service.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        # Every import, also those inside functions (a lazy import is still a circle).
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found.update(t for t in targets if t in modules and t != name)
        graph[name] = found
    return graph


def test_no_import_circles_in_the_service() -> None:
    graph = _imports()
    # The package's __init__ re-exports create_app: importing the package is not a circle.
    graph = {m: deps - {"journey.service"} for m, deps in graph.items()}
    circles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    circles.append(" → ".join([*path, nxt]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not circles, circles


def test_create_app_is_the_one_entry_point_and_only_wires() -> None:
    app = (PACKAGE / "app.py").read_text()
    tree = ast.parse(app)
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    assert functions == ["create_app"]
    assert "@app.get" not in app and "@app.post" not in app, "routes belong in routers/"
