"""A rebuild's new SQLite store leaves the indexes only reads use (identities by their
normalised value, customers by their normalised id, owners of a product: schema.LATE_INDEXES)
out while it is filled, and builds each in one sorted pass at the end, as it does the
timeline index: the store it swaps in has every index a live store has, the same rows, and
the lookups use them."""

from __future__ import annotations

import zlib
from pathlib import Path

from bench.workload import Shape, Workload, ensure_workload, read_batches
from domain.envelope import decode
from domain.positions import TopicPartition
from projections.store import JourneyStore

TP = TopicPartition("t", 0)
OTHER = TopicPartition("t", 1)  # another process's partition
LATE_INDEXES = ("identities_norm", "customers_id_norm", "owned_products_product")

_LOOKUPS = {
    "identities_norm": "SELECT customer_id FROM identities WHERE norm = 'x'",
    "customers_id_norm": "SELECT customer_id FROM customers WHERE id_norm = 'x'",
    "owned_products_product": "SELECT customer_id FROM owned_products WHERE product = 'x'",
}


def _workload(tmp_path: Path) -> Workload:
    return ensure_workload(tmp_path / "cache", Shape.for_events(1200), 11)


def _fill(
    store: JourneyStore, workload: Workload, tp: TopicPartition = TP, part: int | None = None
) -> None:
    """The workload (``part`` 0 or 1: the customers of one of two partitions)."""
    offset = -1
    for batch in read_batches(workload.path, 150):
        items = []
        for line in batch:
            offset += 1
            t = decode(line)
            if part is None or zlib.crc32(t.customer_id.encode()) % 2 == part:
                items.append((offset, t))
        if items:
            store.process(tp, items, offset)


def _indexes(store: JourneyStore) -> dict[str, str]:
    return {
        str(name): str(sql)
        for name, sql in store.query(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }


def _tables(store: JourneyStore) -> dict[str, list[tuple[object, ...]]]:
    # (clocks' due_us differs by design: a live fold writes PENDING, a rebuild NULL)
    return {
        table: sorted(store.query(f"SELECT * FROM {table}"), key=repr)
        for table in ("identities", "customers", "owned_products", "links")
    }


def _uses(store: JourneyStore, index: str) -> bool:
    plan = store.query(f"EXPLAIN QUERY PLAN {_LOOKUPS[index]}")
    return any(index in str(row[-1]) for row in plan)


def test_a_rebuilding_store_builds_the_lookup_indexes_at_the_end(tmp_path: Path) -> None:
    workload = _workload(tmp_path)
    plain = JourneyStore(tmp_path / "plain.db")
    _fill(plain, workload)
    store = JourneyStore(tmp_path / "views.db", rebuilding=True)
    _fill(store, workload)
    # Nobody looks customers up in a store being rebuilt: no index kept row by row.
    assert not set(LATE_INDEXES) & set(_indexes(store))
    store.complete()
    assert _indexes(store) == _indexes(plain)
    assert all(_uses(store, name) for name in LATE_INDEXES)
    assert _tables(store) == _tables(plain)
    assert store.query("SELECT count(*) FROM identities")[0][0] > 100  # rows were indexed
    store.compact()
    store.close()
    reopened = JourneyStore(tmp_path / "views.db")
    assert _indexes(reopened) == _indexes(plain)
    assert reopened.query("PRAGMA integrity_check") == [("ok",)]
    reopened.close()
    plain.close()


def test_the_processes_of_a_rebuild_leave_the_lookup_indexes_to_their_parent(
    tmp_path: Path,
) -> None:
    workload = _workload(tmp_path)
    plain = JourneyStore(tmp_path / "plain.db")
    _fill(plain, workload, TP, 0)
    _fill(plain, workload, OTHER, 1)
    path = tmp_path / "views.db.20261202T000000000000"
    JourneyStore(path, rebuilding=True).close()  # the parent makes the tables
    first = JourneyStore(path, rebuilding=True, shared_writes=True)
    second = JourneyStore(path, rebuilding=True, shared_writes=True)
    _fill(first, workload, TP, 0)
    first.complete()
    first.close()
    _fill(second, workload, OTHER, 1)
    second.complete()
    assert not set(LATE_INDEXES) & set(_indexes(second))  # never made at open, nor at the end
    second.close()
    parent = JourneyStore(path, rebuilding=True, shared_writes=True)
    assert not set(LATE_INDEXES) & set(_indexes(parent))
    parent.backend.index_search()  # what the rebuild's parent calls, once
    assert _indexes(parent) == _indexes(plain)
    parent.compact()
    assert _tables(parent) == _tables(plain)
    assert parent.query("PRAGMA integrity_check") == [("ok",)]
    parent.close()
    plain.close()
