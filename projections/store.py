"""The projection store: aggregates, query tables and log positions in ONE SQLite file.

A poll batch of one partition is processed in one transaction that records
* the aggregates' new events (eventsourcing's SQLite process recorder),
* the partition position as eventsourcing ``Tracking("<topic>:<partition>", offset)``,
* the rows of the query tables (identities, deadlines, products, defects, outreach) and the
  ids of the processed events (de-duplication),
so a crash leaves either all of a batch or none of it (exactly-once effect).

Nothing here is SQLite-only in spirit: the tables are plain SQL that PostgreSQL runs too,
and eventsourcing has the matching PostgreSQL recorder to subclass when it is added.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    ProcessRecorder,
    Tracking,
)
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder

from domain import catalogue as c
from domain.aggregates import CustomerJourney, already_parsed, journey_id
from domain.envelope import Touchpoint
from domain.errors import JourneyError
from domain.journey import Journey, said
from domain.positions import TopicPartition
from projections.integrity import (
    SCHEMA_VERSION,
    STORE_KIND,
    StoreCorrupt,
    StoreError,
    inspect_store,
    is_corruption,
)

__all__ = [
    "BatchRejected",
    "BatchResult",
    "DeadLetterRow",
    "JourneyStore",
    "Rejection",
    "StoreError",
    "active_store_path",
    "content_hash",
    "find_conflicts",
    "swap_store",
]

logger = structlog.get_logger(__name__)

_VIEW_TABLES = [
    # What this file is (a journey store, which schema): a foreign or outdated file is
    # refused at open with the remedy instead of failing later (projections/integrity.py).
    """CREATE TABLE IF NOT EXISTS journey_store_meta (
        key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    # content_hash: the same event_id with other content is a conflicting duplicate.
    """CREATE TABLE IF NOT EXISTS processed_events (
        event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, topic TEXT NOT NULL,
        partition INTEGER NOT NULL, "offset" INTEGER NOT NULL, content_hash TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS customers (
        customer_id TEXT PRIMARY KEY, id_norm TEXT NOT NULL, generation INTEGER NOT NULL,
        name TEXT, email TEXT,
        phone TEXT, touchpoints INTEGER NOT NULL, first_seen TEXT, last_seen TEXT,
        erased_at TEXT, topic TEXT NOT NULL, partition INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS customers_id_norm ON customers (id_norm)",
    """CREATE TABLE IF NOT EXISTS identities (
        kind TEXT NOT NULL, value TEXT NOT NULL, norm TEXT NOT NULL, customer_id TEXT NOT NULL,
        PRIMARY KEY (kind, value, customer_id))""",
    "CREATE INDEX IF NOT EXISTS identities_norm ON identities (norm)",
    # Every batch rewrites its customers' rows (DELETE ... WHERE customer_id = ?): without
    # these, each is a full scan and a rebuild slows down as the tables grow.
    "CREATE INDEX IF NOT EXISTS identities_customer ON identities (customer_id)",
    # Everything the customer said or was told, verbatim, one row per touchpoint, for the
    # agents' search. Rows of an erased customer from before the erasure are deleted with
    # each of their batches.
    """CREATE TABLE IF NOT EXISTS said (
        event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, at TEXT NOT NULL,
        text TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS said_customer ON said (customer_id, at)",
    # Its search index: trigram FTS5, so any 3+ character substring is found (as LIKE did)
    # without a scan. Kept by triggers, so it changes in the same transaction as the rows.
    # It holds its own copy of the text rather than pointing at said's implicit rowids
    # (which VACUUM may renumber); searches join back to said by event_id, so a row deleted
    # from said is never found even if its index entry lingered.
    """CREATE VIRTUAL TABLE IF NOT EXISTS said_fts USING fts5(
        text, event_id UNINDEXED, tokenize = 'trigram')""",
    """CREATE TRIGGER IF NOT EXISTS said_indexed AFTER INSERT ON said BEGIN
        INSERT INTO said_fts (rowid, text, event_id) VALUES (new.rowid, new.text, new.event_id);
        END""",
    """CREATE TRIGGER IF NOT EXISTS said_unindexed AFTER DELETE ON said BEGIN
        DELETE FROM said_fts WHERE rowid = old.rowid;
        END""",
    """CREATE TABLE IF NOT EXISTS links (
        customer_id TEXT NOT NULL, other_id TEXT NOT NULL, PRIMARY KEY (customer_id, other_id))""",
    """CREATE TABLE IF NOT EXISTS clocks (
        customer_id TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, channel TEXT,
        team TEXT, country TEXT, started_at TEXT NOT NULL, due_at TEXT, label TEXT,
        case_kind TEXT,
        PRIMARY KEY (customer_id, kind, ref))""",
    # Reply clocks that stopped with no ReplyOverdue recorded in their span: the keeper
    # records those that stopped after their target (which the rules give at read time).
    """CREATE TABLE IF NOT EXISTS stopped_clocks (
        customer_id TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, channel TEXT,
        team TEXT, country TEXT, started_at TEXT NOT NULL, stopped_at TEXT NOT NULL,
        case_kind TEXT, PRIMARY KEY (customer_id, kind, ref, started_at))""",
    "CREATE INDEX IF NOT EXISTS stopped_clocks_customer ON stopped_clocks (customer_id)",
    """CREATE TABLE IF NOT EXISTS breaches (
        customer_id TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, due_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL, channel TEXT, team TEXT,
        PRIMARY KEY (customer_id, kind, ref, due_at))""",
    """CREATE TABLE IF NOT EXISTS owned_products (
        customer_id TEXT NOT NULL, product TEXT NOT NULL, batch TEXT, serial TEXT)""",
    "CREATE INDEX IF NOT EXISTS owned_products_product ON owned_products (product)",
    "CREATE INDEX IF NOT EXISTS owned_products_customer ON owned_products (customer_id)",
    """CREATE TABLE IF NOT EXISTS defects (
        defect_id TEXT PRIMARY KEY, product TEXT NOT NULL, batch TEXT, description TEXT,
        remedy TEXT, registered_at TEXT NOT NULL, registered_by TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outreach (
        customer_id TEXT NOT NULL, defect_id TEXT NOT NULL, sent_at TEXT NOT NULL,
        PRIMARY KEY (customer_id, defect_id))""",
    # Per partition, the latest occurred_at folded on it (UTC, fixed-width ISO text, so text
    # order is time order): the event-time clock the promise keeper decides deadlines by.
    # Written with the partition's position, so a restart or a rebuild sees the same clock.
    """CREATE TABLE IF NOT EXISTS partition_clocks (
        topic TEXT NOT NULL, partition INTEGER NOT NULL, event_time TEXT NOT NULL,
        PRIMARY KEY (topic, partition))""",
    # Every dead letter, recorded in the batch's transaction. It is also the outbox of the
    # dead-letter topic: ``published`` = 0 rows still hold the message to produce (key, value,
    # headers as JSON [name, base64]) and are produced after the commit, then marked, so a
    # dead letter reaches the DLQ once even when the batch is retried after a failure.
    """CREATE TABLE IF NOT EXISTS dead_letters (
        topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
        reason TEXT NOT NULL, error TEXT, published INTEGER NOT NULL DEFAULT 1,
        dlq_key BLOB, dlq_value BLOB, dlq_headers TEXT,
        PRIMARY KEY (topic, partition, "offset"))""",
    """CREATE INDEX IF NOT EXISTS dead_letters_unpublished ON dead_letters (published)
        WHERE published = 0""",
]

Statement = tuple[str, Sequence[Any]]


class ViewsRecorder(SQLiteProcessRecorder):
    """eventsourcing's SQLite process recorder, plus the query tables in the same
    transaction as the events and the tracking record."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *_VIEW_TABLES]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[Any], **kwargs: Any
    ) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        for sql, params in kwargs.get("view_writes", ()):
            c.execute(sql, params)
        return returning


class _Views(Application[Any]):
    """The eventsourcing application holding the CustomerJourney aggregates."""

    name = "journey"

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    already_processed: bool = False


@dataclass(frozen=True)
class Rejection:
    """A message of the batch that must not be folded: the runner dead-letters it and
    records the batch again without it."""

    offset: int
    reason: str
    error: str
    field: str | None = None


class BatchRejected(JourneyError):
    """Nothing of the batch was recorded: these messages are poison (the fold raised on
    them, or they conflict with a touchpoint already recorded under the same event_id)."""

    def __init__(self, rejections: Sequence[Rejection]) -> None:
        super().__init__("; ".join(f"offset {r.offset}: {r.reason}: {r.error}" for r in rejections))
        self.rejections = list(rejections)


@dataclass(frozen=True)
class DeadLetterRow:
    """A dead letter of the batch: recorded with it, and the message for the DLQ topic
    (None when it was produced already, e.g. a rebuild replaying the log)."""

    offset: int
    reason: str
    error: str
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    publish: bool = True


@dataclass(frozen=True)
class PendingDeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def find_conflicts(
    touchpoints: Sequence[Touchpoint], known: dict[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """(event id, first hash, this hash) for each touchpoint whose event_id is in ``known``
    (id -> content hash) or earlier in the batch with other content."""
    seen = dict(known or {})
    out: list[tuple[str, str, str]] = []
    for touchpoint in touchpoints:
        event_id = str(touchpoint.event_id)
        digest = content_hash(touchpoint)
        first = seen.setdefault(event_id, digest)
        if first != digest:
            out.append((event_id, first, digest))
    return out


def content_hash(touchpoint: Touchpoint) -> str:
    """What a touchpoint says, as a hash: equal for the same fact sent twice (whatever the
    JSON's spacing, key order or schema version upcast from), different for other content."""
    body = json.dumps(
        touchpoint.model_dump(mode="json", exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()[:32]


def active_store_path(base: Path) -> Path:
    """The file currently serving ``base`` (blue-green: ``<base>.current`` names it)."""
    pointer = base.with_name(base.name + ".current")
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return base
    return base.with_name(name) if name else base


def swap_store(base: Path, new_file: Path) -> None:
    """Atomically make ``new_file`` the active store for ``base``."""
    pointer = base.with_name(base.name + ".current")
    tmp = pointer.with_name(pointer.name + f".tmp{os.getpid()}")
    tmp.write_text(new_file.name + "\n")
    os.replace(tmp, pointer)


def norm_identity(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isalnum() or ch in "@._+")


class JourneyStore:
    """Opens (and creates) the projection store at ``path``."""

    def __init__(
        self, path: Path | str, *, cache_size: int | None = None, check_pages: bool = True
    ) -> None:
        if cache_size is None:
            # Aggregates kept in memory, per store: about 15 KB each at 10 touchpoints. A
            # customer that falls out is replayed from the store on its next touchpoint.
            cache_size = int(os.environ.get("JOURNEY_CACHE_SIZE", "20000"))
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A foreign, outdated or damaged file is refused here, with the remedy.
        inspect_store(self.path, check_pages=check_pages)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(self.path),
            "SQLITE_LOCK_TIMEOUT": "30",
            "PROCESS_RECORDER_TOPIC": "projections.store:ViewsRecorder",
            "AGGREGATE_CACHE_MAXSIZE": str(cache_size),
            "IS_SNAPSHOTTING_ENABLED": "n",
        }
        for attempt in range(3):
            try:
                self.app = _Views(env=env)
                break
            except (IntegrityError, OperationalError):
                # Two processes opening a brand-new file at once both write eventsourcing's
                # one-time table-migration record; the loser finds the tables made: retry.
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))
        self.recorder: ViewsRecorder = self.app.recorder  # type: ignore[assignment]
        self._write_meta()
        self._lock = threading.Lock()
        # The writer's own cache of aggregates as last committed: no reload and no copy per
        # batch. An entry is used only while the customers row (written in the same
        # transaction) still shows its generation and touchpoint count, so another writer
        # or a rebalance can never make it serve a stale aggregate.
        self._live: OrderedDict[str, CustomerJourney] = OrderedDict()
        self._live_size = cache_size

    def close(self) -> None:
        self.app.close()

    def _write_meta(self) -> None:
        try:
            with self.recorder.datastore.transaction(commit=True) as cur:
                for key, value in (("kind", STORE_KIND), ("schema_version", SCHEMA_VERSION)):
                    cur.execute(
                        "INSERT OR IGNORE INTO journey_store_meta (key, value) VALUES (?, ?)",
                        (key, value),
                    )
                # A store made before the search index: index what it already holds, once.
                cur.execute("SELECT 1 FROM journey_store_meta WHERE key = 'said_fts'")
                if cur.fetchone() is None:
                    cur.execute("DELETE FROM said_fts")
                    cur.execute(
                        "INSERT INTO said_fts (rowid, text, event_id)"
                        " SELECT rowid, text, event_id FROM said"
                    )
                    cur.execute(
                        "INSERT INTO journey_store_meta (key, value) VALUES ('said_fts', '1')"
                    )
        except OperationalError as exc:
            # A read-only file or a full disk: readers still work; writers will fail (and
            # say so) when they write.
            logger.warning("could not record the store's schema version", error=str(exc))

    # ------------------------------------------------------------------ reads

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.recorder.datastore.transaction(commit=False) as cur:
            cur.execute(sql, params)
            return [tuple(row) for row in cur.fetchall()]

    def positions(self) -> dict[TopicPartition, int]:
        """Last processed offset per partition (from eventsourcing's tracking table)."""
        out: dict[TopicPartition, int] = {}
        for name, offset in self.query("SELECT application_name, notification_id FROM tracking"):
            topic, sep, part = str(name).rpartition(":")
            if sep and part.isdigit():
                out[TopicPartition(topic, int(part))] = int(offset)
        return out

    def position(self, tp: TopicPartition) -> int | None:
        return self.recorder.max_tracking_id(f"{tp.topic}:{tp.partition}")

    def wait_for(self, tp: TopicPartition, offset: int, timeout_s: float) -> bool:
        """True once the store has processed ``offset`` of ``tp``; tight poll (2 ms)."""
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.position(tp)
            if current is not None and current >= offset:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)

    def partition_clocks(self, topic: str) -> dict[int, datetime]:
        """Per partition of ``topic``, the latest occurred_at folded on it."""
        return {
            int(part): datetime.fromisoformat(str(at))
            for part, at in self.query(
                "SELECT partition, event_time FROM partition_clocks WHERE topic = ?", (topic,)
            )
        }

    def journey(self, customer_id: str) -> CustomerJourney | None:
        rows = self.query("SELECT generation FROM customers WHERE customer_id = ?", (customer_id,))
        if not rows:
            return None
        agg: CustomerJourney = self.app.repository.get(journey_id(customer_id, int(rows[0][0])))
        return agg

    # ------------------------------------------------------------------ writes

    def process(
        self,
        tp: TopicPartition,
        items: Sequence[tuple[int, Touchpoint]],
        last_offset: int,
        dead_letters: Sequence[DeadLetterRow] = (),
    ) -> BatchResult:
        """Fold a batch of one partition and record it with its position atomically.

        ``items`` are (offset, touchpoint) in offset order; ``last_offset`` is the offset of
        the last message of the batch (dead letters included) and becomes the position;
        ``dead_letters`` are recorded in the same transaction (and kept as the DLQ outbox).

        Raises :class:`BatchRejected` (nothing recorded) when some touchpoints are poison:
        the fold raised on them, or they reuse a recorded event_id with other content. Any
        other exception is a failure of the store itself (disk, lock, damage): nothing was
        recorded either, and the caller must retry the batch, never skip it.
        """
        with self._lock:
            try:
                return self._process(tp, items, last_offset, dead_letters)
            except BatchRejected:
                raise  # poison: its text is the message's, never a sign of a damaged file
            except IntegrityError as exc:
                recorded = self.position(tp)
                if recorded is not None and recorded >= last_offset:
                    # The tracking row says this batch (or a later one) is already recorded:
                    # a re-delivery after a crash between store commit and group commit.
                    # (The aggregate cache is safe: it is only updated after a commit.)
                    return BatchResult(already_processed=True)
                # Another writer recorded part of it meanwhile (a member that lost the
                # partition and does not know yet): retry from the store's position.
                raise StoreError(
                    f"{tp}: another writer recorded offsets of this batch meanwhile "
                    f"(position {recorded}, batch up to {last_offset}): {exc}; retrying "
                    "from the store's position"
                ) from exc
            except StoreError:
                raise
            except Exception as exc:
                if is_corruption(exc):
                    raise StoreCorrupt(
                        f"store {self.path} is damaged ({exc}); run `journey rebuild all` "
                        "to build a new store from the log"
                    ) from exc
                raise

    def _process(
        self,
        tp: TopicPartition,
        items: Sequence[tuple[int, Touchpoint]],
        last_offset: int,
        dead_letters: Sequence[DeadLetterRow],
    ) -> BatchResult:
        aggregates: dict[str, CustomerJourney] = {}
        try:
            result = self._fold_and_record(tp, items, last_offset, dead_letters, aggregates)
        except BaseException:
            # Those aggregates were changed in memory but not committed.
            for cid in aggregates:
                self._live.pop(cid, None)
            raise
        for cid, agg in aggregates.items():
            self._live[cid] = agg
            self._live.move_to_end(cid)
        while len(self._live) > self._live_size:
            self._live.popitem(last=False)
        return result

    def _fold_and_record(
        self,
        tp: TopicPartition,
        items: Sequence[tuple[int, Touchpoint]],
        last_offset: int,
        dead_letters: Sequence[DeadLetterRow],
        aggregates: dict[str, CustomerJourney],
    ) -> BatchResult:
        result = BatchResult()
        stored_hashes = self._known_hashes([str(t.event_id) for _, t in items])
        known = dict(stored_hashes)  # + what this batch folded, once it folded
        stored = self._stored_state({t.customer_id for _, t in items})
        generations = {cid: gen for cid, (gen, _) in stored.items()}
        writes: list[Statement] = []
        retired: list[str] = []
        latest: datetime | None = None
        rejected: list[Rejection] = []
        last_of: dict[str, int] = {}  # customer -> offset of its last touchpoint folded here
        for offset, touchpoint in items:
            event_id = str(touchpoint.event_id)
            digest = content_hash(touchpoint)
            first = known.get(event_id)
            if first is not None:
                if first != digest:
                    rejected.append(
                        Rejection(
                            offset,
                            "conflicting_duplicate",
                            f"event_id {event_id} was recorded with other content "
                            f"({first}); this one is {digest}. The first stays.",
                            "event_id",
                        )
                    )
                else:
                    result.duplicates += 1
                continue
            if rejected:
                continue  # the batch goes back anyway: only look for more conflicts
            cid = touchpoint.customer_id
            agg = aggregates.get(cid)
            if agg is None:
                # Loading is the store's business: whatever fails here is not the message's
                # fault, so it is never a dead letter (a transient failure, or damage).
                try:
                    agg = self._load_or_start(cid, stored, generations)
                except (OperationalError, OSError, StoreError):
                    raise
                except Exception as exc:
                    raise StoreCorrupt(
                        f"store {self.path}: the journey of customer {cid!r} cannot be "
                        f"loaded ({type(exc).__name__}: {exc}); run `journey rebuild all` "
                        "to build a new store from the log"
                    ) from exc
                aggregates[cid] = agg
            try:
                if isinstance(touchpoint.data, c.ErasureRequested):
                    retired.append(agg.id.hex)
                    old_gen = generations.get(cid, 0)
                    generations[cid] = old_gen + 1
                    agg = CustomerJourney(cid, old_gen + 1, touchpoint.occurred_at.isoformat())
                    aggregates[cid] = agg
                envelope = touchpoint.model_dump(mode="json", exclude={"data"})
                envelope["data"] = touchpoint.data.model_dump(mode="json", exclude_none=True)
                with already_parsed(touchpoint):
                    agg.record(envelope=envelope)
                fact_rows = _fact_writes(touchpoint)
            except Exception as exc:
                rejected.append(_fold_rejection(offset, exc))
                continue
            known[event_id] = digest  # only a folded copy makes a later one a duplicate
            writes.append(
                (
                    "INSERT INTO processed_events (event_id, customer_id, topic, partition,"
                    ' "offset", content_hash) VALUES (?, ?, ?, ?, ?, ?)',
                    (event_id, cid, tp.topic, tp.partition, offset, digest),
                )
            )
            writes.extend(fact_rows)
            last_of[cid] = offset
            if not isinstance(touchpoint.data, _DERIVED) and (
                latest is None or touchpoint.occurred_at > latest
            ):
                latest = touchpoint.occurred_at
            result.applied += 1
            logger.debug(
                "touchpoint folded",
                event_id=event_id,
                customer_id=cid,
                type=touchpoint.type,
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
            )
        if not rejected:
            for cid, agg in aggregates.items():
                try:
                    writes.extend(_customer_writes(agg, generations.get(cid, 0), tp))
                except Exception as exc:
                    # The state the batch folded cannot be written: blame the customer's
                    # last touchpoint of the batch; the retry without it shows whether an
                    # earlier one is at fault too.
                    rejected.append(_fold_rejection(last_of[cid], exc))
        if rejected:
            raise BatchRejected(rejected)
        for dead in dead_letters:
            writes.append(_dead_letter_write(tp, dead))
        for old_id in retired:
            # Erasure: the customer's earlier events leave the store for good.
            writes.append(("DELETE FROM stored_events WHERE originator_id = ?", (old_id,)))
        if latest is not None:
            writes.append(
                (
                    "INSERT INTO partition_clocks VALUES (?, ?, ?) ON CONFLICT (topic, partition)"
                    " DO UPDATE SET event_time = max(event_time, excluded.event_time)",
                    (tp.topic, tp.partition, clock_text(latest)),
                )
            )
        processing = ProcessingEvent[Any](
            tracking=Tracking(f"{tp.topic}:{tp.partition}", last_offset)
        )
        processing.collect_events(*aggregates.values(), view_writes=writes)
        self.app._record(processing)
        return result

    def _known_hashes(self, ids: list[str]) -> dict[str, str]:
        """event id -> content hash, for those of ``ids`` already recorded."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.query(
                f"SELECT event_id, content_hash FROM processed_events WHERE event_id IN ({marks})",
                chunk,
            )
            found.update((str(r[0]), str(r[1])) for r in rows)
        return found

    def conflicts(self, touchpoints: Sequence[Touchpoint]) -> list[tuple[str, str, str]]:
        """(event id, recorded hash, new hash) for each touchpoint whose event_id the store
        recorded (or the batch holds before it) with other content: the edge answers 409."""
        return find_conflicts(
            touchpoints, self._known_hashes([str(t.event_id) for t in touchpoints])
        )

    def pending_dead_letters(self, limit: int = 500) -> list[PendingDeadLetter]:
        """Dead letters recorded but not yet produced to the DLQ topic (the outbox)."""
        rows = self.query(
            'SELECT topic, partition, "offset", dlq_key, dlq_value, dlq_headers'
            ' FROM dead_letters WHERE published = 0 ORDER BY topic, partition, "offset"'
            " LIMIT ?",
            (limit,),
        )
        return [
            PendingDeadLetter(
                str(topic),
                int(partition),
                int(offset),
                bytes(key or b""),
                bytes(value or b""),
                tuple((str(n), base64.b64decode(v)) for n, v in json.loads(headers or "[]")),
            )
            for topic, partition, offset, key, value, headers in rows
        ]

    def adopt_dead_letters(self, old: JourneyStore) -> int:
        """Take over the dead letters ``old`` recorded past this store's positions, as
        already produced: when this store (a rebuild swapped in) reads those messages again,
        they are not produced to the DLQ a second time. Returns how many."""
        positions = self.positions()
        rows = [
            row
            for row in old.query(
                'SELECT topic, partition, "offset", reason, error FROM dead_letters'
                " WHERE published = 1"
            )
            if int(row[2]) > positions.get(TopicPartition(str(row[0]), int(row[1])), -1)
        ]
        if rows:
            with self._lock, self.recorder.datastore.transaction(commit=True) as cur:
                for topic, partition, offset, reason, error in rows:
                    cur.execute(
                        'INSERT OR IGNORE INTO dead_letters (topic, partition, "offset", reason,'
                        " error, published) VALUES (?, ?, ?, ?, ?, 1)",
                        (topic, partition, offset, reason, error),
                    )
        return len(rows)

    def mark_dead_letters_published(self, done: Sequence[PendingDeadLetter]) -> None:
        """They are on the DLQ topic now: drop the copies of the messages."""
        with self._lock, self.recorder.datastore.transaction(commit=True) as cur:
            for d in done:
                cur.execute(
                    "UPDATE dead_letters SET published = 1, dlq_key = NULL, dlq_value = NULL,"
                    ' dlq_headers = NULL WHERE topic = ? AND partition = ? AND "offset" = ?',
                    (d.topic, d.partition, d.offset),
                )

    def _stored_state(self, customer_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """customer id -> (generation, touchpoints) as committed."""
        ids = list(customer_ids)
        out: dict[str, tuple[int, int]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for cid, gen, count in self.query(
                "SELECT customer_id, generation, touchpoints FROM customers"
                f" WHERE customer_id IN ({marks})",
                chunk,
            ):
                out[str(cid)] = (int(gen), int(count))
        return out

    def _load_or_start(
        self,
        customer_id: str,
        stored: dict[str, tuple[int, int]],
        generations: dict[str, int],
    ) -> CustomerJourney:
        state = stored.get(customer_id)
        if state is None:
            generations[customer_id] = 0
            return CustomerJourney(customer_id, 0)
        cached = self._live.get(customer_id)
        if cached is not None and (cached.generation, cached.touchpoints) == state:
            return cached
        agg: CustomerJourney = self.app.repository.get(journey_id(customer_id, state[0]))
        return agg


# ---------------------------------------------------------------------- query-table rows

# The keeper's own output: deciding a deadline must not move the clock it decides by.
_DERIVED = (c.PromiseBroken, c.ReplyOverdue)


def clock_text(at: datetime) -> str:
    """UTC with microseconds always present: text order is time order."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _fold_rejection(offset: int, exc: Exception) -> Rejection:
    logger.warning("the fold raised: poison touchpoint", offset=offset, error=repr(exc))
    return Rejection(offset, "fold_failed", f"the fold raised {type(exc).__name__}: {exc}")


