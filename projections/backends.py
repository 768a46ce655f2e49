"""Where a store lives: a SQLite file, or a PostgreSQL database.

Both are eventsourcing process recorders (the tracking table holds each partition's
position) extended with the query tables, which are written in the same transaction as the
tracking record. Statements are written once, with ``?`` placeholders and SQL both
databases run; :meth:`Backend.sql` adapts them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import structlog
from eventsourcing.persistence import ProcessRecorder, Tracking
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteProcessRecorder,
)

from projections.integrity import WriteWitness
from projections.location import (
    CONNECT_TIMEOUT_S,
    StoreUnreachable,
    causes,
    connect,
    describe,
    is_unreachable,
    reachability,
    schema_of,
)
from projections.schema import (
    READ_SIDE_INDEXES,
    SEARCH_DDL,
    SEARCH_TRIGGERS,
    TIMELINE_INDEX,
    TRGM_SCHEMA,
    ddl,
    index_ddl,
    timeline_ddl,
)

__all__ = ["Backend", "PostgresBackend", "SQLiteBackend", "Statement", "WriterTurns"]

Statement = tuple[str, Sequence[Any]]
_R = TypeVar("_R")

logger = structlog.get_logger(__name__)

# How often a live SQLite writer copies its write-ahead log into the file (after a commit):
# SQLite's own automatic checkpoint (every 1,000 pages) ran inside a commit, where the
# writer's witness could not tell its change of the file from another program's.
_CHECKPOINT_EVERY_S = 1.0
# The write-ahead log's frames (pages) past which the writer checkpoints once itself, so the
# log starts over: 16,384 pages of 4 KiB, 64 MiB. Under 1,000 touchpoints/s the log reached
# 4,096 every two seconds or so, and that checkpoint (most of it copied already, but synced)
# held the loop a p50 of 41 ms on a busy disk; the bound makes it one in ~8 s.
_WAL_FRAMES_BOUND = 16_384


class Backend(ABC):
    """One store's database: reads, and atomic batch writes with a tracking record."""

    kind: str
    recorder: ProcessRecorder
    tracking_table: str

    @abstractmethod
    def sql(self, statement: str) -> str:
        """``statement`` (``?`` placeholders) in this database's dialect."""

    @abstractmethod
    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Any]:
        """A cursor in a transaction (committed at the end when ``commit``)."""

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction(commit=False) as cur:
            cur.execute(self.sql(statement), tuple(params))
            return [_row(r) for r in cur.fetchall()]

    def queries(self, statements: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
        """Several reads in one transaction (one consistent view of the store)."""
        out = []
        with self.transaction(commit=False) as cur:
            for statement, params in statements:
                cur.execute(self.sql(statement), tuple(params))
                out.append([_row(r) for r in cur.fetchall()])
        return out

    def execute(self, statements: Sequence[Statement]) -> None:
        """Writes outside any batch (metadata, the dead-letter outbox), in one transaction."""
        with self.transaction(commit=True) as cur:
            for statement, params in runs(statements):
                cur.executemany(self.sql(statement), params)

    def record(self, tracking: Tracking, writes: Sequence[Statement]) -> None:
        """``writes`` and the tracking record, in one transaction (eventsourcing's
        ``insert_events`` with no events of its own: the log of record is Kafka)."""
        self.recorder.insert_events([], tracking=tracking, view_writes=writes)

    def position(self, name: str) -> int | None:
        return self.recorder.max_tracking_id(name)

    @abstractmethod
    def size_bytes(self) -> int:
        """How much the store takes on disk."""

    def purge(self) -> bool:
        """After an erasure: make what it deleted unreadable on disk as far as this database
        can; False when something still holds old bytes (the caller logs it)."""
        return True

    def rebuilt(self) -> None:  # noqa: B027 -- most backends leave nothing for the end
        """A rebuild has written every row: build what it left for the end."""

    def index_search(self) -> None:  # noqa: B027 -- most backends index as they write
        """A rebuild on several processes has written every row: build what each of them
        left for the end (its parent calls this once, after them all)."""

    def timeline_wanted(self) -> None:  # noqa: B027 -- most backends always have it
        """A read or write of the touchpoints by customer is coming (a customer's tail, its
        facts for a refold, an erasure): a store that left its timeline index for the end
        builds it now."""

    @abstractmethod
    def compact(self) -> None:
        """Rewrite every table and index packed: rows written a customer at a time leave
        b-tree pages part full (and PostgreSQL keeps the dead versions of rewritten
        snapshots). For a store nobody reads yet: a rebuild's, before it is swapped in."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def where(self) -> str:
        """The store, as a person names it (a path, or a URL without its password)."""


def runs(writes: Sequence[Statement]) -> Iterator[tuple[str, list[Sequence[Any]]]]:
    """``writes`` as runs of one statement with their parameters, in order: each run is one
    ``executemany`` (the statement prepared once, and on PostgreSQL one round trip)."""
    statement: str | None = None
    params: list[Sequence[Any]] = []
    for sql, values in writes:
        if sql != statement:
            if statement is not None:
                yield statement, params
            statement, params = sql, []
        params.append(values)
    if statement is not None:
        yield statement, params


def _connection_lost(exc: BaseException) -> bool:
    """A pooled connection that turned out dead (not a failure to get one: a pool
    timeout says the database is away, and trying again would only wait again)."""
    return is_unreachable(exc) and not any(
        type(e).__name__ == "PoolTimeout" or isinstance(e, StoreUnreachable) for e in causes(exc)
    )


def _row(row: Any) -> tuple[Any, ...]:
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)


# ---------------------------------------------------------------------------- SQLite


class _TunedPool(SQLiteConnectionPool):
    """eventsourcing's pool, with each connection tuned for a store that is disposable
    (the log is the truth): WAL with synchronous=NORMAL (a power cut may lose the last
    commits, never consistency; they are read again from the log) and a 64 MiB cache.
    ``secure_delete``: what an erasure deletes or overwrites is zeroed in the file, not
    left in free space for anyone with the file to read."""

    cache_kib = 65536
    # A rebuild's new store (see SQLiteBackend): a rollback journal, no syncs.
    rebuilding = False

    def _create_connection(self) -> SQLiteConnection:
        if self.rebuilding:
            # Not WAL (eventsourcing's choice, made on a pool's first connection): see below.
            self.is_journal_mode_wal = True
        conn = super()._create_connection()
        cur = conn.cursor()
        # The write-ahead log is copied into the file only by the writer's own checkpoints
        # (_Datastore.checkpoint), never inside a commit: the file's identity then moves only
        # where the writer's witness watches it, and a change anywhere else is someone else's.
        pragmas: tuple[str, ...] = ("synchronous=NORMAL", "wal_autocheckpoint=0")
        if self.rebuilding:
            pragmas = ("journal_mode=PERSIST", "synchronous=OFF")
        pragmas += (f"cache_size=-{self.cache_kib}", "temp_store=MEMORY")
        for pragma in (*pragmas, "secure_delete=ON"):
            cur.execute(f"PRAGMA {pragma}")
            cur.fetchall()
        return conn


class WriterTurns:
    """Several processes writing one SQLite file take turns through an exclusive ``flock``
    on a file beside it, held for each write transaction. SQLite's own lock makes a second
    writer sleep in its busy handler (Python's: 1, 2, 5 … up to 100 ms a step) and retry,
    and a deferred transaction that read before another committed fails at once
    (SQLITE_BUSY_SNAPSHOT); waiting in the kernel, a writer wakes the moment the other
    commits. Readers of a WAL file never wait; those of a rebuild's file (a rollback
    journal) wait out the other's commit only, in SQLite's busy handler. Counts how long and
    how often a writer waited."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.waited_s = 0.0
        self.turns = 0
        self.waits = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            started = time.monotonic()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            self.waited_s += time.monotonic() - started
            self.waits += 1
        self.turns += 1
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class _Checkpointer:
    """A live writer's periodic checkpoints, on a thread and a connection of their own
    (started by the first one asked for, stopped when the store closes)."""

    def __init__(self, datastore: _Datastore, db_name: str, lock_timeout: int) -> None:
        self._datastore = datastore
        self._db_name = db_name
        self._lock_timeout = lock_timeout
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._idle = threading.Event()  # set: none asked for is still to run or running
        self._idle.set()

    def request(self) -> None:
        with self._guard:
            if self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="store-checkpoint", daemon=True
                )
                self._thread.start()
            self._idle.clear()
            self._wake.set()

    def settle(self, timeout_s: float) -> bool:
        """Wait until every checkpoint asked for has run (and its witness recorded it): a
        reader opening the store meanwhile may find the file changed and not yet vouched
        for, and read it whole. True when settled within ``timeout_s``."""
        return self._idle.wait(timeout_s)

    def _run(self) -> None:
        conn = sqlite3.connect(self._db_name, timeout=self._lock_timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    # Again while commits came meanwhile: each pass is shorter, and one that
                    # reaches the log's end lets the next commit start the log over.
                    for _ in range(3):
                        _, frames, copied = self._datastore.checkpoint(conn, "PASSIVE")
                        if copied >= frames:
                            break
                    if frames >= _WAL_FRAMES_BOUND:
                        self._datastore._restart_wal = True
                except sqlite3.Error as exc:
                    # The write-ahead log keeps what it holds; the next one copies it. A
                    # damaged or missing file is the writer's to find and say.
                    logger.debug("store checkpoint failed", store=self._db_name, error=str(exc))
                with self._guard:
                    if not self._wake.is_set():
                        self._idle.set()
        finally:
            self._idle.set()
            conn.close()

    def close(self) -> None:
        with self._guard:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()


class _Datastore(SQLiteDatastore):
    def __init__(
        self,
        db_name: str,
        *,
        lock_timeout: int,
        cache_kib: int | None = None,
        witness: WriteWitness | None = None,
        turns: WriterTurns | None = None,
        rebuilding: bool = False,
    ) -> None:
        super().__init__(db_name, lock_timeout=lock_timeout)
        self.pool.close()
        self.pool = _TunedPool(db_name=db_name, lock_timeout=lock_timeout)
        if cache_kib is not None:
            self.pool.cache_kib = cache_kib
        self.pool.rebuilding = rebuilding
        self.witness = witness
        self.turns = turns
        # Not at once: a process that only opens the store to read (its open commits the
        # store's kind and version, a no-op) leaves the checkpoints to the writer.
        self._checkpoint_due = time.monotonic() + _CHECKPOINT_EVERY_S
        self._checkpoint_lock = threading.Lock()
        self._restart_wal = False
        self._checkpointer = _Checkpointer(self, db_name, lock_timeout)
        self._rebuilding = rebuilding

    @contextmanager
    def get_connection(self, *, commit: bool) -> Iterator[SQLiteConnection]:
        # Every write of this process (eventsourcing's recorder included) passes here, one
        # at a time (the pool's writer lock). In WAL a commit goes to the write-ahead log
        # and leaves the file as it was: only the checkpoint after it (at most once a
        # second) changes the file, and only that change is vouched for, so the next open
        # need not read the file whole; a change made meanwhile by anyone else, even
        # during one of these transactions, is not (the next open checks the file whole).
        with super().get_connection(commit=commit) as conn:
            if not commit or self.witness is None:
                yield conn
                return
            if self._rebuilding:
                # A rollback journal: each commit writes the file (nobody reads it yet).
                before = self.witness.before()
                yield conn
                self.witness.after(before)
                return
            yield conn
            if self._restart_wal:
                # The checkpoints beside the commits seldom catch the log's end, and only one
                # that does lets the next commit start the log over: grown past its bound,
                # one here, between two commits, copies the rest (the last second's pages).
                self._restart_wal = False
                self.checkpoint(conn, "PASSIVE")
            elif time.monotonic() >= self._checkpoint_due:
                self._checkpoint_due = time.monotonic() + _CHECKPOINT_EVERY_S
                # Not on the writer's thread: a checkpoint copies a second's pages into the
                # file and syncs it (a p50 of 79 ms measured under 1,000 touchpoints/s), and
                # every poll waiting behind it was that much later visible. SQLite lets a
                # passive checkpoint run beside commits, which go to the write-ahead log and
                # leave the file alone: the witness still sees only checkpoints change it.
                self._checkpointer.request()

    def checkpoint(
        self, conn: SQLiteConnection | sqlite3.Connection, mode: str
    ) -> tuple[int, int, int]:
        """Copy the write-ahead log into the file (``PASSIVE``, or ``TRUNCATE`` to empty
        it), one checkpoint at a time; what it changed is vouched for when the file was,
        just before, the one last found sound. (busy, frames in the log, frames copied)."""
        with self._checkpoint_lock:
            self._checkpoint_due = time.monotonic() + _CHECKPOINT_EVERY_S
            before = self.witness.before() if self.witness is not None else None
            cur = conn.cursor()
            cur.execute(f"PRAGMA wal_checkpoint({mode})")
            busy, frames, copied = cur.fetchone()
            if self.witness is not None:
                self.witness.after(before)
        return int(busy), int(frames), int(copied)

    def checkpoints_settled(self, timeout_s: float = 10.0) -> bool:
        """Every checkpoint asked for so far has run (see :meth:`_Checkpointer.settle`)."""
        return self._checkpointer.settle(timeout_s)

    def close(self) -> None:
        # Its connection first: the pool's last connection to close checkpoints the rest.
        self._checkpointer.close()
        super().close()

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        if not commit or self.turns is None:
            with super().transaction(commit=commit) as cur:
                yield cur
            return
        with self.turns.turn(), super().transaction(commit=commit) as cur:
            yield cur


class _SQLiteRecorder(SQLiteProcessRecorder):
    """eventsourcing's SQLite process recorder, plus the query tables in the same
    transaction as the tracking record."""

    # The statements ``ddl`` makes that this opener leaves out (a rebuild's processes: the
    # timeline index, which their parent builds after them).
    leave_out: frozenset[str] = frozenset()

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *(s for s in ddl("sqlite") if s not in self.leave_out),
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[Any], **kwargs: Any
    ) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        for statement, params in runs(kwargs.get("view_writes", ())):
            c.executemany(statement, params)
        return returning


