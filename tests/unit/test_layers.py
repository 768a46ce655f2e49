"""Arrows point one way: shell (journey/) → projections/ and consumers/ → domain/.

Walks every import statement (module level and inside functions, ``TYPE_CHECKING`` blocks
included) of the engine's packages; a new upward or sideways import fails here, naming the
file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> the top-level packages of this project it must never import
FORBIDDEN = {
    "domain": {"consumers", "projections", "journey"},
    "projections": {"consumers", "journey"},
    "consumers": {"journey"},
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_points_up_or_sideways(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imported_packages(path)
        if module.split(".")[0] in FORBIDDEN[package]
    ]
    assert wrong == [], "\n".join(wrong)


def test_the_walker_sees_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from journey.emitter import Emitter\n    import consumers.log\n"
    )
    assert [m for _, m in imported_packages(probe)] == ["journey.emitter", "consumers.log"]