def _dead_letter_write(tp: TopicPartition, dead: DeadLetterRow) -> Statement:
    outbox = dead.publish and dead.value is not None
    headers = (
        json.dumps([[n, base64.b64encode(v).decode()] for n, v in dead.headers]) if outbox else None
    )
    return (
        'INSERT OR IGNORE INTO dead_letters (topic, partition, "offset", reason, error,'
        " published, dlq_key, dlq_value, dlq_headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            tp.topic,
            tp.partition,
            dead.offset,
            dead.reason,
            dead.error[:2000],
            0 if outbox else 1,
            dead.key if outbox else None,
            dead.value if outbox else None,
            headers,
        ),
    )


def _fact_writes(tp: Touchpoint) -> list[Statement]:
    """Rows that come straight from one touchpoint, whoever's journey it is in."""
    d = tp.data
    at = tp.occurred_at.isoformat()
    text = said(d)
    if text:
        return [
            (
                "INSERT OR IGNORE INTO said VALUES (?, ?, ?, ?)",
                (str(tp.event_id), tp.customer_id, clock_text(tp.occurred_at), text),
            )
        ]
    if isinstance(d, c.KnownDefectRegistered):
        return [
            (
                "INSERT OR REPLACE INTO defects VALUES (?, ?, ?, ?, ?, ?, ?)",
                (d.defect_id, d.product, d.batch, d.description, d.remedy, at, tp.customer_id),
            )
        ]
    if isinstance(d, c.ProactiveOutreachSent):
        return [
            (
                "INSERT OR IGNORE INTO outreach VALUES (?, ?, ?)",
                (tp.customer_id, d.defect_id, at),
            )
        ]
    if isinstance(d, c.ReplyOverdue):
        return [
            (
                "INSERT OR IGNORE INTO breaches (customer_id, kind, ref, due_at, recorded_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (tp.customer_id, d.target, d.case_id, d.due_by.isoformat(), at),
            )
        ]
    if isinstance(d, c.PromiseBroken):
        return [
            (
                "INSERT OR IGNORE INTO breaches (customer_id, kind, ref, due_at, recorded_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (tp.customer_id, "promise", d.promise_id, d.due_by.isoformat(), at),
            )
        ]
    return []


