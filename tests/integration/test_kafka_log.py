"""What only the Kafka adapter has to prove, on a real broker (`make kafka`).

The semantics both logs share are in tests/contract; here: topics really get the partitions
and the infinite retention asked for (set on the topic, not inherited from the broker), the
producer really is idempotent, a dead-letter topic sits beside its main topic, errors come
fast and name what is wrong, and on_assign runs on the caller's thread.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

from consumers.kafka_log import KafkaConsumerAdapter, KafkaLog
from consumers.log import (
    Log,
    LogError,
    LogUnavailable,
    Message,
    OutgoingMessage,
    TopicPartition,
)
from journey.pipeline import Pipeline
from journey.synthetic import generate_touchpoints

pytestmark = pytest.mark.kafka


@pytest.fixture
def klog(kafka_log: Log) -> KafkaLog:
    assert isinstance(kafka_log, KafkaLog)
    return kafka_log


@pytest.fixture
def admin(klog: KafkaLog) -> Iterator[KafkaAdminClient]:
    """An admin client of its own, so the checks do not go through the code under test."""
    client = KafkaAdminClient(bootstrap_servers=klog.bootstrap_servers, client_id="test-admin")
    yield client
    client.close()


def _partitions_on_broker(admin: KafkaAdminClient, topic: str) -> int:
    (info,) = admin.describe_topics([topic])
    assert info["error_code"] == 0, info
    return len(info["partitions"])


def _topic_configs(admin: KafkaAdminClient, topic: str) -> Mapping[str, Mapping[str, object]]:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["retention.ms", "retention.bytes"])
    described = admin.describe_configs([resource], config_filter="all")
    configs: Mapping[str, Mapping[str, object]] = described["topic"][topic]
    return configs


def _poll_until(consumer_poll: object, want: int, timeout_s: float = 20.0) -> list[Message]:
    assert callable(consumer_poll)
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got.extend(consumer_poll(0.5))
    return got


def test_topics_get_the_requested_partitions_and_infinite_retention_on_the_topic(
    klog: KafkaLog, admin: KafkaAdminClient, unique_topic: str
) -> None:
    dlq = f"{unique_topic}.dlq"
    klog.ensure_topics([unique_topic, dlq], partitions=3)

    for topic in (unique_topic, dlq):
        assert _partitions_on_broker(admin, topic) == 3
        configs = _topic_configs(admin, topic)
        for name in ("retention.ms", "retention.bytes"):
            assert configs[name]["value"] == "-1"
            # Set on the topic itself: the test broker's own default is infinite too, so only
            # the source tells that ensure_topics asked for it.
            assert configs[name]["config_source"] == "DYNAMIC_TOPIC_CONFIG"


def test_ensure_topics_again_is_harmless_and_keeps_the_partitions(
    klog: KafkaLog, admin: KafkaAdminClient, unique_topic: str
) -> None:
    klog.ensure_topics([unique_topic], partitions=2)
    klog.ensure_topics([unique_topic], partitions=2)
    klog.ensure_topics([unique_topic], partitions=5)  # exists: left as it is, no error

    assert _partitions_on_broker(admin, unique_topic) == 2
    assert klog.partitions(unique_topic) == [0, 1]
    # A second adapter (another process, say) sees the same and creates nothing.
    other = KafkaLog(klog.bootstrap_servers)
    try:
        other.ensure_topics([unique_topic], partitions=2)
        assert other.partitions(unique_topic) == [0, 1]
    finally:
        other.close()


def test_the_producer_is_idempotent_with_acks_all(klog: KafkaLog, unique_topic: str) -> None:
    klog.ensure_topics([unique_topic], partitions=2)
    assert klog.producer_id is None  # nothing produced yet: no producer, no id

    klog.produce(unique_topic, [OutgoingMessage(key=b"c-1", value=b"{}")])

    producer = klog._producer.current
    assert producer.config["enable_idempotence"] is True
    assert producer.config["acks"] == -1  # "all"
    # Only a broker that accepted the idempotent producer hands out a producer id.
    assert klog.producer_id is not None
    assert klog.producer_id >= 0
    # One producer per log, reused by every produce.
    klog.produce(unique_topic, [OutgoingMessage(key=b"c-2", value=b"{}")])
    assert klog._producer.current is producer


def test_a_partition_added_to_a_topic_after_its_count_was_remembered_can_be_named(
    klog: KafkaLog, admin: KafkaAdminClient, unique_topic: str
) -> None:
    # A topic that grew: a customer placed in a new partition by another producer has its
    # keeper facts sent there, though this log remembered the old count (and the producer's
    # metadata may lag the broker's for a moment: that is transient, never a wrong partition).
    klog.ensure_topics([unique_topic], partitions=2)
    klog.produce(unique_topic, [OutgoingMessage(key=b"c-1", value=b"{}")])
    admin.create_partitions({unique_topic: NewPartitions(total_count=3)})

    deadline = time.monotonic() + 60
    while True:
        try:
            (pos,) = klog.produce(
                unique_topic, [OutgoingMessage(key=b"c-1", value=b"{}", partition=2)]
            )
            break
        except LogUnavailable:
            assert time.monotonic() < deadline, "the producer never learnt of partition 2"
            time.sleep(0.5)
    assert (pos.partition, pos.offset) == (2, 0)
    with pytest.raises(LogError, match=r"partition 3 of topic .* has 3 partitions"):
        klog.produce(unique_topic, [OutgoingMessage(key=b"c-1", value=b"{}", partition=3)])


def test_a_dead_letter_topic_sits_beside_the_main_topic(klog: KafkaLog, unique_topic: str) -> None:
    dlq = f"{unique_topic}.dlq"
    klog.ensure_topics([unique_topic, dlq], partitions=3)
    bad = OutgoingMessage(
        key=b"c-7",
        value=b"not json",
        headers=(("journey-dlq-reason", b"not_json"), ("journey-source-offset", b"42")),
    )

    (pos,) = klog.produce(dlq, [bad])

    assert pos.topic == dlq
    assert pos.partition == klog.partition_for(dlq, b"c-7")
    assert sum(klog.high_watermarks(unique_topic).values()) == 0
    assert klog.high_watermarks(dlq)[pos.partition] == pos.offset + 1
    consumer = klog.consumer(f"g-{uuid.uuid4().hex[:8]}", [dlq])
    try:
        (msg,) = _poll_until(consumer.poll, 1)
    finally:
        consumer.close()
    assert msg.position == pos
    assert msg.value == b"not json"
    assert msg.header("journey-dlq-reason") == b"not_json"
    assert msg.header("journey-source-offset") == b"42"


def test_producing_to_a_missing_topic_fails_fast_naming_it(klog: KafkaLog) -> None:
    missing = f"test.missing.{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with pytest.raises(LogError, match=rf"topic '{missing}' does not exist"):
        klog.produce(missing, [OutgoingMessage(key=b"k", value=b"v")])
    assert time.monotonic() - started < 5  # not the producer's max_block_ms
    with pytest.raises(LogError, match="does not exist"):
        klog.high_watermarks(missing)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def test_an_unreachable_broker_fails_with_the_bootstrap_servers_named() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    log = KafkaLog([address], timeout_s=2)
    started = time.monotonic()
    try:
        with pytest.raises(LogError, match=rf"Kafka at {address} did not answer"):
            log.produce("journey.touchpoints", [OutgoingMessage(key=b"k", value=b"v")])
    finally:
        log.close()
    assert time.monotonic() - started < 10


def test_on_assign_runs_on_the_callers_thread_before_any_message_of_its_partitions(
    klog: KafkaLog, unique_topic: str
) -> None:
    klog.ensure_topics([unique_topic], partitions=2)
    positions = klog.produce(
        unique_topic, [OutgoingMessage(key=f"c-{i}".encode(), value=b"v") for i in range(20)]
    )
    skip_to = {TopicPartition(unique_topic, p): 3 for p in (0, 1)}
    threads: list[int] = []

    def on_assign(tps: frozenset[TopicPartition]) -> Mapping[TopicPartition, int]:
        threads.append(threading.get_ident())
        return {tp: skip_to[tp] for tp in tps}

    consumer = klog.consumer(f"g-{uuid.uuid4().hex[:8]}", [unique_topic], on_assign=on_assign)
    try:
        want = sum(1 for p in positions if p.offset >= 3)
        got = _poll_until(consumer.poll, want)
    finally:
        consumer.close()

    # kafka-python calls rebalance listeners on its IO thread; a store read there would
    # block heartbeats and break thread-bound connections (sqlite3), so on_assign must not.
    assert threads == [threading.get_ident()]
    assert len(got) == want
    assert min(m.offset for m in got) == 3


def test_a_group_splits_partitions_and_a_leaving_member_hands_them_over_promptly(
    klog: KafkaLog, unique_topic: str
) -> None:
    klog.ensure_topics([unique_topic], partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = klog.consumer(group, [unique_topic])
    second = klog.consumer(group, [unique_topic])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            first.poll(0.2)
            second.poll(0.2)
            a, b = first.assignment(), second.assignment()
            if len(a) + len(b) == 4 and a and b:
                break
        assert a.isdisjoint(b)
        assert a | b == {TopicPartition(unique_topic, p) for p in range(4)}

        second.close()  # leaves the group at once, no session timeout to wait for
        started = time.monotonic()
        while len(first.assignment()) < 4 and time.monotonic() - started < 8:
            first.poll(0.2)
        assert len(first.assignment()) == 4
    finally:
        first.close()
        second.close()


def test_the_producer_hashes_each_key_once_and_partitions_as_kafkas_default(
    klog: KafkaLog, unique_topic: str
) -> None:
    """murmur2 in pure Python was a tenth of producing a record: the producer's partitioner
    keeps the hash of recent keys (customers emit again and again), and still lands every
    record where kafka-python's and the Java client's default partitioner would."""
    from kafka.partitioner import DefaultPartitioner

    from consumers.kafka_log import KeyHashPartitioner, key_hash

    klog.ensure_topics([unique_topic], partitions=5)
    keys = [f"c-{i % 40}".encode() for i in range(200)]  # each key five times
    key_hash.cache_clear()
    positions = klog.produce(unique_topic, [OutgoingMessage(key=k, value=b"{}") for k in keys])

    producer = klog._producer.current
    assert isinstance(producer.config["partitioner"], KeyHashPartitioner)
    assert key_hash.cache_info().misses == 40  # hashed once per key, not once per record
    default = DefaultPartitioner()
    cluster = producer._metadata
    for key, pos in zip(keys, positions, strict=True):
        assert pos.partition == default.partition(unique_topic, key, key, b"{}", b"{}", cluster)
        assert pos.partition == klog.partition_for(unique_topic, key)


def test_a_tests_pipeline_joins_a_group_of_its_own_not_the_engines(
    klog: KafkaLog, admin: KafkaAdminClient, unique_topic: str, tmp_path: Path
) -> None:
    """Test sessions share one broker: a test's engine joining the engine's default group
    (``journey-views``) rebalanced every other session's members, and a member caught in
    a rebalance now and then hit kafka-python's join bug (tests/conftest.py)."""
    pipeline = Pipeline(klog, tmp_path / "views.db", topic=unique_topic)
    try:
        pipeline.emit(generate_touchpoints(5, 2, seed=1, start=datetime(2026, 11, 1, tzinfo=UTC)))
        pipeline.runner.run_until_caught_up(60)
        consumer = pipeline.runner.consumer
        assert isinstance(consumer, KafkaConsumerAdapter)
        group = consumer.group_id
        assert group is not None and group.startswith("journey-views.")
        groups = admin.describe_groups([group, "journey-views"])
        members = {name: [str(m["client_id"]) for m in groups[name]["members"]] for name in groups}
        assert members[group] == [consumer.member_id]
        assert consumer.member_id not in members["journey-views"]
    finally:
        pipeline.close()


