"""Size and latency of one huge customer's view, and whether it slows everyone else.

Run:

    .venv/bin/python bench/view_bench.py                 # 20,000 open cases
    .venv/bin/python bench/view_bench.py --cases 2000

Builds (on the embedded log, in a temporary directory) one customer with ``--cases`` open
cases and a small customer with three, folds them, then measures with the same code the
query service runs (``build_customer_view`` + JSON):

* the big customer's view through the query service's read handle (``ReadStore``): JSON
  size, p50/p99 latency of warm reads, and the cold read (a fresh handle loading the
  customer's snapshot and the touchpoints since);
* the small customer's read alone, and again while another thread reads the big customer
  in a loop ("other customers' reads unaffected meanwhile").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.embedded_log import EmbeddedLog
from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from journey.logs import configure_logging
from journey.pipeline import ManualClock, Pipeline
from journey.service.reading import ReadStore
from projections.customer_view import build_customer_view
from projections.store import active_store_path

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def inquiries(customer_id: str, n: int) -> list[Touchpoint]:
    return [
        new_touchpoint(
            c.InquiryReceived(case_id=f"k-{i:06d}", channel="email", subject=f"question {i}"),
            customer_id=customer_id,
            occurred_at=T0 + timedelta(seconds=i),
            source="bench",
        )
        for i in range(n)
    ]


def pct(ms: list[float], q: float) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def read(pipeline: Pipeline, reader: ReadStore, cid: str) -> tuple[float, int]:
    start = time.perf_counter()
    view = build_customer_view(reader, cid, rules=pipeline.rules, now=pipeline.clock())
    assert view is not None
    size = len(view.model_dump_json())
    return (time.perf_counter() - start) * 1000, size


def timed(pipeline: Pipeline, reader: ReadStore, cid: str, rounds: int) -> tuple[list[float], int]:
    samples, size = [], 0
    for _ in range(rounds):
        ms, size = read(pipeline, reader, cid)
        samples.append(ms)
    return samples, size


def line(label: str, ms: list[float], size: int) -> str:
    return (
        f"{label:<40} {size / 1024:>9.1f} KB  p50 {statistics.median(ms):>8.1f} ms"
        f"  p99 {pct(ms, 0.99):>8.1f} ms  (n={len(ms)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    configure_logging(level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        log = EmbeddedLog(str(Path(tmp) / "log.db"))
        clock = ManualClock(T0 + timedelta(seconds=args.cases + 60))
        pipeline = Pipeline(log, Path(tmp) / "views.db", topic="bench", clock=clock)
        started = time.perf_counter()
        pipeline.emit(inquiries("big", args.cases) + inquiries("small", 3))
        pipeline.runner.run_until_caught_up(600)
        print(f"built {args.cases} open cases in {time.perf_counter() - started:.1f} s")
        cold = []
        for _ in range(3):
            fresh = ReadStore(active_store_path(Path(tmp) / "views.db"))
            cold.append(read(pipeline, fresh, "big")[0])
            fresh.close()
        print(line("big customer, cold (a fresh read handle)", cold, 0))
        reader = ReadStore(active_store_path(Path(tmp) / "views.db"))
        big, big_size = timed(pipeline, reader, "big", args.rounds * 5)
        small, small_size = timed(pipeline, reader, "small", args.rounds * 10)
        print(line(f"big customer ({args.cases} open cases), warm", big, big_size))
        print(line("small customer, alone", small, small_size))
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                read(pipeline, reader, "big")

        thread = threading.Thread(target=hammer, daemon=True)
        thread.start()
        try:
            busy, _ = timed(pipeline, reader, "small", args.rounds * 10)
        finally:
            stop.set()
            thread.join()
        print(line("small customer, big one read meanwhile", busy, small_size))
        reader.close()
        pipeline.close()


if __name__ == "__main__":
    main()
