"""The projection write path alone, without a broker: decode, then fold and record.

Reads a cached workload file (bench/workload.py), decodes every envelope with the engine's
decoder (pydantic: the bare consumer's "+pydantic" work, timed in the same run as its
baseline), then feeds the store poll batches the way the runner does (split by partition,
``JourneyStore.process`` per partition slice) and times that. With ``--dump`` it writes
what the store holds — every query-table row and the views of a sample of customers — as
canonical JSON, so two versions of the write path can be compared byte for byte:

    PYTHONPATH=/old python -m bench.write_path --workload W --dump old.json
    PYTHONPATH=/new python -m bench.write_path --workload W --dump new.json
    cmp old.json new.json

``--profile out.txt`` profiles the fold (cProfile, by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import tempfile
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.bounds import Bounds
from domain.envelope import Touchpoint, decode
from domain.positions import TopicPartition

__all__ = ["dump_store", "main"]

_LOGGED = datetime(2026, 1, 2, tzinfo=UTC)
# Tables a dump leaves out: how the state is cached (snapshots) and eventsourcing's own.
_NOT_VIEWS = {"snapshots", "journey_store_meta"}


def _tables(store: Any) -> list[str]:
    if store.backend.kind == "sqlite":
        rows = store.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name NOT LIKE 'touchpoints_fts%'"
        )
    else:
        rows = store.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    return sorted(str(r[0]) for r in rows if str(r[0]) not in _NOT_VIEWS)


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value


def _columns(store: Any) -> list[str]:
    if store.backend.kind == "sqlite":
        return [str(r[1]) for r in store.query("PRAGMA table_info(touchpoints)")]
    return [
        str(r[0])
        for r in store.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'touchpoints'"
            " AND table_schema = current_schema() ORDER BY ordinal_position"
        )
    ]


def _unpacked(row: dict[str, Any]) -> list[Any]:
    """A touchpoints row with its fact and summary as they read back."""
    from projections.facts import type_name, unpack, unpack_summary

    cid = str(row["customer_id"])
    row["summary"] = unpack_summary(row["summary"], cid)
    if row["fact"] is not None:
        row["fact"] = unpack(
            row["fact"],
            event_id=bytes(row["event_id"]),
            type=type_name(row["type"]),
            customer_id=cid,
            at=row["at"],
        )
    return list(row.values())


def dump_store(store: Any, customers: list[str], *, row_ids: bool = True) -> dict[str, Any]:
    """Every row of every view table (sorted), and the customer views of ``customers``.

    ``row_ids=False`` leaves out the touchpoints' row id (SQLite's ``id``): it numbers the
    rows in the order they were recorded, which differs between two rebuilds whose
    partitions were read in another interleaving (or by several processes).

    A touchpoint's fact and summary are dumped as they read back (unpacked), not as the
    bytes stored: two ways of storing them that read back alike dump alike."""
    from domain.rules import ServiceRules
    from projections.customer_view import build_customer_view

    out: dict[str, Any] = {"tables": {}, "views": {}}
    for table in _tables(store):
        select = "*"
        if table == "touchpoints":
            names = _columns(store)
            if not row_ids:
                names = [n for n in names if n != "id"]
            select = ", ".join(f'"{n}"' for n in names)
            rows = sorted(
                json.dumps([_plain(v) for v in _unpacked(dict(zip(names, row, strict=True)))])
                for row in store.query(f"SELECT {select} FROM {table}")
            )
        else:
            rows = sorted(
                json.dumps([_plain(v) for v in row])
                for row in store.query(f"SELECT {select} FROM {table}")
            )
        out["tables"][table] = {
            "rows": len(rows),
            "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
        }
        if table != "touchpoints":
            out["tables"][table]["sample"] = rows[:5]
    rules = ServiceRules()
    for cid in customers:
        view = build_customer_view(store, cid, rules=rules, now=_LOGGED)
        out["views"][cid] = None if view is None else json.loads(view.model_dump_json())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, required=True, help="a workload .ndjson")
    parser.add_argument("--events", type=int, default=0, help="only the first N (0: all)")
    parser.add_argument("--store", default="", help="a postgresql:// URL (else a temp SQLite)")
    parser.add_argument("--batch", type=int, default=2000, help="poll batch (the rebuild's)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--dump", type=Path, default=None)
    parser.add_argument(
        "--stream",
        action="store_true",
        help="decode a poll batch at a time (bounded memory: 1M fits), each step timed apart",
    )
    args = parser.parse_args(argv)
    if args.stream:
        return _stream(args)

    from consumers.runner import tune_gc
    from journey.logs import configure_logging
    from projections.store import JourneyStore

    configure_logging("console", "warning")  # as bench.child: the engine's own setting

    lines = args.workload.read_bytes().splitlines()
    if args.events:
        lines = lines[: args.events]
    bounds = Bounds(_LOGGED)
    # CPU seconds, not wall: on a shared machine the ratio of two CPU-bound steps holds
    # when the wall clock does not (wall figures are printed too).
    started, cpu = time.perf_counter(), time.process_time()
    decoded: list[Touchpoint] = [decode(raw, bounds) for raw in lines]
    decode_s, decode_wall = time.process_time() - cpu, time.perf_counter() - started

    # Kafka's placement by key (any stable hash does: order per customer is what matters).
    offsets = [0] * args.partitions
    placed: list[tuple[int, int, Touchpoint]] = []
    for t in decoded:
        part = zlib.crc32(t.customer_id.encode()) % args.partitions
        placed.append((part, offsets[part], t))
        offsets[part] += 1

    tmp = tempfile.TemporaryDirectory(prefix="write-path-")
    address = args.store or str(Path(tmp.name) / "views.db")
    try:  # a rebuild's store: snapshots when a customer leaves the cache, and at the end
        store = JourneyStore(address, rebuilding=True)
    except TypeError:  # a write path from before deferred snapshots
        store = JourneyStore(address)
    tune_gc()
    profiler = cProfile.Profile() if args.profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    for start in range(0, len(placed), args.batch):
        by_part: dict[int, list[tuple[int, Touchpoint]]] = {}
        for part, offset, t in placed[start : start + args.batch]:
            by_part.setdefault(part, []).append((offset, t))
        _record(store, by_part)
    if hasattr(store, "complete"):
        store.complete()
    if profiler is not None:
        profiler.disable()
    fold_s, fold_wall = time.process_time() - cpu, time.perf_counter() - started
    n = len(decoded)
    figures = {
        "events": n,
        "decode_wall_per_s": round(n / decode_wall),
        "fold_wall_per_s": round(n / fold_wall),
        "decode_per_s": round(n / decode_s),
        "fold_per_s": round(n / fold_s),
        # A rebuild decodes and folds: its rate against the decoder's alone.
        "decode_and_fold_per_s": round(n / (decode_s + fold_s)),
        "ratio_to_decode": round(decode_s / (decode_s + fold_s), 3),
    }
    # What a cold read folds after its snapshot, at most (the snapshots' own contract).
    tails = store.query(
        "SELECT max(c.touchpoints - coalesce(s.touchpoints, 0)) FROM customers c"
        " LEFT JOIN snapshots s ON s.customer_id = c.customer_id"
    )
    figures["longest_cold_tail"] = tails[0][0]
    figures["snapshots"] = store.query("SELECT count(*) FROM snapshots")[0][0]
    print(json.dumps(figures))
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        args.profile.write_text(text.getvalue())
    if args.dump is not None:
        counts: dict[str, int] = {}
        for t in decoded:
            counts[t.customer_id] = counts.get(t.customer_id, 0) + 1
        ranked = sorted(counts, key=lambda k: (-counts[k], k))
        sample = ranked[:3] + ranked[len(ranked) // 2 : len(ranked) // 2 + 5] + ranked[-3:]
        args.dump.write_text(json.dumps(dump_store(store, sample), indent=1, sort_keys=True))
    store.close()
    tmp.cleanup()
    return 0


def _record(store: Any, by_part: dict[int, list[tuple[int, Touchpoint]]]) -> None:
    """A poll batch's slices, one a partition (offset, touchpoint), folded and recorded as the
    runner does: ``JourneyStore.process`` a slice at a time."""
    for part, items in by_part.items():
        store.process(
            TopicPartition("bench", part),
            items,
            items[-1][0],
            logged_at=dict.fromkeys((off for off, _ in items), _LOGGED),
        )


def _stream(args: argparse.Namespace) -> int:
    """The write path over a workload too large to hold decoded: decode one poll batch,
    fold and record it, and so on; decode and fold CPU seconds summed apart. Prints peak
    RSS too (the process's: the decoded batch, the store's cache and the writer's)."""
    import resource

    from consumers.runner import tune_gc
    from journey.logs import configure_logging
    from projections.store import JourneyStore

    configure_logging("console", "warning")
    bounds = Bounds(_LOGGED)
    tmp = tempfile.TemporaryDirectory(prefix="write-path-")
    store = JourneyStore(args.store or str(Path(tmp.name) / "views.db"), rebuilding=True)
    tune_gc()
    offsets = [0] * args.partitions
    decode_s = fold_s = 0.0
    n = 0
    started = time.perf_counter()

    def batches() -> Any:
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

    for chunk in batches():
        cpu = time.process_time()
        decoded = [decode(raw, bounds) for raw in chunk]
        decode_s += time.process_time() - cpu
        cpu = time.process_time()
        by_part: dict[int, list[tuple[int, Touchpoint]]] = {}
        for t in decoded:
            part = zlib.crc32(t.customer_id.encode()) % args.partitions
            by_part.setdefault(part, []).append((offsets[part], t))
            offsets[part] += 1
        _record(store, by_part)
        fold_s += time.process_time() - cpu
        n += len(decoded)
    cpu = time.process_time()
    store.complete()
    complete_s = time.process_time() - cpu
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "events": n,
                "decode_cpu_s": round(decode_s, 2),
                "fold_cpu_s": round(fold_s, 2),
                "complete_cpu_s": round(complete_s, 2),
                "fold_us_per_event": round(1e6 * (fold_s + complete_s) / n, 1),
                "ratio_to_decode": round(decode_s / (decode_s + fold_s + complete_s), 3),
                "wall_s": round(wall, 1),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )
    store.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
