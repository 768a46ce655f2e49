"""The freshness protocol on the embedded log: read-your-writes, the default (no token) wait
for the log head, and a stalled runner reported as lag — never passed off as fresh.
The same protocol on a real Kafka: tests/integration/test_service_kafka.py."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from journey.pipeline import Pipeline
from journey.service.freshness import tokens_of
from tests.service.helpers import TOPIC, Running, envelope, event_ids, inquiry


def test_read_your_writes_with_the_token_post_events_returned(svc: Running) -> None:
    waited = []
    for i in range(60):
        env = envelope(f"cust-ryw-{i % 7}", f"question {i}")
        token = svc.http.post("/events", json=env).json()["token"]
        if i % 2:
            response = svc.get(f"/customers/{env['customer_id']}", params={"after": token})
        else:
            response = svc.get(
                f"/customers/{env['customer_id']}", headers={"X-Journey-Position": token}
            )
        body = response.json()
        assert response.status_code == 200, body
        assert body["fresh"] is True and body["basis"] == "token"
        assert env["event_id"] in event_ids(body), f"round {i}: own write not visible"
        waited.append(body["waited_ms"])
    # Event-driven, not 100 ms sleeps: typically a few milliseconds on the embedded log.
    assert statistics.median(waited) < 100, waited


def test_read_your_writes_with_an_emitters_token(svc: Running) -> None:
    for i in range(40):
        tp = inquiry("cust-sven", f"emitted directly {i}")
        (pos,) = svc.emitter.emit_touchpoints([tp])
        body = svc.get("/customers/sven.berg@example.se", params={"after": pos.token()}).json()
        assert body["fresh"] is True
        assert str(tp.event_id) in event_ids(body), f"round {i}"


def test_default_wait_reads_the_head_at_request_time(svc: Running) -> None:
    """No token: an event another backend produced just before the request is in the
    answer, because the service read the partition's high-water mark when it arrived."""
    for i in range(40):
        tp = inquiry(f"cust-head-{i % 5}", f"behind the service's back {i}")
        svc.emitter.emit_touchpoints([tp])
        response = svc.get(f"/customers/{tp.customer_id}")
        body = response.json()
        assert response.status_code == 200, body
        assert body["basis"] == "head" and body["fresh"] is True
        assert str(tp.event_id) in event_ids(body), f"round {i}"


def test_a_brand_new_customer_is_found_without_a_token(svc: Running) -> None:
    tp = inquiry("cust-brand-new", "first contact ever")
    svc.emitter.emit_touchpoints([tp])
    body = svc.get("/customers/cust-brand-new").json()
    assert body["data"]["customer_id"] == "cust-brand-new"


def test_stalled_runner_reports_the_lag_instead_of_old_data(
    make_service: Callable[..., Running],
) -> None:
    svc = make_service(max_wait_ms=300)
    assert svc.service.thread is not None
    before = svc.get("/customers/cust-sven").json()
    assert before["fresh"] is True
    svc.service.thread.pause()
    assert svc.get("/healthz").json()["runner"] == "paused"
    tp = inquiry("cust-sven", "while the runner is stalled")
    (pos,) = svc.emitter.emit_touchpoints([tp])

    # Default (no token): 503, with how far behind, and no customer data.
    response = svc.get("/customers/cust-sven")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-journey-fresh"] == "false"
    body = response.json()
    assert body["error"]["code"] == "not_fresh"
    assert "1 event(s)" in body["error"]["message"]
    assert body["fresh"] is False and body["basis"] == "head"
    assert body["lag"]["events"] == 1
    (row,) = [r for r in body["lag"]["partitions"] if r["partition"] == pos.partition]
    assert row["events"] == 1 and row["target"] == pos.offset and row["position"] < pos.offset
    assert body["waited_ms"] >= 290, "it did wait for the bound"
    assert "data" not in body

    # With a token: the same.
    response = svc.get("/customers/cust-sven", params={"after": pos.token()})
    assert response.status_code == 503 and response.json()["basis"] == "token"

    # Lists depend on every partition: the same.
    assert svc.get("/service-levels").status_code == 503

    # Asked for explicitly: the old view, marked as such.
    response = svc.get("/customers/cust-sven", params={"stale": "true"})
    assert response.status_code == 200
    stale = response.json()
    assert stale["fresh"] is False and stale["lag"]["events"] == 1
    assert response.headers["x-journey-fresh"] == "false"
    assert str(tp.event_id) not in event_ids(stale)
    assert stale["as_of"] == before["as_of"]

    # The lag in seconds grows while the runner stays stalled.
    time.sleep(1.1)
    later = svc.get("/customers/cust-sven", params={"stale": "true"}).json()
    assert later["lag"]["seconds"] >= 1.0, later["lag"]
    health = svc.get("/healthz").json()
    assert health["lag_events"] == 1 and health["lag_seconds"] >= 1.0

    # A customer the view may simply not have folded yet: 503, not 404.
    other = inquiry("cust-not-folded-yet", "hello")
    svc.emitter.emit_touchpoints([other])
    response = svc.get("/customers/cust-not-folded-yet", params={"stale": "true"})
    assert response.status_code == 503, response.text

    svc.service.thread.resume()
    body = svc.get("/customers/cust-sven").json()
    assert body["fresh"] is True and body["lag"]["events"] == 0
    assert str(tp.event_id) in event_ids(body)


