"""The log as a table: one row per touchpoint, streamed to Parquet, DuckDB or CSV.

The export reads the log of record (Kafka or the embedded log) outside any consumer group,
from where the last export ended (or the beginning) to the high-water marks it found when
it started, and writes Arrow record batches of at most ``batch_rows`` rows as it goes: its
memory does not grow with the length of the log. Its columns (:data:`SCHEMA`) are a stable
contract, documented in docs/export.md.

What a row is, in short:

* every message that decodes as the engine decodes it (schema, bounds judged at the
  message's log time, key equal to ``customer_id``) is one row, with ``data`` upcast to the
  current version of its type (``schema_version`` says which; ``emitted_schema_version``
  what was on the wire);
* a message the engine dead-letters is skipped and counted by reason (the result says how
  many); a re-sent touchpoint (an ``event_id`` already exported) is skipped and counted as a
  duplicate, across incremental exports too: the ids exported so far are kept beside the
  export (``PATH.event-ids.db``, a SQLite file: on disk, so memory stays flat);
* ``resolved_customer_id`` applies identity merges as the projection store knows them
  (:func:`store_resolver`); without a store it is the ``customer_id`` as emitted.

Incremental: every export writes its end positions to ``PATH.positions.json``; passing that
file as ``after_positions`` appends only what is new (Parquet: one more part file in the
dataset directory; DuckDB: rows inserted into the same table; CSV: lines appended without a
header).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import structlog

from consumers.log import Log, LogConsumer, LogUnavailable, Message, TopicPartition
from domain.bounds import DEFAULT_MAX_FUTURE, Bounds
from domain.catalogue import CATALOGUE, CURRENT
from domain.envelope import decode, loads
from domain.errors import InvalidEvent, JourneyError

if TYPE_CHECKING:
    from projections.store import JourneyStore

__all__ = [
    "COLUMNS",
    "FORMATS",
    "SCHEMA",
    "TABLE",
    "ExportError",
    "ExportFormat",
    "ExportResult",
    "Resolver",
    "TouchpointReader",
    "event_ids_path",
    "export",
    "parse_time",
    "positions_path",
    "store_resolver",
]

logger = structlog.get_logger(__name__)

ExportFormat = Literal["parquet", "duckdb", "csv"]
FORMATS: tuple[ExportFormat, ...] = ("parquet", "duckdb", "csv")

# The DuckDB table an export fills.
TABLE = "touchpoints"

_UTC_US = pa.timestamp("us", tz="UTC")

# The contract: names, order and types of the columns (docs/export.md describes each).
SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("emitted_schema_version", pa.int32(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("resolved_customer_id", pa.string(), nullable=False),
        pa.field("occurred_at", _UTC_US, nullable=False),
        pa.field("logged_at", _UTC_US),  # null only when the record carries no timestamp
        pa.field("source", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("correlation_id", pa.string()),
        pa.field("causation_id", pa.string()),
        pa.field("data", pa.string(), nullable=False),
        pa.field("case_id", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("order_id", pa.string()),
        pa.field("promise_id", pa.string()),
        pa.field("team", pa.string()),
        pa.field("agent", pa.string()),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
# Fields of ``data`` that get a column of their own (null where the type has no such field).
_TYPED = ("case_id", "channel", "order_id", "promise_id", "team", "agent")

# DuckDB's memory limit while exporting (it spills to disk beyond it).
_DUCKDB_MEMORY = "256MB"
# Version of the positions file's layout.
_POSITIONS_VERSION = 1
# A poll that brings nothing for this long, while the high-water marks say there is more,
# means the log stopped answering.
_STALL_S = 60.0
# Identity resolutions remembered (customer id -> resolved id): bounded, so memory stays
# flat however many customers the log holds.
_RESOLVED_CACHE = 200_000

Resolver = Callable[[str], str]

# Types with an older version on record: only their rows can differ from the wire's version.
_VERSIONED = frozenset(t for (t, v) in CATALOGUE if v != CURRENT.get(t))


class ExportError(JourneyError):
    """The export cannot be made as asked (its message says what to change)."""


@dataclass
class ExportResult:
    """What one export run did. ``positions`` are the next offsets to read per partition."""

    out: Path
    format: ExportFormat
    rows: int = 0
    read: int = 0
    duplicates: int = 0
    filtered_out: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    appended: bool = False
    resolved_with: str = "none"
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "format": self.format,
            "rows": self.rows,
            "read": self.read,
            "duplicates": self.duplicates,
            "filtered_out": self.filtered_out,
            "dead_letters": sum(self.dead_letters.values()),
            "dead_letter_reasons": dict(sorted(self.dead_letters.items())),
            "appended": self.appended,
            "resolved_with": self.resolved_with,
            "positions": str(positions_path(self.out)),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.read / self.seconds, 1) if self.seconds else None,
        }


def positions_path(out: str | Path) -> Path:
    """Where an export's end positions are written: beside it, ``PATH.positions.json``."""
    out = Path(out)
    return out.with_name(out.name + ".positions.json")


