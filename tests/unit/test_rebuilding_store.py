"""A rebuild's new SQLite store is written the cheap way while nobody reads it: a rollback
journal with no syncs (a failed batch still rolls back), its search index built
once at the end; ``complete`` and ``compact`` make it the store every other one is (search
index kept by triggers, WAL, on the disk) before it is swapped in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import Tracking

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from domain.positions import TopicPartition
from journey.service.queries import search_customers
from projections.store import JourneyStore

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TP = TopicPartition("t", 0)


def _inquiry(customer_id: str, body: str, minutes: int = 0) -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(case_id=f"k-{customer_id}", channel="chat", subject="x", body=body),
        customer_id=customer_id,
        occurred_at=T0 + timedelta(minutes=minutes),
        source="test",
    )


def _erasure(customer_id: str, minutes: int) -> Touchpoint:
    return new_touchpoint(
        c.ErasureRequested(reason="gdpr"),
        customer_id=customer_id,
        occurred_at=T0 + timedelta(minutes=minutes),
        source="test",
    )


def _indexed(store: JourneyStore) -> int:
    return int(store.query("SELECT count(*) FROM touchpoints_fts_docsize")[0][0])


def _mode(store: JourneyStore) -> str:
    return str(store.query("PRAGMA journal_mode")[0][0])


def test_a_rebuilding_store_builds_its_search_index_at_the_end(tmp_path: Path) -> None:
    store = JourneyStore(tmp_path / "views.db", rebuilding=True)
    assert _mode(store) == "persist"
    store.process(
        TP,
        [
            (0, _inquiry("cust-a", "The zipper on my Fjellduk anorak broke")),
            (1, _inquiry("cust-b", "Fjellduk sent the wrong colour")),
            (2, _inquiry("cust-c", "Nothing about the brand", 1)),
            (3, _erasure("cust-c", 2)),
        ],
        3,
    )
    assert _indexed(store) == 0  # nobody searches a store being rebuilt
    store.complete()
    # Only what is still said: the erased customer's text left with the erasure.
    assert _indexed(store) == 2
    assert {h.customer_id for h in search_customers(store, "fjellduk")} == {"cust-a", "cust-b"}
    assert search_customers(store, "brand") == []
    # From here on the index follows every write, as any store's does.
    store.process(TP, [(4, _inquiry("cust-d", "my Fjellduk tent leaks", 3))], 4)
    store.process(TP, [(5, _erasure("cust-a", 4))], 5)
    assert {h.customer_id for h in search_customers(store, "fjellduk")} == {"cust-b", "cust-d"}
    assert _indexed(store) == 2
    store.compact()
    assert _mode(store) == "wal"
    store.close()
    reopened = JourneyStore(tmp_path / "views.db")
    assert _mode(reopened) == "wal"
    assert {h.customer_id for h in search_customers(reopened, "tent")} == {"cust-d"}
    reopened.close()


def test_a_failed_batch_of_a_rebuilding_store_leaves_nothing(tmp_path: Path) -> None:
    store = JourneyStore(tmp_path / "views.db", rebuilding=True)
    store.process(TP, [(0, _inquiry("cust-a", "first"))], 0)
    before = store.query("SELECT count(*) FROM touchpoints")[0][0]
    with pytest.raises(Exception, match="no such table"):
        store.backend.record(
            Tracking("t:0", 7),
            [
                ("DELETE FROM touchpoints", ()),
                ("INSERT INTO customers_misspelt VALUES (?)", (1,)),
            ],
        )
    assert store.query("SELECT count(*) FROM touchpoints")[0][0] == before
    assert store.position(TP) == 0
    store.close()


def test_an_existing_store_opened_as_rebuilding_keeps_its_journal(tmp_path: Path) -> None:
    JourneyStore(tmp_path / "views.db").close()
    store = JourneyStore(tmp_path / "views.db", rebuilding=True)
    assert _mode(store) == "wal"
    store.close()


def test_a_compacted_rebuild_leaves_no_journal_beside_it(tmp_path: Path) -> None:
    store = JourneyStore(tmp_path / "views.db", rebuilding=True)
    store.process(TP, [(0, _inquiry("cust-a", "first"))], 0)
    store.complete()
    store.compact()
    store.close()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert "views.db" in left and not [n for n in left if n.endswith(("-journal", "-wal"))]


def test_another_opener_mid_rebuild_leaves_the_search_index_whole(tmp_path: Path) -> None:
    # A second open of the file makes the triggers again (``ddl``): rows written after it
    # are indexed twice by the end's one pass unless it starts from nothing.
    store = JourneyStore(tmp_path / "views.db", rebuilding=True)
    store.process(TP, [(0, _inquiry("cust-a", "Fjellduk anorak"))], 0)
    JourneyStore(tmp_path / "views.db").close()
    store.process(TP, [(1, _inquiry("cust-b", "Fjellduk tent", 1))], 1)
    store.complete()
    assert _indexed(store) == 2
    check = "INSERT INTO touchpoints_fts (touchpoints_fts) VALUES ('integrity-check')"
    assert store.query(check) == []
    assert {h.customer_id for h in search_customers(store, "fjellduk")} == {"cust-a", "cust-b"}
    store.close()
