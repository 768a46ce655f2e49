"""A PostgreSQL store that goes away is a *transient* failure (issue 8, build item 1): the
pipeline stops at its last committed position, says so, retries, and once the database
answers again every touchpoint is folded — nothing lost, nothing skipped, nothing doubled.

The shared PostgreSQL is never stopped: the test takes its own fresh database away
(``ALLOW_CONNECTIONS false`` and its sessions ended), which is what the engine sees of a
database server that is down."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from consumers.log import Log
from consumers.runner import Runner
from consumers.supervisor import Supervisor
from journey.emitter import Emitter
from projections.keys import CustomerKeys
from tests.conftest import postgres_url
from tests.integration.test_exactly_once import quiet_logs  # noqa: F401
from tests.integration.test_failures import processed_offsets, touchpoints, turn_until

pytestmark = pytest.mark.postgres


@contextmanager
def database_away(store: str) -> Iterator[None]:
    """No connection to the store's database is possible until the block ends."""
    admin = postgres_url()
    assert admin is not None
    name = store.rpartition("/")[2]
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
    try:
        yield
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_the_database_away_stops_the_runner_and_it_loses_nothing(
    embedded_log: Log, unique_topic: str, postgres_store: str
) -> None:
    log = embedded_log  # the fault is the database's, not the log's
    log.ensure_topics([unique_topic, f"{unique_topic}.dlq"], 3)
    first, second = touchpoints(300, 20), touchpoints(300, 20)
    keys = CustomerKeys(postgres_store)
    emitter = Emitter(log, topic=unique_topic, source="test", keys=keys)
    emitter.emit_touchpoints(first)
    runner = Runner(
        log,
        postgres_store,
        topic=unique_topic,
        dlq_topic=f"{unique_topic}.dlq",
        group=f"g-{uuid.uuid4().hex[:8]}",
        follow_swaps=False,
        batch_size=50,
    )
    supervisor = Supervisor(runner, None, backoff_max_s=0.05, progress_interval_s=3600)
    try:
        turn_until(supervisor, lambda: len(runner.store.event_ids()) == len(first))
        emitter.emit_touchpoints(second)  # sealing needs the key table: before it goes
        with database_away(postgres_store):
            turn_until(supervisor, lambda: supervisor.health.failing)
            for _ in range(3):  # still away: failing at every attempt, never ok
                supervisor.turn()
                assert supervisor.health.failing, "ok while the database is away"
            assert supervisor.health.kind in {"store_io", "store_unreachable"}, supervisor.health
        turn_until(supervisor, lambda: all(v == 0 for v in runner.lag().values()))
        turn_until(supervisor, lambda: not supervisor.health.failing)
        assert runner.store.event_ids() == {str(t.event_id) for t in first + second}
        for part, offsets in processed_offsets(runner).items():
            assert offsets == list(range(len(offsets))), f"a gap in partition {part}"
        assert runner.store.query("SELECT COUNT(*) FROM dead_letters") == [(0,)]
    finally:
        runner.close()
        keys.close()
