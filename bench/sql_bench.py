"""The rebuild's SQL, statement group by statement group, CPU a touchpoint.

Runs the write path of ``bench.write_path --stream`` (decode a poll batch, split it by
partition, ``JourneyStore.process`` each slice, ``complete()`` at the end) on a SQLite
rebuild's store, and times from outside the product, by the thread's CPU (user and system
apart, ``getrusage``):

* each ``executemany`` of ``Backend.record`` (one run of one statement: the touchpoints
  insert, the customers upsert, identities, clocks, links, snapshots ...), by statement;
* the rest of ``Backend.record`` (BEGIN, the tracking row, COMMIT: mostly the commit);
* ``_batch_state`` (the batch's known-id and customers reads);

and prints, per group, rows a touchpoint, user and system µs a touchpoint and µs a row.
Two sizes side by side show what grows (issue 10's 1M ÷ 100k rate):

    python -m bench.sql_bench --workload W100k
    python -m bench.sql_bench --workload W1M

``--io`` adds the pages each group read and wrote (``/proc/self/io``: dearer to sample).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.write_path import _LOGGED, _record
from domain.bounds import Bounds
from domain.envelope import Touchpoint, decode

__all__ = ["main"]


def _group(sql: str) -> str:
    """A statement's group: what it does to which table."""
    words = sql.split()
    verb = words[0].upper()
    if verb == "INSERT":
        table = words[2]
        return f"{table} {'upsert' if 'DO UPDATE' in sql else 'insert'}"
    if verb == "DELETE":
        return f"{words[2]} delete"
    if verb == "UPDATE":
        return f"{words[1]} update"
    return " ".join(words[:3])


class _Clock:
    """CPU of this thread, user and system apart; optionally the process's I/O."""

    def __init__(self, io: bool) -> None:
        self.io = io
        self.user: dict[str, float] = defaultdict(float)
        self.sys: dict[str, float] = defaultdict(float)
        self.rows: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.reads: dict[str, int] = defaultdict(int)
        self.writes: dict[str, int] = defaultdict(int)

    def now(self) -> tuple[float, float, int, int]:
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        read = write = 0
        if self.io:
            with open("/proc/thread-self/io", "rb") as f:
                fields = dict(line.split(b":") for line in f.read().splitlines())
            read, write = int(fields[b"syscr"]), int(fields[b"syscw"])
        return usage.ru_utime, usage.ru_stime, read, write

    def add(self, group: str, before: tuple[float, float, int, int], rows: int = 0) -> None:
        after = self.now()
        self.user[group] += after[0] - before[0]
        self.sys[group] += after[1] - before[1]
        self.reads[group] += after[2] - before[2]
        self.writes[group] += after[3] - before[3]
        self.rows[group] += rows
        self.calls[group] += 1


