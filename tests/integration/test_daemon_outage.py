"""`journey run` and `journey serve` across a broker outage, on a broker of the test's own.

Before: `journey run` exited 12 to 14 s after the broker went away (reading the high-water
marks timed out and nothing retried), and after the broker returned `POST /events` waited
13 to 95 s behind the service's offset reads. Now the run loop stops at its last committed
position, says so once (and once a minute), and resumes when the broker is back; the
service answers 503 while the broker is away and accepts touchpoints again within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from consumers.kafka_log import KafkaLog
from domain import catalogue as c
from domain.envelope import encode, new_touchpoint
from journey.service import ServiceOptions, create_app
from journey.service.server import start_in_thread
from journey.settings import Settings
from projections.store import JourneyStore
from tests.integration.own_broker import OwnBroker  # the broker fixture: conftest.py
from tests.service.helpers import envelope

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

# The bound: resume within 10 s after the broker returns (measured from the moment
# the broker answers again; its own start-up is not ours to count).
RESUME_WITHIN_S = 10.0


def _journey() -> str:
    return str(Path(sys.executable).with_name("journey"))


def _inquiry(cid: str) -> bytes:
    return encode(
        new_touchpoint(
            c.InquiryReceived(case_id=f"k-{uuid.uuid4().hex[:6]}", channel="chat", subject="hi"),
            customer_id=cid,
            occurred_at=datetime.now(UTC),
            source="test",
        )
    )


def _folded(store_path: Path) -> int:
    store = JourneyStore(store_path, check_pages=False)
    try:
        return int(store.query("SELECT COUNT(*) FROM touchpoints")[0][0])
    finally:
        store.close()


RunProcess = tuple["subprocess.Popen[str]", Path, str]


@pytest.fixture
def run_process(broker: OwnBroker, tmp_path: Path) -> Iterator[RunProcess]:
    topic = f"outage.{uuid.uuid4().hex[:8]}"
    store = tmp_path / "views.db"
    log_file = tmp_path / "run.log"
    env = {
        **os.environ,
        "JOURNEY_BROKER": f"kafka://{broker.address}",
        "JOURNEY_TOPIC": topic,
        "JOURNEY_STORE": f"sqlite:///{store}",
        "JOURNEY_LOG_FORMAT": "json",
    }
    with log_file.open("w") as out:
        proc = subprocess.Popen(
            [_journey(), "run"], env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        yield proc, store, topic
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_journey_run_survives_a_broker_outage_and_resumes(
    broker: OwnBroker,
    run_process: RunProcess,
    tmp_path: Path,
) -> None:
    proc, store, topic = run_process
    log = KafkaLog([broker.address], timeout_s=5.0)
    try:
        log.ensure_topics([topic, f"{topic}.dlq"], 3)
        from consumers.log import OutgoingMessage

        log.produce(topic, [OutgoingMessage(key=b"cust-1", value=_inquiry("cust-1"))])
        deadline = time.monotonic() + 60
        while not (store.exists() and _folded(store) == 1):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the runner never folded the first touchpoint"
            time.sleep(0.2)
    finally:
        log.close()

    broker.stop()
    time.sleep(25)  # the old runner was gone after 12-14 s
    assert proc.poll() is None, "journey run exited while the broker was away"
    broker.start()
    back = time.monotonic()
    log = KafkaLog([broker.address], timeout_s=5.0)
    try:
        from consumers.log import OutgoingMessage

        log.produce(topic, [OutgoingMessage(key=b"cust-2", value=_inquiry("cust-2"))])
        while _folded(store) < 2:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() - back < RESUME_WITHIN_S + 5, "did not resume in time"
            time.sleep(0.2)
        resumed_after = time.monotonic() - back
    finally:
        log.close()
    # Health clears once what failed last works again: the runner folding, or the keeper's
    # next tick (it waits its own backoff, up to 5 s, when it was the last to fail).
    deadline = time.monotonic() + 30
    while "pipeline resumed" not in (tmp_path / "run.log").read_text():
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "health never said the pipeline resumed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    lines = (tmp_path / "run.log").read_text().splitlines()
    failing = [line for line in lines if "retrying" in line]
    # One line when it stopped, then at most one a minute: no flood while it retried.
    assert 1 <= len(failing) <= 3, failing
    assert any("pipeline resumed" in line for line in lines)
    print(f"journey run resumed {resumed_after:.1f} s after the broker answered again")


def test_serve_answers_503_while_the_broker_is_away_and_accepts_again_after(
    broker: OwnBroker,
    tmp_path: Path,
) -> None:
    topic = f"outage.{uuid.uuid4().hex[:8]}"
    settings = Settings(
        broker=f"kafka://{broker.address}", store=f"sqlite:///{tmp_path / 'views.db'}", topic=topic
    )
    log = KafkaLog([broker.address], timeout_s=5.0)
    log.ensure_topics([topic, f"{topic}.dlq"], 3)
    app = create_app(settings, ServiceOptions(max_wait_ms=1000, group=f"views-{topic}"), log=log)
    server = start_in_thread(app)
    try:
        _, key = app.state.service.keys.create("admin", "outage-admin")
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, timeout=60, headers=auth) as http:
            sent = http.post("/events", json=envelope("cust-1", "before"))
            assert sent.status_code == 201, sent.text
            broker.stop()
            deadline = time.monotonic() + 60
            while (health := http.get("/healthz")).status_code != 503:
                assert time.monotonic() < deadline, health.json()
                time.sleep(0.5)
            assert health.json()["failure_kind"] == "log_unavailable", health.json()
            started = time.monotonic()
            away = http.post("/events", json=envelope("cust-1", "while away"))
            assert away.status_code == 503, away.text
            assert time.monotonic() - started < 30, "a produce must not hang behind the outage"
            broker.start()
            back = time.monotonic()
            while True:
                again = http.post("/events", json=envelope("cust-2", "after"))
                if again.status_code == 201:
                    break
                assert time.monotonic() - back < RESUME_WITHIN_S, again.text
                time.sleep(0.5)
            accepted_after = time.monotonic() - back
            read = http.get("/customers/cust-2", params={"after": again.json()["token"]})
            deadline = time.monotonic() + 30
            while read.status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
                read = http.get("/customers/cust-2", params={"after": again.json()["token"]})
            assert read.status_code == 200, read.text
            assert read.json()["fresh"] is True
            while http.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.5)
            print(f"POST /events accepted again {accepted_after:.1f} s after the broker returned")
    finally:
        server.stop()
        log.close()
