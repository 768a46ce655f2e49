"""Blue-green rebuild on the PostgreSQL store: the log replayed into a schema of its own in
the same database, swapped in with one row of ``public.journey_active_store``; the rebuilt
store answers as the live one did, and the live runner follows the swap."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.rebuild import rebuild
from domain import catalogue as c
from domain.envelope import new_touchpoint
from journey.pipeline import ManualClock, Pipeline
from journey.stories import all_touchpoints
from projections.location import schema_of
from projections.store import JourneyStore, active_store
from tests.integration.test_exactly_once import all_views

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_rebuild_into_a_new_schema_swaps_and_the_live_runner_follows(
    tmp_path: Path, postgres_store: str
) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    stories = all_touchpoints(NOW)
    clock = ManualClock(stories[0].occurred_at)
    pipeline = Pipeline(log, postgres_store, topic="t", clock=clock)
    try:
        pipeline.play(stories, clock, NOW)
        live = all_views(pipeline.store, NOW)
        new, stats, _ = rebuild(log, postgres_store, topic="t", dlq_topic="t.dlq")
        assert isinstance(new, str) and (schema_of(new) or "").startswith("journey_")
        assert active_store(postgres_store) == new
        assert stats.dead_letters == 0
        rebuilt = JourneyStore(new)
        try:
            assert all_views(rebuilt, NOW) == live
            assert rebuilt.positions() == pipeline.store.positions()
        finally:
            rebuilt.close()
        after = new_touchpoint(
            c.InquiryReceived(case_id="after-1", channel="chat", subject="after the swap"),
            customer_id="cust-after",
            occurred_at=NOW,
            source="test",
        )
        pipeline.emit([after])
        pipeline.runner.step()
        pipeline.runner.run_until_caught_up(60)
        assert pipeline.store.address == new
        view = pipeline.customer("cust-after")
        assert view is not None and view.touchpoints == 1
        old = JourneyStore(postgres_store)
        try:
            assert old.journey("cust-after") is None  # the old store got nothing more
        finally:
            old.close()
    finally:
        pipeline.close()
        log.close()


def test_stores_in_several_schemas_of_one_database_each_have_their_search_index(
    postgres_store: str,
) -> None:
    """Before: the first store opened in a database was a `?schema=` store, so pg_trgm was
    installed into that schema; a store in any other schema then failed at open (operator
    class gin_trgm_ops does not exist), a rebuild's new schema included."""
    from projections.location import with_schema
    from tests.contract.test_store_contract import Writer, inquiry

    for url in (
        with_schema(postgres_store, "first"),
        with_schema(postgres_store, "second"),
        postgres_store,  # and the database's own store
    ):
        store = JourneyStore(url)
        try:
            Writer(store).batch([inquiry("cust-1", "k1", 0, body="Where is my parcel?")])
            assert {str(r[0]) for r in store.search_said("PARCEL", 10)} == {"cust-1"}
        finally:
            store.close()