def test_a_member_stuck_in_kafka_pythons_join_is_replaced_and_gets_its_partitions(
    klog: KafkaLog, unique_topic: str
) -> None:
    """One group name for two engines' topics (both left at the default group): when the
    second member joins, kafka-python 3.0.12 leaves the first one rebalancing for good,
    without partitions (5 of 6 tries, on this broker). After three session timeouts of it
    the adapter replaces the member with a new one, which joins afresh."""
    log = KafkaLog(klog.bootstrap_servers, session_timeout_s=6.0)  # the broker's least
    group = f"two-topics-{uuid.uuid4().hex[:8]}"
    first_topic, second_topic = unique_topic, f"{unique_topic}.other"
    log.ensure_topics([first_topic, second_topic], partitions=3)
    first = log.consumer(group, [first_topic], on_assign=lambda _: {})
    second = None
    try:
        deadline = time.monotonic() + 20
        while not first.assignment():
            assert time.monotonic() < deadline, "the first member never got its partitions"
            first.poll(0.05)
        second = log.consumer(group, [second_topic], on_assign=lambda _: {})
        # Three session timeouts (18 s), then a fresh join, which may itself leave the other
        # member stuck once more: a liveness bound, generous for a loaded machine (two helpers'
        # benches made 45 s fail twice).
        deadline = time.monotonic() + 150
        while not (first.assignment() and second.assignment()):
            assert time.monotonic() < deadline, (first.assignment(), second.assignment())
            first.poll(0.05)
            second.poll(0.05)
        assert {tp.topic for tp in first.assignment()} == {first_topic}
        assert {tp.topic for tp in second.assignment()} == {second_topic}
    finally:
        first.close()
        if second is not None:
            second.close()
        log.close()