def event_ids_path(out: str | Path) -> Path:
    """The event ids an export holds (so a re-sent touchpoint is not exported twice)."""
    out = Path(out)
    return out.with_name(out.name + ".event-ids.db")


def parse_time(text: str, option: str = "time") -> datetime:
    """``2026-11-23`` (midnight UTC) or RFC 3339 with a zone offset, as an aware datetime."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        at = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ExportError(
            f"{option} {text!r} is not a date or time: use 2026-11-23 (UTC) or "
            "2026-11-23T10:00:00+01:00"
        ) from None
    if at.tzinfo is None:
        raise ExportError(
            f"{option} {text!r} has no zone offset: add one, e.g. {value}Z or {value}+01:00"
        )
    return at


# ---------------------------------------------------------------------- identity


def store_resolver(store: JourneyStore) -> Resolver:
    """``customer_id`` -> the id every identity-merged id of that person resolves to, as
    the store knows the merges (the same relation the customer view merges by).

    The resolved id of a group is the smallest of its ids that is not another member's
    identifier (an e-mail or phone keyed stream resolves to the customer it belongs to),
    so it does not depend on which id of the group is asked first."""
    from projections.customer_view import related_customers
    from projections.store import norm_identity

    cache: OrderedDict[str, str] = OrderedDict()

    def someone_elses_identifier(cid: str, group: set[str]) -> bool:
        rows = store.query(
            "SELECT customer_id FROM identities WHERE norm = ? AND kind != 'name' AND verified = 1",
            (norm_identity(cid),),
        )
        return any(str(r[0]) != cid and str(r[0]) in group for r in rows)

    def resolve(customer_id: str) -> str:
        found = cache.get(customer_id)
        if found is not None:
            cache.move_to_end(customer_id)
            return found
        group = related_customers(store, customer_id)
        if len(group) == 1:
            resolved = customer_id
        else:
            members = set(group)
            resolved = min(group, key=lambda m: (someone_elses_identifier(m, members), m))
        for member in group:
            cache[member] = resolved
            cache.move_to_end(member)
        while len(cache) > _RESOLVED_CACHE:
            cache.popitem(last=False)
        return resolved

    return resolve


def _unresolved(customer_id: str) -> str:
    return customer_id


# ---------------------------------------------------------------------- reading


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Rarer young-generation collections while reading: a batch holds hundreds of
    thousands of short-lived, acyclic objects, and the default (a pass every 700 new
    objects) spent about a third of the export's CPU scanning them. Restored afterwards."""
    old = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _now_for(msg: Message) -> datetime:
    # The runner judges bounds at the message's log time; so does the export, so the same
    # messages are skipped as the engine dead-letters, at any age of the log.
    if msg.timestamp_ms > 0:
        try:
            return datetime.fromtimestamp(msg.timestamp_ms / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            pass
    return datetime.now(UTC)


def _micros(at: datetime) -> int:
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class _Seen:
    """The event ids exported so far, in a SQLite file (on disk: memory stays flat).
    Its transaction commits only when the export is published."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("CREATE TABLE IF NOT EXISTS seen (id BLOB PRIMARY KEY) WITHOUT ROWID")
        self.conn.execute("BEGIN")

    def fresh(self, ids: list[bytes]) -> list[bool]:
        """Per id, whether it is new (neither exported before nor earlier in ``ids``)."""
        known: set[bytes] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            known.update(
                r[0] for r in self.conn.execute(f"SELECT id FROM seen WHERE id IN ({marks})", chunk)
            )
        out: list[bool] = []
        for i in ids:
            out.append(i not in known)
            known.add(i)
        new = [(i,) for i, is_new in zip(ids, out, strict=True) if is_new]
        self.conn.executemany("INSERT INTO seen (id) VALUES (?)", new)
        return out

    def forget(self, ids: Iterator[bytes]) -> None:
        """Drop ``ids`` for good, at once (in a transaction of its own, before this run
        writes any): their rows are being removed from the export to be written again."""
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")
        chunk: list[tuple[bytes]] = []
        for i in ids:
            chunk.append((i,))
            if len(chunk) == 500:
                self.conn.executemany("DELETE FROM seen WHERE id = ?", chunk)
                chunk = []
        self.conn.executemany("DELETE FROM seen WHERE id = ?", chunk)
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


@dataclass
class _Filters:
    since: datetime | None = None
    until: datetime | None = None
    types: frozenset[str] = frozenset()
    customer: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "types": sorted(self.types),
            "customer": self.customer,
        }


class TouchpointReader:
    """Reads ``topic`` from ``start`` (next offset per partition; 0 where absent) to the
    high-water marks found when it starts, as Arrow record batches in :data:`SCHEMA`.

    ``positions`` says, as it goes, the next offset to read per partition; the counters
    say what was skipped and why. Reads outside any consumer group: it never disturbs the
    engine's consumers.
    """

    def __init__(
        self,
        log: Log,
        topic: str,
        *,
        start: Mapping[int, int] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        types: Sequence[str] = (),
        customer: str | None = None,
        resolve: Resolver | None = None,
        batch_rows: int = 50_000,
        poll_records: int = 2_000,
        max_future: timedelta = DEFAULT_MAX_FUTURE,
        seen: _Seen | None = None,
    ) -> None:
        if batch_rows < 1:
            raise ExportError(f"batch_rows must be at least 1, got {batch_rows}")
        unknown = sorted(set(types) - set(CURRENT))
        if unknown:
            raise ExportError(
                f"unknown touchpoint type(s) {', '.join(unknown)}: use names from "
                "docs/events.md, e.g. ReplySent"
            )
        for option, at in (("since", since), ("until", until)):
            if at is not None and at.utcoffset() is None:
                raise ExportError(
                    f"{option} {at.isoformat()} has no zone: pass an aware datetime, "
                    "e.g. with tzinfo=UTC"
                )
        if since is not None and until is not None and since >= until:
            raise ExportError(
                f"--since {since.isoformat()} is not before --until {until.isoformat()}"
            )
        self.log, self.topic = log, topic
        self.filters = _Filters(since, until, frozenset(types), customer)
        self.resolve = resolve or _unresolved
        self.batch_rows, self.poll_records = batch_rows, poll_records
        self.max_future = max_future
        self._seen = seen
        try:
            self.ends = log.high_watermarks(topic)
        except JourneyError as exc:
            raise ExportError(
                f"cannot read topic {topic!r} on {log.url}: {exc} (check --topic / --broker)"
            ) from None
        begin = dict(start or {})
        extra = sorted(set(begin) - set(self.ends))
        if extra:
            raise ExportError(
                f"the positions name partition(s) {extra} that topic {topic!r} does not have: "
                "they belong to another log or topic"
            )
        ahead = {p: o for p, o in begin.items() if o > self.ends[p]}
        if ahead:
            raise ExportError(
                f"the positions are ahead of the log's end on partition(s) {sorted(ahead)}: "
                "they belong to another log or topic"
            )
        self.positions = {p: begin.get(p, 0) for p in self.ends}
        self.total = sum(self.ends[p] - self.positions[p] for p in self.ends)
        self.read = 0
        self.rows = 0
        self.duplicates = 0
        self.filtered_out = 0
        self.dead_letters: Counter[str] = Counter()
        self._customer_resolved = None if customer is None else self.resolve(customer)

    def _left(self) -> bool:
        return any(self.positions[p] < end for p, end in self.ends.items())

    def _consumer(self) -> LogConsumer:
        wanted = {TopicPartition(self.topic, p): off for p, off in self.positions.items()}

        def on_assign(assigned: frozenset[TopicPartition]) -> Mapping[TopicPartition, int]:
            return {tp: wanted.get(tp, 0) for tp in assigned}

        return self.log.consumer(None, [self.topic], on_assign=on_assign)

    def batches(
        self, progress: Callable[[int, int], None] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The rows, ``batch_rows`` at a time (the last batch may be smaller; no empty
        batch is yielded)."""
        if not self._left():
            return
        consumer = self._consumer()
        cols = _Columns()
        try:
            with _fewer_collections():
                yield from self._read(consumer, cols, progress)
        finally:
            consumer.close()

    def _read(
        self,
        consumer: LogConsumer,
        cols: _Columns,
        progress: Callable[[int, int], None] | None,
    ) -> Iterator[pa.RecordBatch]:
        last_progress = time.monotonic()
        while self._left():
            messages = consumer.poll(1.0, self.poll_records)
            if not messages:
                self._skip_gaps(consumer)
                if not self._left():
                    break
                if time.monotonic() - last_progress > _STALL_S:
                    raise LogUnavailable(
                        f"{self.log.url} returned nothing for {_STALL_S:.0f} s while "
                        f"topic {self.topic!r} has more to read; try again"
                    )
                continue
            last_progress = time.monotonic()
            self._take(messages, cols)
            if progress is not None:
                progress(self.read, self.total)
            while len(cols) >= self.batch_rows:
                yield cols.pop(self.batch_rows)
        if len(cols):
            yield cols.pop(len(cols))

    def _skip_gaps(self, consumer: LogConsumer) -> None:
        """A partition whose last offsets hold no record (a transaction marker, or a
        compacted topic) is done once the consumer's position has passed them."""
        position = getattr(consumer, "position", None)
        if position is None:
            return
        for p, end in self.ends.items():
            if self.positions[p] < end:
                at = position(TopicPartition(self.topic, p))
                if at is not None and at >= end:
                    self.positions[p] = end

    def _take(self, messages: list[Message], cols: _Columns) -> None:
        f = self.filters
        kept: list[tuple[Message, Any]] = []
        for msg in messages:
            end = self.ends.get(msg.partition)
            if msg.topic != self.topic or end is None or msg.offset >= end:
                continue  # arrived after the export started: the next export takes it
            if msg.offset < self.positions[msg.partition]:
                continue  # read twice (a consumer's retry): already handled
            self.positions[msg.partition] = msg.offset + 1
            self.read += 1
            try:
                tp = decode(msg.value, Bounds(_now_for(msg), self.max_future))
            except InvalidEvent as exc:
                self.dead_letters[exc.reason] += 1
                continue
            except Exception:  # decoding is pure: whatever it raises is the message's fault
                self.dead_letters["undecodable"] += 1
                continue
            if tp.customer_id.encode() != msg.key:
                self.dead_letters["key_mismatch"] += 1
                continue
            kept.append((msg, tp))
        if self._seen is not None and kept:
            fresh = self._seen.fresh([tp.event_id.bytes for _, tp in kept])
            self.duplicates += fresh.count(False)
            kept = [k for k, new in zip(kept, fresh, strict=True) if new]
        for msg, tp in kept:
            if (
                (f.types and tp.type not in f.types)
                or (f.since is not None and tp.occurred_at < f.since)
                or (f.until is not None and tp.occurred_at >= f.until)
            ):
                self.filtered_out += 1
                continue
            resolved = self.resolve(tp.customer_id)
            if (
                f.customer is not None
                and tp.customer_id != f.customer
                and resolved != self._customer_resolved
            ):
                self.filtered_out += 1
                continue
            cols.add(msg, tp, resolved, self._emitted_version(msg, tp.type, tp.schema_version))
            self.rows += 1

    @staticmethod
    def _emitted_version(msg: Message, type_name: str, current: int) -> int:
        # decode() returns the touchpoint upcast; what was on the wire is read again only
        # for the few types that have an older version.
        if type_name not in _VERSIONED:
            return current
        version = loads(msg.value or b"").get("schema_version", current)
        return version if isinstance(version, int) else current


class _Columns:
    """Column lists of rows not yet written (at most ``batch_rows`` plus one poll)."""

    def __init__(self) -> None:
        self.data: dict[str, list[Any]] = {name: [] for name in COLUMNS}

    def __len__(self) -> int:
        return len(self.data["event_id"])

    def add(self, msg: Message, tp: Any, resolved: str, emitted_version: int) -> None:
        d = self.data
        body = tp.data
        d["event_id"].append(str(tp.event_id))
        d["type"].append(tp.type)
        d["schema_version"].append(tp.schema_version)
        d["emitted_schema_version"].append(emitted_version)
        d["customer_id"].append(tp.customer_id)
        d["resolved_customer_id"].append(resolved)
        d["occurred_at"].append(_micros(tp.occurred_at))
        d["logged_at"].append(msg.timestamp_ms * 1000 if msg.timestamp_ms > 0 else None)
        d["source"].append(tp.source)
        d["topic"].append(msg.topic)
        d["partition"].append(msg.partition)
        d["offset"].append(msg.offset)
        d["correlation_id"].append(tp.correlation_id)
        d["causation_id"].append(tp.causation_id)
        d["data"].append(body.model_dump_json(exclude_none=True))
        fields = body.__dict__  # a pydantic model's field values (getattr of a missing one is slow)
        for name in _TYPED:
            value = fields.get(name)
            d[name].append(value if isinstance(value, str) else None)

    def pop(self, n: int) -> pa.RecordBatch:
        head = {name: values[:n] for name, values in self.data.items()}
        for values in self.data.values():
            del values[:n]
        arrays = [
            # Timestamps go in as int64 microseconds and are cast: pyarrow would import
            # pandas (a second) to convert Python values to a zoned timestamp.
            pa.array(head[f.name], type=pa.int64()).cast(f.type)
            if f.type == _UTC_US
            else pa.array(head[f.name], type=f.type)
            for f in SCHEMA
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


# ---------------------------------------------------------------------- writing


class _Sink:
    """Where batches go. Nothing is visible at ``out`` until :meth:`publish`."""

    files: list[Path]

    def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def publish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class _ParquetSink(_Sink):
    """A dataset directory: each export run adds one part file, written under a hidden
    name (readers skip names starting with '.') and renamed when complete."""

    def __init__(self, out: Path, append: bool) -> None:
        import pyarrow.parquet as pq

        if out.exists() and not out.is_dir():
            raise ExportError(f"{out} is a file: a Parquet export is a directory of part files")
        out.mkdir(parents=True, exist_ok=append)
        runs = len(list(out.glob("part-*.parquet")))
        self.final = out / f"part-{runs:05d}-{uuid.uuid4().hex[:8]}.parquet"
        self.temp = out / f".{self.final.name}.partial"
        self.writer = pq.ParquetWriter(self.temp, SCHEMA, compression="zstd")
        self.rows = 0
        self.append = append
        self.files = [self.final]

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)  # one row group per batch
        self.rows += batch.num_rows

    def publish(self) -> None:
        self.writer.close()
        if self.rows == 0 and self.append:
            self.temp.unlink()  # nothing new: no empty part file
            self.files = []
            return
        os.replace(self.temp, self.final)

    def abort(self) -> None:
        self.writer.close()
        self.temp.unlink(missing_ok=True)
        if not self.append and not any(self.temp.parent.iterdir()):
            self.temp.parent.rmdir()  # a failed first export leaves nothing behind


class _CsvSink(_Sink):
    """A header line, then one line per row; an incremental run appends lines only."""

    def __init__(self, out: Path, append: bool) -> None:
        import pyarrow.csv as pacsv

        self.out, self.append = out, append
        self.temp = out.with_name(f".{out.name}.partial")
        self.writer = pacsv.CSVWriter(
            str(self.temp), SCHEMA, write_options=pacsv.WriteOptions(include_header=not append)
        )
        self.files = [out]

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)

    def publish(self) -> None:
        self.writer.close()
        if not self.append:
            os.replace(self.temp, self.out)
            return
        with self.temp.open("rb") as src, self.out.open("ab") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        self.temp.unlink()

    def abort(self) -> None:
        self.writer.close()
        self.temp.unlink(missing_ok=True)