def test_no_runner_reads_a_store_another_process_writes(
    make_service: Callable[..., Running],
) -> None:
    """`journey serve --no-runner` beside a `journey run`: it only reads, and it is as
    fresh as that runner (here: none yet → 503; once the other runner folded → fresh)."""
    svc = make_service(run_pipeline=False, max_wait_ms=300)
    assert svc.get("/healthz").json()["runner"] == "disabled"
    tp = inquiry("cust-erik", "does anyone read these?")
    (pos,) = svc.emitter.emit_touchpoints([tp])
    assert svc.get("/customers/cust-erik").status_code == 503

    store = Path(str(svc.service.reader.base))
    other = Pipeline(svc.log, store, topic=TOPIC, group="the-other-runner")
    try:
        other.runner.run_until_caught_up(30)
    finally:
        other.close()
    body = svc.get("/customers/cust-erik", params={"after": pos.token()}).json()
    assert body["fresh"] is True
    assert str(tp.event_id) in event_ids(body)
    assert svc.get("/customers/cust-erik").json()["fresh"] is True


def _link(customer_id: str, kind: str, value: str) -> Touchpoint:
    return new_touchpoint(
        c.IdentityLinked(kind=kind, value=value, verified=True),  # type: ignore[arg-type]
        customer_id=customer_id,
        occurred_at=datetime.now(UTC),
        source="test",
    )


def _candidates(body: dict[str, Any]) -> set[str]:
    return {m["customer_id"] for m in body["data"]["candidates"]}


def test_read_your_writes_through_an_identity_link(svc: Running) -> None:
    """A token from an IdentityLinked: the key is resolved after the wait, so the answer is
    what the link made it (not the one customer it named before), and fresh: two customers
    who are not one person now hold the e-mail verified, so the answer is both candidates."""
    wrong = []
    for i in range(50):
        run = uuid.uuid4().hex[:8]
        a, b, email = f"cust-la-{run}", f"cust-lb-{run}", f"b-{run}@example.com"
        before = svc.emitter.emit_touchpoints(
            [inquiry(a, "first"), inquiry(a, "second"), _link(b, "email", email)]
        )
        first = svc.get(f"/customers/{email}", params={"after": tokens_of(before)}).json()
        assert first["data"]["customer_id"] == b, f"round {i}: {first}"

        (pos,) = svc.emitter.emit_touchpoints([_link(a, "email", email)])
        response = svc.get(f"/customers/{email}", params={"after": pos.token()})
        body = response.json()
        assert response.status_code in (200, 300), body
        assert body["fresh"] is True and body["basis"] == "token", f"round {i}"
        if response.status_code != 300 or _candidates(body) != {a, b}:
            wrong.append(i)
    assert not wrong, f"{len(wrong)} of 50 reads answered the customer before the link"


def test_a_lookup_by_identity_without_a_token_waits_for_every_partition(
    svc: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token: an e-mail may be given to another customer by a fact on any partition, so
    the answer waits for every partition's head, not only the one of whom it named before
    (before: 'can still answer the old customer right after a link on another partition')."""
    import consumers.runner

    # Each fold takes 30 ms: the link is not folded yet when the read arrives.
    monkeypatch.setattr(consumers.runner, "_FOLD_DELAY_S", 0.03)
    wrong = []
    for i in range(20):
        run = uuid.uuid4().hex[:8]
        a, b, email = f"cust-na-{run}", f"cust-nb-{run}", f"n-{run}@example.com"
        before = svc.emitter.emit_touchpoints(
            [inquiry(a, "first"), inquiry(a, "second"), _link(b, "email", email)]
        )
        first = svc.get(f"/customers/{email}", params={"after": tokens_of(before)}).json()
        assert first["data"]["customer_id"] == b, f"round {i}: {first}"
        svc.emitter.emit_touchpoints([_link(a, "email", email)])
        response = svc.get(f"/customers/{email}")  # no token: the head, read now
        body = response.json()
        assert response.status_code in (200, 300), body
        assert body["fresh"] is True, f"round {i}"
        if response.status_code != 300 or _candidates(body) != {a, b}:
            wrong.append(i)
    assert not wrong, f"{len(wrong)} of 20 reads answered the customer before the link"
