"""The intake relay: touchpoints from producers that cannot encrypt reach the log sealed.

A producer without the customers' keys (kcat, a service in another language) produces plain
envelopes to the intake topic (``<topic>.intake``, short retention). The relay reads them in
its own consumer group, validates each as every door does, seals its personal fields with
the customer's key (made when it has none) and produces it to the log of record with the
same key, ``event_id``, headers and record time; an invalid one goes to the dead-letter
topic, sealed (consumers/dead_letters.py). Then it commits and deletes the relayed records
from the intake, so plain values stay there only until relayed (and at most the topic's
retention).

At least once: a crash between producing and committing relays the batch again, and the
engine folds the second copy as a duplicate of the first (same ``event_id``, same content).
A step that fails seeks back to the committed offsets, so nothing is skipped (issue 8's
transient rule); a batch read again after a failed commit does not produce its dead letters
a second time (only a restart in between does: their headers name the origin).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta

import structlog

from consumers.dead_letters import dead_letter, produce_dead_letters
from consumers.log import (
    Log,
    LogConsumer,
    LogError,
    LogUnavailable,
    Message,
    OutgoingMessage,
    TopicPartition,
)
from consumers.runner import now_for
from domain.bounds import DEFAULT_MAX_FUTURE, MAX_ENVELOPE_BYTES, Bounds
from domain.envelope import Touchpoint, decode, encode_sealed
from domain.errors import InvalidEvent
from domain.personal import has_personal_values
from projections.keys import CustomerKeys

__all__ = ["DEFAULT_INTAKE_RETENTION", "IntakeRelay", "intake_topic"]

logger = structlog.get_logger(__name__)

# Long enough to ride out an engine restart; short enough that plain values do not linger.
DEFAULT_INTAKE_RETENTION = timedelta(hours=1)


def intake_topic(topic: str) -> str:
    return f"{topic}.intake"


class IntakeRelay:
    """Relays ``<topic>.intake`` to ``topic``, sealed."""

    def __init__(
        self,
        log: Log,
        keys: CustomerKeys,
        *,
        topic: str,
        dlq_topic: str,
        group: str = "journey-intake",
        partitions: int = 6,
        retention: timedelta = DEFAULT_INTAKE_RETENTION,
        max_future: timedelta = DEFAULT_MAX_FUTURE,
        batch_size: int = 500,
        poll_timeout_s: float = 0.05,
    ) -> None:
        self.log = log
        self.keys = keys
        self.topic = topic
        self.intake = intake_topic(topic)
        self.dlq_topic = dlq_topic
        self.group = group
        self.partitions = partitions
        self.retention = retention
        self.max_future = max_future
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.relayed = 0
        self.dead_letters = 0
        self._consumer: LogConsumer | None = None
        self._rewind_pending = False
        # Dead letters produced whose batch is not committed yet (kept in memory only: a
        # restart in between produces them again, at least once, origin in their headers).
        self._dead_sent: set[tuple[TopicPartition, int]] = set()
        # made at once, so producers find the intake as soon as the engine has started
        log.ensure_topics(
            [self.intake], partitions, retention_ms=int(retention.total_seconds() * 1000)
        )
        log.ensure_topics([topic, dlq_topic], partitions)

    @property
    def consumer(self) -> LogConsumer:
        if self._consumer is None:
            self._consumer = self.log.consumer(self.group, [self.intake])
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._rewind_pending = False

    def step(self, *, wait: bool = True) -> int:
        """Relay one poll batch; returns how many messages it handled. A failure (the
        broker, the key table) raises before the batch is committed, after seeking back to
        the committed offsets: the next step reads the same batch again, never past it.

        ``wait=False``: once the relay holds its partitions, take only what has arrived,
        without waiting for more (the supervisor's loop, which polls the runner next)."""
        try:
            if self._rewind_pending:
                self._rewind()
            return self._relay(wait)
        except BaseException:
            self._rewind_pending = True
            with contextlib.suppress(Exception):
                self._rewind()  # at once when it can; else first thing at the next step
            raise

    def _rewind(self) -> None:
        consumer = self.consumer
        for tp in consumer.assignment():
            consumer.seek(tp, consumer.committed(tp) or 0)
        self._rewind_pending = False

    def _relay(self, wait: bool = True) -> int:
        consumer = self.consumer
        # Until it holds its partitions (joining the group) a poll must be given time.
        timeout = self.poll_timeout_s if wait or not consumer.assignment() else 0.0
        messages = consumer.poll(timeout, self.batch_size)
        if not messages:
            return 0
        ring = self.keys.for_reading({m.key.decode(errors="replace") for m in messages if m.key})
        good: list[tuple[Message, Touchpoint]] = []
        dead: list[tuple[Message, OutgoingMessage]] = []
        for msg in messages:
            try:
                tp = decode(msg.value, Bounds(now_for(msg), self.max_future), ring.lookup)
                if tp.customer_id.encode() != msg.key:
                    raise InvalidEvent(
                        "key_mismatch",
                        f"message key {msg.key!r} differs from customer_id "
                        f"{tp.customer_id!r}; the key must be the customer_id",
                        "customer_id",
                    )
            except InvalidEvent as exc:
                dead.append((msg, self._dead(msg, exc)))
                continue
            except Exception as exc:  # decoding is pure: whatever it raises is poison
                why = InvalidEvent("undecodable", f"decoding raised {type(exc).__name__}: {exc}")
                dead.append((msg, self._dead(msg, why)))
                continue
            good.append((msg, tp))
        keys = self.keys.for_writing(
            {
                tp.customer_id
                for _, tp in good
                if has_personal_values(
                    tp.data.model_dump(mode="json", exclude_none=True), type(tp.data)
                )
            }
        )
        out: list[tuple[Message, OutgoingMessage]] = []
        for msg, tp in good:
            value = encode_sealed(tp, keys.get(tp.customer_id))
            if len(value) > MAX_ENVELOPE_BYTES:
                # Sealing made it too large for the log of record: it can never be relayed,
                # and retrying it would hold up every message behind it.
                too_large = InvalidEvent(
                    "too_large",
                    f"envelope of {len(value):,} bytes (its personal fields encrypted) is "
                    f"larger than {MAX_ENVELOPE_BYTES:,} bytes (1 MiB): keep large content "
                    "out of the log and link to it",
                )
                dead.append((msg, self._dead(msg, too_large)))
                continue
            out.append(
                (
                    msg,
                    OutgoingMessage(
                        key=msg.key or b"",
                        value=value,
                        headers=msg.headers,
                        timestamp_ms=msg.timestamp_ms if msg.timestamp_ms > 0 else None,
                    ),
                )
            )
        relayed = self._produce(out, dead)
        # A batch read again after a failed commit: its dead letters are on the DLQ already.
        fresh = [(m, d) for m, d in dead if (m.topic_partition, m.offset) not in self._dead_sent]
        if fresh:
            produce_dead_letters(self.log, self.dlq_topic, [letter for _, letter in fresh])
            self._dead_sent.update((m.topic_partition, m.offset) for m, _ in fresh)
        done: dict[TopicPartition, int] = defaultdict(int)
        for msg in messages:
            tp_ = msg.topic_partition
            done[tp_] = max(done[tp_], msg.offset + 1)
        consumer.commit(done)
        self._dead_sent = {(t, o) for t, o in self._dead_sent if o >= done.get(t, 0)}
        self._shred(done)
        self.relayed += relayed
        self.dead_letters += len(dead)
        for msg, letter in dead:
            logger.warning(
                "intake dead letter",
                reason=dict(letter.headers).get("journey-dlq-reason", b"").decode(),
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
            )
        logger.info("intake relayed", count=len(out), dead_letters=len(dead), topic=self.intake)
        return len(messages)

    def _produce(
        self,
        out: list[tuple[Message, OutgoingMessage]],
        dead: list[tuple[Message, OutgoingMessage]],
    ) -> int:
        """Produce the relayed records; how many reached the log. The log away: raised
        (transient, the batch is read again). A record the log refuses for good for its size
        (the broker's limit) joins ``dead``: retrying it would hold up every one behind it.
        Any other refusal is raised: the batch is read again, nothing is skipped."""
        if not out:
            return 0
        try:
            self.log.produce(self.topic, [record for _, record in out])
            return len(out)
        except LogUnavailable:
            raise
        except LogError:
            pass
        produced = 0
        for msg, record in out:  # one by one: which of them is refused, and why?
            try:
                self.log.produce(self.topic, [record])
                produced += 1
            except LogUnavailable:
                raise
            except LogError as exc:
                if "toolarge" not in str(exc).lower().replace(" ", ""):
                    raise  # not the record's fault (a missing topic, ACLs): stop and retry
                refused = InvalidEvent(
                    "too_large", f"the log of record {self.topic} refused it: {exc}"
                )
                dead.append((msg, self._dead(msg, refused)))
        dead.sort(key=lambda d: (d[0].partition, d[0].offset))
        return produced

    def _dead(self, msg: Message, exc: InvalidEvent) -> OutgoingMessage:
        return dead_letter(
            msg, exc.reason, exc.message, exc.field, lambda cid: self.keys.for_writing([cid])[cid]
        )

    def _shred(self, done: Mapping[TopicPartition, int]) -> None:
        """The relayed records leave the intake at once (retention is the backstop)."""
        try:
            self.log.delete_records(self.intake, {t.partition: o for t, o in done.items()})
        except Exception as exc:  # retention deletes them anyway; relaying goes on
            logger.warning("relayed intake records not deleted yet", error=str(exc))

    def run_until_empty(self, timeout_s: float = 60) -> int:
        """Relay until everything the intake held at the start is relayed (tests, tools)."""
        consumer = self.consumer
        targets = self.log.high_watermarks(self.intake)
        deadline = time.monotonic() + timeout_s
        total = 0
        while time.monotonic() < deadline:
            if all(
                hwm == 0 or (consumer.committed(TopicPartition(self.intake, p)) or 0) >= hwm
                for p, hwm in targets.items()
            ):
                return total
            total += self.step()
        raise TimeoutError(f"intake {self.intake} not relayed within {timeout_s} s")
