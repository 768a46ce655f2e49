"""The embedded log: Kafka's semantics on one SQLite file, for laptops and tests.

Several processes may share the file at once (one emits while another consumes): every
process, and every thread in it, opens its own connections; writes take SQLite's write lock
up front (``BEGIN IMMEDIATE``) so concurrent writers queue on ``busy_timeout`` instead of
failing half-way; the file runs in WAL mode so readers never block the writer.

What matches Kafka, so the same code and the same contract suite run on both logs:

* a key lands in the partition Kafka's default partitioner picks (murmur2), so a customer's
  events sit in the same partition number on both logs; a message that names its partition
  goes there (one the topic does not have fails the batch, nothing written);
* offsets start at 0 per partition and grow by one; a produced batch is one transaction,
  all of it visible or none;
* committed offsets are per consumer group and mean "the next offset to read";
* a group's partitions are divided among its live members, and a member that stops polling
  for ``session_timeout_s`` is dropped so the others take over its partitions.

Group protocol. Each member keeps a row in ``group_members`` with a heartbeat (written when
it polls, at most every ``session_timeout_s / 10``). Every member computes the same target
assignment from the sorted ids of the live members (round-robin per topic), then *claims*
its target partitions in ``group_owners``, whose primary key admits one owner per partition
and group. A member gives up a partition only inside ``poll``, that is after the caller has
finished with the previous batch, and the new owner can claim it only then: so, unlike a
purely computed assignment, two members of one group never read a partition at the same
time, even while the membership changes.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from kafka.partitioner.default import murmur2

from consumers.log import (
    CommitRefused,
    Headers,
    Log,
    LogConsumer,
    LogError,
    LogUnavailable,
    Message,
    OnAssign,
    OutgoingMessage,
    Position,
    TopicPartition,
    check_partitions,
)

__all__ = ["EmbeddedLog"]

logger = structlog.get_logger(__name__)

# Long enough for a writer to wait behind a burst of large batches from other processes.
_BUSY_TIMEOUT_MS = 30_000
# Latency of a waiting consumer is bounded by this sleep; an idle check costs one indexed
# SELECT per subscribed topic, so a few milliseconds is cheap.
_POLL_INTERVAL_S = 0.002
# How often a polling member looks at the membership again. Reading it is cheap; this bounds
# how soon partitions move when members come and go.
_SYNC_INTERVAL_S = 0.05
# Kafka's rule for legal topic names, so a name that works here also works on Kafka.
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_TOPIC_MAX_LEN = 249

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL CHECK (partitions > 0)
);
-- next_offset is the high-water mark, kept apart from the messages so reading it is one row.
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL REFERENCES topics(name),
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    key BLOB,
    value BLOB,
    headers TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    topics TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_owners (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
"""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@functools.lru_cache(maxsize=65_536)
def _partition_for_key(key: bytes, num_partitions: int) -> int:
    # Exactly kafka.partitioner.DefaultPartitioner (and the Java client's): customers repeat,
    # and the pure-Python murmur2 is the costliest step of a produce, hence the cache.
    return (int(murmur2(key)) & 0x7FFFFFFF) % num_partitions


def _encode_headers(headers: Headers) -> str:
    return json.dumps([[name, base64.b64encode(value).decode("ascii")] for name, value in headers])


def _decode_headers(text: str) -> Headers:
    return tuple((str(name), base64.b64decode(value)) for name, value in json.loads(text))


def _check_topic_name(topic: str) -> None:
    if (
        not topic
        or len(topic) > _TOPIC_MAX_LEN
        or topic in {".", ".."}
        or not set(topic) <= _TOPIC_CHARS
    ):
        raise LogError(
            f"invalid topic name {topic!r}: use 1-{_TOPIC_MAX_LEN} characters "
            "from a-z, A-Z, 0-9, '.', '_' and '-' (Kafka's rule)"
        )


