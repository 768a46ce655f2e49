"""A rebuild's new SQLite store leaves the indexes only the query side reads
(``schema.LATE_INDEXES``: customers by normalised id, identities by normalised value,
owned products by product) out while it is filled, and builds each in one sorted pass once
every row is written: row by row, each went in at a random place, a page journalled and
written back per row once the tables outgrew the page cache. The finished store has the
same indexes, rows and answers as a store written live."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain.envelope import Touchpoint, new_touchpoint
from domain.positions import TopicPartition
from journey.synthetic import customer_journey
from projections.rows import norm_identity
from projections.schema import LATE_INDEXES
from projections.store import JourneyStore
from tests.unit.test_rebuild_late_indexes import _indexes

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TP = TopicPartition("t", 0)
OTHER = TopicPartition("t", 1)  # another process's partition


def _batches(
    prefix: str, customers: int = 12, each: int = 14
) -> list[list[tuple[int, Touchpoint]]]:
    """Customers' journeys (identities, orders, products, cases) interleaved as a partition
    of the log has them, in batches of 9."""
    rng = random.Random(f"read-side-{prefix}")  # noqa: S311 -- a fixed, repeatable journey
    streams = []
    for n in range(customers):
        cid = f"{prefix}-{n:03d}"
        streams.append(
            [
                new_touchpoint(
                    data, customer_id=cid, occurred_at=T0 + timedelta(hours=k), source="test"
                )
                for k, data in enumerate(itertools.islice(customer_journey(rng, cid, T0), each))
            ]
        )
    ordered = sorted(
        (t for stream in streams for t in stream), key=lambda t: (t.occurred_at, t.customer_id)
    )
    items = list(enumerate(ordered))
    return [items[start : start + 9] for start in range(0, len(items), 9)]


def _fill(
    store: JourneyStore, batches: list[list[tuple[int, Touchpoint]]], tp: TopicPartition = TP
) -> None:
    for batch in batches:
        store.process(tp, batch, batch[-1][0])


def _tables(store: JourneyStore) -> dict[str, list[tuple[object, ...]]]:
    """The rows of the tables these indexes are on (and the clocks, written with them at a
    customer's completion: their due_us aside, which a rebuilt store leaves to the keeper)."""
    out = {
        table: sorted(store.query(f"SELECT * FROM {table}"))
        for table in ("customers", "identities", "owned_products")
    }
    for table in ("clocks", "stopped_clocks"):
        out[table] = sorted(r[1:] for r in store.query(f"SELECT * FROM {table}"))
    return out


def _plans(store: JourneyStore) -> str:
    """How the query side's reads by these indexes find their rows."""
    plans = []
    for sql, params in (
        ("SELECT customer_id FROM customers WHERE id_norm = ?", (norm_identity("rs-001"),)),
        ("SELECT customer_id FROM identities WHERE norm = ?", (norm_identity("x@example.com"),)),
        ("SELECT customer_id FROM owned_products WHERE product = ?", ("Laptop X1",)),
    ):
        plans.extend(str(r[-1]) for r in store.query(f"EXPLAIN QUERY PLAN {sql}", params))
    return " | ".join(plans)


def test_a_rebuilding_store_builds_the_query_sides_indexes_at_the_end(tmp_path: Path) -> None:
    batches = _batches("rs")
    plain = JourneyStore(tmp_path / "plain.db")
    _fill(plain, batches)
    assert set(LATE_INDEXES) <= _indexes(plain).keys()
    # A small cache: customers are completed (identities, products written) mid-rebuild too.
    store = JourneyStore(tmp_path / "views.db", rebuilding=True, cache_size=4)
    _fill(store, batches)
    assert not set(LATE_INDEXES) & _indexes(store).keys()  # no writer reads by them
    assert store.query("SELECT count(*) FROM identities")[0][0] > 0
    assert store.query("SELECT count(*) FROM owned_products")[0][0] > 0
    store.complete()
    assert _indexes(store) == _indexes(plain)
    plans = _plans(store)
    for name in LATE_INDEXES:
        assert name in plans
    store.compact()
    assert _tables(store) == _tables(plain)
    assert store.query("PRAGMA integrity_check") == [("ok",)]
    store.close()
    reopened = JourneyStore(tmp_path / "views.db")
    assert _indexes(reopened) == _indexes(plain)
    reopened.close()
    plain.close()


def test_the_processes_of_a_rebuild_leave_the_query_sides_indexes_to_their_parent(
    tmp_path: Path,
) -> None:
    """Several processes writing one rebuild's file neither make these indexes when they
    open it nor build them when they complete their customers (the others may still be
    writing); their parent builds them once, after them all."""
    mine, theirs = _batches("rs"), _batches("ot")
    plain = JourneyStore(tmp_path / "plain.db")
    _fill(plain, mine)
    _fill(plain, theirs, OTHER)
    path = tmp_path / "views.db.20261202T000000000000"
    JourneyStore(path, rebuilding=True).close()  # the parent makes the tables
    first = JourneyStore(path, rebuilding=True, shared_writes=True, cache_size=3)
    second = JourneyStore(path, rebuilding=True, shared_writes=True)
    _fill(first, mine)
    first.complete()
    first.close()
    assert not set(LATE_INDEXES) & _indexes(second).keys()
    _fill(second, theirs, OTHER)
    second.complete()
    second.close()
    parent = JourneyStore(path, rebuilding=True, shared_writes=True)
    assert not set(LATE_INDEXES) & _indexes(parent).keys()
    parent.backend.index_search()  # what the rebuild's parent calls, once
    assert _indexes(parent) == _indexes(plain)
    parent.compact()
    assert _tables(parent) == _tables(plain)
    assert parent.query("PRAGMA integrity_check") == [("ok",)]
    parent.close()
    plain.close()
