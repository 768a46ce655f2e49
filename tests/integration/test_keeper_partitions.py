"""The promise keeper with several workers and a producer that does not partition by murmur2.

docs/events.md asks producers for Kafka's default partitioner, but a producer with another one
(librdkafka's CRC32, round-robin) puts a customer where ``partition_for`` does not say. Each
worker's keeper selects the clocks of the customers folded from the partitions it holds; it
must decide them by that same partition, or the clock is selected by one worker and decided
by none (session 14 decided by ``partition_for``: the deadline below was never recorded).
On a real broker, two workers in one group sharing a PostgreSQL store.

The keeper's fact follows the customer too: produced by key, murmur2 would put it in another
partition than the customer's touchpoints (session 15 did), where it is folded by a worker
that may not hold the customer, in an order that depends on which worker reads first, and it
moves the customer's stored partition. It goes to the stored partition instead."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from consumers.log import Log, TopicPartition
from consumers.rebuild import rebuild
from domain import catalogue as c
from domain.envelope import Touchpoint, decode, new_touchpoint
from journey.pipeline import ManualClock, Pipeline
from projections.store import JourneyStore
from tests.contract.test_store_contract import canonical
from tests.integration.test_exactly_once import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
LATER = T0 + timedelta(days=10)


def touchpoint(data: c.TouchpointData, customer: str, at: datetime) -> Touchpoint:
    return new_touchpoint(data, customer_id=customer, occurred_at=at, source="t")


def customer_in(log: Log, topic: str, partition: int, prefix: str) -> str:
    """A customer id murmur2 puts in ``partition``."""
    n = 0
    while log.partition_for(topic, f"{prefix}-{n}".encode()) != partition:
        n += 1
    return f"{prefix}-{n}"


def put_in(log: Log, pipeline: Pipeline, topic: str, partition: int, tp: Touchpoint) -> None:
    """``tp`` as the engine's emitter would write it, sent to ``partition`` by hand (as a
    producer with another partitioner would)."""
    (message,) = pipeline.emitter.messages([tp])
    producer = KafkaProducer(bootstrap_servers=log.url.removeprefix("kafka://").split(","))
    try:
        sent = producer.send(
            topic,
            key=message.key,
            value=message.value,
            headers=list(message.headers),
            partition=partition,
        )
        assert sent.get(timeout=30).partition == partition
    finally:
        producer.close()


def turns(workers: list[Pipeline], until: object, timeout_s: float = 60) -> None:
    """Both workers step (each polls its own partitions) until ``until()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not until():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the workers did not get there in time"
        for worker in workers:
            worker.runner.step()


def stray_decided(
    log: Log, topic: str, workers: list[Pipeline], filler: Callable[[str], Touchpoint]
) -> str:
    """A customer murmur2 puts in partition 0 whose inquiry a producer put in partition 1;
    both partitions' event clocks moved past the reply target by ``filler``'s touchpoint;
    folded by both workers, and their keepers looked three times (the facts they produced
    folded in between). Returns the customer."""
    a, b = workers
    # The group shares the two partitions out: one each.
    turns([a, b], lambda: len(a.runner.owned_partitions()) == len(b.runner.owned_partitions()) == 1)
    stray = customer_in(log, topic, 0, "stray")
    put_in(
        log, a, topic, 1, touchpoint(c.InquiryReceived(case_id="k1", channel="email"), stray, T0)
    )
    for partition in (0, 1):
        a.emit([filler(customer_in(log, topic, partition, "filler"))])

    def folded() -> bool:
        positions = a.store.positions()
        return all(
            positions.get(TopicPartition(topic, p), -1) >= hwm - 1
            for p, hwm in log.high_watermarks(topic).items()
        )

    turns([a, b], folded)
    for _ in range(3):  # each keeper looks again and again; the facts are folded in between
        a.keeper.tick()
        b.keeper.tick()
        turns([a, b], folded)
    return stray


@pytest.fixture
def workers(kafka_log: Log, postgres_store: str, unique_topic: str) -> Iterator[list[Pipeline]]:
    kafka_log.ensure_topics([unique_topic, f"{unique_topic}.dlq"], 2)
    clock = ManualClock(LATER)
    pair = [
        Pipeline(kafka_log, postgres_store, topic=unique_topic, clock=clock, partitions=2)
        for _ in range(2)
    ]
    try:
        yield pair
    finally:
        for pipeline in pair:
            pipeline.close()


def test_a_customer_put_in_another_partition_than_murmur2s_has_its_deadline_decided_once(
    kafka_log: Log, workers: list[Pipeline], unique_topic: str
) -> None:
    log, topic = kafka_log, unique_topic
    stray = stray_decided(
        log,
        topic,
        workers,
        lambda filler: touchpoint(
            c.IdentityLinked(kind="email", value=f"{filler}@x.test"), filler, LATER
        ),
    )
    store = workers[0].store
    assert store.query("SELECT partition FROM customers WHERE customer_id = ?", (stray,)) == [(1,)]

    decided = [
        tp
        for tp in (decode(m.value) for m in read_topic(log, topic))
        if isinstance(tp.data, c.ReplyOverdue)
    ]
    assert [(tp.customer_id, tp.data.case_id) for tp in decided] == [(stray, "k1")]


def test_the_keepers_fact_goes_to_the_customers_partition_and_the_views_equal_one_workers(
    kafka_log: Log, workers: list[Pipeline], unique_topic: str, tmp_path: Path
) -> None:
    log, topic = kafka_log, unique_topic
    stray = stray_decided(
        log,
        topic,
        workers,
        lambda filler: touchpoint(c.InquiryReceived(case_id="f", channel="chat"), filler, LATER),
    )
    store = workers[0].store

    overdue = [
        (m.partition, tp.customer_id)
        for m in read_topic(log, topic)
        if isinstance((tp := decode(m.value)).data, c.ReplyOverdue)
    ]
    assert overdue == [(1, stray)], "the fact goes where the customer's touchpoints are"
    # Folded from partition 1, the customer stays there (and with its holder).
    assert store.query("SELECT partition FROM customers WHERE customer_id = ?", (stray,)) == [(1,)]

    # The same views as one process folding the same log.
    single, _, _ = rebuild(log, tmp_path / "single.db", topic=topic, dlq_topic=f"{topic}.dlq")
    alone = JourneyStore(single)
    try:
        rows = "SELECT customer_id, partition, touchpoints FROM customers ORDER BY customer_id"
        assert store.query(rows) == alone.query(rows)
        for (cid,) in store.query("SELECT customer_id FROM customers"):
            shared, own = store.journey(str(cid)), alone.journey(str(cid))
            assert shared is not None and own is not None
            assert canonical(shared.journey) == canonical(own.journey), cid
    finally:
        alone.close()
