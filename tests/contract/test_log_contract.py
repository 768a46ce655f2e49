"""The log port's contract, checked on every adapter (embedded SQLite and real Kafka).

Every test takes the ``log`` fixture, so it runs once per adapter; topics and groups are
named after ``unique_topic`` so runs never see each other's data. Kafka joins a group in a
few seconds, so reads go through :func:`consume`, which polls until the expected count or
a deadline.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from kafka.partitioner.default import murmur2

from consumers.log import (
    Log,
    LogConsumer,
    LogError,
    Message,
    OnAssign,
    OutgoingMessage,
    Position,
    TopicPartition,
)

PARTITIONS = 4
DEADLINE_S = 20.0
# After the expected messages arrived, poll this long more to prove nothing else comes.
QUIET_S = 0.5


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def consume(consumer: LogConsumer, count: int, *, deadline_s: float = DEADLINE_S) -> list[Message]:
    """Poll until exactly ``count`` messages arrived (failing if fewer come in time, or more)."""
    got: list[Message] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(got)} of {count} messages arrived within {deadline_s} s")
        got.extend(consumer.poll(timeout_s=0.5, max_records=500))
    quiet_until = time.monotonic() + QUIET_S
    while time.monotonic() < quiet_until:
        got.extend(consumer.poll(timeout_s=0.2, max_records=500))
    assert len(got) == count, f"expected {count} messages, got {len(got)}"
    return got


@contextmanager
def member(
    log: Log, group_id: str | None, topics: Sequence[str], on_assign: OnAssign | None = None
) -> Iterator[LogConsumer]:
    consumer = log.consumer(group_id, topics, on_assign=on_assign)
    try:
        yield consumer
    finally:
        consumer.close()


def msg(key: str, value: str, timestamp_ms: int | None = None) -> OutgoingMessage:
    return OutgoingMessage(key=key.encode(), value=value.encode(), timestamp_ms=timestamp_ms)


def keys_in_distinct_partitions(log: Log, topic: str, n: int) -> list[str]:
    """``n`` keys that land in ``n`` different partitions."""
    found: dict[int, str] = {}
    for i in range(10_000):
        key = f"customer-{i}"
        found.setdefault(log.partition_for(topic, key.encode()), key)
        if len(found) >= n:
            return [found[p] for p in sorted(found)][:n]
    raise AssertionError(f"no {n} keys in distinct partitions of {topic}")


@pytest.fixture
def topic(log: Log, unique_topic: str) -> str:
    log.ensure_topics([unique_topic], PARTITIONS)
    return unique_topic


def by_position(messages: Sequence[Message]) -> dict[Position, tuple[bytes | None, bytes | None]]:
    return {m.position: (m.key, m.value) for m in messages}


# -- topics ----------------------------------------------------------------------------


def test_ensure_topics_is_idempotent_and_keeps_the_partition_count(
    log: Log, unique_topic: str
) -> None:
    first, second = unique_topic, f"{unique_topic}.other"
    log.ensure_topics([first], 3)
    log.ensure_topics([first], 3)
    log.ensure_topics([first, second], 5)  # first exists: keeps 3; second is created with 5

    assert log.partitions(first) == [0, 1, 2]
    assert log.partitions(second) == [0, 1, 2, 3, 4]
    assert log.high_watermarks(first) == {0: 0, 1: 0, 2: 0}


def test_produce_to_a_topic_that_does_not_exist_raises_log_error(
    log: Log, unique_topic: str
) -> None:
    missing = f"{unique_topic}.missing"
    with pytest.raises(LogError, match=re.escape(missing)):
        log.produce(missing, [msg("k", "v")])


# -- partitions and offsets --------------------------------------------------------------


def test_partition_for_is_kafkas_default_partitioner(log: Log, topic: str) -> None:
    # Java's Utils.murmur2 test vectors (as unsigned), so the formula is the real one.
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
    for i in range(200):
        key = f"customer-{i}".encode()
        assert log.partition_for(topic, key) == (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
    assert {log.partition_for(topic, f"c{i}".encode()) for i in range(200)} == set(
        range(PARTITIONS)
    )


def test_same_key_always_lands_in_the_partition_partition_for_names(log: Log, topic: str) -> None:
    keys = [f"customer-{i}" for i in range(12)]
    positions = log.produce(topic, [msg(k, f"{k}:{n}") for n in range(3) for k in keys])
    positions += log.produce(topic, [msg(k, f"{k}:{n}") for n in range(3, 5) for k in keys])

    per_key: dict[str, set[int]] = defaultdict(set)
    for i, pos in enumerate(positions):
        per_key[keys[i % len(keys)]].add(pos.partition)
    for key, partitions in per_key.items():
        assert partitions == {log.partition_for(topic, key.encode())}, key


def test_a_message_given_a_partition_lands_there_and_the_others_by_their_key(
    log: Log, topic: str, unique_topic: str
) -> None:
    # A derived fact follows its customer to the partition the customer's touchpoints are in,
    # whatever the key's hash says (the promise keeper); the rest of a batch is unaffected.
    key = "customer-0"
    hashed = log.partition_for(topic, key.encode())
    elsewhere = (hashed + 1) % PARTITIONS
    outgoing = [
        msg(key, "by the key"),
        OutgoingMessage(key=key.encode(), value=b"placed 1", partition=elsewhere),
        msg("customer-1", "by its key"),
        OutgoingMessage(key=key.encode(), value=b"placed 2", partition=elsewhere),
    ]
    positions = log.produce(topic, outgoing)
    assert [p.partition for p in positions] == [
        hashed,
        elsewhere,
        log.partition_for(topic, b"customer-1"),
        elsewhere,
    ]
    assert positions[3].offset == positions[1].offset + 1  # in order within the partition

    with member(log, f"g.{unique_topic}", [topic]) as consumer:
        got = consume(consumer, len(outgoing))
    assert by_position(got) == {
        pos: (out.key, out.value) for out, pos in zip(outgoing, positions, strict=True)
    }


@pytest.mark.parametrize("partition", [PARTITIONS, -1])
def test_a_partition_out_of_range_is_refused_and_nothing_of_the_batch_written(
    log: Log, topic: str, partition: int
) -> None:
    batch = [msg("customer-0", "fine"), OutgoingMessage(key=b"k", value=b"v", partition=partition)]
    with pytest.raises(LogError, match=rf"partition {partition}\b.*{PARTITIONS} partitions"):
        log.produce(topic, batch)
    assert log.high_watermarks(topic) == dict.fromkeys(range(PARTITIONS), 0)


def test_offsets_are_contiguous_from_zero_and_high_watermarks_follow(log: Log, topic: str) -> None:
    assert log.high_watermarks(topic) == dict.fromkeys(range(PARTITIONS), 0)

    first = log.produce(topic, [msg(f"k{i % 7}", str(i)) for i in range(30)])
    second = log.produce(topic, [msg(f"k{i % 5}", str(i)) for i in range(11)])

    per_partition: dict[int, list[int]] = defaultdict(list)
    for pos in first + second:
        assert pos.topic == topic
        per_partition[pos.partition].append(pos.offset)
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets))), "offsets grow by one, from 0, in order"
    marks = log.high_watermarks(topic)
    assert set(marks) == set(range(PARTITIONS))
    assert marks == {p: len(per_partition.get(p, [])) for p in range(PARTITIONS)}
    assert sum(marks.values()) == 41


def test_positions_returned_by_produce_match_what_is_consumed(
    log: Log, topic: str, unique_topic: str
) -> None:
    outgoing = [msg(f"customer-{i % 9}", f"value-{i}") for i in range(40)]
    positions = log.produce(topic, outgoing)
    assert len(positions) == len(outgoing)
    for out, pos in zip(outgoing, positions, strict=True):
        assert pos.partition == log.partition_for(topic, out.key)

    with member(log, f"g.{unique_topic}", [topic]) as consumer:
        got = consume(consumer, len(outgoing))

    assert by_position(got) == {
        pos: (out.key, out.value) for out, pos in zip(outgoing, positions, strict=True)
    }


def test_each_keys_messages_arrive_in_order_from_one_partition(
    log: Log, topic: str, unique_topic: str
) -> None:
    rng = random.Random(7)  # noqa: S311 -- a fixed seed for a reproducible interleaving
    keys = [f"customer-{i}" for i in range(25)]
    pending = {k: 0 for k in keys}
    sequence: list[OutgoingMessage] = []
    while pending:
        key = rng.choice(sorted(pending))
        sequence.append(msg(key, f"{key}:{pending[key]}"))
        pending[key] += 1
        if pending[key] == 12:
            del pending[key]
    while sequence:  # interleaved keys, in batches of varied size
        size = rng.randint(1, 40)
        log.produce(topic, sequence[:size])
        sequence = sequence[size:]

    with member(log, f"g.{unique_topic}", [topic]) as consumer:
        got = consume(consumer, 25 * 12)

    seqs: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    last_offset: dict[int, int] = {}
    for m in got:
        assert m.key is not None and m.value is not None
        key, _, n = m.value.decode().partition(":")
        assert m.key.decode() == key
        seqs[key].append(int(n))
        partitions[key].add(m.partition)
        assert m.offset == last_offset.get(m.partition, -1) + 1, "offset order per partition"
        last_offset[m.partition] = m.offset
    for key in keys:
        assert seqs[key] == list(range(12)), key
        assert partitions[key] == {log.partition_for(topic, key.encode())}, key


def test_poll_returns_at_most_max_records(log: Log, topic: str, unique_topic: str) -> None:
    log.produce(topic, [msg("one-key", str(i)) for i in range(20)])
    got: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    with member(log, f"g.{unique_topic}", [topic]) as consumer:
        while len(got) < 20 and time.monotonic() < deadline:
            batch = consumer.poll(timeout_s=0.5, max_records=3)
            assert len(batch) <= 3
            got.extend(batch)
    assert [m.value for m in got] == [str(i).encode() for i in range(20)]


# -- messages ----------------------------------------------------------------------------


def test_headers_keys_values_and_timestamps_round_trip(
    log: Log, topic: str, unique_topic: str
) -> None:
    headers = (
        ("event_type", b"ticket_opened"),
        ("binary", bytes(range(256))),
        ("event_type", b"repeated names keep their order"),
        ("empty", b""),
    )
    before = now_ms()
    log.produce(
        topic,
        [
            OutgoingMessage(key=b"with-headers", value=b"\x00\x01{}", headers=headers),
            OutgoingMessage(key=b"plain", value=b"no headers", timestamp_ms=1_700_000_000_123),
        ],
    )
    after = now_ms()

    with member(log, f"g.{unique_topic}", [topic]) as consumer:
        got = {m.key: m for m in consume(consumer, 2)}

    rich, plain = got[b"with-headers"], got[b"plain"]
    assert rich.value == b"\x00\x01{}"
    assert tuple(rich.headers) == headers
    assert rich.header("event_type") == b"ticket_opened"
    assert rich.header("missing") is None
    assert before - 5 <= rich.timestamp_ms <= after + 5, "timestamp defaults to now"
    assert tuple(plain.headers) == ()
    assert plain.timestamp_ms == 1_700_000_000_123


# -- groups and committed offsets --------------------------------------------------------


def test_group_commit_and_resume_and_other_groups_start_from_zero(
    log: Log, topic: str, unique_topic: str
) -> None:
    group = f"g.{unique_topic}"
    first = log.produce(topic, [msg(f"customer-{i % 6}", f"a{i}") for i in range(12)])

    with member(log, group, [topic]) as consumer:
        got = consume(consumer, 12)
        assert consumer.assignment() == {TopicPartition(topic, p) for p in range(PARTITIONS)}
        for p in range(PARTITIONS):
            assert consumer.committed(TopicPartition(topic, p)) is None
        consumer.commit()
        marks = log.high_watermarks(topic)
        for p, mark in marks.items():
            if mark:
                assert consumer.committed(TopicPartition(topic, p)) == mark
    assert by_position(got).keys() == set(first)

    second = log.produce(topic, [msg(f"customer-{i % 6}", f"b{i}") for i in range(6)])

    with member(log, group, [topic]) as resumed:
        again = consume(resumed, 6)
    assert by_position(again).keys() == set(second), "resumes at the committed offsets"

    with member(log, f"other.{unique_topic}", [topic]) as other:
        everything = consume(other, 18)
    assert by_position(everything).keys() == set(first + second), "a new group reads all"


def test_commit_of_explicit_offsets(log: Log, topic: str, unique_topic: str) -> None:
    group = f"g.{unique_topic}"
    positions = log.produce(topic, [msg("one-customer", str(i)) for i in range(10)])
    tp = positions[0].topic_partition

    with member(log, group, [topic]) as consumer:
        consume(consumer, 10)
        consumer.commit({tp: 4})
        assert consumer.committed(tp) == 4

    with member(log, group, [topic]) as resumed:
        got = consume(resumed, 6)
        assert [m.offset for m in got] == [4, 5, 6, 7, 8, 9]
        resumed.commit({tp: 10})
        assert resumed.committed(tp) == 10


def test_on_assign_start_offsets_are_honoured(log: Log, topic: str, unique_topic: str) -> None:
    steered, left_out = keys_in_distinct_partitions(log, topic, 2)
    log.produce(topic, [msg(k, f"{k}:{i}") for i in range(10) for k in (steered, left_out)])
    steered_tp = TopicPartition(topic, log.partition_for(topic, steered.encode()))
    calls: list[frozenset[TopicPartition]] = []

    def on_assign(assigned: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        calls.append(assigned)
        return {steered_tp: 7} if steered_tp in assigned else {}

    with member(log, f"g.{unique_topic}", [topic], on_assign) as consumer:
        got = consume(consumer, 3 + 10)

    assert calls, "on_assign was called"
    assert frozenset().union(*calls) == {TopicPartition(topic, p) for p in range(PARTITIONS)}
    steered_values = [m.value for m in got if m.topic_partition == steered_tp]
    assert steered_values == [f"{steered}:{i}".encode() for i in (7, 8, 9)]
    assert [m.value for m in got if m.key == left_out.encode()] == [
        f"{left_out}:{i}".encode() for i in range(10)
    ], "partitions on_assign leaves out start from the committed offset, here 0"


# -- seeking -----------------------------------------------------------------------------


def test_seek_and_seek_to_beginning(log: Log, topic: str, unique_topic: str) -> None:
    positions = log.produce(topic, [msg(f"customer-{i % 5}", str(i)) for i in range(15)])
    one = positions[0].topic_partition
    in_one = sorted(p.offset for p in positions if p.topic_partition == one)

    with member(log, f"g.{unique_topic}", [topic]) as consumer:
        first = consume(consumer, 15)

        consumer.seek(one, 1)
        again = consume(consumer, len(in_one) - 1)
        assert [m.offset for m in again] == in_one[1:]
        assert {m.topic_partition for m in again} == {one}

        consumer.seek_to_beginning()
        replay = consume(consumer, 15)

    assert by_position(replay) == by_position(first)


def test_seek_to_timestamp(log: Log, topic: str, unique_topic: str) -> None:
    # Explicit, well-separated timestamps in the recent past so the test does not hinge on
    # the clock moving between two produce calls.
    base = now_ms() - 10 * 60_000
    keys = [f"customer-{i}" for i in range(8)]
    early = log.produce(topic, [msg(k, "early", timestamp_ms=base + i) for i, k in enumerate(keys)])
    cut = base + 60_000
    late = log.produce(
        topic, [msg(k, "late", timestamp_ms=cut + 1_000 + i) for i, k in enumerate(keys)]
    )

    with member(log, f"g.{unique_topic}", [topic]) as consumer:
        consume(consumer, 16)

        consumer.seek_to_timestamp(cut)
        got = consume(consumer, len(late))
        assert by_position(got).keys() == set(late)
        assert {m.value for m in got} == {b"late"}

        consumer.seek_to_timestamp(base)
        assert by_position(consume(consumer, 16)).keys() == set(early + late)

        consumer.seek_to_timestamp(cut + 3_600_000)  # after every message: the high-water mark
        assert consumer.poll(timeout_s=0.5) == []
        newest = log.produce(topic, [msg("customer-0", "newest")])
        assert by_position(consume(consumer, 1)).keys() == set(newest)


def test_a_reader_without_group_reads_everything_and_disturbs_no_member(
    log: Log, topic: str, unique_topic: str
) -> None:
    """What a rebuild reads with: every partition, from where on_assign says, outside any
    group, so the engine's members keep their partitions (before, a reader joined a group
    and the broker rebalanced)."""
    group = f"g.{unique_topic}"
    sent = log.produce(topic, [msg(f"customer-{i % 6}", f"a{i}") for i in range(12)])
    everything = frozenset(TopicPartition(topic, p) for p in range(PARTITIONS))
    with member(log, group, [topic]) as engine:
        consume(engine, 12)
        assert engine.assignment() == everything
        engine.commit()
        first = sent[0].topic_partition
        with member(log, None, [topic], on_assign=lambda _tps: {first: 1}) as reader:
            got = consume(reader, 11)
            assert reader.assignment() == everything
            reader.commit()  # goes nowhere
            assert reader.committed(first) is None
            engine.poll(0.5)
            assert engine.assignment() == everything, "the reader took partitions"
        skipped = Position(first.topic, first.partition, 0)
        assert by_position(got).keys() == set(sent) - {skipped}
        # The engine's commit stands: the reader's went nowhere.
        assert engine.committed(first) == log.high_watermarks(topic)[first.partition]


def test_a_reader_without_group_may_read_only_some_partitions(
    log: Log, topic: str, unique_topic: str
) -> None:
    """What one process of a rebuild on several reads with: its own partitions only; and a
    group member cannot pick its partitions (its group gives them)."""
    sent = log.produce(topic, [msg(f"customer-{i % 8}", f"a{i}") for i in range(24)])
    share = {0, 2}
    mine = [p for p in sent if p.partition in share]
    assert mine and len(mine) < len(sent)
    with contextlib.closing(log.consumer(None, [topic], partitions=share)) as reader:
        got = consume(reader, len(mine))
        assert reader.assignment() == {TopicPartition(topic, p) for p in share}
    assert by_position(got).keys() == set(mine)
    with pytest.raises(LogError, match="group"):
        log.consumer(f"g.{unique_topic}", [topic], partitions=share)
