"""The projection store: per-customer snapshots, one compact row per touchpoint, the query
tables and the log positions, in one SQLite file or one PostgreSQL database.

A poll batch of one partition is folded in memory and recorded in one transaction:
* the partition position as eventsourcing ``Tracking("<topic>:<partition>", offset)``;
* one ``touchpoints`` row per new touchpoint (timeline entry, content hash, compressed fact);
* the query-table rows that changed (upserts and deletes by key, never a customer's rows
  deleted and written again), and the facts' own rows (defects, outreach, breaches);
* the snapshot of each customer whose state moved far enough since its last one;
so a crash leaves either all of a batch or none of it (exactly-once effect). Kafka is the
log of record: the store keeps no second copy of it beyond the compact rows.

A customer's journey is read back as its snapshot plus the few touchpoints folded since
(at most ``SNAPSHOT_EVERY_MAX``): a cold read or a restart costs one row and a short tail,
not a replay of the customer's history.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import structlog
from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent, Tracking

from domain import catalogue as c
from domain.aggregates import CustomerJourney, FoldFailed, journey_id
from domain.envelope import Touchpoint, decode, encode, event_id_bytes
from domain.errors import JourneyError
from domain.journey import TimelineEntry
from domain.positions import TopicPartition
from projections import snapshots
from projections.backends import Backend, PostgresBackend, SQLiteBackend, Statement
from projections.dead_letters import (
    DeadLetterRow,
    PendingDeadLetter,
    dead_letter_write,
    decode_headers,
)
from projections.facts import (
    at_micros,
    from_micros,
    hash_bytes,
    hash_text,
    id_bytes,
    id_text,
    pack,
    pack_summary,
    type_code,
    type_name,
    unpack,
    unpack_summary,
)
from projections.integrity import (
    SCHEMA_VERSION,
    STORE_KIND,
    StoreCorrupt,
    StoreError,
    inspect_postgres_store,
    inspect_store,
    is_corruption,
)
from projections.location import (
    StoreAddress,
    active_store,
    describe,
    is_postgres,
    rebuild_target,
    store_exists,
    swap_store,
)
from projections.rows import (
    DEFERRABLE,
    EVERY_BATCH,
    PENDING,
    CustomerRows,
    clock_text,
    customer_rows,
    diff_writes,
    display_name,
    fact_writes,
    norm_identity,
)

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_CACHE_WEIGHT",
    "BatchRejected",
    "BatchResult",
    "DeadLetterRow",
    "JourneyStore",
    "PendingDeadLetter",
    "Rejection",
    "StoreAddress",
    "StoreError",
    "active_store",
    "active_store_path",
    "clock_text",
    "content_hash",
    "content_hash_of",
    "describe",
    "display_name",
    "envelope_bytes",
    "find_conflicts",
    "norm_identity",
    "rebuild_target",
    "store_exists",
    "swap_store",
]

logger = structlog.get_logger(__name__)

# The old name of active_store (SQLite files only then).
active_store_path = active_store

# A snapshot is written when a customer's touchpoints since the last one reach an eighth of
# its history, at least SNAPSHOT_EVERY_MIN and at most SNAPSHOT_EVERY_MAX: snapshot cost
# stays proportional to what was folded (constant per touchpoint), a quiet customer needs
# none, and a cold read replays at most SNAPSHOT_EVERY_MAX rows.
SNAPSHOT_EVERY_MIN = 16
SNAPSHOT_EVERY_MAX = 256
# Customers a writer keeps folded in memory unless told otherwise (JOURNEY_CACHE_SIZE, read
# by journey/settings.py and passed down); one that falls out costs a snapshot read and a
# short tail on its next touchpoint.
DEFAULT_CACHE_SIZE = 20_000
# What a writer's cached customers may weigh together (``_weigh``), JOURNEY_CACHE_WEIGHT:
# about 125 MiB of folded state. The 1M benchmark's 20 customers of 10,000 touchpoints and
# 50 of 1,000 weigh 251,000 at its end, and stay cached beside ~3,000 short histories (a
# long history let go is read back with a snapshot on its next touchpoint: slower, same).
DEFAULT_CACHE_WEIGHT = 300_000
_CACHE_WEIGHT = DEFAULT_CACHE_WEIGHT
# A cached customer's fixed cost, in touchpoints' worth of folded state (see ``_weigh``):
# a short history held ~5.7 KB (aggregate, rows, an empty journey), a long one ~0.43 KB a
# touchpoint (tracemalloc, the 100k benchmark workload).
_CUSTOMER_WEIGHT = 12
# A rebuilding SQLite store's page cache, per connection (a store in use has 64 MiB).
_REBUILD_PAGE_CACHE_KIB = 16384
# … and when several processes write it (shared_writes): each commit of one makes SQLite
# drop the others' cached pages (a connection that sees another's commit resets its
# cache), so a large cache holds little they can use; two processes with 16 MiB each (two
# connections apiece) were 64 MiB of a 1M rebuild's peak.
_SHARED_PAGE_CACHE_KIB = 4096
# The customers row as last written stays: a completion between batches rewrites none.
_NO_TP = TopicPartition("", -1)
# Customers a writer remembers to have no snapshot (JourneyStore._no_snapshot): ~100 bytes
# each; cleared when full.
_NO_SNAPSHOT_SIZE = 100_000
# Look-ups kept per store version (JourneyStore.memo): a few per customer read.
_MEMO_SIZE = 4096
_T = TypeVar("_T")
# The keeper's own output: deciding a deadline must not move the clock it decides by.
_DERIVED = (c.PromiseBroken, c.ReplyOverdue)


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


@dataclass
class _Live:
    """A customer as last committed by this writer: the aggregate, the query-table rows
    written for it, and how many touchpoints its stored snapshot holds (0: none)."""

    agg: CustomerJourney
    rows: CustomerRows | None
    snapshot_at: int
    # A rebuilding store reloaded this customer: what its deferred tables hold for it is not
    # known, so completing it first deletes them all (rare: a failed batch, a cache miss).
    rows_unknown: bool = False
    # What it counted for in the cache's weight when the cache last took it (``_weigh``).
    weight: int = 0


def _weigh(live: _Live) -> int:
    """A cached customer's weight: the touchpoints it has folded, plus what any customer
    costs (aggregate, rows, an empty journey). Folded state grows with the history (a
    10,000-touchpoint journey held 4-6 MB, a dozen-touchpoint one a few KB)."""
    return live.agg.touchpoints + _CUSTOMER_WEIGHT


class _Stored(NamedTuple):
    """A customer's row as committed: what a batch checks its cache against."""

    generation: int
    touchpoints: int
    erased_at: Any
    written_at: TopicPartition


