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
import functools
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


def cpu_seconds() -> float:
    """User + system CPU of this process and of every child it has waited for (a rebuild
    on several processes joins each before it returns)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/<pid>/task/*/children."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except FileNotFoundError:
                continue
    return out


class MemorySampler:
    """Peak memory of this process and its children together, sampled every ``every_s``:
    the sum of their RSS (pages a forked child shares with its parent counted in each) and
    of their PSS (shared pages divided among those sharing them: the honest sum)."""

    def __init__(self, every_s: float = 0.5) -> None:
        import threading

        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self.most_processes = 0
        self.pss_at_peak: list[float] = []  # MiB, this process first
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._every_s = every_s
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Reading smaps_rollup walks each process's page tables: a few ms a process, 7 % of a
        # 100k rebuild's samples at 0.5 s. Its CPU is the bench's, not the rebuild's.
        started = time.thread_time()
        try:
            self._sample()
        finally:
            self.cpu_s = time.thread_time() - started

    def _sample(self) -> None:
        while not self._stop.wait(self._every_s):
            pids = _family(os.getpid())
            rss = sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids)
            each = [_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids]
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            if sum(each) > self.peak_pss_kib:
                self.peak_pss_kib = sum(each)
                self.pss_at_peak = [round(k / 1024, 1) for k in each]
            self.most_processes = max(self.most_processes, len(pids))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        return {
            "peak_rss_sum_mib": round(self.peak_rss_kib / 1024, 1),
            "peak_pss_sum_mib": round(self.peak_pss_kib / 1024, 1),
            "pss_at_peak_mib": self.pss_at_peak,
            "processes_seen": self.most_processes,
            "sampler_cpu_s": round(self.cpu_s, 2),
        }


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
    cpu_before = cpu_seconds()
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
    cpu = cpu_seconds() - cpu_before
    consumer.close()
    return {
        "completed": completed,
        "decode": mode,
        "events": done,
        "seconds": round(seconds, 3),
        "per_s": round(done / seconds, 1) if seconds else None,
        "cpu_s": round(cpu, 2),
        "per_cpu_s": round(done / cpu, 1) if cpu else None,
        "peak_rss_mib": peak_rss_mib(),
    }


# --------------------------------------------------------------------------- rebuild


def _engine_processes() -> int | None:
    """What ``journey rebuild`` runs with: the settings' JOURNEY_REBUILD_PROCESSES (None,
    unset: the rebuild's own default, two where the cores allow)."""
    from journey.settings import Settings

    return Settings().rebuild_processes


def _engine_fetch_bytes() -> int:
    """What ``journey rebuild``'s consumer fetches of a partition: JOURNEY_KAFKA_FETCH_KIB."""
    from journey.settings import Settings

    return Settings().kafka_fetch_kib * 1024


def rebuild(
    broker: str,
    topic: str,
    store_dir: Path,
    batch: int,
    processes: int | None = None,
    *,
    cache_weight: int | None = None,
) -> dict[str, Any]:
    """The engine's rebuild, with its processes (``processes``; None: the engine's default,
    as ``journey rebuild`` runs it). CPU seconds and peak memory are over ALL of them."""
    from consumers import open_log
    from consumers.rebuild import rebuild as do_rebuild

    log = open_log(broker, partition_fetch_bytes=_engine_fetch_bytes())
    done = [0]
    report = _reporter()

    def progress(processed: int, total: int) -> None:
        done[0] = processed
        report(processed, total)

    memory = MemorySampler()
    cpu_before = cpu_seconds()
    started = time.monotonic()
    completed = False
    store = ""
    shares: dict[int, tuple[int, ...]] = {}
    waits: tuple[int, float] = (0, 0.0)
    batches = 0
    try:
        new_file, stats, seconds = do_rebuild(
            log,
            store_dir / "views.db",
            topic=topic,
            dlq_topic=f"{topic}.dlq",
            progress=progress,
            batch_size=batch,
            processes=processes if processes is not None else _engine_processes(),
            cache_weight=cache_weight,
        )
        completed, store, done[0] = True, str(new_file), stats.processed
        dead, shares = stats.dead_letters, dict(getattr(stats, "shares", {}))
        batches = stats.batches
        waits = (getattr(stats, "write_waits", 0), getattr(stats, "write_waited_s", 0.0))
    except Stopped:
        seconds, dead = time.monotonic() - started, 0
    finally:
        log.close()
    sampled = memory.stop()
    cpu = cpu_seconds() - cpu_before - sampled["sampler_cpu_s"]
    return {
        "completed": completed,
        "events": done[0],
        "dead_letters": dead,
        "seconds": round(seconds, 3),
        "per_s": round(done[0] / seconds, 1) if seconds else None,
        # Poll batches folded (one process: each its transaction; 0 over several processes)
        "batches": batches,
        # Every process of the rebuild: this one and the ones it forked (waited for).
        "processes": len(shares) or 1,
        "shares": {str(pid): list(parts) for pid, parts in shares.items()},
        "cpu_s": round(cpu, 2),
        "per_cpu_s": round(done[0] / cpu, 1) if cpu else None,
        # SQLite: write transactions that waited for another process's turn, and how long.
        "write_waits": waits[0],
        "write_waited_s": round(waits[1], 3),
        # The largest of: this process's own peak, and the sampled sums over all of them
        # (PSS: pages a forked child shares with its parent counted once).
        "peak_rss_mib": max(peak_rss_mib(), sampled["peak_pss_sum_mib"]),
        "peak_rss_self_mib": peak_rss_mib(),
        **sampled,
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
    p.add_argument(
        "--processes", type=int, default=None, help="rebuild processes (default: the engine's)"
    )
    p.add_argument(
        "--cache-weight",
        type=int,
        default=None,
        help="the writer's cache weight, before a split among processes (default: the engine's)",
    )
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
        run = functools.partial(
            rebuild,
            args.broker,
            args.topic,
            args.store_dir,
            args.batch,
            args.processes,
            cache_weight=args.cache_weight,
        )
        if args.cprofile:
            import cProfile

            profile = cProfile.Profile()
            result = profile.runcall(run)
            profile.dump_stats(args.cprofile)
        else:
            result = run()
    else:
        result = view(args.store_dir, args.customer, args.rounds)
    # the machine is shared: how busy it was says how far to trust the figure
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    say("result", json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
