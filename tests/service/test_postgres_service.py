"""The query service on the PostgreSQL store: `journey serve --store postgresql://…` answers
what it answers on SQLite — views, the timeline by cursor, search by what was said (pg_trgm),
the service-level lists, health — with the seed stories played into a fresh database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from journey.pipeline import ManualClock, Pipeline
from journey.service import ServiceOptions
from journey.settings import Settings
from journey.stories import all_touchpoints
from tests.service.helpers import TOPIC, Running, running_service

pytestmark = pytest.mark.postgres


@contextmanager
def stories_on_postgresql(tmp_path: Path, store: str, group: str) -> Iterator[Running]:
    """The seed stories played into ``store`` (with a password in its URL: the test server
    trusts loopback, so any will do, and it must never be shown), served from it."""
    store = store.replace("://journey@", "://journey:s3cr3t-pw@")
    log = EmbeddedLog(str(tmp_path / "log.db"))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    touchpoints = all_touchpoints(now)
    clock = ManualClock(touchpoints[0].occurred_at)
    pipeline = Pipeline(log, store, topic=TOPIC, clock=clock)
    try:
        pipeline.play(touchpoints, clock, now)
    finally:
        pipeline.close()
    settings = Settings(broker=f"embedded://{tmp_path / 'log.db'}", store=store, topic=TOPIC)
    try:
        with running_service(settings, ServiceOptions(max_wait_ms=1000, group=group), log) as svc:
            yield svc
    finally:
        log.close()


def test_the_service_answers_from_postgresql(tmp_path: Path, postgres_store: str) -> None:
    with stories_on_postgresql(tmp_path, postgres_store, "views-pg") as svc:
        health = svc.get("/healthz")
        assert health.status_code == 200, health.text
        assert "s3cr3t-pw" not in health.text and "***" in health.text
        view = svc.get("/customers/cust-lina")
        assert view.status_code == 200, view.text
        body = view.json()
        assert body["data"]["name"] == "Lina Ek"
        assert body["data"]["timeline"]["total"] == body["data"]["touchpoints"] > 2
        page = svc.get("/customers/cust-lina/timeline", params={"page_size": 2})
        assert page.status_code == 200, page.text
        first = page.json()["data"]
        assert len(first["entries"]) == 2 and first["next"]
        rest = svc.get(
            "/customers/cust-lina/timeline", params={"page_size": 50, "cursor": first["next"]}
        ).json()["data"]
        seen = [e["event_id"] for e in first["entries"] + rest["entries"]]
        assert len(seen) == len(set(seen)) == first["total"]
        found = svc.get("/search", params={"q": "FOURTH TIME"})
        assert found.status_code == 200, found.text
        hits = found.json()["data"]["hits"]
        assert hits and all(h["matched"] == "said" for h in hits)
        assert "Fourth time" in hits[0]["matched_value"]
        levels = svc.get("/service-levels")
        assert levels.status_code == 200, levels.text


def test_the_database_away_is_503_never_500_and_answers_again_after(
    tmp_path: Path, postgres_store: str
) -> None:
    """Issue 8's transient rule for the PostgreSQL store: while the database is away every
    answer that needs it is 503 saying so (never a 500 "this is a bug"), /healthz is 503,
    no password is shown; when it is back, the same questions are answered again."""
    from tests.integration.test_postgres_outage import database_away

    with stories_on_postgresql(tmp_path, postgres_store, "views-pg-away") as svc:
        assert svc.get("/customers/cust-lina").status_code == 200
        with database_away(postgres_store):
            for path in ("/customers/cust-lina", "/service-levels", "/healthz"):
                answer = svc.get(path)
                assert answer.status_code == 503, (path, answer.text[:500])
                assert "s3cr3t-pw" not in answer.text
        deadline = time.monotonic() + 60
        while (answer := svc.get("/customers/cust-lina")).status_code != 200:
            assert time.monotonic() < deadline, answer.text[:500]
            time.sleep(0.5)
        assert answer.json()["data"]["name"] == "Lina Ek"
