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


def test_a_database_that_stops_answering_is_a_fast_503_and_the_service_recovers_by_itself(
    tmp_path: Path, postgres_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database on another machine that is down, hung or cut off does not refuse: nothing
    answers, and each request waited for a connect timeout of its own (10 s) before its
    503. Now the first request that meets the silence waits at most the 2 s connect timeout
    and every other request is refused at once from what the service knows ("is
    unreachable ... tried again every ..."), saying that nothing can be shown as fresh;
    when the database answers again the service (its in-process runner too) recovers by
    itself. Observed, not timed: the retry interval is set beyond the test's length while
    the database is silent, so every refusal after the first must come from that knowledge
    (before, each request tried and waited instead)."""
    from projections import location
    from tests.integration.tcp_gate import TcpGate, gated_url, target_of
    from tests.service.helpers import inquiry

    gate = TcpGate(target_of(postgres_store))
    try:
        with stories_on_postgresql(
            tmp_path, gated_url(postgres_store, gate), "views-pg-silent"
        ) as svc:
            assert svc.get("/customers/cust-lina").status_code == 200
            monkeypatch.setattr(location, "AWAY_RECHECK_S", 3600.0, raising=False)
            with gate.silent():
                first = svc.get("/customers/cust-lina")
                assert first.status_code == 503, first.text[:500]
                for path in ("/customers/cust-lina", "/service-levels", "/customers/cust-sven"):
                    answer = svc.get(path)
                    assert answer.status_code == 503, (path, answer.text[:500])
                    message = answer.json()["error"]["message"]
                    assert "is unreachable" in message and "tried again every" in message, (
                        path,
                        message,
                    )
                    assert "no view can be shown as fresh" in message, message
                    assert answer.headers["retry-after"]
                    assert "s3cr3t-pw" not in answer.text
                health = svc.anonymous.get("/healthz")
                assert health.status_code == 503, health.text[:500]
                assert "tried again every" in health.json()["error"]["message"]
            assert gate.held_connections >= 1, "the silence was never met: a weak test"
            monkeypatch.setattr(location, "AWAY_RECHECK_S", 0.2, raising=False)
            deadline = time.monotonic() + 90
            while (answer := svc.get("/customers/cust-lina")).status_code != 200:
                assert time.monotonic() < deadline, answer.text[:500]
                time.sleep(0.3)
            assert answer.json()["data"]["name"] == "Lina Ek"
            # The in-process runner is back too: a new touchpoint is folded and read.
            [position] = svc.emitter.emit_touchpoints([inquiry("cust-lina", "Back again?")])
            after = {"after": position.token()}
            while (fresh := svc.get("/customers/cust-lina", params=after)).status_code != 200:
                assert time.monotonic() < deadline, fresh.text[:500]
                time.sleep(0.3)
            subjects = [e.get("summary", "") for e in fresh.json()["data"]["timeline"]["entries"]]
            assert any("Back again?" in s for s in subjects), subjects
    finally:
        gate.close()