def test_a_consumer_fetches_a_bounded_amount_and_still_reads_a_record_larger_than_it(
    klog: KafkaLog, unique_topic: str
) -> None:
    """A fetch asks for 8 partitions' worth (kafka-python's 50 MB let a consumer with many
    partitions hold that much), 1 MiB a partition unless told otherwise (JOURNEY_KAFKA_FETCH_KIB:
    less holds less of a rebuild's memory), and a record larger than a partition's fetch is
    still read (the broker returns a whole batch)."""
    klog.ensure_topics([unique_topic], partitions=1)
    big = b"x" * (40 * 1024)
    klog.produce(unique_topic, [OutgoingMessage(key=b"c-1", value=big)])
    klog.produce(unique_topic, [OutgoingMessage(key=b"c-1", value=b"{}")])

    default = klog.consumer(None, [unique_topic])
    try:
        assert len(_poll_until(default.poll, 2)) == 2
        config = default._consumer.config
        assert config["max_partition_fetch_bytes"] == 1024 * 1024
        assert config["fetch_max_bytes"] == 8 * 1024 * 1024
    finally:
        default.close()

    small = KafkaLog(klog.bootstrap_servers, partition_fetch_bytes=16 * 1024)
    try:
        assert small.reopened().partition_fetch_bytes == 16 * 1024
        consumer = small.consumer(None, [unique_topic])
        got = _poll_until(consumer.poll, 2)
        assert [m.value for m in got] == [big, b"{}"]
        assert consumer._consumer.config["max_partition_fetch_bytes"] == 16 * 1024
        assert consumer._consumer.config["fetch_max_bytes"] == 8 * 16 * 1024
        consumer.close()
    finally:
        small.close()
