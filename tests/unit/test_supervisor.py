"""The supervised loop: progress while catching up, failure kinds, and health that clears
only on real progress."""

from __future__ import annotations

import errno
import sqlite3
import uuid
from pathlib import Path

import pytest
import structlog

from consumers.embedded_log import EmbeddedLog
from consumers.log import LogError, LogUnavailable
from consumers.runner import Runner
from consumers.supervisor import Supervisor, classify_failure
from journey.emitter import Emitter
from projections.integrity import StoreCorrupt
from projections.keys import CustomerKeys
from projections.location import StoreUnreachable
from tests.integration.test_failures import touchpoints

TOPIC = "sup.touchpoints"


def test_catching_up_shows_position_lag_rate_and_eta(tmp_path: Path) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    log.ensure_topics([TOPIC, f"{TOPIC}.dlq"], 2)
    keys = CustomerKeys(tmp_path / "views.db")
    Emitter(log, topic=TOPIC, source="test", keys=keys).emit_touchpoints(touchpoints(600, 20))
    keys.close()
    runner = Runner(
        log, tmp_path / "views.db", topic=TOPIC, dlq_topic=f"{TOPIC}.dlq",
        group=f"g-{uuid.uuid4().hex[:6]}", batch_size=100, follow_swaps=False,
    )  # fmt: skip
    supervisor = Supervisor(runner, None, progress_interval_s=0.0)
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(40):
                supervisor.turn()
                if all(v == 0 for v in runner.lag().values()):
                    break
            supervisor.turn()
        progress = [e for e in logs if e["event"] == "catching up"]
        assert progress, [e["event"] for e in logs]
        first = progress[0]
        assert first["lag_events"] > 0
        assert set(first["positions"]) == {f"{TOPIC}[0]", f"{TOPIC}[1]"}
        assert "events_per_s" in first
        assert "eta_s" in first
        assert any(e["event"] == "caught up with the log" for e in logs)
    finally:
        runner.close()
        log.close()


def test_failures_are_told_apart() -> None:
    assert classify_failure(sqlite3.OperationalError("database or disk is full")) == "store_full"
    assert classify_failure(OSError(errno.ENOSPC, "No space left on device")) == "store_full"
    assert classify_failure(sqlite3.OperationalError("database is locked")) == "store_locked"
    assert classify_failure(StoreCorrupt("damaged")) == "store_corrupt"
    assert classify_failure(sqlite3.DatabaseError("database disk image is malformed")) == (
        "store_corrupt"
    )
    assert classify_failure(LogUnavailable("broker away")) == "log_unavailable"
    assert classify_failure(LogError("no such topic")) == "log_unavailable"
    assert classify_failure(OSError(errno.EIO, "I/O error")) == "store_io"
    assert classify_failure(ZeroDivisionError()) == "error"
    # PostgreSQL away: at connect, and a session ended under a query (psycopg's subclasses
    # of OperationalError, e.g. AdminShutdown, and its pool's PoolTimeout)
    assert classify_failure(StoreUnreachable("did not answer")) == "store_io"
    psycopg = pytest.importorskip("psycopg")
    assert classify_failure(psycopg.errors.AdminShutdown("terminating")) == "store_io"
    pool = pytest.importorskip("psycopg_pool")
    assert classify_failure(pool.PoolTimeout("no connection in 10 s")) == "store_io"