@dataclass
class _Folded:
    offset: int
    touchpoint: Touchpoint
    raw: bytes
    event_id: str
    generation: int
    seq: int
    logged_at: int  # microseconds since the epoch: when the log received it


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


def envelope_bytes(touchpoint: Touchpoint) -> bytes:
    """What ``encode`` gives (the same bytes: tests/contract/test_write_path_contract.py
    checks every story), serialised once from the touchpoint instead of through a second,
    validated envelope model: a third of the cost, on every touchpoint a writer folds."""
    return encode(touchpoint)


def content_hash_of(raw: bytes) -> str:
    """``content_hash`` of the touchpoint whose envelope ``encode`` gave as ``raw``, from
    those bytes (the same hash: the envelope holds the same JSON values, without a second
    serialisation of the model)."""
    body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()[:32]


class JourneyStore:
    """Opens (and creates) the projection store at ``path``: a SQLite file, or a
    ``postgresql://`` URL."""

    def __init__(
        self,
        path: StoreAddress,
        *,
        cache_size: int | None = None,
        cache_weight: int | None = None,
        check_pages: bool = True,
        rebuilding: bool = False,
        reading: bool = False,
        shared_writes: bool = False,
    ) -> None:
        """``rebuilding``: a store nobody reads until it is complete (a rebuild). A
        customer's snapshot and the rows of the tables in ``rows.DEFERRABLE`` are written
        when it leaves the writer's cache or at :meth:`complete`, not with every batch: a
        customer that stays cached for many batches costs one snapshot and one derivation
        of its rows, not one per batch (a heavy customer's rows are thousands).

        ``reading``: a reader that must answer fast (the query service); on PostgreSQL,
        while the database is unreachable its reads fail at once (``PostgresBackend``).

        ``cache_size`` bounds the customers a writer keeps folded in memory,
        ``cache_weight`` what they weigh together (``_weigh``: touchpoints folded): a few
        very long histories weigh as much as thousands of short ones. Not read from the
        environment here: the shell's settings (journey/settings.py) check and pass them.

        ``shared_writes``: several processes write this SQLite file at once (a rebuild on
        several processes); they take turns through a lock file beside it (see
        :class:`~projections.backends.SQLiteBackend`). PostgreSQL needs nothing."""
        cache_size = DEFAULT_CACHE_SIZE if cache_size is None else cache_size
        cache_weight = DEFAULT_CACHE_WEIGHT if cache_weight is None else cache_weight
        if cache_size < 1 or cache_weight < 1:
            raise ValueError(f"cache bounds must be at least 1, got {cache_size}, {cache_weight}")
        self.backend: Backend
        self.address: StoreAddress = path
        if is_postgres(path):
            self.path = Path(".")
            inspect_postgres_store(str(path))  # foreign or outdated: refused, with the remedy
            self.backend = PostgresBackend(str(path), reading=reading)
        else:
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                made_here = self.path.stat().st_size == 0
            except FileNotFoundError:
                made_here = True
            # A foreign, outdated or damaged file is refused here, with the remedy.
            inspect_store(self.path, check_pages=check_pages)
            # A rebuild writes a store nobody reads yet, customer after customer: a smaller
            # page cache costs it little (the pages stay in the OS's cache) and keeps 48 MiB
            # of a 1M rebuild's peak memory free.
            sqlite = self._open_sqlite(
                self.path,
                cache_kib=(_SHARED_PAGE_CACHE_KIB if shared_writes else _REBUILD_PAGE_CACHE_KIB)
                if rebuilding
                else None,
                shared_writes=shared_writes,
                # A file that exists already (not a rebuild's new one) keeps its WAL; one
                # the processes of a rebuild write is a rebuild's new one (its parent made it).
                rebuilding=rebuilding and (shared_writes or not store_exists(self.path)),
            )
            if made_here:  # sound by construction: the next open need not read it whole
                sqlite.witness.vouch()
            self.backend = sqlite
        self.where = self.backend.where
        self._mapper = snapshots.mapper()
        self._write_meta()
        self._lock = threading.Lock()
        self._live: OrderedDict[str, _Live] = OrderedDict()
        self._live_size = cache_size
        self._live_weight_max = cache_weight
        self._live_weight = 0  # the sum of the cached customers' ``weight``
        self._rebuilding = rebuilding
        self._memo: tuple[object, dict[object, Any]] = (None, {})
        # Customers this writer knows to have no snapshot (started here, or loaded and found
        # without one): their next load skips the look-up (a live worker lets most of its
        # short histories go and reads them back minutes later). Forgotten when it writes
        # one, and all at once when its runner is assigned partitions (another worker may
        # have written some meanwhile). Wrong only the safe way: a snapshot missed is a
        # longer fold from the customer's rows, never another journey.
        self._no_snapshot: set[str] = set()

    @property
    def cache_bounds(self) -> tuple[int, int]:
        """(customers, weight) the writer's cache of folded customers is bounded by."""
        return self._live_size, self._live_weight_max

    @staticmethod
    def _open_sqlite(
        path: Path,
        cache_kib: int | None = None,
        *,
        shared_writes: bool = False,
        rebuilding: bool = False,
    ) -> SQLiteBackend:
        for attempt in range(3):
            try:
                return SQLiteBackend(
                    path, cache_kib=cache_kib, shared_writes=shared_writes, rebuilding=rebuilding
                )
            except (IntegrityError, OperationalError):
                # Two processes opening a brand-new file at once both write eventsourcing's
                # one-time table-migration record; the loser finds the tables made: retry.
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.backend.close()

    def _write_meta(self) -> None:
        try:
            self.backend.execute(
                [
                    (
                        "INSERT INTO journey_store_meta (key, value) VALUES (?, ?)"
                        " ON CONFLICT DO NOTHING",
                        (key, value),
                    )
                    for key, value in (("kind", STORE_KIND), ("schema_version", SCHEMA_VERSION))
                ]
            )
        except OperationalError as exc:
            # A read-only file or a full disk: readers still work; writers will fail (and
            # say so) when they write.
            logger.warning("could not record the store's schema version", error=str(exc))

    # ------------------------------------------------------------------ reads

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.backend.query(sql, params)
        except Exception as exc:
            raise self._damaged(exc) from exc

    def _damaged(self, exc: Exception) -> Exception:
        """A damaged store's error says so, with the remedy; any other passes as it is."""
        if is_corruption(exc) and not isinstance(exc, StoreCorrupt):
            return StoreCorrupt(
                f"store {self.where} is damaged ({exc}); run `journey rebuild all` to build a "
                "new store from the log"
            )
        return exc

    def size_bytes(self) -> int:
        return self.backend.size_bytes()

    def compact(self) -> None:
        """Rewrite the store packed (see :meth:`Backend.compact`): a rebuild's new store,
        before it is swapped in."""
        with self._lock:
            try:
                self.backend.compact()
            except Exception as exc:
                raise self._damaged(exc) from exc

    def positions(self) -> dict[TopicPartition, int]:
        """Last processed offset per partition (from eventsourcing's tracking table)."""
        out: dict[TopicPartition, int] = {}
        for name, offset in self.query(
            f"SELECT application_name, notification_id FROM {self.backend.tracking_table}"
        ):
            topic, sep, part = str(name).rpartition(":")
            if sep and part.isdigit():
                out[TopicPartition(topic, int(part))] = int(offset)
        return out

    def position(self, tp: TopicPartition) -> int | None:
        return self.backend.position(f"{tp.topic}:{tp.partition}")

    def read_version(self) -> tuple[tuple[str, int], ...]:
        """A value that changes whenever the store records a batch: the positions, written
        in every batch's transaction with whatever else the batch changed. What a reader
        derives from tables any customer's batch may change (identities, links, defects)
        holds while it stays equal (see :meth:`memo`)."""
        rows = self.query(
            f"SELECT application_name, notification_id FROM {self.backend.tracking_table}"
        )
        return tuple(sorted((str(name), int(offset)) for name, offset in rows))

    def memo(self, version: object, key: object, compute: Callable[[], _T]) -> _T:
        """``compute()``, kept while the store's :meth:`read_version` is ``version``: a
        second reader of the same customer (or of customers merged with it) finds the
        cross-customer look-ups done. Bounded; what one version kept goes with it."""
        held = self._memo
        if held[0] != version:
            held = (version, {})
            self._memo = held
        cache = held[1]
        if key in cache:
            found: _T = cache[key]
            return found
        value = compute()
        if len(cache) >= _MEMO_SIZE:
            cache.clear()
        cache[key] = value
        return value

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
        """The customer's journey as committed: its snapshot and the touchpoints since."""
        rows = self.query(
            "SELECT generation, erased_at FROM customers WHERE customer_id = ?", (customer_id,)
        )
        if not rows:
            return None
        return self._load(customer_id, int(rows[0][0]), rows[0][1])

    def timeline(
        self,
        keys: Sequence[tuple[str, int]],
        *,
        before: tuple[int, str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
        case_id: str | None = None,
    ) -> list[tuple[TimelineEntry, str]]:
        """Newest first, the timeline entries of the (customer, generation) ``keys``, after
        the cursor ``before`` = (at in microseconds, event_id, customer_id), with who each is
        of. One indexed range read, whatever the history's length."""
        if not keys:
            return []
        where, params = self._timeline_where(keys, case_id)
        if before is not None:
            where += " AND (at, event_id, customer_id) < (?, ?, ?)"
            params.extend((before[0], id_bytes(before[1]), before[2]))
        rows = self.query(
            "SELECT at, type, summary, event_id, case_id, text, customer_id FROM touchpoints"
            f" WHERE {where} ORDER BY at DESC, event_id DESC, customer_id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [
            (
                TimelineEntry(
                    from_micros(int(at)),
                    type_name(kind),
                    unpack_summary(summary, str(cid)),
                    id_text(event_id),
                    None if case is None else str(case),
                    None if text is None else str(text),
                ),
                str(cid),
            )
            for at, kind, summary, event_id, case, text, cid in rows
        ]

    def timeline_total(self, keys: Sequence[tuple[str, int]], case_id: str | None = None) -> int:
        if not keys:
            return 0
        where, params = self._timeline_where(keys, case_id)
        return int(self.query(f"SELECT count(*) FROM touchpoints WHERE {where}", params)[0][0])

    @staticmethod
    def _timeline_where(
        keys: Sequence[tuple[str, int]], case_id: str | None
    ) -> tuple[str, list[Any]]:
        where = "(" + " OR ".join("(customer_id = ? AND generation = ?)" for _ in keys) + ")"
        params: list[Any] = [v for key in keys for v in key]
        if case_id is not None:
            where += " AND case_id = ?"
            params.append(case_id)
        return where, params

    def search_said(self, phrase: str, limit: int) -> list[tuple[Any, ...]]:
        """Customers (with their search columns) who said or were told ``phrase`` (3+
        characters, any case), through the trigram index, most touchpoints first."""
        columns = (
            "c.customer_id, c.name, c.email, c.phone, c.touchpoints, c.last_seen, 'said', t.text"
        )
        if self.backend.kind == "sqlite":
            return self.query(
                f"SELECT {columns} FROM touchpoints_fts f JOIN touchpoints t ON t.id = f.rowid"
                " JOIN customers c ON c.customer_id = t.customer_id"
                " AND c.generation = t.generation"
                " WHERE touchpoints_fts MATCH ? GROUP BY t.customer_id"
                " ORDER BY c.touchpoints DESC LIMIT ?",
                ('"' + phrase.replace('"', '""') + '"', limit),
            )
        pattern = "%" + phrase.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return self.query(
            f"SELECT DISTINCT ON (c.customer_id) {columns} FROM touchpoints t"
            " JOIN customers c ON c.customer_id = t.customer_id"
            " AND c.generation = t.generation"
            " WHERE t.text IS NOT NULL AND lower(t.text) LIKE ? ORDER BY c.customer_id LIMIT ?",
            (pattern + "%", limit),
        )

    def merged_with(self, customer_id: str, limit: int = 1000) -> list[str]:
        """The other customer ids merged with ``customer_id`` (its links, followed through),
        at most ``limit``: erasing one person erases all of their identities."""
        seen = {customer_id}
        frontier = [customer_id]
        while frontier and len(seen) <= limit:
            marks = ",".join("?" * len(frontier))
            rows = self.query(
                f"SELECT other_id FROM links WHERE customer_id IN ({marks})"
                f" UNION SELECT customer_id FROM links WHERE other_id IN ({marks})",
                [*frontier, *frontier],
            )
            frontier = [str(r[0]) for r in rows if str(r[0]) not in seen][: limit + 1 - len(seen)]
            seen.update(frontier)
        return sorted(seen - {customer_id})

    def partitions_of(self, customer_ids: Sequence[str], topic: str) -> dict[str, int]:
        """The partition of ``topic`` each customer's touchpoints were folded from (a
        customer the store does not hold on ``topic`` is left out). A fact about a customer
        goes there, not to the partition its key hashes to: see consumers/keeper.py."""
        out: dict[str, int] = {}
        ids = list(customer_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.query(
                f"SELECT customer_id, partition FROM customers WHERE customer_id IN ({marks})"
                " AND topic = ?",
                [*chunk, topic],
            )
            out.update((str(cid), int(part)) for cid, part in rows)
        return out

    # ------------------------------------------------------------------ loading

    def snapshot(self, customer_id: str) -> tuple[CustomerJourney, int] | None:
        """A copy of the customer's stored snapshot of its own and how many touchpoints it
        holds; None when there is none or it cannot be read. For readers that fold on from
        it themselves (time travel: projections/travel.py)."""
        rows = self.query(
            "SELECT generation, touchpoints, topic, state FROM snapshots WHERE customer_id = ?",
            (customer_id,),
        )
        if not rows:
            return None
        generation, since, topic, state = rows[0]
        try:
            agg = snapshots.restore(
                self._mapper,
                StoredEvent(
                    journey_id(customer_id, int(generation)),
                    int(since) + 1,
                    str(topic),
                    bytes(state),
                ),
            )
        except Exception as exc:
            logger.warning("snapshot unreadable", customer_id=customer_id, error=repr(exc))
            return None
        return agg, int(since)

    def _load(
        self, customer_id: str, generation: int, erased_at: str | None = None
    ) -> CustomerJourney:
        return self._load_from_snapshot(customer_id, generation, erased_at)[0]

    def _load_from_snapshot(
        self, customer_id: str, generation: int, erased_at: str | None, *, look: bool = True
    ) -> tuple[CustomerJourney, int]:
        """The snapshot, then the touchpoints folded since it (rows only ever grow: a
        later read of them sees at least what the snapshot was taken from); and how many
        touchpoints the snapshot used holds (0: none, or none readable). ``look=False``:
        the caller knows there is none."""
        snap_rows: list[tuple[Any, ...]] = []
        try:
            if look:
                (snap_rows,) = self.backend.queries(
                    [
                        (
                            "SELECT generation, touchpoints, topic, state FROM snapshots"
                            " WHERE customer_id = ?",
                            (customer_id,),
                        )
                    ]
                )
        except Exception as exc:
            raise self._damaged(exc) from exc
        agg: CustomerJourney | None = None
        since = 0
        if snap_rows and int(snap_rows[0][0]) == generation:
            _, since, topic, state = snap_rows[0]
            since = int(since)
            try:
                agg = snapshots.restore(
                    self._mapper,
                    StoredEvent(
                        journey_id(customer_id, generation), since + 1, str(topic), bytes(state)
                    ),
                )
            except Exception as exc:
                logger.warning(
                    "snapshot unreadable: folding the customer from its rows",
                    customer_id=customer_id,
                    error=repr(exc),
                )
                agg, since = None, 0
        if agg is None:
            agg = CustomerJourney(customer_id, generation, erased_at if generation else None)
        journey = agg.journey
        journey.earlier_facts = self._facts_of(customer_id, generation, up_to=since)
        tail = [(decode(raw), raw) for raw in self._tail(customer_id, generation, since)]
        if tail:
            # One aggregate event for the whole tail, as a batch is folded: eventsourcing's
            # per-event work (an event object, its mutate) was a third of the tail's fold.
            try:
                agg.fold_all(tail)
            except FoldFailed as failed:
                raise failed.error from None
        journey.hand_over()
        journey.earlier_facts = self._facts_of(customer_id, generation)
        agg.collect_events()  # folded, not stored: Kafka holds them
        return agg, since

    def _tail(self, customer_id: str, generation: int, since: int) -> list[bytes]:
        self.backend.timeline_wanted()  # a rebuild's store may have left it for the end
        rows = self.query(
            "SELECT fact, event_id, type, at FROM touchpoints WHERE customer_id = ?"
            " AND generation = ? AND seq > ? AND fact IS NOT NULL ORDER BY seq",
            (customer_id, generation, since),
        )
        return [
            unpack(fact, event_id=eid, type=type_name(kind), customer_id=customer_id, at=at)
            for fact, eid, kind, at in rows
        ]

    def _facts_of(
        self, customer_id: str, generation: int, up_to: int | None = None
    ) -> Callable[[datetime | None], Iterable[bytes]]:
        """Fetches the customer's stored facts back, for the rare refold a late fact makes:
        those that occurred at ``since`` or later (an indexed range), or all."""

        def fetch(since: datetime | None = None) -> list[bytes]:
            self.backend.timeline_wanted()  # a rebuild's store may have left it for the end
            sql = (
                "SELECT fact, event_id, type, at FROM touchpoints WHERE customer_id = ?"
                " AND generation = ? AND fact IS NOT NULL"
            )
            params: list[Any] = [customer_id, generation]
            if since is not None:
                sql += " AND at >= ?"
                params.append(at_micros(since))
            if up_to is not None:
                sql += " AND seq <= ?"
                params.append(up_to)
            return [
                unpack(fact, event_id=eid, type=type_name(kind), customer_id=customer_id, at=at)
                for fact, eid, kind, at in self.query(sql, params)
            ]

        return fetch

    # ------------------------------------------------------------------ writes

    def process(
        self,
        tp: TopicPartition,
        items: Sequence[tuple[int, Touchpoint]],
        last_offset: int,
        dead_letters: Sequence[DeadLetterRow] = (),
        logged_at: Mapping[int, datetime] | None = None,
    ) -> BatchResult:
        """Fold a batch of one partition and record it with its position atomically.

        ``items`` are (offset, touchpoint) in offset order; ``last_offset`` is the offset of
        the last message of the batch (dead letters included) and becomes the position;
        ``dead_letters`` are recorded in the same transaction (and kept as the DLQ outbox).
        ``logged_at`` gives, per offset, when the log received the message (its record
        timestamp); an offset it leaves out counts as received now, when it is recorded.

        Raises :class:`BatchRejected` (nothing recorded) when some touchpoints are poison:
        the fold raised on them, or they reuse a recorded event_id with other content. Any
        other exception is a failure of the store itself (disk, lock, damage): nothing was
        recorded either, and the caller must retry the batch, never skip it.
        """
        with self._lock:
            try:
                return self._process(tp, items, last_offset, dead_letters, logged_at or {})
            except BatchRejected:
                raise  # poison: its text is the message's, never a sign of a damaged file
            except IntegrityError as exc:
                recorded = self.position(tp)
                if recorded is not None and recorded >= last_offset:
                    # The tracking row says this batch (or a later one) is already recorded:
                    # a re-delivery after a crash between store commit and group commit.
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
                        f"store {self.where} is damaged ({exc}); run `journey rebuild all` "
                        "to build a new store from the log"
                    ) from exc
                raise

    def _process(
        self,
        tp: TopicPartition,
        items: Sequence[tuple[int, Touchpoint]],
        last_offset: int,
        dead_letters: Sequence[DeadLetterRow],
        logged_at: Mapping[int, datetime],
    ) -> BatchResult:
        touched: dict[str, _Live] = {}
        completed: list[str] = []
        try:
            result = self._fold_and_record(
                tp,
                items,
                last_offset,
                dead_letters,
                touched,
                completed=completed,
                logged_at=logged_at,
            )
        except BaseException:
            # Those customers were changed in memory but not committed (a completed one's
            # rows counted as written): the next batch of theirs reads them from the store.
            for cid in (*touched, *completed):
                self._uncache(cid)
            raise
        for cid, live in touched.items():
            self._uncache(cid)
            live.weight = _weigh(live)
            self._live[cid] = live
            self._live_weight += live.weight
        while self._live and (
            len(self._live) > self._live_size or self._live_weight > self._live_weight_max
        ):
            self._live_weight -= self._live.popitem(last=False)[1].weight
        return result

    def _uncache(self, cid: str) -> None:
        gone = self._live.pop(cid, None)
        if gone is not None:
            self._live_weight -= gone.weight

    def _leaving(self, touched: Mapping[str, _Live]) -> list[str]:
        """The customers the cache lets go once this batch is recorded (oldest first: those
        the batch did not touch, then those it did, as ``_process`` drops them)."""
        live = self._live
        count = len(live) + sum(1 for cid in touched if cid not in live)
        weight = self._live_weight + sum(
            _weigh(t) - (live[cid].weight if cid in live else 0) for cid, t in touched.items()
        )
        out: list[str] = []
        untouched = (
            (cid, held.weight) for cid, held in live.items() if cid not in touched
        )  # the oldest first
        then = ((cid, _weigh(t)) for cid, t in touched.items())
        for cid, w in itertools.chain(untouched, then):
            if count <= self._live_size and weight <= self._live_weight_max:
                break
            out.append(cid)
            count -= 1
            weight -= w
        return out

    def _fold_and_record(
        self,
        tp: TopicPartition,
        items: Sequence[tuple[int, Touchpoint]],
        last_offset: int,
        dead_letters: Sequence[DeadLetterRow],
        touched: dict[str, _Live],
        *,
        completed: list[str],
        logged_at: Mapping[int, datetime],
    ) -> BatchResult:
        result = BatchResult()
        received_now = at_micros(datetime.now(UTC))
        hashes, stored = self._batch_state(
            [t.event_id for _, t in items], dict.fromkeys(t.customer_id for _, t in items)
        )
        # event id -> its content hash, or the envelope to hash when a copy turns up
        known: dict[str, str | bytes] = dict(hashes)
        folded: list[_Folded] = []
        writes: list[Statement] = []
        erased: dict[str, int] = {}  # customer -> its generation after the batch's erasures
        latest: datetime | None = None
        rejected: list[Rejection] = []
        last_of: dict[str, int] = {}  # customer -> offset of its last touchpoint folded here
        # Each customer's touchpoints of the batch are folded together, as one event of its
        # aggregate (``fold_all``): before an erasure starts its next generation, and at the
        # end. What the fold raises on is still blamed on that one touchpoint.
        # Only a folded copy makes a later one with its event id a duplicate (or a
        # conflict): a copy waiting to be folded is folded first when another turns up.
        pending: dict[str, list[tuple[int, Touchpoint, bytes, str]]] = {}
        waiting_ids: dict[str, str] = {}  # event id -> customer, while waiting
        # A batch's log times are a few shared datetimes (one per millisecond of the log).
        micros_of: dict[datetime, int] = {}

        def fold_pending(cid: str) -> None:
            batch = pending.pop(cid, None)
            if not batch:
                return
            folded_until = len(batch)
            try:
                touched[cid].agg.fold_all([(t, raw) for _, t, raw, _ in batch])
            except FoldFailed as failed:
                folded_until = failed.index
                rejected.append(_fold_rejection(batch[failed.index][0], failed.error))
            except Exception as exc:
                folded_until = 0
                rejected.append(_fold_rejection(batch[-1][0], exc))
            for n, (_, _, raw, event_id) in enumerate(batch):
                waiting_ids.pop(event_id, None)
                if n < folded_until:
                    # Its content hash, when a later copy needs it (rarely: a duplicate).
                    known[event_id] = raw

        for offset, touchpoint in items:
            try:
                raw = envelope_bytes(touchpoint)
            except Exception as exc:
                rejected.append(_fold_rejection(offset, exc))
                continue
            event_id = event_id_bytes(touchpoint, raw).decode()  # str(UUID), ~1 us less
            if event_id in waiting_ids:
                fold_pending(waiting_ids[event_id])
            seen = known.get(event_id)
            if seen is not None:
                # Hashed only here: a touchpoint's hash is read from its fact when needed
                # (schema 10), and hashing every one was 5 % of a rebuild.
                first = seen if isinstance(seen, str) else content_hash_of(seen)
                digest = content_hash_of(raw)
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
            live = touched.get(cid)
            if live is None:
                # Loading is the store's business: whatever fails here is not the message's
                # fault, so it is never a dead letter (a transient failure, or damage).
                try:
                    live = self._load_or_start(cid, stored.get(cid))
                except (OperationalError, OSError, StoreError):
                    raise
                except Exception as exc:
                    raise StoreCorrupt(
                        f"store {self.where}: the journey of customer {cid!r} cannot be "
                        f"loaded ({type(exc).__name__}: {exc}); run `journey rebuild all` "
                        "to build a new store from the log"
                    ) from exc
                touched[cid] = live
            try:
                if isinstance(touchpoint.data, c.ErasureRequested):
                    fold_pending(cid)  # what came before it, into the generation it ends
                    generation = live.agg.generation + 1
                    erased[cid] = generation
                    live = _Live(
                        CustomerJourney(cid, generation, touchpoint.occurred_at.isoformat()),
                        live.rows,
                        0,
                    )
                    touched[cid] = live
                facts = fact_writes(touchpoint)
            except Exception as exc:
                rejected.append(_fold_rejection(offset, exc))
                continue
            waiting = pending.setdefault(cid, [])
            waiting.append((offset, touchpoint, raw, event_id))
            waiting_ids[event_id] = cid
            folded.append(
                _Folded(
                    offset,
                    touchpoint,
                    raw,
                    event_id,
                    live.agg.generation,
                    live.agg.touchpoints + len(waiting),
                    _micros_once(logged_at.get(offset), micros_of, received_now),
                )
            )
            writes.extend(facts)
            last_of[cid] = offset
            if not isinstance(touchpoint.data, _DERIVED) and (
                latest is None or touchpoint.occurred_at > latest
            ):
                latest = touchpoint.occurred_at
            result.applied += 1
        for cid in list(pending):
            fold_pending(cid)
        entries: dict[str, TimelineEntry] = {}
        if not rejected:
            changed: list[Statement] = []
            # A rebuilding store completes a customer (deferred rows, snapshot) in the
            # batch after which its cache lets it go: in this transaction.
            leaving = set(self._leaving(touched)) if self._rebuilding else set()
            for cid in leaving - touched.keys():
                completed.append(cid)
                changed.extend(self._completion(self._live[cid]))
            for cid, live in touched.items():
                try:
                    complete = not self._rebuilding or cid in leaving
                    changed.extend(self._customer_writes(live, tp, entries, complete=complete))
                except Exception as exc:
                    # The state the batch folded cannot be written: blame the customer's
                    # last touchpoint of the batch; the retry without it shows whether an
                    # earlier one is at fault too.
                    rejected.append(_fold_rejection(last_of[cid], exc))
            # Every row of these writes is one customer's own (its id is in each key), so
            # their order does not matter: grouped by statement, each group is one
            # executemany (projections.backends.runs).
            changed.sort(key=lambda w: w[0])
            writes.extend(changed)
        if rejected:
            raise BatchRejected(rejected)
        writes[:0] = [self._touchpoint_write(tp, f, entries, touched) for f in folded]
        for cid, generation in erased.items():
            # Erasure: what the earlier generations said and were told leaves the store for
            # good; their rows stay as ids and hashes (a re-delivery is still a duplicate).
            writes.extend(self._hashes_kept(cid, generation))
            writes.append(
                (
                    "UPDATE touchpoints SET summary = ?, text = NULL, fact = NULL"
                    " WHERE customer_id = ? AND generation < ?",
                    (pack_summary("(erased)", cid), cid, generation),
                )
            )
            writes.append(
                (
                    "DELETE FROM snapshots WHERE customer_id = ? AND generation < ?",
                    (cid, generation),
                )
            )
        if erased and self.backend.kind == "sqlite":
            # The trigram index keeps a deleted text's trigrams in its older segments until
            # they are merged: merge them all now, so nothing of it stays in the file.
            writes.append(("INSERT INTO touchpoints_fts (touchpoints_fts) VALUES ('optimize')", ()))
        writes.extend(dead_letter_write(tp, dead) for dead in dead_letters)
        if latest is not None:
            writes.append(
                (
                    "INSERT INTO partition_clocks VALUES (?, ?, ?) ON CONFLICT (topic, partition)"
                    " DO UPDATE SET event_time = CASE WHEN excluded.event_time >"
                    " partition_clocks.event_time THEN excluded.event_time"
                    " ELSE partition_clocks.event_time END",
                    (tp.topic, tp.partition, clock_text(latest)),
                )
            )
        self.backend.record(Tracking(f"{tp.topic}:{tp.partition}", last_offset), writes)
        if erased and not self.backend.purge():
            logger.warning(
                "erased, but a reader kept the write-ahead log from being truncated: the old "
                "pages go at the next checkpoint",
                customers=sorted(erased),
            )
        bound = logger.bind()
        # Checked once a batch: building a debug line per touchpoint cost more than the
        # line itself when debug logging is off.
        if not getattr(bound, "is_enabled_for", lambda _level: True)(logging.DEBUG):
            return result
        for f in folded:
            bound.debug(
                "touchpoint folded",
                event_id=str(f.touchpoint.event_id),
                customer_id=f.touchpoint.customer_id,
                type=f.touchpoint.type,
                topic=tp.topic,
                partition=tp.partition,
                offset=f.offset,
            )
        return result

    def _customer_writes(
        self,
        live: _Live,
        tp: TopicPartition,
        entries: dict[str, TimelineEntry],
        *,
        complete: bool = True,
    ) -> list[Statement]:
        """What changed for one customer: query-table rows, timeline entries a refold
        remade, and its snapshot when due. Updates ``live`` to what is written. Without
        ``complete`` (a rebuilding store, the customer stays in its cache), only the rows of
        the tables written every batch: the others wait for :meth:`_completion`."""
        agg = live.agg
        journey = agg.journey
        _, new_entries, refolded = journey.hand_over()
        agg.collect_events()  # folded, not stored: Kafka holds them
        erased_at = journey.erased_at
        writes: list[Statement] = []
        for entry in new_entries:
            if erased_at is not None and entry.at <= erased_at:
                entry.text = None
            entries[entry.event_id] = entry
        if refolded:
            # A late fact refolded the journey: earlier entries may read differently now.
            writes.extend(
                (
                    "UPDATE touchpoints SET summary = ?, case_id = ?, text = ? WHERE event_id = ?",
                    (
                        pack_summary(e.summary, journey.customer_id),
                        e.case_id,
                        e.text,
                        id_bytes(e.event_id),
                    ),
                )
                for e in new_entries
            )
        if complete:
            writes.extend(self._completion(live, tp))
        else:
            rows = customer_rows(journey, agg.generation, agg.touchpoints, tp, EVERY_BATCH)
            writes.extend(diff_writes(live.rows, rows))
            live.rows = {**(live.rows or {}), **rows}
        if journey.earlier_facts is None:
            journey.earlier_facts = self._facts_of(journey.customer_id, agg.generation)
        return writes

    def _completion(self, live: _Live, tp: TopicPartition | None = None) -> list[Statement]:
        """Every row the customer is due that the tables do not hold yet, and its snapshot
        when due. Updates ``live`` to what is written. ``tp`` None: the customers row as
        last written (a rebuilding store completing a customer between batches)."""
        agg = live.agg
        writes: list[Statement] = []
        tables: tuple[str, ...] = (*EVERY_BATCH, *DEFERRABLE) if tp is not None else DEFERRABLE
        rows = customer_rows(
            agg.journey,
            agg.generation,
            agg.touchpoints,
            tp or _NO_TP,
            tables,
            # A rebuilt store's clocks are all worked out by the first keeper on it, in one
            # pass: none is in the keeper's index meanwhile (projections/due.py).
            due=None if self._rebuilding else PENDING,
        )
        before = live.rows
        if live.rows_unknown:
            writes.extend(
                (f"DELETE FROM {table} WHERE customer_id = ?", (agg.customer_id,))
                for table in DEFERRABLE
            )
            before = {k: v for k, v in (before or {}).items() if k not in DEFERRABLE}
            live.rows_unknown = False
        writes.extend(diff_writes(before, rows))
        live.rows = {**(live.rows or {}), **rows}
        snapshot = self._snapshot_write(live)
        if snapshot is not None:
            writes.append(snapshot)
        return writes

    def _snapshot_write(self, live: _Live) -> Statement | None:
        """The customer's snapshot, when enough was folded since its last one (see
        SNAPSHOT_EVERY_MIN); updates ``live`` as written."""
        agg = live.agg
        since = agg.touchpoints - max(live.snapshot_at, 0)
        due = min(SNAPSHOT_EVERY_MAX, max(SNAPSHOT_EVERY_MIN, agg.touchpoints // 8))
        if since < due:
            return None
        stored = snapshots.take(self._mapper, agg)
        live.snapshot_at = agg.touchpoints
        self._no_snapshot.discard(agg.customer_id)
        return (
            "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer_id)"
            " DO UPDATE SET generation = excluded.generation,"
            " touchpoints = excluded.touchpoints, topic = excluded.topic,"
            " state = excluded.state",
            (agg.customer_id, agg.generation, agg.touchpoints, stored.topic, stored.state),
        )

    def complete(self) -> int:
        """A rebuilding store: write every cached customer's deferred rows and the
        snapshot it is due (a rebuild calls this before its store is
        swapped in: then every table is whole, and a cold read costs one row and a short
        tail), and let it go from the cache. Returns how many statements that took."""
        done = 0
        with self._lock:
            # A few hundred customers a transaction, and at most one long history's worth:
            # a heavy customer's snapshot and rows are megabytes, and the whole cache's at
            # once would be the rebuild's peak (twenty of 10,000 touchpoints were ~15 MiB).
            while self._live:
                done += self._complete_chunk()
            self.backend.rebuilt()
        return done

    def _complete_chunk(self) -> int:
        """complete()'s next chunk, the oldest cached customers: written, then let go. Each
        chunk is taken only when the one before is gone: a list of every chunk made up front
        kept every customer (and the rows their completion made) alive to the end, ~30 MiB
        on a 1M rebuild's peak (docs/BENCHMARKS.md, "Rebuild: the end's peak and a poll
        that fills")."""
        chunk: list[tuple[str, _Live]] = []
        weight = 0
        for cid, live in self._live.items():
            if chunk and (len(chunk) >= 200 or weight + live.weight > 12_000):
                break
            chunk.append((cid, live))
            weight += live.weight
        writes = [w for _, live in chunk for w in self._completion(live)]
        writes.sort(key=lambda w: w[0])  # each customer's own keys: order is free
        if writes:
            self.backend.execute(writes)
        # Written whole, they are let go: what they held makes room for the next chunk (a
        # later batch of theirs reads them back from the store).
        for cid, _ in chunk:
            self._uncache(cid)
        return len(writes)

    @staticmethod
    def _touchpoint_write(
        tp: TopicPartition,
        f: _Folded,
        entries: dict[str, TimelineEntry],
        touched: dict[str, _Live],
    ) -> Statement:
        t = f.touchpoint
        entry = entries.get(f.event_id)
        if entry is None or touched[t.customer_id].agg.generation != f.generation:
            # Folded into a generation the same batch erased: nothing of it is kept.
            summary, case_id, text, fact = "(erased)", None, None, None
        else:
            summary, case_id, text = entry.summary, entry.case_id, entry.text
            fact = pack(f.raw, customer_id=t.customer_id)
        return (
            "INSERT INTO touchpoints (event_id, customer_id, generation, seq, at, type, summary,"
            ' case_id, text, content_hash, partition, "offset", fact, logged_at)'
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.event_id.bytes,
                t.customer_id,
                f.generation,
                f.seq,
                at_micros(t.occurred_at),
                type_code(t.type),
                pack_summary(summary, t.customer_id),
                case_id,
                text,
                None if fact is not None else hash_bytes(content_hash_of(f.raw)),
                tp.partition,
                f.offset,
                fact,
                f.logged_at,
            ),
        )

    def _hashes_kept(self, cid: str, generation: int) -> list[Statement]:
        """A row's content hash is read from its fact (only a row without one holds it):
        before an erasure empties the facts of ``cid``'s generations before ``generation``,
        their hashes are written to their rows."""
        # This read, and the erasure's update after it, go by customer: a rebuild's store
        # may have left the index for the end.
        self.backend.timeline_wanted()
        rows = self.query(
            "SELECT event_id, type, at, fact FROM touchpoints WHERE customer_id = ?"
            " AND generation < ? AND fact IS NOT NULL",
            (cid, generation),
        )
        return [
            (
                "UPDATE touchpoints SET content_hash = ? WHERE event_id = ?",
                (hash_bytes(_fact_hash(fact, eid, kind, cid, at)), eid),
            )
            for eid, kind, at, fact in rows
        ]

    def _known_hashes(self, ids: Sequence[uuid.UUID | str]) -> dict[str, str]:
        """event id -> content hash, for those of ``ids`` already recorded."""
        return self._batch_state(ids, ())[0]

    def _batch_state(
        self, ids: Sequence[uuid.UUID | str], customer_ids: Iterable[str]
    ) -> tuple[dict[str, str], dict[str, _Stored]]:
        """What a batch checks before it folds, read in one transaction (on PostgreSQL one
        round trip per 500 ids, not one query each): the content hash of each of ``ids``
        already recorded, and the customers row of each of ``customer_ids`` as committed."""
        statements: list[Statement] = []
        for start in range(0, len(ids), 500):
            chunk = [id_bytes(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            statements.append(
                (
                    "SELECT event_id, content_hash, type, at, fact, customer_id FROM touchpoints"
                    f" WHERE event_id IN ({marks})",
                    chunk,
                )
            )
        hash_reads = len(statements)
        cids = list(customer_ids)
        for start in range(0, len(cids), 500):
            chunk_ids = cids[start : start + 500]
            marks = ",".join("?" * len(chunk_ids))
            statements.append(
                (
                    "SELECT customer_id, generation, touchpoints, erased_at, topic, partition"
                    f" FROM customers WHERE customer_id IN ({marks})",
                    chunk_ids,
                )
            )
        if not statements:
            return {}, {}
        try:
            results = self.backend.queries(statements)
        except Exception as exc:
            raise self._damaged(exc) from exc
        found: dict[str, str] = {}
        for rows in results[:hash_reads]:
            found.update(
                (
                    id_text(eid),
                    hash_text(digest)
                    if digest is not None
                    else _fact_hash(fact, eid, kind, str(cid), at),
                )
                for eid, digest, kind, at, fact, cid in rows
            )
        stored: dict[str, _Stored] = {}
        for rows in results[hash_reads:]:
            for cid, gen, count, erased_at, topic, partition in rows:
                stored[str(cid)] = _Stored(
                    int(gen), int(count), erased_at, TopicPartition(str(topic), int(partition))
                )
        return found, stored

    def event_ids(self) -> set[str]:
        """Every event id folded (for tests and checks; O(touchpoints))."""
        return {id_text(r[0]) for r in self.query("SELECT event_id FROM touchpoints")}

    def conflicts(self, touchpoints: Sequence[Touchpoint]) -> list[tuple[str, str, str]]:
        """(event id, recorded hash, new hash) for each touchpoint whose event_id the store
        recorded (or the batch holds before it) with other content: the edge answers 409."""
        return find_conflicts(touchpoints, self._known_hashes([t.event_id for t in touchpoints]))

    def _stored_state(self, customer_ids: Iterable[str]) -> dict[str, _Stored]:
        """customer id -> its customers row as committed."""
        return self._batch_state((), customer_ids)[1]

    def forget_snapshot_absences(self) -> None:
        """What this writer knew of customers without a snapshot (see ``_no_snapshot``):
        its runner calls this when partitions are assigned."""
        self._no_snapshot.clear()

    def _no_snapshot_of(self, customer_id: str) -> None:
        if self._rebuilding:
            return  # a rebuild reads few back, and its memory is counted
        if len(self._no_snapshot) >= _NO_SNAPSHOT_SIZE:
            self._no_snapshot.clear()
        self._no_snapshot.add(customer_id)

    def _load_or_start(self, customer_id: str, state: _Stored | None) -> _Live:
        if state is None:
            self._no_snapshot_of(customer_id)
            return _Live(CustomerJourney(customer_id, 0), None, 0)
        generation, touchpoints, erased_at, written_at = state
        cached = self._live.get(customer_id)
        # Used only while the customers row (written in the same transaction) still shows
        # its generation and count: another writer or a rebalance can never make it serve
        # a stale journey.
        if cached is not None and (cached.agg.generation, cached.agg.touchpoints) == (
            generation,
            touchpoints,
        ):
            return cached
        agg, snapshot_at = self._load_from_snapshot(
            customer_id, generation, erased_at, look=customer_id not in self._no_snapshot
        )
        if snapshot_at == 0:
            self._no_snapshot_of(customer_id)
        # What the tables hold for it is what its journey is due (written together); a
        # rebuilding store knows that of the tables it writes with every batch only.
        if self._rebuilding:
            rows = customer_rows(agg.journey, generation, agg.touchpoints, written_at, EVERY_BATCH)
            return _Live(agg, rows, snapshot_at, rows_unknown=True)
        rows = customer_rows(agg.journey, generation, agg.touchpoints, written_at)
        return _Live(agg, rows, snapshot_at)

    # ------------------------------------------------------------------ dead letters

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
                decode_headers(headers),
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
            with self._lock:
                self.backend.execute(
                    [
                        (
                            'INSERT INTO dead_letters (topic, partition, "offset", reason,'
                            " error, published) VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT DO NOTHING",
                            tuple(row),
                        )
                        for row in rows
                    ]
                )
        return len(rows)

    def mark_dead_letters_published(self, done: Sequence[PendingDeadLetter]) -> None:
        """They are on the DLQ topic now: drop the copies of the messages."""
        with self._lock:
            self.backend.execute(
                [
                    (
                        "UPDATE dead_letters SET published = 1, dlq_key = NULL, dlq_value = NULL,"
                        ' dlq_headers = NULL WHERE topic = ? AND partition = ? AND "offset" = ?',
                        (d.topic, d.partition, d.offset),
                    )
                    for d in done
                ]
            )


def _fact_hash(fact: bytes, event_id: bytes, kind: int, customer_id: str, at: int) -> str:
    """The content hash of a stored fact: the envelope given back byte for byte hashes as
    the one the writer received."""
    raw = unpack(fact, event_id=event_id, type=type_name(kind), customer_id=customer_id, at=at)
    return content_hash_of(raw)


def _micros_once(when: datetime | None, micros_of: dict[datetime, int], default: int) -> int:
    """``at_micros(when)`` (``default`` for None), worked out once per distinct time."""
    if when is None:
        return default
    micros = micros_of.get(when)
    if micros is None:
        micros = micros_of[when] = at_micros(when)
    return micros


def _fold_rejection(offset: int, exc: Exception) -> Rejection:
    logger.warning("the fold raised: poison touchpoint", offset=offset, error=repr(exc))
    return Rejection(offset, "fold_failed", f"the fold raised {type(exc).__name__}: {exc}")
