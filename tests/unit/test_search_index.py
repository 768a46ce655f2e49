"""Search by what was said goes through an FTS5 trigram index over the touchpoints rows'
text, kept in the same transaction (issue 9, item 5: it scanned every text with LIKE)."""

from __future__ import annotations

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
        "EXPLAIN QUERY PLAN SELECT t.customer_id FROM touchpoints_fts f"
        " JOIN touchpoints t ON t.id = f.rowid WHERE touchpoints_fts MATCH ?",
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
    (said,) = store.query("SELECT count(*) FROM touchpoints WHERE text IS NOT NULL")[0]
    (indexed,) = store.query("SELECT count(*) FROM touchpoints_fts_docsize")[0]
    assert said == indexed == 2
    assert "VIRTUAL TABLE INDEX" in _plan(store, "anorak")
    # Mid-word and any case, as the LIKE scan did; quotes and % are just characters.
    assert [h.customer_id for h in search_customers(store, "ELLDUK ANO")] == ["cust-a"]
    assert [h.customer_id for h in search_customers(store, '"100% wool"')] == ["cust-b"]
    assert search_customers(store, "cashmere") == []
    pipeline.close()


def test_an_erasure_takes_what_was_said_out_of_the_index(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.emit(
        [
            _inquiry("cust-a", "Mitt Fjellduk-anorak er ødelagt"),
            _inquiry("cust-b", "Fjellduk sendte feil farge"),
        ]
    )
    pipeline.catch_up()
    store = pipeline.store
    assert {h.customer_id for h in search_customers(store, "fjellduk")} == {"cust-a", "cust-b"}
    pipeline.emit(
        [
            new_touchpoint(
                c.ErasureRequested(reason="gdpr"),
                customer_id="cust-a",
                occurred_at=T0 + timedelta(minutes=5),
                source="test",
            )
        ]
    )
    pipeline.catch_up()
    assert [h.customer_id for h in search_customers(store, "fjellduk")] == ["cust-b"]
    (indexed,) = store.query("SELECT count(*) FROM touchpoints_fts_docsize")[0]
    assert indexed == 1
    rows = store.query("SELECT text, fact FROM touchpoints WHERE customer_id = 'cust-a'")
    assert all(text is None for text, _ in rows)
    pipeline.close()
