"""A Kafka poll fills the batch it is asked for while the log has more, and a consumer at
the head gets a lone message from one fetch, as before.

kafka-python's poll returns what its last fetches brought: with a small fetch per partition
(JOURNEY_KAFKA_FETCH_KIB) a replay's polls came back short, so a rebuild made more, smaller
transactions (docs/BENCHMARKS.md, "Rebuild: peak RSS headroom"). On a real broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from consumers.kafka_log import KafkaConsumerAdapter, KafkaLog
from consumers.log import Log, OutgoingMessage

pytestmark = pytest.mark.kafka


@pytest.fixture
def small_fetches(kafka_log: Log) -> Iterator[KafkaLog]:
    """A log whose consumers fetch 1 KiB of a partition at a time (the least it takes)."""
    assert isinstance(kafka_log, KafkaLog)
    log = KafkaLog(kafka_log.bootstrap_servers, partition_fetch_bytes=1024)
    yield log
    log.close()


def _counting_polls(consumer: KafkaConsumerAdapter) -> list[int]:
    """Counts the adapter's calls of kafka-python's poll (the real one runs)."""
    calls: list[int] = []
    inner = consumer._consumer
    real = inner.poll

    def poll(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    inner.poll = poll
    return calls


def test_a_poll_behind_the_head_fills_its_batch_from_several_fetches(
    small_fetches: KafkaLog, unique_topic: str
) -> None:
    small_fetches.ensure_topics([unique_topic], partitions=3)
    value = b"{" + b"x" * 400 + b"}"  # two or three to a 1 KiB fetch
    small_fetches.produce(
        unique_topic,
        [OutgoingMessage(key=f"c-{i % 30}".encode(), value=value) for i in range(300)],
    )
    consumer = small_fetches.consumer(None, [unique_topic])
    try:
        got = consumer.poll(timeout_s=30.0, max_records=200)
        # One fetch brings a few records of each partition; the poll gathers until full.
        assert len(got) == 200
        assert got == sorted(got, key=lambda m: (m.topic, m.partition, m.offset))
        # What is left comes next (a fill also ends at an empty fetch, so under load it may
        # take one more poll), and then the head: nothing twice, nothing skipped.
        rest: list[Any] = []
        for _ in range(10):
            more = consumer.poll(timeout_s=5.0, max_records=200)
            rest += more
            if len(got) + len(rest) >= 300 or not more:
                break
        seen = {(m.partition, m.offset) for m in got + rest}
        assert len(got) + len(rest) == 300 and len(seen) == 300
    finally:
        consumer.close()


def test_a_consumer_at_the_head_gets_a_lone_message_from_one_fetch(
    small_fetches: KafkaLog, unique_topic: str
) -> None:
    small_fetches.ensure_topics([unique_topic], partitions=3)
    consumer = small_fetches.consumer(None, [unique_topic])
    try:
        assert consumer.poll(timeout_s=1.0, max_records=500) == []  # at the head, empty
        small_fetches.produce(unique_topic, [OutgoingMessage(key=b"c-1", value=b"{}")])
        calls = _counting_polls(consumer)
        got: list[Any] = []
        while not got:
            calls.clear()
            got = consumer.poll(timeout_s=5.0, max_records=500)
        # The message is the whole log past the head: no further poll waits for more.
        assert [m.value for m in got] == [b"{}"]
        assert len(calls) == 1
    finally:
        consumer.close()