class _DuckDbSink(_Sink):
    """The table ``touchpoints`` in a DuckDB file.

    Each batch is its own transaction, under a memory limit: one transaction for a whole
    run kept every inserted row in memory until the commit (RSS grew from 350 to 870 MiB
    over 1M rows). So the rows of a run are told apart by their positions instead: every
    row of this run lies at or after ``start`` in its partition, and no earlier row does.
    A failed run deletes them; an append first deletes any that a run which died before
    writing its positions left behind. Those rows' ids are forgotten first (committed
    before the rows go): a run that published its rows and ids but not its positions would
    otherwise have its rows deleted and every message skipped as already exported."""

    def __init__(
        self, out: Path, append: bool, topic: str, start: Mapping[int, int], seen: _Seen
    ) -> None:
        import duckdb

        self.out, self.append = out, append
        self.topic, self.start = topic, dict(start)
        self.con = duckdb.connect(str(out))
        self.files = [out]
        # Beyond this DuckDB spills to disk (a temp directory beside the file).
        self.con.execute(f"SET memory_limit = '{_DUCKDB_MEMORY}'")
        tables = {r[0] for r in self.con.execute("SHOW TABLES").fetchall()}
        if append and TABLE not in tables:
            self.con.close()
            raise ExportError(f"{out} has no table {TABLE!r}: it is not a journey export")
        if not append:
            # The empty Arrow table gives DuckDB the exact column types (TIMESTAMPTZ ...).
            self.con.register("journey_export_batch", SCHEMA.empty_table())
            self.con.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM journey_export_batch")
            self.con.unregister("journey_export_batch")
        else:
            seen.forget(self._ids_of_this_run())
            self._delete_this_run()

    def _this_run(self) -> str:
        ours = " OR ".join(f'(partition = {int(p)} AND "offset" >= {int(o)})' for p, o in
                           sorted(self.start.items()))  # fmt: skip
        return f"topic = ? AND ({ours or 'true'})"

    def _ids_of_this_run(self) -> Iterator[bytes]:
        cursor = self.con.execute(f"SELECT event_id FROM {TABLE} WHERE {self._this_run()}",
                                  [self.topic])  # fmt: skip
        while rows := cursor.fetchmany(10_000):
            for (event_id,) in rows:
                yield uuid.UUID(event_id).bytes

    def _delete_this_run(self) -> None:
        self.con.execute(f"DELETE FROM {TABLE} WHERE {self._this_run()}", [self.topic])

    def write(self, batch: pa.RecordBatch) -> None:
        self.con.register("journey_export_batch", pa.Table.from_batches([batch]))
        try:
            self.con.execute("BEGIN TRANSACTION")
            self.con.execute(f"INSERT INTO {TABLE} SELECT * FROM journey_export_batch")
            self.con.execute("COMMIT")
        finally:
            self.con.unregister("journey_export_batch")

    def publish(self) -> None:
        self.con.execute("CHECKPOINT")
        self.con.close()

    def abort(self) -> None:
        try:
            if self.append:
                self._delete_this_run()
        finally:
            self.con.close()
        if not self.append:  # a failed first export leaves nothing behind
            for path in (self.out, self.out.with_name(self.out.name + ".wal")):
                path.unlink(missing_ok=True)