class SQLiteBackend(Backend):
    kind = "sqlite"
    tracking_table = "tracking"

    def __init__(
        self,
        path: Path,
        *,
        cache_kib: int | None = None,
        shared_writes: bool = False,
        rebuilding: bool = False,
    ) -> None:
        """``cache_kib``: each connection's page cache (64 MiB unless given).

        ``shared_writes``: other processes write this file too (a rebuild on several
        processes): each write transaction waits its turn (:class:`WriterTurns`, the file
        ``<path>.writer``).

        ``rebuilding`` with ``shared_writes``: the same, for the processes of a rebuild on
        several taking turns; none builds the search index (:meth:`rebuilt`), their
        parent does once they are all done (:meth:`index_search`).

        ``rebuilding``: a new file a rebuild fills, which nobody reads until
        :meth:`compact` has made it whole: a rollback journal (a failed batch still rolls
        back) and nothing waits for the disk; in WAL every commit wrote each changed page
        to the log, read it back and wrote it again at the checkpoint, and synced. The
        journal is a file (the OS's cache), not memory: a Kafka poll can make a
        transaction of thousands of rows, whose pages in memory took the 1M rebuild's peak
        from ~298 to ~310 MiB. A crash leaves the file unusable, but nothing opens it then
        (the next rebuild starts a new file). :meth:`compact` packs it, turns it into the
        WAL store every other one is, and makes it durable before it is swapped in."""
        self.path = path
        self._cache_kib = cache_kib
        self._rebuild_journal = rebuilding
        self.witness = WriteWitness(path)
        self.turns = WriterTurns(Path(f"{path}.writer")) if shared_writes else None
        self.datastore = _Datastore(
            str(path),
            lock_timeout=30,
            cache_kib=cache_kib,
            witness=self.witness,
            turns=self.turns,
            rebuilding=rebuilding,
        )
        self.recorder = _SQLiteRecorder(self.datastore)
        # The processes of a rebuild on several never make the timeline index (see below).
        shared_rebuild = rebuilding and self.turns is not None
        if shared_rebuild:
            self.recorder.leave_out = frozenset(
                {timeline_ddl("sqlite"), *(index_ddl("sqlite", n) for n in READ_SIDE_INDEXES)}
            )
            # (eventsourcing lists them when the recorder is made)
            self.recorder.create_table_statements = (
                self.recorder.construct_create_table_statements()
            )
        self.recorder.create_table()
        self._search_deferred = rebuilding
        if rebuilding:
            # The search index is built once, from the whole table, when the rebuild has
            # written every row (:meth:`rebuilt`): row by row, its trigger tokenised each
            # text into the index's segments and merged them again and again.
            # One statement at a time (``execute`` runs executemany, which refuses a DROP
            # that finds nothing: another process of a rebuild may have dropped them).
            with self.transaction(commit=True) as cur:
                for name in SEARCH_TRIGGERS:
                    cur.execute(f"DROP TRIGGER IF EXISTS {name}")
        # ... and so is the timeline index, once every row is written (or when a read by
        # customer first needs it: :meth:`timeline_wanted`): kept row by row, each insert
        # went down the index at a random customer's place (a rebuild reads the log in
        # offset order, customers interleaved), a fifth of a rebuild's fold and record.
        # Nothing else reads it while nobody reads the store: the batch's de-duplication
        # goes by the event_id index, which stays. When several processes write the file,
        # the one that made it dropped the index (it opened the file alone, before them) and
        # they never make it at their open (nor drop it: one may have built it to read a
        # customer back, and reads by it); whoever needs it first builds it, in its write
        # turn, and all keep it from then on; else their parent builds it after them.
        self._timeline_deferred = rebuilding
        if self._timeline_deferred and not shared_rebuild:
            self.execute([(f"DROP INDEX IF EXISTS {TIMELINE_INDEX}", ())])
        # ... and so are the indexes only the query side reads (schema.READ_SIDE_INDEXES:
        # by a normalised id or identity, by product): no writer reads by them, so they are
        # built at the end only (:meth:`index_search`), never mid-rebuild; several processes
        # leave them to their parent as they leave the timeline index.
        self._read_side_deferred = rebuilding
        if rebuilding and not shared_rebuild:
            with self.transaction(commit=True) as cur:
                for name in READ_SIDE_INDEXES:
                    cur.execute(f"DROP INDEX IF EXISTS {name}")

    def sql(self, statement: str) -> str:
        return statement

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Any]:
        with self.datastore.transaction(commit=commit) as cur:
            yield cur

    def timeline_wanted(self) -> None:
        if not self._timeline_deferred:
            return
        # One sorted pass over the rows so far; from then on it is kept row by row (a
        # rebuild that reads customers back needs it for each: a scan each would be
        # quadratic). ``IF NOT EXISTS``: another opener of the file may have made it.
        # The sort spills to a temporary file, not memory, with a small buffer: with the
        # pool's temp_store=MEMORY and page cache it took ~90 MiB more at 1M touchpoints,
        # at the end of a rebuild whose peak is counted; this way ~4 MiB, and less CPU.
        self._build_indexes([timeline_ddl("sqlite")])
        self._timeline_deferred = False

    def _build_indexes(self, statements: Sequence[str]) -> None:
        """Each index of ``statements`` in one sorted pass over its table (in this process's
        write turn when several write the file)."""
        pool = self.datastore.pool
        cache_kib = pool.cache_kib if isinstance(pool, _TunedPool) else _TunedPool.cache_kib
        turn = self.turns.turn() if self.turns is not None else contextlib.nullcontext()
        with turn, self.datastore.get_connection(commit=True) as conn:
            cur = conn.cursor()
            cur.execute("PRAGMA temp_store=FILE")
            cur.execute("PRAGMA cache_size=-2048")
            try:
                for statement in statements:
                    cur.execute(statement)
            finally:
                cur.execute(f"PRAGMA cache_size=-{cache_kib}")
                cur.execute("PRAGMA temp_store=MEMORY")

    def rebuilt(self) -> None:
        """Every row is written: build the timeline index, the query side's indexes
        (schema.READ_SIDE_INDEXES) and the search index from the tables, in one pass each,
        and keep them with every write from now on (the search triggers back). None in
        one of several processes writing the file: the others may still be writing (their
        parent builds them: :meth:`index_search`)."""
        if self.turns is None:
            self.timeline_wanted()
            self.index_search()

    def index_search(self) -> None:
        # The timeline index first, if nobody needed it before: its sort reads the table
        # once, as the search index's pass does after it.
        self.timeline_wanted()
        if self._read_side_deferred:
            self._build_indexes([index_ddl("sqlite", name) for name in READ_SIDE_INDEXES])
            self._read_side_deferred = False
        if not self._search_deferred:
            return
        with self.transaction(commit=True) as cur:
            # Whatever it holds goes first (another opener of the file may have put the
            # triggers back meanwhile: ``ddl`` makes them). Then, as the trigger does, only
            # rows with a text ('rebuild' would add an entry for every row); then the
            # segments merged into one, as a compacted store's are.
            cur.execute("INSERT INTO touchpoints_fts (touchpoints_fts) VALUES ('delete-all')")
            cur.execute(
                "INSERT INTO touchpoints_fts (rowid, text)"
                " SELECT id, text FROM touchpoints WHERE text IS NOT NULL ORDER BY id"
            )
            cur.execute("INSERT INTO touchpoints_fts (touchpoints_fts) VALUES ('optimize')")
            for statement in SEARCH_DDL:
                cur.execute(statement)
        self._search_deferred = False

    def purge(self) -> bool:
        """The write-ahead log holds the pages as they were before the erasure until a
        checkpoint copies the new ones over the file: checkpoint and truncate it now. A
        reader still on an older snapshot makes it partial (busy): then the next erasure or
        SQLite's own checkpoints finish it."""
        with self.datastore.get_connection(commit=True) as conn:
            busy, _, _ = self.datastore.checkpoint(conn, "TRUNCATE")
        return not busy

    def compact(self) -> None:
        # Its own connection, outside any transaction (VACUUM needs that); the copy it builds
        # goes to a temporary file, not memory (the pool's temp_store=MEMORY would hold the
        # whole store in RAM).
        before = self.witness.before()
        rebuilding = self._rebuild_journal
        if rebuilding:
            # Its connections were made for a rollback journal: new ones, for WAL, after.
            self.datastore.close()
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA temp_store=FILE")
            # synchronous=FULL (this connection's): the packed file is on the disk before
            # it is swapped in, whatever the rebuild's own connections skipped.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("VACUUM")
            # A rebuild's file was filled with a rollback journal: WAL from now on.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        if rebuilding:
            self.datastore = _Datastore(
                str(self.path),
                lock_timeout=30,
                cache_kib=self._cache_kib,
                witness=self.witness,
                turns=self.turns,
            )
            self.recorder = _SQLiteRecorder(self.datastore)
            self._rebuild_journal = False
        self.witness.after(before)

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += Path(str(self.path) + suffix).stat().st_size
        return total

    def close(self) -> None:
        # The last connection to close checkpoints the write-ahead log into the file.
        before = self.witness.before()
        self.datastore.close()
        self.witness.after(before)
        if self.turns is not None:
            self.turns.close()

    @property
    def where(self) -> str:
        return str(self.path)


