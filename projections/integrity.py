"""Is this file a sound journey store? Checked at open and, cheaply, while serving.

A store is disposable (the log is the truth), so the remedy for every problem found here is
the same: ``journey rebuild all`` builds a new one from the log. What matters is to say so
at once, instead of answering health checks with "ok" and reads with 500:

* a file that is not SQLite at all, or SQLite of another application (foreign);
* a journey store of another schema version (outdated);
* a store damaged inside (``PRAGMA quick_check`` finds broken pages or indexes).

``quick_check`` reads the whole file, O(size): 0.5-1.3 s for a store of 1M touchpoints,
where the heaviest customer's first view takes 30-46 ms. So it runs at open only when the
file is not the one last found sound: a marker beside the store (``<store>.checked``)
records the file's identity (device, inode, size, modification and change times) after a
check passed, and a writer moves it forward across its own checkpoints, vacuums and close
(:class:`WriteWitness`), so that readers of a store that only journey wrote open it without
reading it whole. A commit (WAL) goes to the write-ahead log and leaves the file as it was;
the writer copies the log into the file itself, at most once a second (SQLite's automatic
checkpoint is off: it ran inside a commit, where a change of the file could not be told
from another program's). Anything else that writes the file — a copy, a truncation, an
overwrite, a tool that restores the modification time (the change time still moves), a
write made while journey's writer is inside a write transaction — makes the next open
check it whole. What a marker cannot see is damage that leaves the file's identity as it
was (a bad sector), nor a write by another program in the milliseconds of one of the
writer's own checkpoints. Both are found by the read that meets the damage ("database disk
image is malformed" marks the store corrupt at once) and, while serving, by the full check
that runs in the background at an interval (see :class:`IntegrityWatch`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from eventsourcing.persistence import PersistenceError

from domain.errors import JourneyError
from projections.location import describe

__all__ = [
    "REMEDY",
    "SCHEMA_VERSION",
    "STORE_KIND",
    "ForeignStore",
    "Identity",
    "IntegrityWatch",
    "OutdatedStore",
    "SharedIdentity",
    "StoreCorrupt",
    "StoreError",
    "WriteWitness",
    "check_if_changed",
    "file_identity",
    "inspect_postgres_store",
    "inspect_store",
    "is_corruption",
    "quick_check",
]

STORE_KIND = "journey-views"
# 3: partition_clocks and stopped_clocks (the event-time keeper); a store without them
# would decide by an empty clock until new data arrives, so it is rebuilt instead.
# 4: the said table (what was written, searchable) and journeys folded in event-time order.
# 5: snapshots and one compact touchpoints row per touchpoint (16-byte ids and hashes,
# integer times, dictionary-deflated facts) instead of the aggregates' event copy; query
# tables written as diffs (owned_products keyed by position).
# 6: identities say whether they are verified; a link is one row, of the customer whose
# stream made it (deleted by IdentityUnlinked and erasure).
# 7: touchpoints.logged_at, when the log received each touchpoint (time travel: known-at).
# 8: smaller: facts stored without the envelope head their row holds as columns (another
# dictionary), a timeline index without event_id, the small query tables WITHOUT ROWID,
# identities keyed (customer_id, kind, value), no id column on PostgreSQL.
# 9: smaller on PostgreSQL: indexes built full (fillfactor 100), touchpoints' seq an
# INTEGER and partition a SMALLINT, the timeline index (customer_id, at, generation, seq),
# event_id kept unique by a hash index (an exclusion constraint);
# on both, a touchpoint's summary deflated (its words and the customer's id as dictionary),
# and its customer's id the last words of its fact's dictionary; its type a number; its
# content hash read from its fact (stored only once the fact is erased); the fact's
# dictionary with the catalogue's field names; customers without first_seen (never read);
# identities.verified a SMALLINT.
# On both, snapshots of a lighter journey: its parts (cases, promises, replies...) are slotted
# dataclasses, whose pickles a journey of 8 cannot load nor 8's be loaded by it.
# 10: the same layout as 9 at this version's commit; 9 was also the number of two earlier
# layouts main held for a while (the facts' dictionary without the field names, customers
# with first_seen): a store built then is refused, not read with the wrong dictionary.
# 11: clocks and stopped_clocks carry due_us, the keeper's deadline in microseconds since
# the epoch, with a partial index of the rows it still has to decide (stopped_clocks without
# hours, which only the keeper's old prefilter read).
# 12: facts compressed with zstd against a prepared dictionary, the customer's id as a marker
# byte (projections/facts.py), where 11 deflated them against the words and the id: a row of
# 11 cannot be read as one of 12.
SCHEMA_VERSION = "12"

REMEDY = "run `journey rebuild all` to build a new store from the log"


class StoreError(JourneyError):
    """The projection store cannot be used as it is."""


class ForeignStore(StoreError):
    """The file is not a journey store (not SQLite, or another application's database)."""


class OutdatedStore(StoreError):
    """A journey store written with another schema version."""


class StoreCorrupt(StoreError):
    """The store file is damaged."""


def is_corruption(exc: BaseException) -> bool:
    """True for the errors SQLite raises on a damaged or foreign file, also when wrapped by
    eventsourcing's persistence errors. Decided by the exception's type first: a text that
    merely says "malformed" (a poison message's own error) is not a damaged store."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StoreCorrupt):
            return True
        if isinstance(current, sqlite3.DatabaseError | PersistenceError) and not isinstance(
            current, sqlite3.IntegrityError | sqlite3.OperationalError
        ):
            text = str(current).lower()
            if any(marker in text for marker in _CORRUPTION_MARKERS):
                return True
        current = current.__cause__ or current.__context__
    return False


_CORRUPTION_MARKERS = (
    "malformed",
    "file is not a database",
    "file is encrypted",
    "database corrupt",
)


def quick_check(path: Path) -> str | None:
    """None when SQLite finds the file sound, else what it found (first problems)."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = con.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        con.close()
    found = [" ".join(str(r[0]).split()) for r in rows]  # one line: it goes into messages
    return None if found == ["ok"] else "; ".join(found)


# (device, inode, size, mtime_ns, ctime_ns): any write by anyone moves the change time,
# which no tool can set back, so an identity seen twice means the bytes were not written.
Identity = tuple[int, int, int, int, int]


def file_identity(path: Path) -> Identity | None:
    """The file's identity as the marker records it; None when there is no file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".checked")


def _read_marker(path: Path) -> Identity | None:
    try:
        found = json.loads(_marker(path).read_text())["identity"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(found, list) and len(found) == 5):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in found):
        return None
    return (found[0], found[1], found[2], found[3], found[4])


def _write_marker(path: Path, identity: Identity, how: str) -> None:
    """Record ``identity`` as sound. Best effort: a reader without the right to write
    beside the store checks it whole at every open, as it always did."""
    marker = _marker(path)
    tmp = marker.with_name(f"{marker.name}.tmp{os.getpid()}.{threading.get_ident()}")
    body = {
        "identity": list(identity),
        "how": how,  # "quick_check", or "written" (by a writer that had found it sound)
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "journey: this store file was found sound as it is; delete to check again",
    }
    try:
        tmp.write_text(json.dumps(body) + "\n")
        os.replace(tmp, marker)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_if_changed(path: Path) -> str | None:
    """``quick_check`` of ``path`` unless its marker says the file is the one found sound
    last (then None at the cost of two stats and a small read); a pass is recorded."""
    before = file_identity(path)
    if before is not None and _read_marker(path) == before:
        return None
    problem = quick_check(path)
    # Recorded only when nothing wrote the file while it was read.
    if problem is None and before is not None and file_identity(path) == before:
        _write_marker(path, before, "quick_check")
    return problem


class SharedIdentity(Protocol):
    """Where several processes writing one file in turns pass the identity the last of them
    vouched for (the writers' turns file: :class:`projections.backends.WriterTurns`)."""

    def noted(self) -> Identity | None: ...

    def note(self, identity: Identity) -> None: ...


class WriteWitness:
    """A writer's account of its own writes to a store file it found sound: after each of
    its checkpoints (and its vacuum and close: what changes the file; a commit in WAL does
    not), the file's new identity is recorded as sound — but only when the identity before
    was the one last recorded, so a change by anyone else between two of them, a commit's
    transaction included, is never vouched for (the next open checks the file whole).
    Thread-safe; two stats per checkpoint.

    :meth:`hold`: a file nobody opens until the writer is done with it (a rebuild's new
    store, whose every commit changes the file): the identity each write vouches for is
    kept in memory (and passed between the processes of a rebuild through their turns
    file) instead of a new marker at every commit — a file written, synced and renamed,
    ~0.15 ms of CPU and up to a millisecond or two of a loaded disk's time each, thousands
    of times in a 1M rebuild. :meth:`release` writes the marker once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._sound = _read_marker(path)
        self._held = False
        self._shared: SharedIdentity | None = None
        self._unwritten = False  # held: vouched for something the marker does not say

    def hold(self, shared: SharedIdentity | None = None) -> None:
        """From now on keep what the writes vouch for (see the class), also in ``shared``
        when other processes write the file in turns."""
        with self._lock:
            self._held = True
            self._shared = shared

    def release(self) -> None:
        """Write the marker for what the writes vouched for last (this process's or, in
        ``shared``, another's), if the file is still that; and a marker at every write
        from now on."""
        with self._lock:
            if self._held and self._unwritten:
                now = file_identity(self.path)
                shared = self._shared.noted() if self._shared is not None else None
                if now is not None and now in (self._sound, shared):
                    _write_marker(self.path, now, "written")
                    self._sound = now
            self._held, self._shared, self._unwritten = False, None, False

    def vouch(self) -> None:
        """The file as it is now is sound: one this process has just created."""
        now = file_identity(self.path)
        if now is not None:
            with self._lock:
                _write_marker(self.path, now, "written")
                self._sound = now
                if self._shared is not None:
                    self._shared.note(now)

    def before(self) -> Identity | None:
        return file_identity(self.path)

    def after(self, before: Identity | None) -> None:
        """Called after a write that began with the file at ``before``."""
        if before is None:
            return
        with self._lock:
            if before != self._sound:
                # Someone else may have checked the file as it is since (a reader's open),
                # or, held, written it in its turn and vouched for it.
                shared = self._shared.noted() if self._shared is not None else None
                self._sound = before if shared == before else _read_marker(self.path)
                if before != self._sound:
                    return
            now = file_identity(self.path)
            if now is not None and now != before:
                self._sound = now
                if not self._held:
                    _write_marker(self.path, now, "written")
                    return
                self._unwritten = True
                if self._shared is not None:
                    self._shared.note(now)


def inspect_store(path: Path, *, check_pages: bool = True) -> None:
    """Raise a :class:`StoreError` saying what is wrong with ``path`` and what to do.

    A missing or empty file passes (it becomes a new store); so does a SQLite file without
    tables (a store whose creation was interrupted).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    # Never open the file ourselves (open() and close()): closing any descriptor of a file
    # drops every POSIX lock this process holds on it, SQLite's included, and then another
    # process may take the store's write-ahead log for unused and delete it under a running
    # writer (its later commits would go to a deleted file). SQLite reads the header itself,
    # and knows to keep its locks across its own connections.
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            tables = {
                str(r[0])
                for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            meta: dict[str, str] = {}
            if "journey_store_meta" in tables:
                meta = {
                    str(k): str(v)
                    for k, v in con.execute("SELECT key, value FROM journey_store_meta")
                }
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise ForeignStore(
                f"store {path} is not a SQLite database (is --store pointing at the wrong "
                f"file?); point it at a journey store or a new path, or {REMEDY}"
            ) from None
        raise StoreCorrupt(f"store {path} is damaged ({exc}); {REMEDY}") from None
    if not tables:
        return
    if "journey_store_meta" not in tables:
        if "processed_events" in tables and "tracking" in tables:
            raise OutdatedStore(
                f"store {path} was written by an older version of journey; {REMEDY}"
            )
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ForeignStore(
            f"store {path} is not a journey store (it holds the tables {shown}); point "
            f"--store at a journey store or a new path, or {REMEDY}"
        )
    if meta.get("kind") and meta.get("kind") != STORE_KIND:
        raise ForeignStore(f"store {path} is a {meta['kind']!r} store, not {STORE_KIND!r}")
    version = meta.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise OutdatedStore(
            f"store {path} has schema version {version}, this journey writes "
            f"{SCHEMA_VERSION}; {REMEDY}"
        )
    if check_pages:
        problem = check_if_changed(path)
        if problem is not None:
            raise StoreCorrupt(f"store {path} is damaged ({problem}); {REMEDY}")


def inspect_postgres_store(url: str) -> None:
    """Raise a :class:`StoreError` when the PostgreSQL schema ``url`` names holds a store of
    another kind or schema version (a new or empty schema passes). Called before any table
    is created: an old layout must be refused, not half-migrated."""
    from projections.location import connect, schema_of

    schema = schema_of(url) or "public"
    with connect(url) as conn:
        found = conn.execute(
            "SELECT to_regclass(%s)", [f'"{schema}".journey_store_meta']
        ).fetchone()
        if found is None or found[0] is None:
            return
        meta = {
            str(k): str(v)
            for k, v in conn.execute(f'SELECT key, value FROM "{schema}".journey_store_meta')
        }
    where = describe(url)
    if meta.get("kind") and meta["kind"] != STORE_KIND:
        raise ForeignStore(
            f"store {where} is a {meta['kind']!r} store, not {STORE_KIND!r}; point --store "
            f"at a journey store or a new database, or {REMEDY}"
        )
    version = meta.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise OutdatedStore(
            f"store {where} has schema version {version}, this journey writes "
            f"{SCHEMA_VERSION}; {REMEDY}"
        )


class IntegrityWatch:
    """What is known of a store's integrity: the last check's finding, and corruption seen
    by any read or write in between. Thread-safe; cheap to ask (no I/O)."""

    def __init__(self, path: Path | str, interval_s: float = 600.0) -> None:
        self.path = path
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._checked_at = time.monotonic()  # the store was checked when it was opened

    @property
    def problem(self) -> str | None:
        with self._lock:
            return self._problem

    def saw(self, exc: BaseException) -> bool:
        """Record ``exc`` if it says the file is damaged; True when it did."""
        if not is_corruption(exc):
            return False
        with self._lock:
            self._problem = f"store {describe(self.path)} is damaged ({exc}); {REMEDY}"
        return True

    def check_now(self) -> str | None:
        # PostgreSQL checks its own pages (checksums, WAL); a damaged read still marks it.
        # The whole file, whatever its marker says: this is what finds damage that left the
        # file's identity as it was; a pass renews the marker.
        found = None
        if isinstance(self.path, Path):
            before = file_identity(self.path)
            found = quick_check(self.path)
            if found is None and before is not None and file_identity(self.path) == before:
                _write_marker(self.path, before, "quick_check")
        with self._lock:
            self._checked_at = time.monotonic()
            where = describe(self.path)
            self._problem = (
                None if found is None else f"store {where} is damaged ({found}); {REMEDY}"
            )
            return self._problem

    def check_if_due(self) -> str | None:
        with self._lock:
            due = time.monotonic() - self._checked_at >= self.interval_s
        if due:
            with contextlib.suppress(Exception):
                self.check_now()
        return self.problem