def _sink(
    fmt: ExportFormat,
    out: Path,
    *,
    append: bool,
    topic: str,
    start: Mapping[int, int],
    seen: _Seen,
) -> _Sink:
    if fmt == "parquet":
        return _ParquetSink(out, append)
    if fmt == "csv":
        return _CsvSink(out, append)
    return _DuckDbSink(out, append, topic, start, seen)


# ---------------------------------------------------------------------- the export


def _read_positions(path: Path, fmt: ExportFormat, topic: str, filters: _Filters) -> dict[int, int]:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        positions = {int(p): int(o) for p, o in saved["positions"].items()}
    except OSError as exc:
        raise ExportError(f"cannot read the positions file {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ExportError(
            f"{path} is not an export's positions file (PATH.positions.json beside an export)"
        ) from None
    if saved.get("format") != fmt:
        raise ExportError(
            f"{path} belongs to a {saved.get('format')} export: pass --format "
            f"{saved.get('format')} to append to it"
        )
    if saved.get("topic") != topic:
        raise ExportError(
            f"{path} belongs to an export of topic {saved.get('topic')!r}, not {topic!r}"
        )
    if saved.get("filters") != filters.as_dict():
        raise ExportError(
            f"{path} was written with other filters ({json.dumps(saved.get('filters'))}): "
            "pass the same --since/--until/--type/--customer to append"
        )
    return positions


