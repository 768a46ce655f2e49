"""A writer remembers which customers have no snapshot, on every store (SQLite, PostgreSQL).

A live worker lets most short histories go from its cache and reads them back later: for a
customer it started, or found without a snapshot, it does not look one up again — until it
writes one, or its runner is assigned partitions (another worker may have written one).
What it remembers can only be wrong the safe way: the journey read back is the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domain.positions import TopicPartition
from projections.store import SNAPSHOT_EVERY_MIN, JourneyStore
from tests.contract.test_store_contract import TP, Writer, canonical, inquiry


class SnapshotLookups:
    """Reads of the snapshots table the store's database answers, while installed."""

    def __init__(self, store: JourneyStore) -> None:
        self.count = 0
        backend: Any = store.backend
        queries = backend.queries

        def counted(statements: Any) -> Any:
            self.count += sum("FROM snapshots" in sql for sql, _ in statements)
            return queries(statements)

        backend.queries = counted


def test_a_customer_started_here_is_read_back_without_a_snapshot_look_up(
    store_address: Path | str,
) -> None:
    store = JourneyStore(store_address, cache_size=1)
    try:
        lookups = SnapshotLookups(store)
        w = Writer(store)
        w.batch([inquiry("cust-a", "k1", 0)])
        w.batch([inquiry("cust-b", "k1", 1)])  # cust-a leaves the cache of one
        w.batch([inquiry("cust-a", "k2", 2)])  # ... and is read back
        assert lookups.count == 0
        # Once it has a snapshot, it is looked up again.
        w.batch([inquiry("cust-a", f"k{n}", n) for n in range(3, 3 + SNAPSHOT_EVERY_MIN)])
        assert store.query("SELECT count(*) FROM snapshots WHERE customer_id = 'cust-a'") == [(1,)]
        w.batch([inquiry("cust-b", "k2", 40)])
        w.batch([inquiry("cust-a", "k99", 41)])
        assert lookups.count == 1
        journey = store.journey("cust-a")
        assert journey is not None and journey.touchpoints == 3 + SNAPSHOT_EVERY_MIN
    finally:
        store.close()


def test_a_snapshot_another_writer_wrote_is_missed_the_safe_way(
    store_address: Path | str,
) -> None:
    """Another worker took the partition meanwhile and wrote a snapshot: the journey read
    back without it is the same; after an assignment it is looked up again."""
    mine = JourneyStore(store_address, cache_size=1)
    other = JourneyStore(store_address, cache_size=1)
    try:
        lookups = SnapshotLookups(mine)
        w = Writer(mine)
        w.batch([inquiry("cust-a", "k1", 0)])
        w.batch([inquiry("cust-b", "k1", 1)])
        theirs = Writer(other, TopicPartition(TP.topic, TP.partition))
        theirs.offset = w.offset
        theirs.batch([inquiry("cust-a", f"k{n}", n) for n in range(2, 2 + SNAPSHOT_EVERY_MIN)])
        w.offset = theirs.offset
        assert mine.query("SELECT count(*) FROM snapshots WHERE customer_id = 'cust-a'") == [(1,)]
        w.batch([inquiry("cust-a", "k-last", 50)])
        assert lookups.count == 0
        fresh = JourneyStore(store_address)
        try:
            expected, got = fresh.journey("cust-a"), mine.journey("cust-a")
            assert expected is not None and got is not None
            assert canonical(got.journey) == canonical(expected.journey)
            assert got.touchpoints == 2 + SNAPSHOT_EVERY_MIN
        finally:
            fresh.close()
        mine.forget_snapshot_absences()  # what the runner does when assigned partitions
        w.batch([inquiry("cust-b", "k2", 60)])
        before = lookups.count
        w.batch([inquiry("cust-a", "k-after", 61)])
        assert lookups.count == before + 1
    finally:
        other.close()
        mine.close()
