"""The customer view's read path alone: one store built once, read again and again.

Run:

    .venv/bin/python -m bench.view_read                     # 100k touchpoints
    .venv/bin/python -m bench.view_read --events 1000000    # the same at 1M (builds once)
    .venv/bin/python -m bench.view_read --profile warm      # py-spy of the heavy warm reads

``make bench`` (bench/run.py) measures the views too, after a rebuild from Kafka; this tool
builds the benchmark workload (bench/workload.py, the same bytes) once into a store kept in
``--cache-dir`` (emitted through the ``Emitter`` onto an embedded log, personal fields
sealed with the store's own key table, then ``consumers.rebuild.rebuild``), and reuses it on
every later run, so the read path can be measured and profiled in seconds.

Each figure is taken as ``bench/run.py`` takes it (``python -m bench.child view``): **cold**
is a fresh process opening the store (shown apart) and building the view once; **warm** the
same customer read again in that process. The heavy (10,000 touchpoints) and medium
(1,000) customers are printed beside the quiet customer's figures of the same run: the
baseline. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.workload import Shape, Workload, ensure_workload, read_batches

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "bench.view"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def build(workload: Workload, store_dir: Path) -> None:
    """The workload onto an embedded log and rebuilt into a store under ``store_dir``."""
    from consumers.embedded_log import EmbeddedLog
    from consumers.rebuild import rebuild
    from journey.emitter import Emitter
    from projections.keys import CustomerKeys

    if store_dir.exists():
        shutil.rmtree(store_dir)
    store_dir.mkdir(parents=True)
    log = EmbeddedLog(str(store_dir / "log.db"))
    keys = CustomerKeys(store_dir / "views.db")
    emitter = Emitter(log, topic=TOPIC, source="bench", keys=keys)
    started = time.monotonic()
    done = 0
    for batch in read_batches(workload.path, 5000):
        emitter.emit_text(b"\n".join(batch).decode())
        done += len(batch)
        print(f"\r  emitted {done:,}", end="", flush=True)
    print(f" in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()

    def progress(n: int, total: int) -> None:
        print(f"\r  rebuilt {n:,} / {total:,}", end="", flush=True)

    _, stats, seconds = rebuild(
        log, store_dir / "views.db", topic=TOPIC, dlq_topic=f"{TOPIC}.dlq", progress=progress
    )
    print(f" in {seconds:.0f} s ({stats.processed / seconds:,.0f}/s)", flush=True)
    log.close()
    (store_dir / "built.json").write_text(json.dumps({"events": workload.shape.events}))


def child(
    store_dir: Path, customer: str, rounds: int, wrap: list[str] | None = None
) -> dict[str, Any]:
    argv = [*(wrap or []), sys.executable, "-m", "bench.child", "view"]
    argv += ["--store-dir", str(store_dir), "--customer", customer, "--rounds", str(rounds)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "result":
            result: dict[str, Any] = json.loads(rest)
            return result
    raise SystemExit(f"no result from bench.child view: {out.stderr[-2000:]}")


def figures(store_dir: Path, customer: str, cold: int, rounds: int) -> dict[str, Any]:
    opens, firsts, warm = [], [], []
    result: dict[str, Any] = {}
    for i in range(cold):
        result = child(store_dir, customer, rounds if i == cold - 1 else 0)
        opens.append(result["open_s"] * 1000)
        firsts.append(result["first_view_s"] * 1000)
    warm = [s * 1000 for s in result["warm_s"]]
    return {
        "customer": customer,
        "touchpoints": result["touchpoints"],
        "answer_bytes": result["answer_bytes"],
        "open_p50_ms": round(statistics.median(opens), 2),
        "cold_p50_ms": round(statistics.median(firsts), 2),
        "cold_max_ms": round(max(firsts), 2),
        "warm_p50_ms": round(statistics.median(warm), 3),
        "warm_p99_ms": round(pct(warm, 0.99), 3),
        "warm_max_ms": round(max(warm), 3),
        "warm_n": len(warm),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--fresh", action="store_true", help="build the store again")
    parser.add_argument("--cold", type=int, default=7, help="fresh processes per customer")
    parser.add_argument("--rounds", type=int, default=200, help="warm reads per customer")
    parser.add_argument("--profile", choices=["cold", "warm"], help="py-spy the heavy reads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from journey.logs import configure_logging

    configure_logging("console", "warning")
    shape = Shape.for_events(args.events)
    workload = ensure_workload(args.cache_dir, shape, args.seed)
    store_dir = args.cache_dir / f"view-store-{args.events}-{args.seed}"
    if args.fresh or not (store_dir / "built.json").is_file():
        print(f"building the store of {args.events:,} touchpoints in {store_dir}", flush=True)
        build(workload, store_dir)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.profile:
        out = ROOT / "bench" / "results" / f"view-{args.profile}-{time.strftime('%Y%m%dT%H%M%S')}"
        out.parent.mkdir(parents=True, exist_ok=True)
        wrap = ["py-spy", "record", "-r", "500", "-f", "speedscope", "-o", f"{out}.json", "--"]
        wrap[0] = str(Path(sys.executable).with_name("py-spy"))
        rounds = 400 if args.profile == "warm" else 0
        for _ in range(1 if args.profile == "warm" else 10):
            child(store_dir, workload.heavy_ids[0], rounds, wrap)
        print(f"profile: {out}.json", flush=True)
        return
    results: dict[str, Any] = {"events": args.events, "load": os.getloadavg()[0]}
    picks = [
        ("quiet", workload.quiet_id),
        ("heavy", workload.heavy_ids[0]),
        ("medium", workload.medium_ids[0]),
        ("quiet", workload.quiet_id),  # again: the baseline before and after
    ]
    for kind, customer in picks:
        f = figures(store_dir, customer, args.cold, args.rounds)
        results.setdefault(kind, []).append(f)
        print(
            f"  {kind:<6} {f['touchpoints']:>6,} tp {f['answer_bytes'] / 1024:>5.0f} KiB  "
            f"open {f['open_p50_ms']:>6.1f}  cold p50 {f['cold_p50_ms']:>7.1f} "
            f"(max {f['cold_max_ms']:>7.1f})  warm p50 {f['warm_p50_ms']:>7.2f} "
            f"p99 {f['warm_p99_ms']:>7.2f} max {f['warm_max_ms']:>7.2f} ms (n={f['warm_n']})",
            flush=True,
        )
    results["load_at_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