def _instrument(clock: _Clock) -> None:
    """Wraps the store's SQL from outside: the product is not changed."""
    from projections import backends, store
    from projections.backends import runs

    def insert_events(self: Any, c: Any, stored_events: Any, **kwargs: Any) -> Any:
        before = clock.now()
        returning = super(backends._SQLiteRecorder, self)._insert_events(c, stored_events, **kwargs)
        clock.add("(tracking row)", before)
        for statement, params in runs(kwargs.get("view_writes", ())):
            before = clock.now()
            c.executemany(statement, params)
            clock.add(_group(statement), before, len(params))
        return returning

    backends._SQLiteRecorder._insert_events = insert_events  # type: ignore[method-assign]
    record = backends.Backend.record

    def timed_record(self: Any, tracking: Any, writes: Any) -> None:
        before = clock.now()
        record(self, tracking, writes)
        clock.add("(record)", before)

    backends.Backend.record = timed_record  # type: ignore[method-assign]

    def timed_execute(self: Any, statements: Any) -> None:
        """Writes outside a batch (``complete()``'s chunks), by statement."""
        with self.transaction(commit=True) as cur:
            for statement, params in runs(statements):
                before = clock.now()
                cur.executemany(self.sql(statement), params)
                clock.add(f"complete: {_group(statement)}", before, len(params))

    backends.Backend.execute = timed_execute  # type: ignore[method-assign]
    batch_state = store.JourneyStore._batch_state

    def timed_batch_state(self: Any, ids: Any, customer_ids: Any) -> Any:
        before = clock.now()
        out = batch_state(self, ids, customer_ids)
        clock.add("_batch_state", before)
        return out

    store.JourneyStore._batch_state = timed_batch_state  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, required=True, help="a workload .ndjson")
    parser.add_argument("--events", type=int, default=0, help="only the first N (0: all)")
    parser.add_argument("--batch", type=int, default=2000, help="poll batch (the rebuild's)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--per-partition",
        action="store_true",
        help="each poll batch is --batch records of one partition, partitions in turn (as"
        " kafka-python's poll mostly returns them: a real rebuild's transactions are ~1,250"
        " rows), not --batch records of the log split by partition",
    )
    parser.add_argument(
        "--drop-index",
        action="append",
        default=[],
        help="an experiment: drop this index from the store before the run",
    )
    parser.add_argument("--io", action="store_true", help="also count read/write syscalls")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)

    from consumers.runner import tune_gc
    from journey.logs import configure_logging
    from projections.store import JourneyStore

    configure_logging("console", "warning")
    clock = _Clock(args.io)
    _instrument(clock)
    bounds = Bounds(_LOGGED)
    tmp = tempfile.TemporaryDirectory(prefix="sql-bench-")
    store = JourneyStore(str(Path(tmp.name) / "views.db"), rebuilding=True)
    for name in args.drop_index:
        store.backend.execute([(f"DROP INDEX {name}", ())])
    tune_gc()
    offsets = [0] * args.partitions
    n = slices = 0
    fold_cpu = 0.0

    def batches() -> Iterator[list[bytes]]:
        chunk: list[bytes] = []
        with args.workload.open("rb") as lines:
            for read, line in enumerate(lines, 1):
                chunk.append(line.rstrip(b"\n"))
                if len(chunk) == args.batch:
                    yield chunk
                    chunk = []
                if read == args.events:
                    break
        if chunk:
            yield chunk

    def partition_batches() -> Iterator[list[bytes]]:
        """--batch records of one partition at a time, partitions in turn: each partition
        read ahead as a poll would find it, the others' records held meanwhile (bounded:
        a partition runs ahead of the others by at most a few batches)."""
        held: list[list[bytes]] = [[] for _ in range(args.partitions)]
        turn = 0
        for chunk in batches():
            for raw in chunk:
                key = raw.split(b'"customer_id":"', 1)[1].split(b'"', 1)[0]
                held[zlib.crc32(key) % args.partitions].append(raw)
            while len(held[turn]) >= args.batch:
                yield held[turn][: args.batch]
                del held[turn][: args.batch]
                turn = (turn + 1) % args.partitions
        for rest in held[turn:] + held[:turn]:
            for start in range(0, len(rest), args.batch):
                yield rest[start : start + args.batch]

    started = time.perf_counter()
    for chunk in partition_batches() if args.per_partition else batches():
        decoded = [decode(raw, bounds) for raw in chunk]
        cpu = time.process_time()
        by_part: dict[int, list[tuple[int, Touchpoint]]] = {}
        for t in decoded:
            part = zlib.crc32(t.customer_id.encode()) % args.partitions
            by_part.setdefault(part, []).append((offsets[part], t))
            offsets[part] += 1
        slices += sum(len({t.customer_id for _, t in items}) for items in by_part.values())
        _record(store, by_part)
        fold_cpu += time.process_time() - cpu
        n += len(decoded)
    # complete() writes through Backend.execute, not record: timed as one.
    before = clock.now()
    cpu = time.process_time()
    store.complete()
    fold_cpu += time.process_time() - cpu
    clock.add("complete()", before)
    wall = time.perf_counter() - started
    size = store.size_bytes()
    store.close()
    tmp.cleanup()

    in_record = {
        g
        for g in clock.user
        if g not in ("(record)", "_batch_state", "complete()") and not g.startswith("complete:")
    }
    total_user = clock.user["(record)"]
    total_sys = clock.sys["(record)"]
    clock.user["(commit, begin)"] = total_user - sum(clock.user[g] for g in in_record)
    clock.sys["(commit, begin)"] = total_sys - sum(clock.sys[g] for g in in_record)
    clock.calls["(commit, begin)"] = clock.calls["(record)"]
    for held in (clock.reads, clock.writes):
        held["(commit, begin)"] = held["(record)"] - sum(held[g] for g in in_record)
    groups = sorted(
        (g for g in clock.user if g != "(record)"),
        key=lambda g: -(clock.user[g] + clock.sys[g]),
    )
    us = 1e6 / n
    print(
        f"{n:,} touchpoints, {clock.calls['(record)']:,} transactions, customer slices"
        f" {slices / n:.3f} a touchpoint; write path {fold_cpu * us:.1f} µs CPU a touchpoint;"
        f" store {size / 1e6:.1f} MB; wall {wall:.0f} s"
    )
    header = "| group | rows/tp | user µs/tp | sys µs/tp | µs/row |"
    if args.io:
        header += " reads/tp | writes/tp |"
    print(header)
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if args.io else ""))
    figures: dict[str, Any] = {
        "events": n,
        "transactions": clock.calls["(record)"],
        "slices_per_tp": round(slices / n, 4),
        "write_path_us": round(fold_cpu * us, 2),
        "groups": {},
    }
    for g in [*groups, "(record)"]:
        rows = clock.rows[g]
        cost = clock.user[g] + clock.sys[g]
        line = (
            f"| {g} | {rows / n:.3f} | {clock.user[g] * us:.2f} | {clock.sys[g] * us:.2f} |"
            f" {1e6 * cost / rows:.2f} |"
            if rows
            else f"| {g} | | {clock.user[g] * us:.2f} | {clock.sys[g] * us:.2f} | |"
        )
        if args.io:
            line += f" {clock.reads[g] / n:.3f} | {clock.writes[g] / n:.3f} |"
        print(line)
        figures["groups"][g] = {
            "rows_per_tp": round(rows / n, 4),
            "user_us": round(clock.user[g] * us, 3),
            "sys_us": round(clock.sys[g] * us, 3),
        }
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
