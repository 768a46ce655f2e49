"""Several workers share the partitions, with the views in PostgreSQL (issue 10, item 3).

Three `journey run` processes in one consumer group fold a 1,000-order history on a real
Kafka into one PostgreSQL store while it is being produced; one is killed with SIGKILL half
way. The other two take over its partitions, and in the end:
* every message on the log is folded exactly once (nothing lost, nothing doubled);
* every customer's journey equals a single process's rebuild of the same log;
* each passed deadline was decided once, by one worker: exactly the PromiseBroken facts the
  history implies are on the log, each once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.log import Log
from consumers.rebuild import rebuild
from domain.positions import TopicPartition
from journey.emitter import Emitter
from projections.keys import CustomerKeys
from projections.store import JourneyStore
from tests.contract.test_store_contract import canonical
from tests.scenarios.test_event_time import broken_on_log, check, history, months, truth

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(420)]

JOURNEY = Path(sys.executable).with_name("journey")
WORKERS = 3


@pytest.fixture
def workers(
    kafka_log: Log, postgres_store: str, unique_topic: str, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {
        **os.environ,
        "JOURNEY_BROKER": kafka_log.url,
        "JOURNEY_TOPIC": unique_topic,
        "JOURNEY_STORE": postgres_store,
        "JOURNEY_GROUP": f"views-{uuid.uuid4().hex[:8]}",
        # Once every partition is read to its head and quiet this long, the wall clock
        # (long past the 2025 history) decides what is left.
        "JOURNEY_IDLE_TIMEOUT": "3",
    }
    kafka_log.ensure_topics([unique_topic, f"{unique_topic}.dlq"], 6)
    JourneyStore(postgres_store).close()  # the tables, made once before the workers start
    procs = [
        subprocess.Popen(
            [str(JOURNEY), "--log-format", "json", "run"],
            env=env,
            stdout=(tmp_path / f"worker{n}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for n in range(WORKERS)
    ]
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _owned(log_file: Path) -> bool:
    return b'"partitions assigned"' in log_file.read_bytes()


def test_killing_a_worker_loses_and_doubles_nothing_and_each_deadline_is_decided_once(
    kafka_log: Log,
    postgres_store: str,
    unique_topic: str,
    tmp_path: Path,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    arrivals = history()
    expected = truth(arrivals)
    deadline = time.monotonic() + 90
    while not all(_owned(tmp_path / f"worker{n}.log") for n in range(WORKERS)):
        for n, proc in enumerate(workers):
            assert proc.poll() is None, (tmp_path / f"worker{n}.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the workers never got partitions"
        time.sleep(0.2)
    emitter = Emitter(
        kafka_log,
        topic=unique_topic,
        source="history",
        partitions=6,
        keys=CustomerKeys(postgres_store),
    )
    watch = JourneyStore(postgres_store)
    try:
        chunks = months(arrivals)
        for n, month in enumerate(chunks):
            emitter.emit_touchpoints([a.touchpoint for a in month])
            time.sleep(0.5)  # touchpoints flow while the workers fold
            if n == len(chunks) // 2:
                workers[0].send_signal(signal.SIGKILL)
                workers[0].wait(timeout=30)
        # The two survivors take over: everything folded, and the keepers' facts too.
        deadline = time.monotonic() + 240
        while True:
            heads = kafka_log.high_watermarks(unique_topic)
            positions = watch.positions()
            folded = all(positions.get(tp, -1) >= h - 1 for tp, h in _tps(unique_topic, heads))
            broken = broken_on_log(kafka_log, unique_topic)
            if folded and len(set(broken)) >= len(expected):
                # One more look after the keepers had time to (wrongly) add more.
                time.sleep(4)
                heads = kafka_log.high_watermarks(unique_topic)
                positions = watch.positions()
                if all(positions.get(tp, -1) >= h - 1 for tp, h in _tps(unique_topic, heads)):
                    break
            for proc in workers[1:]:
                assert proc.poll() is None, "a surviving worker died"
            assert time.monotonic() < deadline, (
                f"not caught up: positions {positions}, heads {heads}, "
                f"{len(set(broken))} of {len(expected)} broken promises"
            )
            time.sleep(1)
        check(broken_on_log(kafka_log, unique_topic), expected, "3 workers, one SIGKILLed")
        on_log = sum(kafka_log.high_watermarks(unique_topic).values())
        assert watch.query("SELECT count(*) FROM touchpoints") == [(on_log,)]
        assert watch.query("SELECT count(*) FROM dead_letters") == [(0,)]
        # The same views as one process folding the same log.
        single, _, _ = rebuild(
            kafka_log, tmp_path / "single.db", topic=unique_topic, dlq_topic=f"{unique_topic}.dlq"
        )
        alone = JourneyStore(single)
        try:
            customers = [str(r[0]) for r in watch.query("SELECT customer_id FROM customers")]
            assert sorted(customers) == sorted(
                str(r[0]) for r in alone.query("SELECT customer_id FROM customers")
            )
            for cid in customers:
                shared, own = watch.journey(cid), alone.journey(cid)
                assert shared is not None and own is not None
                assert shared.touchpoints == own.touchpoints, cid
                assert canonical(shared.journey) == canonical(own.journey), cid
        finally:
            alone.close()
    finally:
        watch.close()
    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(1, WORKERS)]
    assert all("Traceback" not in text for text in logs), logs
    # Every deadline was decided by a worker while it held the deadline's partition (by its
    # own log of assignments and revocations), the killed one included.
    for n in range(WORKERS):
        assert _decided_outside_holding(tmp_path / f"worker{n}.log", unique_topic) == [], n
    # The survivors were handed partitions again after the kill (the runner logs where it
    # starts each assigned partition: from the shared store's positions).
    starts = [
        sum('"partitions assigned"' in line and '"starts"' in line for line in text.splitlines())
        for text in logs
    ]
    assert max(starts) >= 2, starts


def _tps(topic: str, heads: dict[int, int]) -> list[tuple[TopicPartition, int]]:
    return [(TopicPartition(topic, p), h) for p, h in heads.items()]


def _decided_outside_holding(log_file: Path, topic: str) -> list[str]:
    """Each `deadline passed` this worker logged for a partition of ``topic`` it did not
    hold then (a worker also joins the intake topic's group: its partitions don't count)."""

    def ours(tps: list[str]) -> set[int]:
        return {int(p[:-1]) for t, _, p in (tp.rpartition("[") for tp in tps) if t == topic}

    held: set[int] = set()
    wrong = []
    for line in log_file.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a SIGKILLed worker's last line may be cut
        event = entry.get("event")
        if event == "partitions assigned" and "assigned" in entry:
            held |= ours(entry["assigned"])
        elif event == "partitions revoked":
            held -= ours(entry["revoked"])
        elif event == "deadline passed" and entry["partition"] not in held:
            wrong.append(f"{entry['timestamp']} partition {entry['partition']}")
    return wrong
