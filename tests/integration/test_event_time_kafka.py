"""Event time decides, on a real broker, with the history written by a non-Python client.

The same 1,000-order history (tests/scenarios/test_event_time.py) is produced by kcat,
once all of it before the engine starts and once month by month into a running engine
(its runner and keeper on their own thread, as in `journey run`, the keeper ticking while
partitions are still behind); both record exactly the PromiseBroken facts the history
implies, once each, the same as the history lived with a test clock, and a restart adds none.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.kafka_log import KafkaLog
from consumers.log import Log
from domain.envelope import encode
from journey.pipeline import ManualClock, Pipeline
from journey.synthetic import Arrival
from tests.scenarios.test_event_time import (
    NOW,
    broken_on_log,
    check,
    history,
    lived,
    months,
    restart_adds_nothing,
    statuses_in_store,
    statuses_in_truth,
    truth,
)

pytestmark = [pytest.mark.kafka, pytest.mark.kcat]


def produce_with_kcat(kcat: str, log: KafkaLog, topic: str, arrivals: list[Arrival]) -> None:
    """key TAB envelope, one a line, in arrival order; Kafka's partitioner (murmur2), and
    idempotence so that a retry can never reorder one customer's facts."""
    lines = "".join(
        f"{a.touchpoint.customer_id}\t{encode(a.touchpoint).decode()}\n" for a in arrivals
    )
    done = subprocess.run(
        [
            kcat,
            "-P",
            "-b",
            ",".join(log.bootstrap_servers),
            "-t",
            topic,
            "-K",
            "\t",
            "-X",
            "topic.partitioner=murmur2_random",
            "-X",
            "enable.idempotence=true",
        ],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kcat exited {done.returncode}: {done.stderr}"


def assert_partitioned_like_the_engine(log: KafkaLog, topic: str) -> None:
    """kcat put every customer where the engine's own partitioner would have."""
    consumer = log.consumer(f"check-{uuid.uuid4().hex[:8]}", [topic])
    want = sum(log.high_watermarks(topic).values())
    seen = 0
    try:
        deadline = time.monotonic() + 60
        while seen < want and time.monotonic() < deadline:
            for msg in consumer.poll(0.5, 2000):
                assert msg.key is not None
                assert msg.partition == log.partition_for(topic, msg.key), msg.key
                seen += 1
    finally:
        consumer.close()
    assert seen == want


class Engine:
    """A pipeline running on its own thread, as `journey run` does."""

    def __init__(self, log: Log, store: Path, topic: str, group: str) -> None:
        self.clock = ManualClock(NOW)
        self.pipeline = Pipeline(log, store, topic=topic, clock=self.clock, group=group)
        self.pipeline.runner.batch_size = 97  # several batches per month
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.pipeline.run, args=(self._stop, 0.02), daemon=True
        )
        self._thread.start()

    def wait_caught_up(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while any(self.pipeline.runner.lag().values()):
            assert time.monotonic() < deadline, "the engine did not catch up"
            time.sleep(0.05)

    def finish(self) -> None:
        """Stop the thread, then let the wall clock decide what no touchpoint did."""
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive()
        try:
            self.pipeline.settle(NOW, self.clock)
        finally:
            self.pipeline.close()


def test_kcat_history_all_before_start_and_month_by_month_give_the_same_true_facts(
    kcat: str, klog: KafkaLog, tmp_path: Path
) -> None:
    arrivals = history()
    expected = truth(arrivals)
    group = f"views-{uuid.uuid4().hex[:8]}"
    topics = {how: f"test.{uuid.uuid4().hex[:12]}" for how in ("all", "monthly")}
    klog.ensure_topics([*topics.values(), *(f"{t}.dlq" for t in topics.values())], 6)

    # (a) the whole history on the log before the engine starts
    produce_with_kcat(kcat, klog, topics["all"], arrivals)
    assert sum(klog.high_watermarks(topics["all"]).values()) == len(arrivals)
    assert_partitioned_like_the_engine(klog, topics["all"])
    engine = Engine(klog, tmp_path / "all.db", topics["all"], group)
    engine.wait_caught_up()
    engine.finish()
    all_at_once = broken_on_log(klog, topics["all"])
    check(all_at_once, expected, "all before the engine starts (kcat, Kafka)")
    assert statuses_in_store(tmp_path / "all.db") == statuses_in_truth(arrivals)
    restart_adds_nothing(klog, tmp_path / "all.db", topics["all"], group=group)

    # (b) month by month into a running engine that catches up between steps
    engine = Engine(klog, tmp_path / "monthly.db", topics["monthly"], group + "-m")
    for month in months(arrivals):
        produce_with_kcat(kcat, klog, topics["monthly"], month)
        engine.wait_caught_up()
    engine.finish()
    monthly = broken_on_log(klog, topics["monthly"])
    check(monthly, expected, "month by month (kcat, Kafka)")
    assert statuses_in_store(tmp_path / "monthly.db") == statuses_in_truth(arrivals)
    restart_adds_nothing(klog, tmp_path / "monthly.db", topics["monthly"], group=group + "-m")

    # (c) the same history lived with a test clock (embedded log): the same facts
    embedded = EmbeddedLog(str(tmp_path / "lived.db"))
    try:
        lived(embedded, tmp_path / "lived-views.db", "shop", arrivals)
        assert set(broken_on_log(embedded, "shop")) == set(all_at_once) == set(monthly)
    finally:
        embedded.close()