class EmbeddedLog:
    """The :class:`~consumers.log.Log` port on one SQLite file (see the module docstring).

    >>> log = EmbeddedLog("/tmp/journey.db")  # doctest: +SKIP
    >>> log.ensure_topics(["journey.touchpoints"], partitions=6)  # doctest: +SKIP
    """

    def __init__(self, path: str, *, session_timeout_s: float = 10.0) -> None:
        if session_timeout_s <= 0:
            raise LogError(f"session_timeout_s must be positive, got {session_timeout_s}")
        self.path = path
        self.url = f"embedded://{path}"
        self.session_timeout_ms = int(session_timeout_s * 1000)
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._partition_counts: dict[str, int] = {}
        self._consumers: weakref.WeakSet[EmbeddedConsumer] = weakref.WeakSet()
        self._create_schema()

    def reopened(self) -> EmbeddedLog:
        """The same file, opened again: what a forked process uses (it opens connections of
        its own anyway; this one's consumers belong to the parent)."""
        return EmbeddedLog(self.path, session_timeout_s=self.session_timeout_ms / 1000)

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE for writes
                check_same_thread=False,  # only so close() may close it from another thread
            )
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # deleted records (the intake's, once relayed) are zeroed, not left in free pages
            conn.execute("PRAGMA secure_delete = ON")
            # In WAL mode, NORMAL loses no committed data when the process dies, only on power
            # loss: the same promise Kafka makes with its default (no fsync per message).
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise LogError(f"cannot open the embedded log {self.path!r}: {exc}") from None
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection; a forked child opens its own instead of the parent's."""
        if self._closed:
            raise LogError(f"the embedded log {self.path!r} is closed")
        pid = os.getpid()
        cached: tuple[int, sqlite3.Connection] | None = getattr(self._local, "conn", None)
        if cached is not None and cached[0] == pid:
            return cached[1]
        conn = self._connect()
        with self._lock:
            self._connections.append((pid, conn))
        self._local.conn = (pid, conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from the start so it cannot fail
        half-way on a lock upgrade; rolled back entirely on any error."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            # Transient (another writer, a full disk): the caller retries.
            raise LogUnavailable(
                f"embedded log {self.path!r} is busy or unwritable: {exc}"
            ) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise LogUnavailable(f"embedded log {self.path!r}: write failed: {exc}") from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one snapshot."""
        conn = self._conn()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LogUnavailable(f"embedded log {self.path!r}: read failed: {exc}") from None

    def _create_schema(self) -> None:
        with self._write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # -- topics ------------------------------------------------------------------------

    def ensure_topics(
        self, topics: Sequence[str], partitions: int, *, retention_ms: int | None = None
    ) -> None:
        """Create the topics that do not exist yet; existing ones keep their partitions.
        The embedded log keeps every record until :meth:`delete_records` (``retention_ms``
        is accepted for the port's sake)."""
        if partitions < 1:
            raise LogError(f"a topic needs at least one partition, got {partitions}")
        for topic in topics:
            _check_topic_name(topic)
        created: list[str] = []
        with self._write() as conn:
            for topic in topics:
                cur = conn.execute(
                    "INSERT INTO topics (name, partitions) VALUES (?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (topic, partitions),
                )
                if cur.rowcount:
                    conn.executemany(
                        "INSERT INTO partitions (topic, partition, next_offset) VALUES (?, ?, 0)",
                        [(topic, p) for p in range(partitions)],
                    )
                    created.append(topic)
        for topic in created:
            logger.info("topic created", topic=topic, partitions=partitions, log=self.url)

    def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        """Delete the records below ``before[partition]``; what they held is zeroed in the
        file (secure_delete) and the write-ahead log is checkpointed after."""
        self._partition_count(topic)
        with self._write() as conn:
            for partition, offset in before.items():
                conn.execute(
                    'DELETE FROM messages WHERE topic = ? AND partition = ? AND "offset" < ?',
                    (topic, partition, offset),
                )
        with contextlib.suppress(sqlite3.Error):  # a reader holds the log: next time
            self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _partition_count(self, topic: str, conn: sqlite3.Connection | None = None) -> int:
        # A topic's partition count never changes, so it is safe to remember.
        count = self._partition_counts.get(topic)
        if count is not None:
            return count
        row = (
            (conn or self._conn())
            .execute("SELECT partitions FROM topics WHERE name = ?", (topic,))
            .fetchone()
        )
        if row is None:
            raise LogError(
                f"topic {topic!r} does not exist on {self.url}: create it first "
                "(ensure_topics, or emit once through the Emitter)"
            )
        count = int(row[0])
        self._partition_counts[topic] = count
        return count

    def _known_partition_count(self, topic: str) -> int | None:
        try:
            return self._partition_count(topic)
        except LogError:
            if self._closed:
                raise
            return None

    def partitions(self, topic: str) -> list[int]:
        return list(range(self._partition_count(topic)))

    def partition_for(self, topic: str, key: bytes) -> int:
        return _partition_for_key(bytes(key), self._partition_count(topic))

    # -- producing ---------------------------------------------------------------------

    def produce(self, topic: str, messages: Sequence[OutgoingMessage]) -> list[Position]:
        """Append the batch in one transaction; positions come back in input order."""
        if not messages:
            return []
        default_ts = _now_ms()
        with self._write() as conn:
            count = self._partition_count(topic, conn)
            next_offsets = dict(
                conn.execute(
                    "SELECT partition, next_offset FROM partitions WHERE topic = ?", (topic,)
                ).fetchall()
            )
            positions: list[Position] = []
            rows: list[tuple[str, int, int, bytes, bytes, str, int]] = []
            check_partitions(topic, messages, count)
            for msg in messages:
                partition = (
                    _partition_for_key(bytes(msg.key), count)
                    if msg.partition is None
                    else msg.partition
                )
                offset = next_offsets[partition]
                next_offsets[partition] = offset + 1
                ts = default_ts if msg.timestamp_ms is None else msg.timestamp_ms
                rows.append(
                    (
                        topic,
                        partition,
                        offset,
                        msg.key,
                        msg.value,
                        _encode_headers(msg.headers),
                        ts,
                    )
                )
                positions.append(Position(topic, partition, offset))
            conn.executemany(
                'INSERT INTO messages (topic, partition, "offset", key, value, headers, '
                "timestamp_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "UPDATE partitions SET next_offset = ? WHERE topic = ? AND partition = ?",
                [(off, topic, p) for p, off in next_offsets.items()],
            )
        return positions

    def high_watermarks(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next message will get (0 for empty partitions)."""
        self._partition_count(topic)
        return self._watermarks(self._conn(), topic)

    @staticmethod
    def _watermarks(conn: sqlite3.Connection, topic: str) -> dict[int, int]:
        rows = conn.execute(
            "SELECT partition, next_offset FROM partitions WHERE topic = ?", (topic,)
        ).fetchall()
        return {int(p): int(off) for p, off in rows}

    # -- consuming ---------------------------------------------------------------------

    def consumer(
        self,
        group_id: str | None,
        topics: Sequence[str],
        *,
        on_assign: OnAssign | None = None,
        partitions: Collection[int] | None = None,
    ) -> EmbeddedConsumer:
        """A member of ``group_id``; it joins the group on its first ``poll``, as in Kafka.
        With ``group_id=None`` a reader of every partition (only ``partitions``, when
        given) that joins nothing."""
        if group_id is not None and not group_id:
            raise LogError("a consumer needs a non-empty group_id (or None: no group)")
        if not topics:
            raise LogError("a consumer needs at least one topic to subscribe to")
        if partitions is not None and group_id is not None:
            raise LogError(
                "a group member takes the partitions its group gives it: "
                "pass partitions only with group_id=None"
            )
        for topic in topics:
            _check_topic_name(topic)
        consumer = EmbeddedConsumer(
            self, group_id, sorted(set(topics)), on_assign, partitions=partitions
        )
        self._consumers.add(consumer)
        return consumer

    def close(self) -> None:
        """Close the consumers still open (they leave their groups) and every connection."""
        if self._closed:
            return
        for consumer in list(self._consumers):
            consumer.close()
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        pid = os.getpid()
        for owner, conn in connections:
            # A connection inherited through fork belongs to the parent: leave it alone.
            if owner == pid:
                conn.close()


@dataclass(frozen=True)
class _Member:
    member_id: str
    topics: frozenset[str]


class EmbeddedConsumer:
    """A consumer-group member on the embedded log. Like Kafka's, not safe to share between
    threads; never commits on its own."""

    def __init__(
        self,
        log: EmbeddedLog,
        group_id: str | None,
        topics: list[str],
        on_assign: OnAssign | None,
        *,
        partitions: Collection[int] | None = None,
    ) -> None:
        self._log = log
        self.group_id = group_id
        self.topics = topics
        # A plain reader's share of the partitions (None: all of them).
        self._only = None if partitions is None else frozenset(partitions)
        self.member_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._on_assign = on_assign
        self._owned: frozenset[TopicPartition] = frozenset()
        # Owned partitions whose start offset is not known yet (on_assign not run or failed).
        self._pending: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._joined = False
        self._closed = False
        self._last_heartbeat = 0.0
        self._last_sync = 0.0
        self._rotation = 0
        self._log_ctx = logger.bind(group_id=group_id, member_id=self.member_id)

    # -- membership --------------------------------------------------------------------

    def _heartbeat(self, conn: sqlite3.Connection, now_ms: int) -> None:
        expired_before = now_ms - self._log.session_timeout_ms
        dropped = conn.execute(
            "DELETE FROM group_members WHERE group_id = ? AND heartbeat_ms < ? "
            "AND member_id != ? RETURNING member_id",
            (self.group_id, expired_before, self.member_id),
        ).fetchall()
        conn.execute(
            "DELETE FROM group_owners WHERE group_id = ? AND member_id NOT IN "
            "(SELECT member_id FROM group_members WHERE group_id = ?) AND member_id != ?",
            (self.group_id, self.group_id, self.member_id),
        )
        updated = conn.execute(
            "UPDATE group_members SET heartbeat_ms = ? WHERE group_id = ? AND member_id = ?",
            (now_ms, self.group_id, self.member_id),
        ).rowcount
        if not updated:
            # First poll, or we were dropped for silence and come back: (re)join.
            conn.execute(
                "INSERT INTO group_members (group_id, member_id, topics, heartbeat_ms) "
                "VALUES (?, ?, ?, ?)",
                (self.group_id, self.member_id, json.dumps(self.topics), now_ms),
            )
            self._log_ctx.info("group member joined", topics=self.topics, rejoin=self._joined)
            self._joined = True
        for (member_id,) in dropped:
            self._log_ctx.info("group member dropped: no heartbeat", dropped_member=member_id)

    def _live_members(self, conn: sqlite3.Connection, now_ms: int) -> list[_Member]:
        rows = conn.execute(
            "SELECT member_id, topics FROM group_members WHERE group_id = ? AND heartbeat_ms >= ?",
            (self.group_id, now_ms - self._log.session_timeout_ms),
        ).fetchall()
        return [_Member(str(mid), frozenset(json.loads(topics))) for mid, topics in rows]

    def _target(self, members: list[_Member]) -> frozenset[TopicPartition]:
        """Round-robin per topic over the sorted ids of the members subscribed to it: every
        member computes the same division from the same rows."""
        target: set[TopicPartition] = set()
        for topic in self.topics:
            count = self._log._known_partition_count(topic)
            if count is None:
                continue  # not created yet: picked up once it exists, as Kafka does
            subscribed = sorted(m.member_id for m in members if topic in m.topics)
            if self.member_id not in subscribed:
                subscribed = sorted([*subscribed, self.member_id])
            me = subscribed.index(self.member_id)
            target.update(
                TopicPartition(topic, p) for p in range(count) if p % len(subscribed) == me
            )
        return frozenset(target)

    def _owned_in_db(self, conn: sqlite3.Connection) -> frozenset[TopicPartition]:
        rows = conn.execute(
            "SELECT topic, partition FROM group_owners WHERE group_id = ? AND member_id = ?",
            (self.group_id, self.member_id),
        ).fetchall()
        return frozenset(TopicPartition(str(t), int(p)) for t, p in rows)

    def _sync(self, force: bool = False) -> None:
        """Heartbeat when due, then move towards this member's share of the partitions."""
        mono = time.monotonic()
        if not force and mono - self._last_sync < _SYNC_INTERVAL_S:
            return
        self._last_sync = mono
        if self.group_id is None:  # no group: every partition, nobody to agree with
            target = self._target([])
            if self._only is not None:
                target = frozenset(tp for tp in target if tp.partition in self._only)
            self._apply_assignment(target)
            return
        now_ms = _now_ms()
        heartbeat_every_s = self._log.session_timeout_ms / 10_000
        if not self._joined or mono - self._last_heartbeat >= heartbeat_every_s:
            with self._log._write() as conn:
                self._heartbeat(conn, now_ms)
            self._last_heartbeat = mono
        with self._log._read() as conn:
            target = self._target(self._live_members(conn, now_ms))
            owned = self._owned_in_db(conn)
        if target == owned and owned == self._owned:
            return
        if target != owned:
            with self._log._write() as conn:
                owned = self._rebalance(conn, target, now_ms)
        self._apply_assignment(owned)

    def _rebalance(
        self, conn: sqlite3.Connection, target: frozenset[TopicPartition], now_ms: int
    ) -> frozenset[TopicPartition]:
        owned = self._owned_in_db(conn)
        for tp in owned - target:
            conn.execute(
                "DELETE FROM group_owners WHERE group_id = ? AND topic = ? AND partition = ? "
                "AND member_id = ?",
                (self.group_id, tp.topic, tp.partition, self.member_id),
            )
        live_since = now_ms - self._log.session_timeout_ms
        for tp in target - owned:
            # A partition can be taken when free, or when its owner has gone silent.
            conn.execute(
                "DELETE FROM group_owners WHERE group_id = ? AND topic = ? AND partition = ? "
                "AND member_id NOT IN (SELECT member_id FROM group_members "
                "WHERE group_id = ? AND heartbeat_ms >= ?)",
                (self.group_id, tp.topic, tp.partition, self.group_id, live_since),
            )
            conn.execute(
                "INSERT INTO group_owners (group_id, topic, partition, member_id) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (self.group_id, tp.topic, tp.partition, self.member_id),
            )
        return self._owned_in_db(conn)

    def _apply_assignment(self, owned: frozenset[TopicPartition]) -> None:
        if owned == self._owned:
            return
        added, revoked = owned - self._owned, self._owned - owned
        self._owned = owned
        for tp in revoked:
            self._positions.pop(tp, None)
            self._pending.discard(tp)
        self._pending.update(added)
        self._log_ctx.info(
            "assignment changed",
            assigned=[str(tp) for tp in sorted(added)],
            revoked=[str(tp) for tp in sorted(revoked)],
            now_owned=len(owned),
        )

    def _start_pending(self) -> None:
        """Give newly assigned partitions their start offsets: on_assign's answer, else the
        group's committed offset, else 0. Left pending (retried next poll) if on_assign fails."""
        if not self._pending:
            return
        newly = frozenset(self._pending)
        chosen: Mapping[TopicPartition, int] = {}
        if self._on_assign is not None:
            chosen = self._on_assign(newly)
        for tp in newly:
            start = chosen.get(tp)
            if start is None:
                start = self.committed(tp)
            self._positions[tp] = max(0, start or 0)
        self._pending.clear()

    # -- reading -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"consumer {self.member_id} of group {self.group_id!r} is closed")

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        """Next messages in offset order per partition, as soon as any are there; [] when
        none arrived within ``timeout_s``."""
        self._check_open()
        if max_records < 1:
            raise LogError(f"max_records must be at least 1, got {max_records}")
        deadline = time.monotonic() + max(0.0, timeout_s)
        force = not self._joined
        while True:
            self._sync(force=force)
            force = False
            self._start_pending()
            messages = self._fetch(max_records)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            time.sleep(min(_POLL_INTERVAL_S, remaining))

    def _fetch(self, max_records: int) -> list[Message]:
        if not self._positions:
            return []
        messages: list[Message] = []
        with self._log._read() as conn:
            behind: list[TopicPartition] = []
            for topic in self.topics:
                marks = EmbeddedLog._watermarks(conn, topic)
                behind.extend(
                    tp
                    for tp, pos in self._positions.items()
                    if tp.topic == topic and marks.get(tp.partition, 0) > pos
                )
            if not behind:
                return []
            # Rotate the starting partition so a busy partition cannot starve the others.
            behind.sort()
            self._rotation = (self._rotation + 1) % len(behind)
            behind = behind[self._rotation :] + behind[: self._rotation]
            for tp in behind:
                room = max_records - len(messages)
                if room <= 0:
                    break
                rows = conn.execute(
                    'SELECT "offset", key, value, headers, timestamp_ms FROM messages '
                    'WHERE topic = ? AND partition = ? AND "offset" >= ? '
                    'ORDER BY "offset" LIMIT ?',
                    (tp.topic, tp.partition, self._positions[tp], room),
                ).fetchall()
                for offset, key, value, headers, ts in rows:
                    messages.append(
                        Message(
                            topic=tp.topic,
                            partition=tp.partition,
                            offset=int(offset),
                            key=None if key is None else bytes(key),
                            value=None if value is None else bytes(value),
                            timestamp_ms=int(ts),
                            headers=_decode_headers(headers),
                        )
                    )
                if rows:
                    self._positions[tp] = int(rows[-1][0]) + 1
        return messages

    # -- offsets -----------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit the given next-offsets-to-read, or the current position of every assigned
        partition."""
        self._check_open()
        to_commit = dict(self._positions if offsets is None else offsets)
        for tp, offset in to_commit.items():
            if offset < 0:
                raise LogError(f"cannot commit negative offset {offset} for {tp}")
        if not to_commit or self.group_id is None:  # no group: nothing to commit to
            return
        with self._log._write() as conn:
            # Like Kafka's fencing of a stale generation: a member dropped for silence must
            # not overwrite the progress of the member that took its partitions over.
            taken = [
                (tp, str(row[0]))
                for tp in sorted(to_commit)
                for row in conn.execute(
                    "SELECT member_id FROM group_owners WHERE group_id = ? AND topic = ? "
                    "AND partition = ? AND member_id != ?",
                    (self.group_id, tp.topic, tp.partition, self.member_id),
                )
            ]
            if taken:
                raise CommitRefused(
                    f"commit refused for group {self.group_id!r}: "
                    + ", ".join(f"{tp} now belongs to member {owner}" for tp, owner in taken)
                    + " (this member was dropped after not polling for "
                    f"{self._log.session_timeout_ms / 1000:g} s, or never owned them); "
                    "poll again to rejoin"
                )
            conn.executemany(
                "INSERT INTO group_offsets (group_id, topic, partition, next_offset) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(self.group_id, tp.topic, tp.partition, off) for tp, off in to_commit.items()],
            )

    def committed(self, tp: TopicPartition) -> int | None:
        self._check_open()
        if self.group_id is None:
            return None
        row = (
            self._log._conn()
            .execute(
                "SELECT next_offset FROM group_offsets "
                "WHERE group_id = ? AND topic = ? AND partition = ?",
                (self.group_id, tp.topic, tp.partition),
            )
            .fetchone()
        )
        return None if row is None else int(row[0])

    def assignment(self) -> frozenset[TopicPartition]:
        return self._owned

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset ``poll`` will return for ``tp`` (None until it is started)."""
        return self._positions.get(tp)

    # -- seeking -----------------------------------------------------------------------

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._check_open()
        if tp not in self._owned:
            raise LogError(
                f"cannot seek {tp}: not assigned to this consumer "
                f"(assigned: {', '.join(str(t) for t in sorted(self._owned)) or 'none yet'})"
            )
        if offset < 0:
            raise LogError(f"cannot seek {tp} to negative offset {offset}")
        self._pending.discard(tp)
        self._positions[tp] = offset

    def seek_to_beginning(self) -> None:
        self._check_open()
        for tp in self._owned:
            self._pending.discard(tp)
            self._positions[tp] = 0

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        self._check_open()
        with self._log._read() as conn:
            for tp in self._owned:
                # Timestamps may be set by producers and need not grow with offsets, so this
                # is Kafka's "first offset whose timestamp is at or after", found by walking
                # offsets (no timestamp index: it would slow every produce for a rare call).
                row = conn.execute(
                    'SELECT "offset" FROM messages WHERE topic = ? AND partition = ? '
                    'AND timestamp_ms >= ? ORDER BY "offset" LIMIT 1',
                    (tp.topic, tp.partition, timestamp_ms),
                ).fetchone()
                if row is None:
                    offset = EmbeddedLog._watermarks(conn, tp.topic).get(tp.partition, 0)
                else:
                    offset = int(row[0])
                self._pending.discard(tp)
                self._positions[tp] = offset

    def close(self) -> None:
        """Leave the group at once, so the other members take over without waiting for
        the session timeout. Does not commit."""
        if self._closed:
            return
        self._closed = True
        if self._joined and not self._log._closed:
            with self._log._write() as conn:
                conn.execute(
                    "DELETE FROM group_owners WHERE group_id = ? AND member_id = ?",
                    (self.group_id, self.member_id),
                )
                conn.execute(
                    "DELETE FROM group_members WHERE group_id = ? AND member_id = ?",
                    (self.group_id, self.member_id),
                )
            self._log_ctx.info(
                "group member left", released=[str(tp) for tp in sorted(self._owned)]
            )
        self._owned = frozenset()
        self._positions.clear()
        self._pending.clear()


if TYPE_CHECKING:
    # mypy proves here that the adapter fits the port; nothing runs.
    def _fits_the_port(log: EmbeddedLog, consumer: EmbeddedConsumer) -> tuple[Log, LogConsumer]:
        return log, consumer