_NAME_FIELDS = ("name", "full_name", "fullname", "navn", "namn", "fornavn", "förnamn")


def display_name(journey: Journey) -> str | None:
    for ident in journey.identities:
        if ident.kind == "name":
            return ident.value
    for sub in reversed(journey.submissions):
        for key, value in sub.fields.items():
            if key.lower().replace(" ", "_") in _NAME_FIELDS and value.strip():
                return value.strip()
        first = sub.fields.get("first_name") or sub.fields.get("fornavn")
        last = sub.fields.get("last_name") or sub.fields.get("etternavn")
        if first or last:
            return " ".join(p for p in (first, last) if p)
    return None


def _customer_writes(agg: CustomerJourney, generation: int, tp: TopicPartition) -> list[Statement]:
    j = agg.journey
    cid = j.customer_id
    first_of = {kind: None for kind in ("email", "phone")}
    for ident in j.identities:
        if ident.kind in first_of and first_of[ident.kind] is None:
            first_of[ident.kind] = ident.value  # type: ignore[assignment]
    writes: list[Statement] = [
        (
            "INSERT OR REPLACE INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cid,
                norm_identity(cid),
                generation,
                display_name(j),
                first_of["email"],
                first_of["phone"],
                agg.touchpoints,
                j.first_seen.isoformat() if j.first_seen else None,
                j.last_seen.isoformat() if j.last_seen else None,
                j.erased_at.isoformat() if j.erased_at else None,
                tp.topic,
                tp.partition,
            ),
        ),
        ("DELETE FROM identities WHERE customer_id = ?", (cid,)),
        ("DELETE FROM clocks WHERE customer_id = ?", (cid,)),
        ("DELETE FROM stopped_clocks WHERE customer_id = ?", (cid,)),
        ("DELETE FROM owned_products WHERE customer_id = ?", (cid,)),
    ]
    if j.erased_at is not None:
        writes.append(
            (
                "DELETE FROM said WHERE customer_id = ? AND at <= ?",
                (cid, clock_text(j.erased_at)),
            )
        )
    for ident in j.identities:
        writes.append(
            (
                "INSERT OR IGNORE INTO identities VALUES (?, ?, ?, ?)",
                (ident.kind, ident.value, norm_identity(ident.value), cid),
            )
        )
    for other in j.linked_customers:
        writes.append(("INSERT OR IGNORE INTO links VALUES (?, ?)", (cid, other)))
        writes.append(("INSERT OR IGNORE INTO links VALUES (?, ?)", (other, cid)))
    for case in j.cases.values():
        # An overdue reply stays listed (its clock row stays) until a reply stops the clock,
        # the case is resolved, or an agent acknowledges the recorded breach.
        if (
            case.status == "open"
            and case.reply_owed
            and case.reply_owed_since
            and not case.missed_settled
        ):
            writes.append(
                (
                    "INSERT OR REPLACE INTO clocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        cid,
                        case.reply_owed,
                        case.case_id,
                        case.channel,
                        case.team,
                        case.country,
                        case.reply_owed_since.isoformat(),
                        None,
                        None if j.erased_at else case.subject,
                        case.kind,
                    ),
                )
            )
    for case in j.cases.values():
        for kind, since, stopped in case.stopped_clocks:
            if case.overdue_recorded_between(kind, since, stopped):
                continue
            writes.append(
                (
                    "INSERT OR REPLACE INTO stopped_clocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        cid,
                        kind,
                        case.case_id,
                        case.channel,
                        case.team,
                        case.country,
                        since.isoformat(),
                        stopped.isoformat(),
                        case.kind,
                    ),
                )
            )
    for promise in j.promises.values():
        # A promise fulfilled after its deadline keeps its clock row until the break is
        # recorded: the keeper records it whether the late fulfilment was folded first (a
        # backfill) or the deadline passed first (live). A recorded break keeps its row too,
        # so missed stays missed on the agents' lists, until the promise is kept late, its
        # case is resolved, or an agent acknowledges it (the keeper skips recorded rows).
        owner = j.cases.get(promise.case_id) if promise.case_id else None
        still_missed = (
            promise.status == "broken"
            and promise.acknowledged is None
            and (owner is None or owner.status == "open")
        )
        if not promise.decided or still_missed:
            writes.append(
                (
                    "INSERT OR REPLACE INTO clocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        cid,
                        "promise",
                        promise.promise_id,
                        owner.channel if owner else None,
                        owner.team if owner else None,
                        owner.country if owner else None,
                        promise.made_at.isoformat(),
                        promise.due_by.isoformat(),
                        promise.what,
                        owner.kind if owner else None,
                    ),
                )
            )
    for product in j.products:
        writes.append(
            (
                "INSERT INTO owned_products VALUES (?, ?, ?, ?)",
                (cid, product.name, product.batch, product.serial),
            )
        )
    return writes


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
