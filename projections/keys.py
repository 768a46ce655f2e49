"""The customers' data keys: the one piece of state the log cannot rebuild.

Each customer has one AES-256 key at a time (domain/personal.py seals their personal fields
with it before they reach the log). Keys are never on the log; they live here, in one
table that sits *beside* the view stores and is never swapped by a rebuild:

* SQLite: the file ``<store>.customer-keys`` next to the store's base file
  (``journey-views.db.customer-keys``; the API keys of journey/security are ``<store>.keys``);
* PostgreSQL: the table ``journey_customer_keys`` in the store URL's schema (``public``
  unless the URL names one), outside the ``journey_<stamp>`` schemas rebuilds make.

A key is made by whoever first seals something of the customer (``journey emit``, POST
/events, the Python emitter, the intake relay, the promise keeper): insert-if-absent, then
read back what is there, so two workers racing for a new customer agree on the winner's key.
An erasure deletes the keys made up to its log time (a key made after it, for the same id
coming back, is a new one). Deleting is forgetting: SQLite overwrites deleted content
(``secure_delete``) and keeps no write-ahead log here; PostgreSQL leaves dead row versions to
VACUUM (docs/events.md, "What stays the operator's duty"). Backups of this table are the
operator's: a backup holds every key it was taken with.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from domain.personal import CustomerKey, new_key
from projections.facts import at_micros
from projections.location import (
    CONNECT_TIMEOUT_S,
    StoreAddress,
    StoreUnreachable,
    describe,
    is_postgres,
    is_unreachable,
    reachability,
    schema_of,
    with_schema,
)

__all__ = ["CustomerKeys", "KeyRing", "keys_file"]

logger = structlog.get_logger(__name__)

_TABLE = "journey_customer_keys"
_CHUNK = 500


def connect_once(url: str) -> Any:
    """An autocommit connection to the database ``url`` names, or StoreUnreachable."""
    import psycopg

    try:
        return psycopg.connect(
            with_schema(url, None), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnreachable(
            f"the PostgreSQL key table at {describe(url)} did not answer ({first}); start it "
            "or check --store / JOURNEY_STORE"
        ) from None


def keys_file(base: Path) -> Path:
    """Where the keys of the SQLite store ``base`` live."""
    return base.with_name(base.name + ".customer-keys")


@dataclass
class KeyRing:
    """The keys of some customers, as read for one batch: (customer, key id) -> (key, made
    at in microseconds). ``lookup`` is what opening a sealed value asks."""

    keys: dict[tuple[str, str], tuple[bytes, int]] = field(default_factory=dict)
    misses: int = 0  # sealed values asked for whose key is gone (they read "(erased)")

    def lookup(self, customer_id: str, kid: str) -> bytes | None:
        found = self.keys.get((customer_id, kid))
        if found is None:
            self.misses += 1
            return None
        return found[0]

    def drop(self, customer_id: str, until: datetime) -> None:
        """Forget, for the rest of the batch, the customer's keys made up to ``until``: a
        touchpoint after its erasure in the same batch reads as a rebuild will read it."""
        limit = at_micros(until)
        for ref in [r for r, (_, made) in self.keys.items() if r[0] == customer_id]:
            if self.keys[ref][1] <= limit:
                del self.keys[ref]


class CustomerKeys:
    """The key table of the store whose base (not rebuilt) address is ``base``."""

    def __init__(self, base: StoreAddress) -> None:
        self._lock = threading.Lock()
        self.postgres = is_postgres(base)
        if self.postgres:
            assert isinstance(base, str)
            schema = schema_of(base) or "public"
            if not schema.replace("_", "").isalnum():
                raise ValueError(f"store schema {schema!r}: use letters, digits and _ only")
            self.table = f'"{schema}".{_TABLE}'
            self.where = describe(base) + " (table journey_customer_keys)"
            self._url = base
            self._pg: Any = None
            with self._lock, self._pg_conn() as conn:
                # Several workers may start at once: one creates, the others wait for it.
                conn.execute("SELECT pg_advisory_lock(7245002)")
                try:
                    if schema != "public":
                        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {self.table} (customer_id TEXT PRIMARY KEY,"
                        " kid TEXT NOT NULL UNIQUE, key BYTEA NOT NULL,"
                        " created_at BIGINT NOT NULL)"
                    )
                finally:
                    conn.execute("SELECT pg_advisory_unlock(7245002)")
        else:
            path = keys_file(Path(base))
            path.parent.mkdir(parents=True, exist_ok=True)
            self.table = _TABLE
            self.where = str(path)
            self.path = path
            # Rollback journal, not WAL: a deleted key must not live on in a log file that a
            # reader keeps from being checkpointed. secure_delete zeroes what is deleted.
            self._db = sqlite3.connect(
                path, timeout=30, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute("PRAGMA journal_mode = DELETE")
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (customer_id TEXT PRIMARY KEY,"
                " kid TEXT NOT NULL UNIQUE, key BLOB NOT NULL, created_at INTEGER NOT NULL)"
            )

    # ------------------------------------------------------------------ connections

    @contextmanager
    def _pg_conn(self) -> Iterator[Any]:
        """The one PostgreSQL connection (the caller holds the lock): opened when first
        needed, and again after a failure (the database restarted)."""
        import psycopg

        if self._pg is None or self._pg.closed:
            self._pg = connect_once(self._url)
        try:
            yield self._pg
        except psycopg.OperationalError:
            self._pg.close()
            self._pg = None
            raise

    def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            if not self.postgres:
                return self._db.execute(sql, params).fetchall()
            import psycopg

            # While the database is known away: refused at once (no connect timeout).
            with reachability.attempt(self._url):
                kept = self._pg is not None and not self._pg.closed
                try:
                    with self._pg_conn() as conn:
                        return list(conn.execute(sql.replace("?", "%s"), params).fetchall())
                except psycopg.OperationalError as exc:
                    # The connection kept from before an outage died: a read is tried once
                    # more on a new one (the first read after the database is back works).
                    if not (kept and is_unreachable(exc)):
                        raise
                with self._pg_conn() as conn:
                    return list(conn.execute(sql.replace("?", "%s"), params).fetchall())

    def _write(self, statements: list[tuple[str, list[Any]]]) -> int:
        changed = 0
        if self.postgres:
            with self._lock, self._pg_conn() as conn, conn.transaction():
                for sql, params in statements:
                    changed += conn.execute(sql.replace("?", "%s"), params).rowcount
            return changed
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    changed += self._db.execute(sql, params).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk does): a ROLLBACK then
                # would raise and hide the real cause; a failed COMMIT must not leave the
                # transaction open for the next BEGIN to trip on.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return changed

    def close(self) -> None:
        with self._lock:
            if not self.postgres:
                self._db.close()
            elif self._pg is not None:
                self._pg.close()
                self._pg = None

    # ------------------------------------------------------------------ keys

    def _read(self, customer_ids: Iterable[str]) -> list[tuple[str, str, bytes, int]]:
        ids = sorted(set(customer_ids))
        out: list[tuple[str, str, bytes, int]] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            out.extend(
                (str(cid), str(kid), bytes(key), int(made))
                for cid, kid, key, made in self._rows(
                    f"SELECT customer_id, kid, key, created_at FROM {self.table}"
                    f" WHERE customer_id IN ({marks})",
                    chunk,
                )
            )
        return out

    def for_reading(self, customer_ids: Iterable[str]) -> KeyRing:
        """The keys there are of ``customer_ids`` (none is made)."""
        return KeyRing({(c, k): (key, made) for c, k, key, made in self._read(customer_ids)})

    def for_writing(self, customer_ids: Iterable[str]) -> dict[str, CustomerKey]:
        """Each customer's key, made (atomically, once) for those who have none yet."""
        wanted = set(customer_ids)
        found = {c: CustomerKey(c, k, key) for c, k, key, _ in self._read(wanted)}
        missing = wanted - set(found)
        if missing:
            made = at_micros(datetime.now(UTC))
            fresh = [new_key(cid) for cid in sorted(missing)]
            # Another writer may insert the same customer's key meanwhile: the first stays,
            # and everyone reads back that one.
            self._write(
                [
                    (
                        f"INSERT INTO {self.table} (customer_id, kid, key, created_at)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (customer_id) DO NOTHING",
                        [k.customer_id, k.kid, k.key, made],
                    )
                    for k in fresh
                ]
            )
            found.update({c: CustomerKey(c, k, key) for c, k, key, _ in self._read(missing)})
            logger.info("customer keys made", count=len(missing))
        return found

    def forget(self, customer_ids: Iterable[str], until: datetime) -> int:
        """Delete the keys of ``customer_ids`` made up to ``until``; how many there were."""
        ids = sorted(set(customer_ids))
        if not ids:
            return 0
        limit = at_micros(until)
        gone = self._write(
            [
                (f"DELETE FROM {self.table} WHERE customer_id = ? AND created_at <= ?", [c, limit])
                for c in ids
            ]
        )
        if gone:
            logger.info("customer keys deleted", customers=ids, count=gone)
        return gone

    def count(self) -> int:
        return int(self._rows(f"SELECT count(*) FROM {self.table}", [])[0][0])
