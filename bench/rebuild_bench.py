"""Rebuild throughput, side by side with a bare consumer that only decodes.

Generates N touchpoints (a realistic mix across ~10,000 customers), emits them to a fresh
topic, then measures in the same run:

* baseline: one consumer reading every message and decoding it (``domain.envelope.decode``),
  no store: what the log and the decoder alone allow;
* rebuild: ``consumers.rebuild.rebuild`` into a fresh store (fold, aggregates, query tables,
  positions, one transaction per partition slice of each poll batch).

Run it (a real Kafka first: ``make kafka``):

    .venv/bin/python bench/rebuild_bench.py                        # 100,000 on local Kafka
    .venv/bin/python bench/rebuild_bench.py --events 20000 --broker embedded:///tmp/bench.db
    .venv/bin/python bench/rebuild_bench.py --events 20000 --profile   # + cProfile hotspots

Suggested Makefile target (not in the Makefile yet):

    bench: install kafka ## Rebuild benchmark: 100k touchpoints on the local Kafka
        $(BIN)/python bench/rebuild_bench.py --broker kafka://127.0.0.1:$(KAFKA_PORT)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers import open_log
from consumers.log import Log
from consumers.rebuild import rebuild
from consumers.runner import RunnerStats
from domain.bounds import Bounds
from domain.envelope import Touchpoint, decode
from journey.emitter import Emitter
from journey.logs import configure_logging
from journey.synthetic import generate_touchpoints

PROGRESS_EVERY_S = 3.0


class Progress:
    """Prints ``label: done/total (rate/s)`` at most every few seconds, and at the end."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, total: int | None = None, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        total = total or self.total
        rate = done / (now - self.started) if now > self.started else 0.0
        pct = f" {100 * done / total:5.1f}%" if total else ""
        print(f"  {self.label}: {done:,}/{total:,}{pct}  {rate:,.0f}/s", flush=True)


def generate(count: int, customers: int, seed: int) -> list[Touchpoint]:
    report = Progress("generated", count)
    out = generate_touchpoints(
        count, customers, seed=seed, start=datetime.now(UTC) - timedelta(days=60),
        prefix="bench", source="bench", progress=report,
    )  # fmt: skip
    report(count, final=True)
    return out


# ---------------------------------------------------------------------- measurements


def emit(log: Log, topic: str, touchpoints: list[Touchpoint], batch: int = 5000) -> float:
    emitter = Emitter(log, topic=topic, source="bench")
    report = Progress("emitted", len(touchpoints))
    started = time.monotonic()
    for i in range(0, len(touchpoints), batch):
        emitter.emit_touchpoints(touchpoints[i : i + batch])
        report(min(i + batch, len(touchpoints)))
    report(len(touchpoints), final=True)
    return time.monotonic() - started


def baseline(log: Log, topic: str, total: int) -> float:
    """Seconds for a bare consumer (fresh group) to read and decode every message."""
    consumer = log.consumer(f"bench-baseline-{uuid.uuid4().hex[:8]}", [topic])
    report = Progress("baseline", total)
    started, done = time.monotonic(), 0
    bounds = Bounds(datetime.now(UTC))
    try:
        while done < total:
            for msg in consumer.poll(1.0, 2000):
                decode(msg.value, bounds)
                done += 1
            report(done)
            if time.monotonic() - started > 3600:
                raise SystemExit(f"baseline read only {done} of {total} in an hour")
    finally:
        consumer.close()
    report(done, final=True)
    return time.monotonic() - started


def store_size(path: Path) -> int:
    return sum(
        p.stat().st_size for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm")))
        if p.exists()
    )  # fmt: skip


def profiled(fn: Callable[[], object], top: int, out_file: Path | None) -> None:
    profile = cProfile.Profile()
    profile.runcall(fn)
    if out_file is not None:
        profile.dump_stats(out_file)
        print(f"profile written to {out_file} (python -m pstats {out_file})")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(top)
        print(f"\n--- cProfile, top {top} by {order} ---")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--broker", default="kafka://127.0.0.1:19092")
    parser.add_argument("--topic", default=None, help="default: a fresh bench.<random> topic")
    parser.add_argument("--store-dir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--batch-size", type=int, default=2000, help="rebuild poll batch")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--profile", action="store_true", help="cProfile the rebuild")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--profile-out", type=Path, default=None, help="save the raw profile")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")

    topic = args.topic or f"bench.{uuid.uuid4().hex[:10]}"
    store_dir = args.store_dir or Path(tempfile.mkdtemp(prefix="journey-bench-"))
    store_dir.mkdir(parents=True, exist_ok=True)
    log = open_log(args.broker)
    try:
        print(f"broker {args.broker}, topic {topic}, store dir {store_dir}", flush=True)
        print(f"generating {args.events:,} touchpoints across ~{args.customers:,} customers")
        touchpoints = generate(args.events, args.customers, args.seed)
        kinds = len({tp.type for tp in touchpoints})
        people = len({tp.customer_id for tp in touchpoints})
        print(f"  {kinds} touchpoint types, {people:,} customers")
        seconds = emit(log, topic, touchpoints)
        total = sum(log.high_watermarks(topic).values())
        print(f"  emitted {total:,} in {seconds:.1f} s ({total / seconds:,.0f}/s)", flush=True)
        del touchpoints

        print("baseline: read + decode, no store", flush=True)
        base_s = baseline(log, topic, total)
        base_rate = total / base_s

        print(f"rebuild: consumers.rebuild.rebuild, batch {args.batch_size}", flush=True)
        report = Progress("rebuilt", total)
        result: dict[str, tuple[Path, RunnerStats, float]] = {}

        def run() -> None:
            result["out"] = rebuild(
                log, store_dir / "views.db", topic=topic, dlq_topic=f"{topic}.dlq",
                batch_size=args.batch_size, progress=report,
            )  # fmt: skip

        if args.profile:
            profiled(run, args.profile_top, args.profile_out)
        else:
            run()
        new_file, stats, rebuild_s = result["out"]
        report(stats.processed, final=True)
        rebuild_rate = stats.processed / rebuild_s
        size = store_size(new_file)

        print("\n=== results ===")
        print(f"events                {total:,} ({people:,} customers)")
        print(f"baseline (decode)     {base_rate:>10,.0f} events/s   ({base_s:.1f} s)")
        print(f"rebuild               {rebuild_rate:>10,.0f} events/s   ({rebuild_s:.1f} s)")
        print(f"rebuild / baseline    {rebuild_rate / base_rate:>10.2f}")
        print(f"store                 {size / 2**20:>10.1f} MiB  ({new_file})")
        print(f"                      {size / max(total, 1):>10.0f} bytes/event")
    finally:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
