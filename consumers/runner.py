"""The projection runner: one member of a consumer group folding the log into the store.

The same code runs on Kafka and on the embedded log (it only sees the log port). Each poll
batch is split by partition and each partition's slice is recorded in ONE store transaction
together with its position, so a crash at any point loses or doubles nothing: on restart the
runner seeks to the positions the store holds, not to the group's committed offsets (those
are committed afterwards, for lag tooling only).
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from consumers.dead_letters import dead_letter
from consumers.log import Log, LogConsumer, Message, TopicPartition
from domain.bounds import DEFAULT_MAX_FUTURE, Bounds
from domain.envelope import Touchpoint, decode
from domain.errors import InvalidEvent
from projections.store import JourneyStore, active_store_path

__all__ = ["Runner", "RunnerStats"]

logger = structlog.get_logger(__name__)

# Chaos hook for the crash tests: slows each fold so a SIGKILL lands mid-batch.
_FOLD_DELAY_S = float(os.environ.get("JOURNEY_CHAOS_FOLD_DELAY_MS", "0")) / 1000


@dataclass
class RunnerStats:
    batches: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def processed(self) -> int:
        return self.applied + self.duplicates + self.dead_letters


class Runner:
    """Folds ``topic`` into the store at ``store_path``.

    With ``follow_swaps`` the runner serves the blue-green store of that base path: when a
    rebuild swaps in a new file, the runner reopens it and carries on from its positions.
    """

    def __init__(
        self,
        log: Log,
        store_path: Path,
        *,
        topic: str,
        dlq_topic: str,
        group: str = "journey-views",
        batch_size: int = 500,
        poll_timeout_s: float = 0.05,
        follow_swaps: bool = True,
        on_batch: Callable[[RunnerStats], None] | None = None,
        produce_dead_letters: bool = True,
        max_future: timedelta = DEFAULT_MAX_FUTURE,
    ) -> None:
        self.log = log
        self.max_future = max_future
        self.base = store_path
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.group = group
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.follow_swaps = follow_swaps
        self.on_batch = on_batch
        # A rebuild replays messages the live runner already dead-lettered: it only counts.
        self.produce_dead_letters = produce_dead_letters
        self.stats = RunnerStats()
        self._store_file = active_store_path(store_path) if follow_swaps else store_path
        self.store = JourneyStore(self._store_file)
        self._consumer: LogConsumer | None = None

    # ------------------------------------------------------------------ lifecycle

    def _start_offsets(self, assigned: frozenset[TopicPartition]) -> Mapping[TopicPartition, int]:
        positions = self.store.positions()
        starts = {tp: positions[tp] + 1 if tp in positions else 0 for tp in assigned}
        logger.info(
            "partitions assigned",
            group=self.group,
            starts={str(tp): off for tp, off in sorted(starts.items())},
        )
        return starts

    @property
    def consumer(self) -> LogConsumer:
        if self._consumer is None:
            self.log.ensure_topics([self.topic, self.dlq_topic], 6)
            self._consumer = self.log.consumer(
                self.group, [self.topic], on_assign=self._start_offsets
            )
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self.store.close()

    def _maybe_swap(self) -> None:
        if not self.follow_swaps:
            return
        active = active_store_path(self.base)
        if active == self._store_file:
            return
        logger.info("store swapped", old=str(self._store_file), new=str(active))
        self.store.close()
        self._store_file = active
        self.store = JourneyStore(active)
        consumer = self.consumer
        for tp, offset in self._start_offsets(consumer.assignment()).items():
            consumer.seek(tp, offset)

    # ------------------------------------------------------------------ work

    def step(self) -> int:
        """One poll batch; returns how many messages it handled."""
        self._maybe_swap()
        messages = self.consumer.poll(self.poll_timeout_s, self.batch_size)
        if not messages:
            return 0
        by_tp: dict[TopicPartition, list[Message]] = defaultdict(list)
        for msg in messages:
            by_tp[msg.topic_partition].append(msg)
        commits: dict[TopicPartition, int] = {}
        for tp, batch in by_tp.items():
            self._process_partition(tp, batch)
            commits[tp] = batch[-1].offset + 1
        self.consumer.commit(commits)
        self.stats.batches += 1
        if self.on_batch is not None:
            self.on_batch(self.stats)
        return len(messages)

    def _process_partition(self, tp: TopicPartition, batch: list[Message]) -> None:
        items: list[tuple[int, Touchpoint]] = []
        dead: list[tuple[int, str]] = []
        for msg in batch:
            try:
                touchpoint = decode(msg.value, Bounds(_now_for(msg), self.max_future))
            except InvalidEvent as exc:
                self._dead_letter(msg, exc)
                dead.append((msg.offset, exc.reason))
                continue
            if touchpoint.customer_id.encode() != msg.key:
                # The key decides the partition, hence the order; a mismatch would fold
                # this customer's facts out of order.
                mismatch = InvalidEvent(
                    "key_mismatch",
                    f"message key {msg.key!r} differs from customer_id "
                    f"{touchpoint.customer_id!r}; the key must be the customer_id",
                    "customer_id",
                )
                self._dead_letter(msg, mismatch)
                dead.append((msg.offset, mismatch.reason))
                continue
            if _FOLD_DELAY_S:
                time.sleep(_FOLD_DELAY_S)
            items.append((msg.offset, touchpoint))
        result = self.store.process(tp, items, batch[-1].offset, dead)
        self.stats.applied += result.applied
        self.stats.duplicates += result.duplicates
        self.stats.dead_letters += len(dead)
        if result.already_processed:
            logger.warning(
                "batch already in the store; skipped",
                topic=tp.topic,
                partition=tp.partition,
                offset=batch[-1].offset,
            )

    def _dead_letter(self, msg: Message, exc: InvalidEvent) -> None:
        if not self.produce_dead_letters:
            return
        self.log.produce(self.dlq_topic, [dead_letter(msg, exc.reason, exc.message, exc.field)])
        logger.warning(
            "dead letter",
            reason=exc.reason,
            error=exc.message,
            field=exc.field,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            event_id=_header(msg, "journey-event-id"),
            customer_id=msg.key.decode(errors="replace") if msg.key else None,
        )

    def lag(self) -> dict[TopicPartition, int]:
        """Per partition, messages on the log not yet in the store."""
        positions = self.store.positions()
        return {
            TopicPartition(self.topic, p): hwm
            - (positions.get(TopicPartition(self.topic, p), -1) + 1)
            for p, hwm in self.log.high_watermarks(self.topic).items()
        }

    def run_until_caught_up(self, timeout_s: float = 600) -> RunnerStats:
        """Process until the store has every message that was on the log at the start."""
        targets = self.log.high_watermarks(self.topic)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            positions = self.store.positions()
            if all(
                hwm == 0 or positions.get(TopicPartition(self.topic, p), -1) >= hwm - 1
                for p, hwm in targets.items()
            ):
                return self.stats
            self.step()
        raise TimeoutError(f"not caught up with {self.topic} within {timeout_s} s")

    def run_forever(self, stop: threading.Event) -> RunnerStats:
        logger.info(
            "runner started", topic=self.topic, group=self.group, store=str(self._store_file)
        )
        while not stop.is_set():
            self.step()
        logger.info(
            "runner stopped", applied=self.stats.applied, dead_letters=self.stats.dead_letters
        )
        return self.stats


def _now_for(msg: Message) -> datetime:
    """The "now" of the bounds of a message: the later of the wall clock and its log time.

    A message within bounds when it was produced (its log time, or the wall clock while
    it is live) stays within them when the log is replayed years later, and a producer's
    clock running a little ahead of ours does not dead-letter its fresh touchpoints.
    """
    wall = datetime.now(UTC)
    try:
        logged = datetime.fromtimestamp(msg.timestamp_ms / 1000, UTC)
    except (OverflowError, ValueError, OSError):  # a foreign producer's absurd timestamp
        return wall
    return max(wall, logged)


def _header(msg: Message, name: str) -> str | None:
    value = msg.header(name)
    return value.decode(errors="replace") if value is not None else None
