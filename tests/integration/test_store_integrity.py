"""A damaged or foreign store is found and reported with the remedy — at open, on /healthz
and on reads — instead of "ok" on /healthz and 500 on reads."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.runner import Runner
from domain.rules import ServiceRules
from journey.emitter import Emitter
from journey.service import ServiceOptions
from journey.settings import Settings
from projections.due import DueClocks
from projections.integrity import ForeignStore, OutdatedStore, StoreCorrupt
from projections.keys import CustomerKeys
from projections.store import JourneyStore
from tests.integration.test_exactly_once import quiet_logs  # noqa: F401  (autouse)
from tests.integration.test_failures import touchpoints
from tests.service.helpers import running_service

TOPIC = "journey.touchpoints"


def fill(directory: Path, n: int = 600) -> tuple[Path, Path]:
    """An embedded log and a store holding ``n`` touchpoints; the store's WAL checkpointed."""
    log = EmbeddedLog(str(directory / "log.db"))
    log.ensure_topics([TOPIC, f"{TOPIC}.dlq"], 3)
    keys = CustomerKeys(directory / "views.db")
    Emitter(log, topic=TOPIC, source="test", keys=keys).emit_touchpoints(touchpoints(n, 30))
    keys.close()
    runner = Runner(log, directory / "views.db", topic=TOPIC, dlq_topic=f"{TOPIC}.dlq")
    runner.run_until_caught_up(60)
    # As a running engine leaves it: the keeper has worked out its clocks' deadlines (else
    # the served engine's keeper rewrites those pages first, and the write-ahead log's
    # fresh copies hide the damage the tests make in the middle of the file).
    DueClocks(ServiceRules()).due(runner.store, runner.store.positions(), datetime.now(UTC))
    runner.close()
    log.close()
    con = sqlite3.connect(directory / "views.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return directory / "log.db", directory / "views.db"


def damage(path: Path) -> None:
    """Overwrite 16 pages in the middle of the file, as a bad disk sector would."""
    size = path.stat().st_size
    assert size > 64 * 4096, size
    with path.open("r+b") as fh:
        fh.seek((size // 2) // 4096 * 4096)
        fh.write(os.urandom(16 * 4096))


def test_a_store_damaged_in_the_middle_is_refused_at_open_with_the_remedy(tmp_path: Path) -> None:
    _, store = fill(tmp_path)
    damage(store)
    with pytest.raises(StoreCorrupt, match=r"damaged.*journey rebuild all"):
        JourneyStore(store)


def test_a_foreign_file_is_refused_and_not_overwritten(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    with pytest.raises(ForeignStore, match="not a SQLite database"):
        JourneyStore(text)
    assert text.read_text().startswith("not a database")
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(ForeignStore, match=r"not a journey store \(it holds the tables users\)"):
        JourneyStore(other)


def test_a_store_of_the_old_schema_is_refused_as_outdated(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE tracking (application_name TEXT, notification_id INTEGER)")
    con.execute("CREATE TABLE processed_events (event_id TEXT PRIMARY KEY)")
    con.commit()
    con.close()
    with pytest.raises(OutdatedStore, match="older version"):
        JourneyStore(old)


def test_journey_run_on_a_damaged_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    log, store = fill(tmp_path, 400)
    damage(store)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("journey")), "--broker", f"embedded://{log}",
         "--store", f"sqlite:///{store}", "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "damaged" in lines[0]
    assert "journey rebuild all" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_reports_a_store_damaged_while_it_runs(tmp_path: Path) -> None:
    log, store = fill(tmp_path)
    settings = Settings(broker=f"embedded://{log}", store=f"sqlite:///{store}", topic=TOPIC)
    options = ServiceOptions(
        max_wait_ms=500, group="views-corrupt", integrity_interval_s=0.2, sample_interval_s=0.1
    )
    with running_service(settings, options) as svc:
        assert svc.get("/healthz").status_code == 200
        damage(store)
        deadline = time.monotonic() + 30
        while (health := svc.get("/healthz")).status_code != 503:
            assert time.monotonic() < deadline, health.json()
            time.sleep(0.1)
        body = health.json()
        assert body["failure_kind"] == "store_corrupt"
        assert "journey rebuild all" in body["last_error"]
        statuses = set()
        for n in range(30):
            answer = svc.get(f"/customers/cust-{n}", params={"stale": "true"})
            statuses.add(answer.status_code)
            if answer.status_code == 503:
                assert "rebuild" in answer.json()["error"]["message"]
        assert 500 not in statuses, statuses


@pytest.mark.postgres
def test_a_postgresql_store_of_another_schema_version_or_kind_is_refused(
    postgres_store: str,
) -> None:
    """As a SQLite file is: an outdated layout is refused at open with the remedy, never
    written into (the new code's statements would fail on the old tables, or worse)."""
    import psycopg

    JourneyStore(postgres_store).close()
    with psycopg.connect(postgres_store, autocommit=True) as conn:
        conn.execute("UPDATE journey_store_meta SET value = '1' WHERE key = 'schema_version'")
    with pytest.raises(OutdatedStore, match=r"schema version 1.*journey rebuild"):
        JourneyStore(postgres_store)
    with psycopg.connect(postgres_store, autocommit=True) as conn:
        conn.execute("UPDATE journey_store_meta SET value = 'other-app' WHERE key = 'kind'")
    with pytest.raises(ForeignStore, match="other-app"):
        JourneyStore(postgres_store)
