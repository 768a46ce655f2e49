"""A rebuild's new store is vouched for (its ``.checked`` marker, so that the first open
after the swap does not read it whole) without a marker written at every commit: the
writers keep the chain of identities they vouched for in memory, and the processes of a
rebuild on several pass it to each other in their turns file; the marker is written when
the store is packed (and when a writer closes it). A write by anyone else anywhere in the
chain still means the store is not vouched for."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from domain.positions import TopicPartition
from projections.integrity import _read_marker, file_identity
from projections.store import JourneyStore

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TP = TopicPartition("t", 0)
OTHER = TopicPartition("t", 1)


def _inquiry(customer_id: str, n: int) -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(case_id=f"k-{n}", channel="chat", subject="x", body=f"b{n}"),
        customer_id=customer_id,
        occurred_at=T0 + timedelta(minutes=n),
        source="test",
    )


def _marker_text(path: Path) -> str:
    return path.with_name(path.name + ".checked").read_text()


def test_a_rebuilds_commits_leave_the_marker_alone_until_it_is_packed(tmp_path: Path) -> None:
    path = tmp_path / "views.db.20261202T000000000000"
    store = JourneyStore(path, rebuilding=True)
    made = _marker_text(path)
    identities = {file_identity(path)}
    for n in range(6):
        store.process(TP, [(n, _inquiry(f"cust-{n % 3}", n))], n)
        identities.add(file_identity(path))
    store.complete()
    assert len(identities) > 3  # every commit changed the file ...
    assert _marker_text(path) == made  # ... and none wrote the marker
    store.compact()
    assert _read_marker(path) == file_identity(path)  # the packed store, vouched for
    store.close()
    reopened = JourneyStore(path)
    assert _read_marker(path) == file_identity(path)
    reopened.close()


def test_the_processes_of_a_rebuild_pass_what_they_vouched_for_in_turns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "views.db.20261202T000000000000"
    JourneyStore(path, rebuilding=True).close()  # the parent makes the tables
    first = JourneyStore(path, rebuilding=True, shared_writes=True)
    second = JourneyStore(path, rebuilding=True, shared_writes=True)
    made = _marker_text(path)
    for n in range(6):  # their commits interleave
        first.process(TP, [(n, _inquiry(f"cust-a{n % 2}", n))], n)
        second.process(OTHER, [(n, _inquiry(f"cust-b{n % 2}", n))], n)
    first.complete()
    second.complete()
    assert _marker_text(path) == made
    first.close()
    second.close()
    # The last one to close wrote the marker for the file as the other left it.
    assert _read_marker(path) == file_identity(path)
    parent = JourneyStore(path, rebuilding=True, shared_writes=True)
    parent.backend.index_search()
    parent.compact()
    assert _read_marker(path) == file_identity(path)
    assert parent.query("SELECT count(*) FROM touchpoints") == [(12,)]
    parent.close()


def test_a_write_by_anyone_else_between_the_processes_turns_is_never_vouched_for(
    tmp_path: Path,
) -> None:
    path = tmp_path / "views.db.20261202T000000000000"
    JourneyStore(path, rebuilding=True).close()
    first = JourneyStore(path, rebuilding=True, shared_writes=True)
    second = JourneyStore(path, rebuilding=True, shared_writes=True)
    first.process(TP, [(0, _inquiry("cust-a", 0))], 0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("INSERT INTO partition_clocks VALUES ('x', 9, '2026-01-01')")
    other.close()
    second.process(OTHER, [(0, _inquiry("cust-b", 0))], 0)
    first.process(TP, [(1, _inquiry("cust-a", 1))], 1)
    first.complete()
    second.complete()
    first.close()
    second.close()
    assert _read_marker(path) != file_identity(path)
    parent = JourneyStore(path, rebuilding=True, shared_writes=True)  # reads it whole
    parent.backend.index_search()
    parent.compact()
    # Found sound by the parent's open, and packed by it: vouched for from there on.
    assert _read_marker(path) == file_identity(path)
    parent.close()
