"""The freshness protocol of the query service on a real Kafka (`make kafka`).

Emit → query with the token returns the new event every time (200+ round trips, over HTTP
and with the Python emitter's token); without a token the service waits for the partition's
high-water mark read at request time; a stalled runner is reported as lag, never as a
fresh answer.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.log import Log
from journey.service import ServiceOptions
from journey.settings import Settings
from tests.service.helpers import Running, envelope, event_ids, inquiry, running_service

pytestmark = pytest.mark.kafka


@pytest.fixture
def kafka_service(kafka_log: Log, tmp_path: Path) -> Iterator[Running]:
    topic = f"test.svc.{uuid.uuid4().hex[:10]}"
    kafka_log.ensure_topics([topic, f"{topic}.dlq"], 6)
    settings = Settings(
        broker=kafka_log.url, topic=topic, store=f"sqlite:///{tmp_path / 'views.db'}"
    )
    options = ServiceOptions(max_wait_ms=5000, group=f"views-{uuid.uuid4().hex[:8]}")
    with running_service(settings, options, log=kafka_log) as running:
        # The runner has joined its group and been assigned every partition.
        first = inquiry("cust-warmup", "warm-up")
        (pos,) = running.emitter.emit_touchpoints([first])
        response = running.get("/customers/cust-warmup", params={"after": pos.token()})
        assert response.status_code == 200, response.text
        yield running


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


def test_read_your_writes_over_http_every_time(kafka_service: Running) -> None:
    svc = kafka_service
    rounds, latencies = 200, []
    for i in range(rounds):
        customer = f"cust-k{i % 13}"
        env = envelope(customer, f"question {i}")
        started = time.perf_counter()
        posted = svc.http.post("/events", json=env)
        assert posted.status_code == 201, posted.text
        token = posted.json()["token"]
        if i % 2:
            response = svc.get(f"/customers/{customer}", params={"after": token})
        else:
            response = svc.get(f"/customers/{customer}", headers={"X-Journey-Position": token})
        latencies.append(time.perf_counter() - started)
        body = response.json()
        assert response.status_code == 200, body
        assert body["fresh"] is True and body["basis"] == "token", body
        assert env["event_id"] in event_ids(body), f"round {i}: own write not in the answer"
        (row,) = [r for r in body["as_of"] if f"{r['topic']}:{r['partition']}" in token]
        assert f"{row['topic']}:{row['partition']}:" in token
        assert row["offset"] >= int(token.rsplit(":", 1)[1])
    print(f"\nPOST /events → GET ?after= on Kafka, {rounds} rounds: {_percentiles(latencies)}")


def test_read_your_writes_with_the_python_emitters_token(kafka_service: Running) -> None:
    svc = kafka_service
    for i in range(200):
        tp = inquiry(f"cust-e{i % 11}", f"emitted {i}")
        (pos,) = svc.emitter.emit_touchpoints([tp])
        body = svc.get(f"/customers/{tp.customer_id}", params={"after": pos.token()}).json()
        assert body["fresh"] is True, body
        assert str(tp.event_id) in event_ids(body), f"round {i}"


def test_default_wait_for_the_head_without_a_token(kafka_service: Running) -> None:
    svc = kafka_service
    for i in range(100):
        tp = inquiry(f"cust-h{i % 7}", f"behind the service's back {i}")
        svc.emitter.emit_touchpoints([tp])
        response = svc.get(f"/customers/{tp.customer_id}")
        body = response.json()
        assert response.status_code == 200, body
        assert body["basis"] == "head" and body["fresh"] is True
        assert str(tp.event_id) in event_ids(body), f"round {i}: the head read missed it"


def test_stalled_runner_on_kafka_reports_lag(kafka_log: Log, tmp_path: Path) -> None:
    topic = f"test.svc.{uuid.uuid4().hex[:10]}"
    kafka_log.ensure_topics([topic, f"{topic}.dlq"], 6)
    settings = Settings(
        broker=kafka_log.url, topic=topic, store=f"sqlite:///{tmp_path / 'views.db'}"
    )
    options = ServiceOptions(max_wait_ms=500, group=f"views-{uuid.uuid4().hex[:8]}")
    with running_service(settings, options, log=kafka_log) as svc:
        first = inquiry("cust-stall", "before the stall")
        (pos,) = svc.emitter.emit_touchpoints([first])
        assert svc.get("/customers/cust-stall", params={"after": pos.token()}).json()["fresh"]
        assert svc.service.thread is not None
        svc.service.thread.pause()
        late = inquiry("cust-stall", "during the stall")
        (pos,) = svc.emitter.emit_touchpoints([late])

        response = svc.get("/customers/cust-stall")
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["fresh"] is False and body["lag"]["events"] == 1
        assert body["error"]["code"] == "not_fresh"
        response = svc.get("/customers/cust-stall", params={"after": pos.token()})
        assert response.status_code == 503
        stale = svc.get("/customers/cust-stall", params={"stale": "true"}).json()
        assert stale["fresh"] is False and str(late.event_id) not in event_ids(stale)
        assert str(first.event_id) in event_ids(stale)

        svc.service.thread.resume()
        body = svc.get("/customers/cust-stall").json()
        assert body["fresh"] is True and str(late.event_id) in event_ids(body)
