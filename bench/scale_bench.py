"""Issue 10's "rate at 1M >= 0.85x the rate at 100k", by CPU a touchpoint, side by side.

Runs the rebuild's write path at two sizes in fresh processes, alternating (small, large,
small, large ...), and prints each one's CPU microseconds a touchpoint and their ratio
(small / large: the large rate over the small one, the target's figure). On a shared
machine only CPU seconds of runs made in the same minutes compare; the wall clock is
printed but is a measure of the load.

Two ways to run it:

* ``--mode stream`` (default, no broker): ``bench.write_path --stream`` over the cached
  workload files (decode a poll batch, fold and record it, ``complete()``), whole-process
  CPU (user + system) and the write path's own (fold + complete);
* ``--mode rebuild --broker kafka://…``: ``bench.child rebuild --processes 1`` of the
  shared topics (``shared.bench.100k`` / ``shared.bench.1m``): the real path, CPU as the
  rebuild reports it.

``--checkout DIR`` (repeatable) runs the same with another checkout first on PYTHONPATH
(base against a branch, interleaved: every checkout's run of a size follows the other's).

    python -m bench.scale_bench --rounds 2 --checkout /tmp/base --checkout .
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main"]

_CACHE = Path(__file__).resolve().parent / ".cache"
_SIZES = {"100k": 100_000, "1m": 1_000_000}


@dataclass
class _Runs:
    cpu_us: list[float] = field(default_factory=list)  # whole process, a touchpoint
    path_us: list[float] = field(default_factory=list)  # the write path's own (stream)
    wall_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)


def _workload(size: str, cache: Path) -> Path:
    events = _SIZES[size]
    path = cache / f"workload-v1-{events}-2026-bench.ndjson"
    if not path.is_file():
        raise SystemExit(f"no workload file {path}: run `make bench` once (it caches them)")
    return path


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_one(args: argparse.Namespace, checkout: Path, size: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    if args.mode == "stream":
        cmd = [
            sys.executable,
            "-m",
            "bench.write_path",
            "--stream",
            "--workload",
            str(_workload(size, args.cache)),
        ]
        if args.events:
            cmd += ["--events", str(args.events[size])]
    else:
        store = tempfile.mkdtemp(prefix="scale-bench-")
        cmd = [
            sys.executable,
            "-m",
            "bench.child",
            "rebuild",
            "--processes",
            "1",
            "--broker",
            args.broker,
            "--topic",
            f"{args.topic_prefix}{size}",
            "--store-dir",
            store,
        ]
    before, started = _child_cpu(), time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=checkout, check=False)
    cpu, wall = _child_cpu() - before, time.monotonic() - started
    if args.mode == "rebuild":
        subprocess.run(["rm", "-rf", store], check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    if args.mode == "stream":
        out = json.loads(lines[-1])
        events = int(out["events"])
        return {
            "events": events,
            "cpu_us": 1e6 * cpu / events,
            "path_us": float(out["fold_us_per_event"]),
            "wall_s": wall,
            "rss_mib": float(out["peak_rss_mib"]),
        }
    (result,) = (ln for ln in lines if ln.startswith("result "))
    out = json.loads(result.removeprefix("result "))
    events = int(out["events"])
    return {
        "events": events,
        "cpu_us": 1e6 * float(out["cpu_s"]) / events,
        "path_us": None,
        "wall_s": float(out["seconds"]),
        "rss_mib": float(out["peak_rss_mib"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("stream", "rebuild"), default="stream")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--checkout", type=Path, action="append", default=[])
    parser.add_argument("--cache", type=Path, default=_CACHE, help="where the workloads are")
    parser.add_argument("--broker", default="kafka://127.0.0.1:19092")
    parser.add_argument("--topic-prefix", default="shared.bench.")
    parser.add_argument(
        "--small-events",
        type=int,
        default=0,
        help="stream: only the first N of the 100k workload (0: all)",
    )
    parser.add_argument(
        "--large-events",
        type=int,
        default=0,
        help="stream: only the first N of the 1M workload (0: all; 300000 is a quicker look)",
    )
    args = parser.parse_args(argv)
    args.events = (
        {"100k": args.small_events or 100_000, "1m": args.large_events or 1_000_000}
        if args.small_events or args.large_events
        else None
    )
    checkouts = [c.resolve() for c in args.checkout] or [Path(__file__).resolve().parents[1]]
    runs: dict[tuple[Path, str], _Runs] = {(c, s): _Runs() for c in checkouts for s in _SIZES}
    for round_no in range(1, args.rounds + 1):
        for size in _SIZES:
            for checkout in checkouts:
                got = _run_one(args, checkout, size)
                held = runs[(checkout, size)]
                held.cpu_us.append(got["cpu_us"])
                if got["path_us"] is not None:
                    held.path_us.append(got["path_us"])
                held.wall_s.append(got["wall_s"])
                held.rss_mib.append(got["rss_mib"])
                print(
                    f"round {round_no} {size:>4} {checkout}: {got['cpu_us']:.1f} µs CPU a"
                    f" touchpoint ({got['events']:,})"
                    + (f", write path {got['path_us']:.1f} µs" if got["path_us"] else "")
                    + f", {got['wall_s']:.1f} s wall, peak {got['rss_mib']:.1f} MiB",
                    flush=True,
                )
    print()
    print("| checkout | 100k µs/tp | 1M µs/tp | rate 1M ÷ 100k (target ≥ 0.85) |")
    print("|---|---:|---:|---:|")
    summary: dict[str, Any] = {}
    for checkout in checkouts:
        small, large = runs[(checkout, "100k")], runs[(checkout, "1m")]
        a, b = sum(small.cpu_us) / len(small.cpu_us), sum(large.cpu_us) / len(large.cpu_us)
        line = f"| {checkout} | {a:.1f} | {b:.1f} | **{a / b:.3f}**"
        if small.path_us and large.path_us:
            pa = sum(small.path_us) / len(small.path_us)
            pb = sum(large.path_us) / len(large.path_us)
            line += f" (write path alone {pa:.1f} / {pb:.1f} = {pa / pb:.3f})"
        print(line + " |")
        summary[str(checkout)] = {
            "small_cpu_us": [round(v, 1) for v in small.cpu_us],
            "large_cpu_us": [round(v, 1) for v in large.cpu_us],
            "ratio": round(a / b, 3),
            "large_peak_rss_mib": max(large.rss_mib),
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
