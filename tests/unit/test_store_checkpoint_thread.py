"""A live SQLite writer's periodic checkpoint runs beside its commits, not inside them.

A checkpoint copies the write-ahead log into the file and syncs it: under 1,000 touchpoints/s
it took a p50 of 79 ms once a second on the writer's thread, and every touchpoint polled
behind it was visible that much later (bench/turns.py). It now runs on a thread of its own,
one at a time, and the writer's witness still vouches for what it changed."""

from __future__ import annotations

import threading
from pathlib import Path

from projections.backends import SQLiteBackend
from projections.integrity import WriteWitness
from projections.store import JourneyStore
from tests.contract.test_store_contract import Writer, inquiry


def test_the_periodic_checkpoint_runs_on_its_own_thread_and_is_vouched_for(
    tmp_path: Path,
) -> None:
    store = JourneyStore(tmp_path / "views.db")
    backend = store.backend
    assert isinstance(backend, SQLiteBackend)
    datastore = backend.datastore
    seen: list[str] = []
    vouched = threading.Event()
    after = WriteWitness.after

    def spy(witness: WriteWitness, before: object) -> None:
        seen.append(threading.current_thread().name)
        after(witness, before)  # type: ignore[arg-type]
        vouched.set()

    WriteWitness.after = spy  # type: ignore[method-assign]
    try:
        writer = Writer(store)
        writer.batch([inquiry("cust-a", "k1", 0)])
        datastore._checkpoint_due = 0.0  # due at the next commit
        writer.batch([inquiry("cust-a", "k2", 1)])
        assert vouched.wait(30), "no checkpoint ran"
        assert seen == ["store-checkpoint"], seen
        frames = Path(f"{tmp_path / 'views.db'}-wal").stat().st_size
        assert frames > 0  # the log stays (PASSIVE): copied, not truncated
    finally:
        WriteWitness.after = after  # type: ignore[method-assign]
        store.close()
    again = JourneyStore(tmp_path / "views.db")  # closed with its checkpointer: all there
    try:
        journey = again.journey("cust-a")
        assert journey is not None and journey.touchpoints == 2
    finally:
        again.close()