def _write_positions(
    path: Path, fmt: ExportFormat, topic: str, filters: _Filters, result: ExportResult
) -> None:
    previous = 0
    if result.appended and path.exists():
        previous = int(json.loads(path.read_text(encoding="utf-8")).get("rows", 0))
    doc = {
        "version": _POSITIONS_VERSION,
        "format": fmt,
        "topic": topic,
        "filters": filters.as_dict(),
        "positions": {str(p): o for p, o in sorted(result.positions.items())},
        "rows": previous + result.rows,
        "written_at": datetime.now(UTC).isoformat(),
    }
    temp = path.with_name(f".{path.name}.partial")
    temp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, path)


def export(
    log: Log,
    out: str | Path,
    *,
    format: ExportFormat = "parquet",
    topic: str = "journey.touchpoints",
    since: datetime | None = None,
    until: datetime | None = None,
    types: Sequence[str] = (),
    customer: str | None = None,
    after_positions: str | Path | None = None,
    resolve: Resolver | None = None,
    resolved_with: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_rows: int = 50_000,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
) -> ExportResult:
    """Export ``topic`` of ``log`` to ``out``; see the module docstring and docs/export.md.

    ``since`` (inclusive) and ``until`` (exclusive) bound ``occurred_at``; ``types`` keeps
    only those touchpoint types; ``customer`` keeps the rows whose ``customer_id`` is it or
    whose ``resolved_customer_id`` is its resolved id. ``resolve`` maps a customer id to its
    resolved id (:func:`store_resolver`); without it the id is kept as emitted.
    ``after_positions`` (an earlier export's ``PATH.positions.json``) appends only what the
    log gained since. ``progress(done, total)`` is called after every poll.

    Raises :class:`ExportError` when asked for something it cannot do, and the log's own
    errors (``LogUnavailable``: try again) when reading fails; ``out`` is then unchanged.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    if not out.parent.is_dir():
        # Checked first: the ids file beside the export would fail with a bare SQLite error.
        raise ExportError(f"{out.parent} does not exist: create it, or choose another --out")
    filters = _Filters(since, until, frozenset(types), customer)
    append = after_positions is not None
    start: dict[int, int] | None = None
    if append:
        assert after_positions is not None
        start = _read_positions(Path(after_positions), format, topic, filters)
        if not out.exists():
            raise ExportError(
                f"--after-positions continues an export, but {out} does not exist: "
                "export without --after-positions first"
            )
    elif out.exists() or positions_path(out).exists():
        raise ExportError(
            f"{out} already exists: remove it (and {positions_path(out).name}) for a new "
            f"export, or pass --after-positions {positions_path(out)} to append what is new"
        )
    started = time.monotonic()
    seen_file = event_ids_path(out)
    if not append:
        seen_file.unlink(missing_ok=True)
    seen = _Seen(seen_file)
    try:
        reader = TouchpointReader(
            log,
            topic,
            start=start,
            since=since,
            until=until,
            types=types,
            customer=customer,
            resolve=resolve,
            batch_rows=batch_rows,
            max_future=max_future,
            seen=seen,
        )
        if progress is not None:
            progress(0, reader.total)
        sink = _sink(format, out, append=append, topic=topic, start=reader.positions, seen=seen)
        try:
            for batch in reader.batches(progress):
                sink.write(batch)
            sink.publish()
        except BaseException:
            sink.abort()
            raise
        # After the rows are published: a crash just here leaves the ids uncommitted, so
        # an export repeated from the old positions writes those rows again, never loses them.
        seen.commit()
    finally:
        seen.close()
        if not append and not out.exists():
            seen_file.unlink(missing_ok=True)
    result = ExportResult(
        out=out,
        format=format,
        rows=reader.rows,
        read=reader.read,
        duplicates=reader.duplicates,
        filtered_out=reader.filtered_out,
        dead_letters=dict(reader.dead_letters),
        positions=dict(reader.positions),
        appended=append,
        resolved_with=resolved_with or ("given resolver" if resolve else "none"),
        seconds=time.monotonic() - started,
        files=sink.files,
    )
    _write_positions(positions_path(out), format, topic, filters, result)
    logger.info("export written", **result.as_dict())
    return result
