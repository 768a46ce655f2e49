"""The emit figure alone: ``Emitter.emit_text`` against a bare kafka-python producer, on
real Kafka, in one run (the same code as `make bench`'s emit step), optionally with a
cProfile of the emitter's share only.

    python -m bench.emit_bench --broker kafka://127.0.0.1:19092 [--events 20000] [--runs 3]
    python -m bench.emit_bench --broker … --profile emit.prof   # + top functions printed

Each run makes its own uuid-named topics and deletes them at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench.run import ROOT, delete_topics, emit_figure, kafka_hosts
from bench.workload import Shape, ensure_workload

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", default="kafka://127.0.0.1:19092")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile output file")
    args = parser.parse_args()

    from consumers.kafka_log import KafkaLog
    from journey.emitter import Emitter
    from journey.logs import configure_logging

    configure_logging("console", "warning")  # as bench.run: the figure is not the logging

    hosts = kafka_hosts(args.broker)
    workload = ensure_workload(args.cache_dir, Shape.for_events(args.events), args.seed)
    log = KafkaLog(hosts)
    # the emitter's time in Log.produce (sending, acks), apart from its validation
    produce_s = [0.0, 0.0]  # wall, CPU
    original_produce = log.produce

    def timed_produce(topic: str, messages: Any) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            return original_produce(topic, messages)
        finally:
            produce_s[0] += time.perf_counter() - started
            produce_s[1] += time.process_time() - cpu

    log.produce = timed_produce  # type: ignore[method-assign]
    profile = cProfile.Profile() if args.profile else None
    if profile is not None:
        original = Emitter.emit_text

        def profiled(self: Emitter, text: str, origin: str = "") -> Any:
            profile.enable()
            try:
                return original(self, text, origin)
            finally:
                profile.disable()

        Emitter.emit_text = profiled  # type: ignore[method-assign]
    ratios = []
    try:
        for run in range(1, args.runs + 1):
            name = f"bench.emit.{uuid.uuid4().hex[:12]}"
            produce_s[:] = [0.0, 0.0]
            topics = [name, f"{name}.dlq", f"{name}.bare"]
            try:
                figure = emit_figure(log, hosts, workload, name, f"{name}.bare")
            finally:
                delete_topics(hosts, topics)
            ratios.append(figure["ratio"])
            events, emitter_s = figure["events"], figure["emitter"]["seconds"]
            per = 1e6 / events
            print(
                f"run {run}: emitter {figure['emitter']['per_s']:,.0f}/s, bare "
                f"{figure['bare_producer']['per_s']:,.0f}/s, ratio {figure['ratio']:.3f}; "
                f"per envelope: validate+encode {(emitter_s - produce_s[0]) * per:.1f} µs, "
                f"Log.produce {produce_s[0] * per:.1f} µs, bare send "
                f"{figure['bare_producer']['seconds'] * per:.1f} µs; CPU ratio "
                f"{figure['cpu_ratio']:.3f} (validate+encode "
                f"{(figure['emitter']['cpu_s'] - produce_s[1]) * per:.1f} µs, Log.produce "
                f"{produce_s[1] * per:.1f} µs, bare "
                f"{figure['bare_producer']['cpu_s'] * per:.1f} µs) "
                f"(load {os.getloadavg()[0]:.1f}, {time.strftime('%H:%M:%S', time.gmtime())}Z)",
                flush=True,
            )
    finally:
        log.close()
    print(
        "ratios:",
        " ".join(f"{r:.3f}" for r in ratios),
        f"· median {statistics.median(ratios):.3f}" if ratios else "",
    )
    if profile is not None and args.profile is not None:
        profile.dump_stats(args.profile)
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(order).print_stats(30)
            print(out.getvalue())


if __name__ == "__main__":
    main()
