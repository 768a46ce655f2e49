"""The intake's CPU per message, piece by piece, beside the bare consumer's decoding.

Reads a cached workload file (bench/workload.py: the bytes the shared topics hold) and
times, in CPU microseconds a message (best of ``--rounds``, the pieces interleaved so a
noisy machine weighs on each alike):

* ``json.loads`` — what the bare consumer with ``--decode json`` does with a message;
* ``decode`` — the engine's decoder (the bare consumer with ``--decode pydantic`` and the
  runner both call it): one validation from the bytes for a current-version envelope;
* ``decode, object path`` — the same through ``json.loads`` and the dicts (what every
  message took before session 15, and what an older version or an error still takes);
* ``encode`` and ``model_dump_json`` — the store's envelope bytes of a decoded touchpoint,
  now and as they were made before.

    python -m bench.intake_bench --workload bench/.cache/workload-v1-100000-2026-bench.ndjson
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumers.runner import tune_gc
from domain.bounds import Bounds
from domain.envelope import _decode_object, decode, encode

__all__ = ["main"]


def _best(pieces: dict[str, tuple[Callable[[Any], object], Sequence[Any]]], rounds: int) -> Any:
    best = dict.fromkeys(pieces, float("inf"))
    for _ in range(rounds):
        for name, (fn, items) in pieces.items():
            started = time.process_time()
            for item in items:
                fn(item)
            best[name] = min(best[name], time.process_time() - started)
    return {name: round(1e6 * s / len(pieces[name][1]), 2) for name, s in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, required=True, help="a workload .ndjson")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    lines = args.workload.read_bytes().splitlines()[: args.events]
    bounds = Bounds(datetime.now(UTC))
    touchpoints = [decode(raw, bounds) for raw in lines]
    # as the runner runs: what lives on (the decoded touchpoints here) out of the
    # collector's sight, passes rarer
    tune_gc()
    figures = _best(
        {
            "json.loads": (json.loads, lines),
            "decode": (lambda raw: decode(raw, bounds), lines),
            "decode, object path": (lambda raw: _decode_object(raw, bounds, None), lines),
            "encode": (encode, touchpoints),
            "model_dump_json": (
                lambda t: t.model_dump_json(exclude_none=True).encode(),
                touchpoints,
            ),
        },
        args.rounds,
    )
    print(json.dumps({"events": len(lines), "cpu_us_a_message": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
