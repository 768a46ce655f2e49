"""A live SQLite writer's periodic checkpoint runs beside its commits, not inside them.

A checkpoint copies the write-ahead log into the file and syncs it: under 1,000 touchpoints/s
it took a p50 of 79 ms once a second on the writer's thread, and every touchpoint polled
behind it was visible that much later (bench/turns.py). It now runs on a thread of its own,
one at a time, and the writer's witness still vouches for what it changed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from projections import backends
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
        assert seen and set(seen) == {"store-checkpoint"}, seen
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


def test_past_its_bound_the_writer_checkpoints_once_itself_so_the_log_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checkpoints beside the commits seldom let the log start over (measured: the
    # write-ahead log grew to 93 MiB in 20 s of writes, against 10 with them inline).
    monkeypatch.setattr(backends, "_WAL_FRAMES_BOUND", 1)
    store = JourneyStore(tmp_path / "views.db")
    backend = store.backend
    assert isinstance(backend, SQLiteBackend)
    datastore = backend.datastore
    seen: list[tuple[str, int, int]] = []
    checkpoint = backends._Datastore.checkpoint

    def spy(self: backends._Datastore, conn: object, mode: str) -> tuple[int, int, int]:
        result = checkpoint(self, conn, mode)  # type: ignore[arg-type]
        seen.append((threading.current_thread().name, result[1], result[2]))
        return result

    monkeypatch.setattr(backends._Datastore, "checkpoint", spy)
    try:
        writer = Writer(store)
        writer.batch([inquiry("cust-a", "k1", 0)])
        datastore._checkpoint_due = 0.0
        writer.batch([inquiry("cust-a", "k2", 1)])
        deadline = time.monotonic() + 30
        while not datastore._restart_wal:
            assert time.monotonic() < deadline, f"no checkpoint asked for a restart: {seen}"
            time.sleep(0.01)
        writer.batch([inquiry("cust-b", "k3", 2)])  # after this commit, the writer itself
        assert [name for name, _, _ in seen][-1] == "MainThread", seen
        assert not datastore._restart_wal
    finally:
        store.close()
