"""A PostgreSQL store that goes away is a *transient* failure (issue 8, build item 1): the
pipeline stops at its last committed position, says so, retries, and once the database
answers again every touchpoint is folded — nothing lost, nothing skipped, nothing doubled.

The shared PostgreSQL is never stopped: the test takes its own fresh database away
(``ALLOW_CONNECTIONS false`` and its sessions ended), which is what the engine sees of a
database server that is down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from consumers import open_log
from consumers.log import Log
from consumers.runner import Runner
from consumers.supervisor import Supervisor
from journey.emitter import Emitter
from projections.keys import CustomerKeys
from projections.store import JourneyStore
from tests.conftest import postgres_url
from tests.integration.test_exactly_once import quiet_logs  # noqa: F401
from tests.integration.test_failures import processed_offsets, touchpoints, turn_until

pytestmark = pytest.mark.postgres

JOURNEY = Path(sys.executable).with_name("journey")


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


def test_journey_run_started_while_the_database_is_away_waits_for_it(
    tmp_path: Path, postgres_store: str
) -> None:
    """Before: `journey run` exited 1 at once ("did not answer") when its PostgreSQL store
    was away at the start, although an outage after the start is waited out."""
    topic = f"wait.{uuid.uuid4().hex[:8]}"
    broker = f"embedded://{tmp_path / 'log.db'}"
    env = {
        **os.environ,
        "JOURNEY_BROKER": broker,
        "JOURNEY_TOPIC": topic,
        "JOURNEY_STORE": postgres_store,
        "JOURNEY_LOG_FORMAT": "json",
    }
    out_file = tmp_path / "run.log"
    with database_away(postgres_store), out_file.open("w") as out:
        proc = subprocess.Popen([str(JOURNEY), "run"], env=env, stdout=out, stderr=out)
        try:
            time.sleep(4)
            assert proc.poll() is None, out_file.read_text()[-3000:]
        except BaseException:
            proc.kill()
            raise
    try:
        assert "store_unreachable_waiting" in out_file.read_text()
        keys = CustomerKeys(postgres_store)
        log = open_log(broker)
        try:
            log.ensure_topics([topic], 6)
            sent = touchpoints(20, 5)
            Emitter(log, topic=topic, source="test", keys=keys).emit_touchpoints(sent)
        finally:
            log.close()
            keys.close()
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, out_file.read_text()[-3000:]
            store = JourneyStore(postgres_store)
            try:
                if store.event_ids() == {str(t.event_id) for t in sent}:
                    break
            finally:
                store.close()
            assert time.monotonic() < deadline, "the runner never folded after the database came"
            time.sleep(0.3)
        assert "store_answered" in out_file.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out_file.read_text()[-3000:]


def test_journey_run_stopped_while_waiting_for_the_database_exits_cleanly(
    tmp_path: Path, postgres_store: str
) -> None:
    env = {
        **os.environ,
        "JOURNEY_BROKER": f"embedded://{tmp_path / 'log.db'}",
        "JOURNEY_STORE": postgres_store,
    }
    with database_away(postgres_store):
        proc = subprocess.Popen(
            [str(JOURNEY), "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        time.sleep(3)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
