"""Write-behind (projections.write_behind), on every store: a rebuilding store hands a
batch's transaction to its writer thread and folds the next one meanwhile, yet every read
sees what was handed over, and a transaction that fails behind the caller's back is raised
at the next call and, read again from the store's position, leaves the same store as a run
that never failed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from domain.envelope import Touchpoint
from projections.store import JourneyStore
from projections.write_behind import WriteFailed
from tests.contract.test_store_contract import TP, inquiry, reply, resolved
from tests.contract.test_write_path_contract import _dump


def _batches() -> list[list[Touchpoint]]:
    """Six batches of four interleaved customers, with late facts (refolds) among them."""
    out: list[list[Touchpoint]] = []
    for b in range(6):
        batch: list[Touchpoint] = []
        for n in range(4):
            cid, minute = f"cust-{n}", 1000.0 * n + 30.0 * b
            batch.append(inquiry(cid, f"{cid}-c{b}", minute, body=f"message {b}"))
            batch.append(reply(cid, f"{cid}-c{b}", minute + 1))
            if b % 2 == 1:
                batch.append(resolved(cid, f"{cid}-c{b - 1}", minute - 40))  # late
        out.append(batch)
    return out


def _feed(store: JourneyStore, batches: list[list[Touchpoint]], first: int = 0) -> None:
    """Batches ``first`` on, at the offsets a log would give them."""
    offset = sum(len(b) for b in batches[:first]) - 1
    for batch in batches[first:]:
        items = []
        for t in batch:
            offset += 1
            items.append((offset, t))
        store.process(TP, items, offset)


def test_a_rebuilding_store_returns_before_its_write_and_every_read_waits_for_it(
    store_address: Path | str,
) -> None:
    store = JourneyStore(store_address, rebuilding=True)
    gate, recorded = threading.Event(), []
    record = store.backend.record

    def held_record(*args: Any, **kwargs: Any) -> None:
        gate.wait(timeout=10)  # only so that a store writing in line cannot hang the test
        record(*args, **kwargs)
        recorded.append(args[0].notification_id)

    store.backend.record = held_record  # type: ignore[method-assign]
    try:
        batch = _batches()[0]
        _feed(store, [batch])
        assert recorded == [], "process() waited for its own transaction"
        gate.set()
        assert store.positions() == {TP: len(batch) - 1}  # the read waited for it
        assert recorded == [len(batch) - 1]
        assert store.query("SELECT count(*) FROM touchpoints") == [(len(batch),)]
    finally:
        gate.set()
        store.close()


def test_a_write_that_fails_behind_is_raised_next_and_read_again_gives_the_same_store(
    new_store: Callable[[str], Path | str],
) -> None:
    batches = _batches()
    reference = JourneyStore(new_store("reference"), rebuilding=True)
    try:
        _feed(reference, batches)
        reference.complete()
        expected = _dump(reference)
    finally:
        reference.close()

    store = JourneyStore(new_store("failing"), rebuilding=True, cache_size=2)
    record, calls = store.backend.record, [0]

    def record_failing_once(*args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OperationalError("disk I/O error (the third batch's write)")
        record(*args, **kwargs)

    store.backend.record = record_failing_once  # type: ignore[method-assign]
    try:
        with pytest.raises(WriteFailed, match="disk I/O error") as failed:
            _feed(store, batches)
        assert failed.value.applied == len(batches[2])
        # Nothing of the third batch is in the store: the runner reads on from here.
        done = sum(len(b) for b in batches[:2])
        assert store.positions() == {TP: done - 1}
        _feed(store, batches, first=2)
        store.complete()
        assert _dump(store) == expected
    finally:
        store.close()


def test_a_completion_that_fails_behind_is_raised_and_a_second_one_writes_it_whole(
    new_store: Callable[[str], Path | str],
) -> None:
    batches = _batches()
    reference = JourneyStore(new_store("reference"), rebuilding=True, write_behind=False)
    try:
        _feed(reference, batches)
        reference.complete()
        expected = _dump(reference)
    finally:
        reference.close()

    store = JourneyStore(new_store("failing"), rebuilding=True)
    try:
        _feed(store, batches)
        execute, calls = store.backend.execute, [0]

        def execute_failing_once(*args: Any, **kwargs: Any) -> None:
            calls[0] += 1
            if calls[0] == 1:
                raise OperationalError("disk I/O error (the completion's write)")
            execute(*args, **kwargs)

        store.backend.execute = execute_failing_once  # type: ignore[method-assign]
        with pytest.raises(WriteFailed, match="disk I/O error"):
            store.complete()
        assert _dump(store) != expected  # nothing of the completion was recorded
        store.complete()
        assert _dump(store) == expected
        assert store.complete() == 0
    finally:
        store.close()


@pytest.mark.postgres
def test_a_postgresql_store_commits_without_waiting_for_the_disk_flush(
    postgres_store: str,
) -> None:
    """As SQLite's synchronous=NORMAL: a commit does not wait for its WAL flush (a server
    crash may lose the last commits with their positions, which are read again)."""
    store = JourneyStore(postgres_store)
    try:
        assert store.query("SHOW synchronous_commit") == [("off",)]
    finally:
        store.close()
