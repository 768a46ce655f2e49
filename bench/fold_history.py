"""The fold alone (``Journey.apply``, no store): does a touchpoint get dearer as its
customer's history grows, and what does the whole workload's fold cost?

    PYTHONPATH=. python -m bench.fold_history --workload W [--base /path/to/old/checkout]

Prints, for one customer of the workload (the first heavy one of the workload's facts file
unless ``--customer``), the CPU microseconds a touchpoint by its position in that customer's
history (the best of ``--repeat`` folds with the collector off, in buckets of 1,000), and
the microseconds by type in the first and last fifth of the history; then the CPU seconds
of folding the first ``--events`` touchpoints of the workload, every customer (best of
``--repeat``), as a rebuild folds them (its collector setting, the facts handed over as a
store takes them).
With ``--base``, the same is measured in the same run for the checkout at that path (this
file run with that checkout's packages first on the path) and printed beside ours.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_BUCKET = 1000
_HAND_OVER_AT = 200  # a store takes the folded facts over at each batch


def _touchpoints(path: Path, customer: str | None, events: int) -> tuple[list[Any], list[Any]]:
    from domain.envelope import decode

    mine, every = [], []
    marker = f'"customer_id":"{customer}"'.encode() if customer else None
    with path.open("rb") as lines:
        for n, line in enumerate(lines):
            if n < events:
                every.append(decode(line.strip()))
            if marker is not None and marker in line:
                mine.append(decode(line.strip()))
            if n >= events and marker is None:
                break
    return mine, every


def _heavy(tps: list[Any], repeat: int) -> dict[str, Any]:
    from domain.envelope import encode
    from domain.journey import Journey

    raws = [encode(tp) for tp in tps]
    best = [float("inf")] * len(tps)
    clock = time.process_time_ns
    for _ in range(repeat):
        # The collector off: its passes fall on the same touchpoints in every fold (and
        # cost with the whole heap, not with this customer), so the best of several folds
        # would keep them.
        gc.collect()
        gc.disable()
        journey = Journey(tps[0].customer_id)
        for n, (tp, raw) in enumerate(zip(tps, raws, strict=True)):
            started = clock()
            journey.apply(tp, raw)
            took = clock() - started
            best[n] = min(best[n], took)
            if len(journey.facts) >= _HAND_OVER_AT:
                journey.hand_over()
        gc.enable()
    buckets = [
        round(sum(best[at : at + _BUCKET]) / len(best[at : at + _BUCKET]) / 1000, 2)
        for at in range(0, len(best), _BUCKET)
    ]
    fifth = len(tps) // 5
    by_type: dict[str, list[list[float]]] = collections.defaultdict(lambda: [[], []])
    for n, tp in enumerate(tps):
        if n < fifth:
            by_type[tp.type][0].append(best[n])
        elif n >= len(tps) - fifth:
            by_type[tp.type][1].append(best[n])
    types = {
        name: [round(sum(xs) / len(xs) / 1000, 2) if xs else None for xs in ends]
        for name, ends in by_type.items()
    }
    return {"buckets_us": buckets, "types_us": types, "total_ms": round(sum(best) / 1e6, 1)}


def _workload(tps: list[Any], repeat: int) -> dict[str, Any]:
    from consumers.runner import tune_gc
    from domain.envelope import encode
    from domain.journey import Journey

    raws = [encode(tp) for tp in tps]
    tune_gc()
    best = float("inf")
    for _ in range(repeat):
        journeys: dict[str, Journey] = {}
        started = time.process_time()
        for tp, raw in zip(tps, raws, strict=True):
            journey = journeys.get(tp.customer_id)
            if journey is None:
                journey = journeys[tp.customer_id] = Journey(tp.customer_id)
            journey.apply(tp, raw)
            if len(journey.facts) >= _HAND_OVER_AT:
                journey.hand_over()
        best = min(best, time.process_time() - started)
        del journeys
        gc.collect()
    return {
        "events": len(tps),
        "cpu_s": round(best, 3),
        "us_per_tp": round(best / len(tps) * 1e6, 2),
    }


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    customer = args.customer
    if not customer:
        facts = json.loads(args.workload.with_suffix(".json").read_text())
        customer = facts["heavy_ids"][0]
    mine, every = _touchpoints(args.workload, customer, args.events)
    return {
        "customer": customer,
        "history": len(mine),
        "heavy": _heavy(mine, args.repeat),
        "workload": _workload(every, args.repeat),
    }


def _print(ours: dict[str, Any], base: dict[str, Any] | None) -> None:
    sides = [("base", base), ("ours", ours)] if base else [("ours", ours)]
    print(f"{ours['customer']}: {ours['history']} touchpoints; CPU us a touchpoint by position")
    print("position       " + "".join(f"{name:>10}" for name, _ in sides))
    for n, _ in enumerate(ours["heavy"]["buckets_us"]):
        row = "".join(f"{side['heavy']['buckets_us'][n]:>10}" for _, side in sides if side)
        print(f"{n * _BUCKET:>6}-{(n + 1) * _BUCKET:<7} {row}")
    print("by type, first fifth -> last fifth (us)")
    for name in sorted(ours["heavy"]["types_us"]):
        cells = []
        for _, side in sides:
            first, last = (side or {})["heavy"]["types_us"].get(name, [None, None])
            cells.append(f"{first} -> {last}")
        print(f"  {name:<26}" + "".join(f"{cell:>22}" for cell in cells))
    for name, side in sides:
        if side:
            print(
                f"{name}: heavy fold {side['heavy']['total_ms']} ms; the workload's first "
                f"{side['workload']['events']} folded in {side['workload']['cpu_s']} CPU s "
                f"({side['workload']['us_per_tp']} us a touchpoint)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, required=True, help="a workload .ndjson")
    parser.add_argument("--customer", default="", help="whose history (default: a heavy one)")
    parser.add_argument("--events", type=int, default=100_000, help="the workload's first N")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--base", type=Path, default=None, help="an old checkout to compare")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args(argv)
    base = None
    if args.base is not None:
        command = [sys.executable, "-P", str(Path(__file__).resolve()), "--json"]
        command += ["--workload", str(args.workload), "--events", str(args.events)]
        command += ["--repeat", str(args.repeat)]
        if args.customer:
            command += ["--customer", args.customer]
        env = {**os.environ, "PYTHONPATH": str(args.base.resolve())}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        base = json.loads(done.stdout)
    ours = _measure(args)
    if args.json:
        print(json.dumps(ours))
    else:
        _print(ours, base)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
