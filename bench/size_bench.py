"""Where a store's bytes go: the bench workload rebuilt from real Kafka into a SQLite store
(and a PostgreSQL one with ``--postgres``), each table and index's bytes per touchpoint,
beside the log's bytes per touchpoint (key + value of every message) measured on the same
workload.

    .venv/bin/python -m bench.size_bench                       # 100k touchpoints
    .venv/bin/python -m bench.size_bench --postgres postgresql://journey@127.0.0.1:15432/journey
    .venv/bin/python -m bench.size_bench --store PATH          # an existing SQLite store only

SQLite's bytes come from its ``dbstat`` table (pages of each b-tree, so page slack counts
where it falls), plus the free pages and the write-ahead log; PostgreSQL's from
``pg_relation_size`` of each table, index and TOAST relation of the store's schema. The
total is what ``make bench`` reports (every file of the store; ``pg_total_relation_size``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.progress import Progress
from bench.run import ROOT, dir_bytes, fill_topic, kafka_hosts
from bench.workload import Shape, Workload, ensure_workload

__all__ = ["main", "postgres_breakdown", "sqlite_breakdown"]


def sqlite_breakdown(path: Path) -> dict[str, int]:
    """Bytes of each table and index of the SQLite store at ``path`` (FTS5's shadow tables
    summed under the index's name), its free pages and its write-ahead log."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            key = (
                "touchpoints_fts (all shadow tables)"
                if name.startswith("touchpoints_fts")
                else name
            )
            out[key] = out.get(key, 0) + int(size)
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        out["(free pages)"] = int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page_size
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    out["(write-ahead log)"] = wal.stat().st_size if wal.exists() else 0
    return out


def postgres_breakdown(url: str) -> dict[str, int]:
    """Bytes of each table (heap + TOAST) and index of the PostgreSQL store at ``url``."""
    from projections.location import active_store, connect, schema_of

    schema = schema_of(str(active_store(url))) or "public"
    with connect(url) as conn:
        conn.execute("VACUUM ANALYZE")  # the visibility and free-space maps, as a settled store
        rows = conn.execute(
            "SELECT c.relname, c.relkind, pg_relation_size(c.oid)"
            " + coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)"
            " + pg_relation_size(c.oid, 'fsm') + pg_relation_size(c.oid, 'vm')"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'i', 'm')",
            (schema,),
        ).fetchall()
    return {f"{name}{' (index)' if kind == 'i' else ''}": int(size) for name, kind, size in rows}


def show(title: str, parts: dict[str, int], events: int, log_per_tp: float) -> dict[str, Any]:
    total = sum(parts.values())
    print(
        f"\n{title}: {total / 2**20:,.1f} MiB, {total / events:,.0f} B/touchpoint, "
        f"{total / events / log_per_tp:.2f}× the log ({log_per_tp:,.0f} B/touchpoint)"
    )
    for name, size in sorted(parts.items(), key=lambda item: -item[1]):
        if size:
            print(f"  {name:<40} {size / events:8,.1f} B/tp  {100 * size / total:5.1f} %")
    return {
        "bytes": total,
        "per_touchpoint": round(total / events, 1),
        "over_log": round(total / events / log_per_tp, 3),
        "parts": parts,
    }


def _rebuild(broker: str, topic: str, base: Path | str) -> tuple[Path | str, int, float]:
    from consumers import open_log
    from consumers.rebuild import rebuild

    log = open_log(broker)
    try:
        new, stats, seconds = rebuild(log, base, topic=topic, dlq_topic=f"{topic}.dlq")
    finally:
        log.close()
    return new, stats.processed, seconds


@contextlib.contextmanager
def _database(server: str, keep: bool) -> Iterator[str]:
    import psycopg

    name = f"size_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server.rpartition('/')[0]}/{name}"
    finally:
        if not keep:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.size_bench", description=__doc__)
    parser.add_argument("--broker", default="kafka://127.0.0.1:19092")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--topic", help="a topic already holding the workload (else a new one)")
    parser.add_argument("--store", type=Path, help="only break down this SQLite store")
    parser.add_argument("--postgres", help="also rebuild into a fresh database on this server")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--keep", action="store_true", help="keep the topic, store, database")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    from consumers.kafka_log import KafkaLog
    from journey.logs import configure_logging

    configure_logging("console", "warning")
    workload: Workload = ensure_workload(
        args.cache_dir,
        Shape.for_events(args.events),
        args.seed,
        progress=Progress("generated", args.events),
    )
    log_per_tp = workload.log_bytes / args.events
    results: dict[str, Any] = {"events": args.events, "log_bytes_per_touchpoint": log_per_tp}
    if args.store is not None:
        results["sqlite"] = show(
            f"SQLite {args.store}", sqlite_breakdown(args.store), args.events, log_per_tp
        )
        return 0
    hosts = kafka_hosts(args.broker)
    topic = args.topic
    if topic is None:
        topic = f"size.{uuid.uuid4().hex[:8]}"
        print(f"filling {topic} with {args.events:,} touchpoints")
        fill_topic(KafkaLog(hosts), hosts, workload, topic)
    try:
        if not args.no_sqlite:
            work = Path(tempfile.mkdtemp(prefix="journey-size-"))
            new, events, seconds = _rebuild(args.broker, topic, work / "views.db")
            assert isinstance(new, Path)
            print(f"SQLite rebuild: {events:,} touchpoints in {seconds:,.1f} s into {new}")
            parts = sqlite_breakdown(new)
            # the files' own size beside it: dbstat does not see the page-0 header slack
            parts["(other bytes of the files)"] = dir_bytes(work) - sum(parts.values())
            results["sqlite"] = show("SQLite", parts, events, log_per_tp)
        if args.postgres:
            with _database(args.postgres, args.keep) as url:
                started = time.monotonic()
                _, events, seconds = _rebuild(args.broker, topic, url)
                print(f"\nPostgreSQL rebuild: {events:,} touchpoints in {seconds:,.1f} s ({url})")
                parts = postgres_breakdown(url)
                results["postgresql"] = show("PostgreSQL", parts, events, log_per_tp)
                results["postgresql"]["seconds"] = round(time.monotonic() - started, 1)
    finally:
        if not args.keep and args.topic is None:
            from bench.run import delete_topics

            delete_topics(hosts, [topic, f"{topic}.dlq"])
        elif args.topic is None:
            print(f"kept topic {topic}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