# ---------------------------------------------------------------------------- PostgreSQL


class PostgresBackend(Backend):
    kind = "postgresql"
    tracking_table = "notification_tracking"

    def __init__(self, url: str, *, pool_size: int = 4, reading: bool = False) -> None:
        """``reading``: a reader that must answer fast (the query service): while the
        database is known away every transaction fails at once (see
        :class:`projections.location.Reachability`), a connection is waited for 2 s, not
        10, and a pool that could not reconnect gives up within seconds, so the first
        request after the database is back makes it connect again at once."""
        # Imported here: SQLite users need neither psycopg nor a server.
        from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder

        class _Recorder(PostgresProcessRecorder):
            def _insert_events(
                self, curs: Any, stored_events: Sequence[Any], **kwargs: Any
            ) -> None:
                super()._insert_events(curs, stored_events, **kwargs)
                for statement, params in runs(kwargs.get("view_writes", ())):
                    # psycopg pipelines an executemany: one round trip, not one per row.
                    curs.executemany(_pg(statement), params)

        class _Datastore(PostgresDatastore):
            # Unqualified names (the query tables) resolve in the store's own schema.
            def after_connect_func(self) -> Callable[[Any], None]:
                base = super().after_connect_func()
                search_path = f'SET search_path TO "{self.schema}", public'

                def after_connect(conn: Any) -> None:
                    base(conn)
                    conn.cursor().execute(search_path)
                    # As SQLite's synchronous=NORMAL: a commit returns before its WAL is
                    # flushed to disk (a server crash may lose the last commits, never
                    # consistency: the positions go with them and the log is read again).
                    # The flush was 8-22 ms of waiting per batch on this machine.
                    conn.cursor().execute("SET synchronous_commit TO off")

                return after_connect

        parts = urlsplit(url)
        schema = schema_of(url) or "public"
        if not schema.replace("_", "").isalnum():
            raise ValueError(f"store schema {schema!r}: use letters, digits and _ only")
        self.url = url
        settings = {
            "dbname": unquote(parts.path.lstrip("/")) or "journey",
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "user": unquote(parts.username or "journey"),
            "password": unquote(parts.password or ""),
        }
        self.reading = reading
        self.datastore = _Datastore(
            **settings,  # type: ignore[arg-type]
            pool_size=pool_size,
            max_overflow=pool_size,
            # How long a caller waits for a connection from the pool.
            connect_timeout=CONNECT_TIMEOUT_S if reading else 10,
            schema=schema,
        )
        pool = self.datastore.pool
        # Each new connection's own timeout (without it a server that accepts and never
        # answers holds the pool's reconnection, and so the pool, for good).
        assert isinstance(pool.kwargs, dict)
        pool.kwargs["connect_timeout"] = CONNECT_TIMEOUT_S if reading else 10
        if reading:
            # The pool's reconnection backs off (1, 2, 4... s) for up to 5 minutes: after a
            # long outage it would try again only a minute or more after the database is
            # back. A reader's pool gives up soon instead; the next request grows it anew.
            pool.reconnect_timeout = 5.0
        self.recorder = _Recorder(self.datastore)
        with connect(url) as conn:  # says so, in one line, when nobody answers
            # Several workers may open a new store at once: one creates its tables (ours and
            # eventsourcing's), the others wait for it and then find them made.
            conn.execute("SELECT pg_advisory_lock(7245001)")
            try:
                if schema != "public":
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                self.recorder.create_table()
                with self.transaction(commit=True) as cur:
                    for statement in ddl("postgresql"):
                        made = statement
                        if "{trgm_schema}" in statement:
                            cur.execute(TRGM_SCHEMA)
                            made = statement.replace("{trgm_schema}", cur.fetchone()[0])
                        cur.execute(made)
            finally:
                conn.execute("SELECT pg_advisory_unlock(7245001)")

    def sql(self, statement: str) -> str:
        return _pg(statement)

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Any]:
        from psycopg.rows import tuple_row

        with self.datastore.transaction(commit=commit) as cur:
            # Rows as tuples, as SQLite gives them: by name, two unnamed expressions (two
            # CASE columns) would collapse into one.
            cur.row_factory = tuple_row  # type: ignore[assignment]
            yield cur

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._read(lambda: super(PostgresBackend, self).query(statement, params))

    def queries(self, statements: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
        return self._read(lambda: super(PostgresBackend, self).queries(statements))

    def _read(self, run: Callable[[], _R]) -> _R:
        """A reader's read: refused at once while the database is known away. Connections
        the pool kept from before an outage are found dead one at a time, as they are
        used; a read is tried again at once on the next (reads change nothing), so the
        first read after the database is back is answered, not refused for each of them."""
        if not self.reading:
            return run()
        with reachability.attempt(self.url):
            for _ in range(self.datastore.pool.max_size):
                try:
                    return run()
                except Exception as exc:
                    if not _connection_lost(exc):
                        raise
            return run()

    def compact(self) -> None:
        # Table by table, named with the store's schema: a bare VACUUM FULL would lock and
        # rewrite every schema of the database, the active store's too.
        with connect(self.url) as conn:
            tables = conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r'",
                (self.datastore.schema,),
            ).fetchall()
            for (table,) in tables:
                conn.execute(f'VACUUM (FULL, ANALYZE) "{self.datastore.schema}"."{table}"')

    def size_bytes(self) -> int:
        rows = self.query(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')"
        )
        return int(rows[0][0])

    def close(self) -> None:
        self.datastore.close()

    @property
    def where(self) -> str:
        return describe(self.url)


def _pg(statement: str) -> str:
    # Our statements hold no literal '?' or '%': placeholders only.
    return statement.replace("%", "%%").replace("?", "%s")
