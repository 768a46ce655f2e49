"""Search by what was said goes through an FTS5 trigram index kept in the same transaction as
the ``said`` rows (issue 9, item 5: it scanned every text with LIKE)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.embedded_log import EmbeddedLog
from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from journey.pipeline import ManualClock, Pipeline
from journey.service.queries import search_customers
from projections.store import JourneyStore

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _inquiry(customer_id: str, body: str, minutes: int = 0) -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(case_id=f"k-{customer_id}", channel="chat", subject="x", body=body),
        customer_id=customer_id,
        occurred_at=T0 + timedelta(minutes=minutes),
        source="test",
    )


def _pipeline(tmp_path: Path) -> Pipeline:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    return Pipeline(log, tmp_path / "views.db", topic="t", clock=ManualClock(T0 + timedelta(1)))


def _plan(store: JourneyStore, q: str) -> str:
    rows = store.query(
        "EXPLAIN QUERY PLAN SELECT s.customer_id FROM said_fts f"
        " JOIN said s ON s.event_id = f.event_id WHERE said_fts MATCH ?",
        (f'"{q}"',),
    )
    return " | ".join(str(r[-1]) for r in rows)


def test_said_is_indexed_as_it_is_written_and_search_finds_any_substring(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.emit(
        [
            _inquiry("cust-a", "The zipper on my Fjellduk anorak broke on day two"),
            _inquiry("cust-b", 'She said "100% wool" — it is not'),
        ]
    )
    pipeline.catch_up()
    store = pipeline.store
    (said,) = store.query("SELECT count(*) FROM said")[0]
    (indexed,) = store.query("SELECT count(*) FROM said_fts")[0]
    assert said == indexed == 2
    assert "VIRTUAL TABLE INDEX" in _plan(store, "anorak")
    # Mid-word and any case, as the LIKE scan did; quotes and % are just characters.
    assert [h.customer_id for h in search_customers(store, "ELLDUK ANO")] == ["cust-a"]
    assert [h.customer_id for h in search_customers(store, '"100% wool"')] == ["cust-b"]
    assert search_customers(store, "cashmere") == []
    pipeline.close()


def test_a_store_from_before_the_index_is_indexed_when_opened(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.emit([_inquiry("cust-a", "Mitt Fjellduk-anorak er ødelagt")])
    pipeline.catch_up()
    pipeline.close()
    # As a store made before the index: no index table, no record of having built it.
    with sqlite3.connect(tmp_path / "views.db") as con:
        con.execute("DROP TABLE said_fts")
        con.execute("DROP TRIGGER said_indexed")
        con.execute("DELETE FROM journey_store_meta WHERE key = 'said_fts'")
    store = JourneyStore(tmp_path / "views.db")
    try:
        assert [h.customer_id for h in search_customers(store, "fjellduk")] == ["cust-a"]
    finally:
        store.close()
