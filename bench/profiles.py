"""Where a rebuild's time goes: summaries of a py-spy (speedscope) or cProfile profile.

Three views of the same samples: functions by their own time, functions by their time
including callees, and the own time grouped by area (our packages by name, libraries by
top-level package, the standard library by module), which is the one that says whether
the store, eventsourcing, pydantic or the Kafka client dominates.
"""

from __future__ import annotations

import json
import pstats
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["area_of", "summarise_cprofile", "summarise_speedscope"]

ROOT = Path(__file__).resolve().parent.parent
OURS = ("domain", "consumers", "projections", "journey", "bench")
TOP = 25
# The engine's own rebuild: what a profile of the rebuild step is about.
FOCUS = ("rebuild", "consumers/rebuild.py")


def short(file: str) -> str:
    """A file path a reader recognises: relative to the project or to site-packages."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in file:
            return file.rsplit(marker, 1)[1]
    root = str(ROOT) + "/"
    if file.startswith(root):
        return file[len(root) :]
    stdlib = str(Path(sys.base_prefix) / "lib")
    if file.startswith(stdlib):
        return "stdlib:" + file[len(stdlib) :].lstrip("/").split("/", 1)[-1]
    return file


def area_of(file: str) -> str:
    """``ours: projections``, ``eventsourcing``, ``stdlib: sqlite3``, ..."""
    name = short(file)
    if name.startswith("stdlib:"):
        module = name.removeprefix("stdlib:").split("/")[0].removesuffix(".py")
        return f"stdlib: {module}"
    head = name.split("/")[0].removesuffix(".py")
    if head in OURS:
        return f"ours: {head}"
    return head or name


def _table(title: str, counts: Counter[str], total: float) -> list[str]:
    lines = [f"--- {title} ---"]
    for name, value in counts.most_common(TOP):
        lines.append(f"{100 * value / total:6.1f} %  {name}")
    return lines


def summarise_speedscope(path: Path, focus: tuple[str, str] = FOCUS) -> tuple[str, dict[str, Any]]:
    """Text and a JSON-able summary of a py-spy speedscope file: every thread's samples
    taken inside ``focus`` (function name, file suffix) — the rebuild, not the process's
    start-up and imports — or all samples when none are."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    labels = [f"{f['name']} ({short(str(f.get('file') or '?'))})" for f in frames]
    areas = [area_of(str(f.get("file") or "?")) for f in frames]
    inside = {
        i
        for i, f in enumerate(frames)
        if f["name"] == focus[0] and str(f.get("file") or "").endswith(focus[1])
    }
    samples = [
        (stack, weight)
        for profile in doc["profiles"]
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True)
        if stack
    ]
    focused = [(s, w) for s, w in samples if inside.intersection(s)]
    scope = f"inside {focus[0]} ({focus[1]})" if focused else "whole process"
    samples = focused or samples
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_area: Counter[str] = Counter()
    total = 0.0
    for stack, weight in samples:
        total += weight
        leaf = stack[-1]  # speedscope stacks run from the root to the leaf
        own[labels[leaf]] += weight
        by_area[areas[leaf]] += weight
        for label in {labels[i] for i in stack}:
            inclusive[label] += weight
    total = total or 1.0
    lines = [f"py-spy profile {path.name}: {total:,.1f} s of samples, {scope}", ""]
    lines += [*_table("own time by area", by_area, total), ""]
    lines += [*_table("own time by function", own, total), ""]
    lines += _table("time including callees, by function", inclusive, total)
    top = {
        "sampled_s": round(total, 2),
        "scope": scope,
        "by_area": {k: round(100 * v / total, 1) for k, v in by_area.most_common(TOP)},
        "own": {k: round(100 * v / total, 1) for k, v in own.most_common(TOP)},
        "inclusive": {k: round(100 * v / total, 1) for k, v in inclusive.most_common(TOP)},
    }
    return "\n".join(lines) + "\n", top


def summarise_cprofile(path: Path) -> tuple[str, dict[str, Any]]:
    """Text and a JSON-able summary of a cProfile dump."""
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats keeps it untyped
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_area: Counter[str] = Counter()
    total = 0.0
    for (file, _line, name), (_cc, _nc, tottime, cumtime, _callers) in raw.items():
        label = f"{name} ({short(file)})"
        own[label] += tottime
        inclusive[label] += cumtime
        if file == "~":  # C functions: name the library when the name says it
            area = "stdlib: sqlite3" if "sqlite3" in name else "builtins"
        else:
            area = area_of(file)
        by_area[area] += tottime
        total += tottime
    total = total or 1.0
    lines = [f"cProfile {path.name}: {total:,.1f} s of own time (python -m pstats {path})", ""]
    lines += [*_table("own time by area", by_area, total), ""]
    lines += [*_table("own time by function", own, total), ""]
    lines += _table("time including callees, by function", inclusive, total)
    top = {
        "own_s": round(total, 2),
        "by_area": {k: round(100 * v / total, 1) for k, v in by_area.most_common(TOP)},
        "own": {k: round(100 * v / total, 1) for k, v in own.most_common(TOP)},
        "inclusive": {k: round(100 * v / total, 1) for k, v in inclusive.most_common(TOP)},
    }
    return "\n".join(lines) + "\n", top
