"""A rebuild's new SQLite store builds its timeline index (touchpoints by customer) in one
sorted pass when every row is written, not row by row under the log's interleaving of
customers; a read by customer before then (a customer the writer's cache let go and reads
back, a refold's facts, an erasure) builds it first, so such reads never scan the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from domain.positions import TopicPartition
from projections.store import JourneyStore

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TP = TopicPartition("t", 0)
OTHER = TopicPartition("t", 1)  # another process's partition


def _inquiry(customer_id: str, n: int) -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(
            case_id=f"k-{customer_id}-{n % 3}", channel="chat", subject="x", body=f"b{n}"
        ),
        customer_id=customer_id,
        occurred_at=T0 + timedelta(minutes=n),
        source="test",
    )


def _has_timeline(store: JourneyStore) -> bool:
    return bool(
        store.query(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'touchpoints_timeline'"
        )
    )


def _tail_plan(store: JourneyStore) -> str:
    rows = store.query(
        "EXPLAIN QUERY PLAN SELECT fact FROM touchpoints WHERE customer_id = ?"
        " AND generation = ? AND seq > ? ORDER BY seq",
        ("cust-a", 0, 0),
    )
    return " ".join(str(r[-1]) for r in rows)


def _batches(names: str = "abc") -> list[list[tuple[int, Touchpoint]]]:
    # Three customers interleaved, as a partition of the log has them.
    items = [(n, _inquiry(f"cust-{names[n % 3]}", n)) for n in range(30)]
    return [items[start : start + 4] for start in range(0, 30, 4)]


def _rows(store: JourneyStore) -> list[tuple[object, ...]]:
    return sorted(
        store.query(
            "SELECT event_id, customer_id, generation, seq, at, type, summary, case_id, text,"
            ' content_hash, partition, "offset", fact FROM touchpoints'
        )
    )


def _fill(
    store: JourneyStore, batches: list[list[tuple[int, Touchpoint]]], tp: TopicPartition = TP
) -> None:
    for batch in batches:
        store.process(tp, batch, batch[-1][0])


def _assert_same(store: JourneyStore, plain: JourneyStore) -> None:
    """The rebuilt store's rows and journeys are the live-built one's."""
    assert _rows(store) == _rows(plain)
    for cid in ("cust-a", "cust-b", "cust-c"):
        journey, expected = store.journey(cid), plain.journey(cid)
        assert journey is not None and expected is not None
        assert journey.journey.timeline == expected.journey.timeline


def test_a_rebuilding_store_builds_its_timeline_index_at_the_end(tmp_path: Path) -> None:
    batches = _batches()
    plain = JourneyStore(tmp_path / "plain.db")
    _fill(plain, batches)
    store = JourneyStore(tmp_path / "views.db", rebuilding=True)
    _fill(store, batches)
    assert not _has_timeline(store)  # nobody reads by customer while it is rebuilt
    store.complete()
    assert _has_timeline(store)
    assert "touchpoints_timeline" in _tail_plan(store)
    store.compact()
    _assert_same(store, plain)
    store.close()
    reopened = JourneyStore(tmp_path / "views.db")
    assert _has_timeline(reopened)
    reopened.close()
    plain.close()


def test_a_customer_read_back_mid_rebuild_builds_the_index_first(tmp_path: Path) -> None:
    batches = _batches()
    plain = JourneyStore(tmp_path / "plain.db")
    _fill(plain, batches)
    # One customer cached: each batch lets the others go, and the next reads them back
    # (a snapshot, if any, and the rows folded since: by customer).
    store = JourneyStore(tmp_path / "views.db", rebuilding=True, cache_size=1)
    _fill(store, batches)
    assert _has_timeline(store)
    assert "touchpoints_timeline" in _tail_plan(store)
    store.complete()
    _assert_same(store, plain)
    store.close()
    plain.close()


def test_the_processes_of_a_rebuild_leave_the_timeline_index_to_their_parent(
    tmp_path: Path,
) -> None:
    """Several processes writing one rebuild's file (``shared_writes``) neither make the
    timeline index when they open it nor build it when they complete their customers: the
    others may still be writing, row by row. Their parent builds it once, after them all."""
    # Each process its own customers (its own partitions).
    mine, theirs = _batches(), _batches("xyz")
    plain = JourneyStore(tmp_path / "plain.db")
    _fill(plain, mine)
    _fill(plain, theirs, OTHER)
    path = tmp_path / "views.db.20261202T000000000000"
    JourneyStore(path, rebuilding=True).close()  # the parent makes the tables
    first = JourneyStore(path, rebuilding=True, shared_writes=True)
    second = JourneyStore(path, rebuilding=True, shared_writes=True)
    _fill(first, mine)
    assert not _has_timeline(first)
    first.complete()
    first.close()
    assert not _has_timeline(second)  # the other may still write
    _fill(second, theirs, OTHER)
    second.complete()
    second.close()
    parent = JourneyStore(path, rebuilding=True, shared_writes=True)
    assert not _has_timeline(parent)
    parent.backend.index_search()  # what the rebuild's parent calls, once
    assert _has_timeline(parent)
    assert "touchpoints_timeline" in _tail_plan(parent)
    parent.compact()
    assert _rows(parent) == _rows(plain)
    parent.close()
    plain.close()


def test_a_process_of_a_rebuild_reading_a_customer_back_builds_the_index_for_all(
    tmp_path: Path,
) -> None:
    """One process of several reads a customer back (its cache let it go): it builds the
    index, taking its write turn; another process opening the file then keeps it (never
    drops what a sibling reads by), and both keep it row by row."""
    mine, theirs = _batches(), _batches("xyz")
    plain = JourneyStore(tmp_path / "plain.db")
    _fill(plain, mine)
    _fill(plain, theirs, OTHER)
    path = tmp_path / "views.db.20261202T000000000000"
    JourneyStore(path, rebuilding=True).close()
    reader = JourneyStore(path, rebuilding=True, shared_writes=True, cache_size=1)
    _fill(reader, mine[:3])
    assert _has_timeline(reader)
    other = JourneyStore(path, rebuilding=True, shared_writes=True)
    assert _has_timeline(other)
    _fill(other, theirs, OTHER)
    _fill(reader, mine[3:])
    assert "touchpoints_timeline" in _tail_plan(reader)
    reader.complete()
    other.complete()
    reader.close()
    other.close()
    check = JourneyStore(path)
    assert _rows(check) == _rows(plain)
    assert check.query("PRAGMA integrity_check") == [("ok",)]
    check.close()
    plain.close()
