"""One benchmark step in a fresh process: its peak memory and its cold start are its own.

Speaks a line protocol on stdout that ``bench.run`` reads:

    pid <pid>                      first, so the driver can signal this process (not py-spy)
    progress <done> <total>        while working
    result <json>                  last: the step's figures

Steps:

* ``consume`` — a bare kafka-python consumer (no group, every partition from offset 0)
  reading the topic to its end, with ``json.loads`` (``--decode json``) or the engine's
  own decoder, pydantic included (``--decode pydantic``: ``domain.envelope.decode``);
* ``rebuild`` — the engine's own rebuild (``consumers.rebuild.rebuild``) into a fresh store;
* ``view`` — opens the store (cold) and builds one customer's view with the engine's own
  builder (``projections.customer_view.build_customer_view``), then again ``--rounds``
  times (warm).

Only public entry points of the engine are used, so the harness outlives a store rewrite.
SIGTERM stops a step early; it still prints its result, marked ``"completed": false``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["main"]


class Stopped(BaseException):
    """SIGTERM from the driver: a step ran past its time limit. A BaseException, like
    KeyboardInterrupt: the runner retries every Exception as a transient failure."""


def _on_term(_signum: int, _frame: FrameType | None) -> None:
    raise Stopped


def say(*parts: object) -> None:
    print(*parts, flush=True)


def peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _reporter(every_s: float = 0.5) -> Any:
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            say("progress", done, total)

    return report


# --------------------------------------------------------------------------- consume


def consume(hosts: list[str], topic: str, mode: str, batch: int) -> dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    decode_one: Any
    if mode == "json":
        decode_one = json.loads
    else:
        from domain.bounds import Bounds
        from domain.envelope import decode

        bounds = Bounds(datetime.now(UTC))

        def decode_one(raw: bytes) -> object:
            return decode(raw, bounds)

    consumer = KafkaConsumer(
        bootstrap_servers=hosts,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="bench-bare",
    )
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = {tp: off for tp, off in consumer.end_offsets(parts).items() if off > 0}
    total = sum(ends.values())
    report = _reporter()
    done = 0
    started = time.monotonic()
    completed = False
    try:
        while ends:
            for tp, records in consumer.poll(timeout_ms=1000, max_records=batch).items():
                for record in records:
                    decode_one(record.value)
                done += len(records)
                if tp in ends and records[-1].offset >= ends[tp] - 1:
                    del ends[tp]
            report(done, total)
        completed = True
    except Stopped:
        pass
    seconds = time.monotonic() - started
    consumer.close()
    return {
        "completed": completed,
        "decode": mode,
        "events": done,
        "seconds": round(seconds, 3),
        "per_s": round(done / seconds, 1) if seconds else None,
        "peak_rss_mib": peak_rss_mib(),
    }


# --------------------------------------------------------------------------- rebuild


def rebuild(broker: str, topic: str, store_dir: Path, batch: int) -> dict[str, Any]:
    from consumers import open_log
    from consumers.rebuild import rebuild as do_rebuild

    log = open_log(broker)
    done = [0]
    report = _reporter()

    def progress(processed: int, total: int) -> None:
        done[0] = processed
        report(processed, total)

    started = time.monotonic()
    completed = False
    store = ""
    try:
        new_file, stats, seconds = do_rebuild(
            log,
            store_dir / "views.db",
            topic=topic,
            dlq_topic=f"{topic}.dlq",
            progress=progress,
            batch_size=batch,
        )
        completed, store, done[0] = True, str(new_file), stats.processed
        dead = stats.dead_letters
    except Stopped:
        seconds, dead = time.monotonic() - started, 0
    finally:
        log.close()
    return {
        "completed": completed,
        "events": done[0],
        "dead_letters": dead,
        "seconds": round(seconds, 3),
        "per_s": round(done[0] / seconds, 1) if seconds else None,
        "peak_rss_mib": peak_rss_mib(),
        "store": store,
    }


# --------------------------------------------------------------------------- view


def view(store_dir: Path, customer: str, rounds: int) -> dict[str, Any]:
    from domain.rules import ServiceRules
    from journey.service.reading import ReadStore
    from projections.customer_view import build_customer_view
    from projections.store import active_store_path

    rules = ServiceRules()
    now = datetime.now(UTC)
    # Imports are done: from here on the clock measures the store and the view only.
    started = time.perf_counter()
    # The query service's read handle: warm reads are what an agent gets once the service
    # has read the customer (its cache keeps the folded journey until it changes).
    store = ReadStore(active_store_path(store_dir / "views.db"))
    opened = time.perf_counter()
    first = build_customer_view(store, customer, rules=rules, now=now)
    if first is None:
        raise SystemExit(f"customer {customer!r} is not in the store at {store_dir}")
    body = first.model_dump_json()
    done = time.perf_counter()
    warm: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        again = build_customer_view(store, customer, rules=rules, now=now)
        assert again is not None
        again.model_dump_json()
        warm.append(time.perf_counter() - t0)
    store.close()
    return {
        "completed": True,
        "customer": customer,
        "touchpoints": first.touchpoints,
        "answer_bytes": len(body),
        "open_s": opened - started,
        "first_view_s": done - opened,
        "warm_s": warm,
        "peak_rss_mib": peak_rss_mib(),
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("consume")
    p.add_argument("--hosts", required=True, help="host:port[,host:port]")
    p.add_argument("--topic", required=True)
    p.add_argument("--decode", choices=["json", "pydantic"], required=True)
    p.add_argument("--batch", type=int, default=2000)
    p = steps.add_parser("rebuild")
    p.add_argument("--broker", required=True, help="kafka://host:port")
    p.add_argument("--topic", required=True)
    p.add_argument("--store-dir", type=Path, required=True)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--cprofile", type=Path, help="run under cProfile, dump the stats here")
    p = steps.add_parser("view")
    p.add_argument("--store-dir", type=Path, required=True)
    p.add_argument("--customer", required=True)
    p.add_argument("--rounds", type=int, default=0, help="warm reads after the cold one")
    args = parser.parse_args(argv)

    from journey.logs import configure_logging

    configure_logging("console", "warning")
    signal.signal(signal.SIGTERM, _on_term)
    say("pid", os.getpid())
    result: dict[str, Any]
    if args.step == "consume":
        result = consume(args.hosts.split(","), args.topic, args.decode, args.batch)
    elif args.step == "rebuild":
        if args.cprofile:
            import cProfile

            profile = cProfile.Profile()
            result = profile.runcall(rebuild, args.broker, args.topic, args.store_dir, args.batch)
            profile.dump_stats(args.cprofile)
        else:
            result = rebuild(args.broker, args.topic, args.store_dir, args.batch)
    else:
        result = view(args.store_dir, args.customer, args.rounds)
    # the machine is shared: how busy it was says how far to trust the figure
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    say("result", json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
