"""The embedded log shared by several processes and by several members of one group.

These are embedded-only: they check what the contract suite cannot ask of Kafka in a few
seconds (another OS process writing the same file; group hand-over on close and on silence).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.log import LogConsumer, LogError, Message, OutgoingMessage, TopicPartition

PARTITIONS = 6
DEADLINE_S = 30.0

# Writes `batches` batches of BATCH messages; every batch carries one key, so a partition's
# high-water mark must always be a multiple of BATCH if a batch is all or nothing.
BATCH = 10
PRODUCER = textwrap.dedent(
    """
    import sys, time
    from consumers.embedded_log import EmbeddedLog
    from consumers.log import OutgoingMessage

    path, topic = sys.argv[1], sys.argv[2]
    batches, size, keys = (int(arg) for arg in sys.argv[3:6])
    log = EmbeddedLog(path)
    seq = {}
    for b in range(batches):
        key = f"customer-{b % keys}"
        batch = []
        for _ in range(size):
            n = seq.get(key, 0)
            seq[key] = n + 1
            batch.append(OutgoingMessage(key=key.encode(), value=f"{key}:{n}".encode()))
        log.produce(topic, batch)
        time.sleep(0.002)
    log.close()
    """
)


def test_a_consumer_reads_while_another_process_produces(tmp_path: Path) -> None:
    path, topic, batches, keys = str(tmp_path / "log.db"), "journey.touchpoints", 150, 13
    total = batches * BATCH
    log = EmbeddedLog(path)
    log.ensure_topics([topic], PARTITIONS)
    consumer = log.consumer("projector", [topic])
    consumer.poll(timeout_s=0)  # join before the producer starts

    watermarks_seen: list[dict[int, int]] = []
    got: list[Message] = []
    received_while_producing = 0
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, path, topic, str(batches), str(BATCH), str(keys)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < total and time.monotonic() < deadline:
            watermarks_seen.append(log.high_watermarks(topic))
            batch = consumer.poll(timeout_s=0.2)
            if producer.poll() is None:
                received_while_producing += len(batch)
            got.extend(batch)
        _, stderr = producer.communicate(timeout=DEADLINE_S)
    finally:
        if producer.poll() is None:
            producer.kill()
        consumer.close()
        log.close()

    assert producer.returncode == 0, stderr.decode()
    assert len(got) == total
    assert received_while_producing > 0, "the consumer read while the other process wrote"
    per_key: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for m in got:
        assert m.value is not None
        key, _, n = m.value.decode().partition(":")
        per_key[key].append(int(n))
        partitions[key].add(m.partition)
    assert len(per_key) == keys
    for key, seqs in per_key.items():
        assert seqs == list(range(len(seqs))), f"{key} out of order"
        assert len(partitions[key]) == 1
    for marks in watermarks_seen:
        assert all(mark % BATCH == 0 for mark in marks.values()), f"half a batch seen: {marks}"


def poll_all(*consumers: LogConsumer) -> list[list[Message]]:
    return [c.poll(timeout_s=0.01) for c in consumers]


def wait_until(
    condition: Callable[[], bool], *consumers: LogConsumer, deadline_s: float = 5.0
) -> list[Message]:
    """Poll the consumers until the condition holds; returns what they read meanwhile."""
    read: list[Message] = []
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached in {deadline_s} s: {condition.__doc__ or condition}")
        for batch in poll_all(*consumers):
            read += batch
    return read


def all_partitions(topic: str) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(topic, p) for p in range(PARTITIONS))


def test_two_members_split_the_partitions_and_one_takes_over_on_close(tmp_path: Path) -> None:
    path, topic = str(tmp_path / "log.db"), "journey.touchpoints"
    # Two EmbeddedLog objects on one file, as two worker processes would have.
    log_a, log_b = EmbeddedLog(path), EmbeddedLog(path)
    log_a.ensure_topics([topic], PARTITIONS)
    assigned_to_b: list[frozenset[TopicPartition]] = []

    def record_b(tps: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        assigned_to_b.append(tps)
        return {}

    a = log_a.consumer("workers", [topic])
    b = log_b.consumer("workers", [topic], on_assign=record_b)
    try:

        def split() -> bool:
            """both members own a disjoint, complete share"""
            ours, theirs = a.assignment(), b.assignment()
            return (
                bool(ours)
                and bool(theirs)
                and not ours & theirs
                and ours | theirs == (all_partitions(topic))
            )

        wait_until(split, a, b)
        assert len(a.assignment()) == len(b.assignment()) == PARTITIONS // 2

        keys = [f"customer-{i}" for i in range(40)]
        log_a.produce(topic, [OutgoingMessage(k.encode(), f"{k}:0".encode()) for k in keys])
        got_a: list[Message] = []
        got_b: list[Message] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got_a) + len(got_b) < len(keys) and time.monotonic() < deadline:
            from_a, from_b = poll_all(a, b)
            got_a += from_a
            got_b += from_b
        assert {m.topic_partition for m in got_a} <= a.assignment()
        assert {m.topic_partition for m in got_b} <= b.assignment()
        assert sorted(m.position for m in got_a + got_b) == sorted(
            {m.position for m in got_a + got_b}
        ), "no message read by both members"
        assert len(got_a) + len(got_b) == len(keys)
        a.commit()
        taken_from_a = a.assignment()

        a.close()
        after = wait_until(lambda: b.assignment() == all_partitions(topic), b, deadline_s=2.0)
        assert assigned_to_b[-1] == taken_from_a, "on_assign gets the newly assigned ones"

        # b starts a's partitions at a's committed offsets: only the new messages arrive.
        log_b.produce(topic, [OutgoingMessage(k.encode(), f"{k}:1".encode()) for k in keys])
        deadline = time.monotonic() + DEADLINE_S
        while len(after) < len(keys) and time.monotonic() < deadline:
            after += b.poll(timeout_s=0.2)
        after += b.poll(timeout_s=0.3)  # anything a's partitions would wrongly re-deliver
        assert len(after) == len(keys)
        assert {m.value.decode().rpartition(":")[2] for m in after if m.value} == {"1"}
    finally:
        a.close()
        b.close()
        log_a.close()
        log_b.close()


def test_a_silent_member_is_dropped_after_the_session_timeout(tmp_path: Path) -> None:
    path, topic = str(tmp_path / "log.db"), "journey.touchpoints"
    log_a = EmbeddedLog(path, session_timeout_s=0.5)
    log_b = EmbeddedLog(path, session_timeout_s=0.5)
    log_a.ensure_topics([topic], PARTITIONS)
    a, b = log_a.consumer("workers", [topic]), log_b.consumer("workers", [topic])
    try:
        wait_until(lambda: len(a.assignment()) == len(b.assignment()) == 3, a, b)

        started = time.monotonic()
        # a stops polling (a stuck worker); b keeps polling and inherits a's partitions.
        wait_until(lambda: b.assignment() == all_partitions(topic), b, deadline_s=3.0)
        assert time.monotonic() - started >= 0.4, "not before the session timeout"
        with pytest.raises(LogError, match="now belongs to member"):
            a.commit({tp: 0 for tp in a.assignment()})  # a stale member is fenced off

        # a comes back: it rejoins and the partitions are split again, without overlap.
        wait_until(lambda: len(a.assignment()) == len(b.assignment()) == 3, a, b)
        assert not a.assignment() & b.assignment()
    finally:
        a.close()
        b.close()
        log_a.close()
        log_b.close()


def test_members_in_threads_of_one_process_use_their_own_connections(tmp_path: Path) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    topic = "journey.touchpoints"
    log.ensure_topics([topic], PARTITIONS)
    errors: list[BaseException] = []

    def produce(worker: int) -> None:
        try:
            for i in range(50):
                log.produce(topic, [OutgoingMessage(f"w{worker}".encode(), str(i).encode())])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert sum(log.high_watermarks(topic).values()) == 200
    finally:
        log.close()
