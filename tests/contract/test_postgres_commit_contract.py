"""The PostgreSQL store's commits: durable as SQLite's synchronous=NORMAL, not more (the
log is the truth: a lost commit takes its positions with it and is read again)."""

from __future__ import annotations

import pytest

from projections.store import JourneyStore


@pytest.mark.postgres
def test_a_postgresql_store_commits_without_waiting_for_the_disk_flush(
    postgres_store: str,
) -> None:
    """A commit does not wait for its WAL flush (8-22 ms each on the bench machine): a
    server crash may lose the last commits, with their positions, never consistency."""
    store = JourneyStore(postgres_store)
    try:
        assert store.query("SHOW synchronous_commit") == [("off",)]
    finally:
        store.close()
