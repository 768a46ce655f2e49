"""The log port: the small surface every log adapter (Kafka, embedded SQLite) offers.

Everything above this module (emitter, runners, query service) talks only to these
protocols, so the same code runs on Apache Kafka and on the embedded log.

Semantics every adapter honours (the contract suite in ``tests/contract`` checks them):

* a topic has a fixed number of partitions; a message's partition is chosen from its key
  with Kafka's default partitioner (murmur2), so a key lands in the same partition number on
  both logs and one customer's events are totally ordered; a message that names its
  partition (``OutgoingMessage.partition``) goes there instead (the promise keeper sends a
  customer's fact where the customer's touchpoints are), and one naming a partition the
  topic does not have fails the whole batch with :class:`LogError` before anything is
  written;
* offsets in a partition start at 0 and grow by one per message;
* the *high-water mark* of a partition is the offset the next message will get;
* a consumer belongs to a group; it reads from the group's committed offset (or the
  beginning, when nothing was committed) and commits explicitly, never automatically;
* a consumer with no group (``group_id=None``) is a plain reader: every partition of its
  topics is assigned to it (or only ``partitions``, when given: one process of a rebuild
  on several reads its own share), it starts where ``on_assign`` says (else at 0), joins
  nothing, and its commits go nowhere (``committed`` is None). Readers that must not
  disturb the engine (a rebuild) use it;
* committed offsets are "the next offset to read", as in Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from domain.errors import JourneyError
from domain.positions import TopicPartition  # re-exported: the port speaks of it

__all__ = [
    "CommitRefused",
    "Log",
    "LogConsumer",
    "LogError",
    "LogUnavailable",
    "Message",
    "OnAssign",
    "OutgoingMessage",
    "Position",
    "TopicPartition",
    "check_partitions",
]


class LogError(JourneyError):
    """The log could not do what was asked (broker unreachable, unknown topic, ...)."""


class LogUnavailable(LogError):
    """The log did not answer in time (broker down, unreachable, overloaded, leader moving).

    Transient: nothing was lost; retry the same call later, with backoff. A produce that
    raised this may still have been written (the idempotent producer keeps a retry from
    duplicating it; consumers de-duplicate by event_id)."""


class CommitRefused(LogError):
    """The group refused a commit: this member lost (some of) its partitions in a
    rebalance. Not retryable as it is: re-read the assigned partitions from the positions
    the store holds (the next poll's on_assign does that)."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a message sits on the log. Returned to emitters as the read-your-writes token."""

    topic: str
    partition: int
    offset: int

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def as_dict(self) -> dict[str, str | int]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    def token(self) -> str:
        """Compact text form, ``topic:partition:offset``; see :meth:`parse`."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, token: str) -> Position:
        topic, sep, rest = token.rpartition(":")
        topic, sep2, partition = topic.rpartition(":")
        if not sep or not sep2 or not topic:
            raise LogError(f"malformed position token {token!r}: expected topic:partition:offset")
        try:
            part, off = int(partition), int(rest)
        except ValueError:
            raise LogError(
                f"malformed position token {token!r}: partition and offset must be integers"
            ) from None
        if part < 0 or off < 0:
            raise LogError(f"malformed position token {token!r}: negative partition or offset")
        return cls(topic, part, off)


Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class OutgoingMessage:
    key: bytes
    value: bytes
    headers: Headers = ()
    timestamp_ms: int | None = None
    # None: the key's murmur2 hash chooses (every producer but one). A number: this
    # partition, whatever the key says: a derived fact follows its customer to the partition
    # the customer's touchpoints were folded from, which another producer's partitioner (or a
    # topic that grew) may have made differ from the hash.
    partition: int | None = None


def check_partitions(topic: str, messages: Sequence[OutgoingMessage], count: int) -> None:
    """Raise :class:`LogError` if a message names a partition ``topic`` (of ``count``
    partitions) does not have: checked before anything of the batch is written."""
    for msg in messages:
        p = msg.partition
        if p is not None and not 0 <= p < count:
            raise LogError(
                f"partition {p} of topic {topic!r} does not exist: the topic has {count} "
                f"partitions (0-{count - 1}); name one of them, or none to let the key choose"
            )


@dataclass(frozen=True)
class Message:
    """One message read from the log."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Headers = field(default=())

    @property
    def position(self) -> Position:
        return Position(self.topic, self.partition, self.offset)

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


# Called when partitions are (re)assigned to a consumer. It may return the offsets to start
# from (e.g. positions kept transactionally in a projection store); partitions it leaves
# out start from the group's committed offset, or the beginning.
OnAssign = Callable[[frozenset[TopicPartition]], Mapping[TopicPartition, int]]


@runtime_checkable
class LogConsumer(Protocol):
    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        """Next messages in offset order per partition; [] when none arrived in time."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit the given next-offsets-to-read for the group, or the current positions."""
        ...

    def committed(self, tp: TopicPartition) -> int | None: ...

    def assignment(self) -> frozenset[TopicPartition]: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def seek_to_beginning(self) -> None:
        """Every assigned partition reads again from offset 0 (the earliest retained)."""
        ...

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        """Every assigned partition reads from the first message at or after the time
        (or from the high-water mark when there is none)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Log(Protocol):
    url: str

    def ensure_topics(
        self, topics: Sequence[str], partitions: int, *, retention_ms: int | None = None
    ) -> None:
        """Create the topics that do not exist yet: infinite retention, or with
        ``retention_ms`` records older than that are deleted (the intake topic; the embedded
        log keeps no retention and relies on :meth:`delete_records`)."""
        ...

    def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        """Make the records of ``topic`` below ``before[partition]`` unreadable for good (the
        intake's plain records once relayed). Offsets of later records do not change."""
        ...

    def partitions(self, topic: str) -> list[int]: ...

    def partition_for(self, topic: str, key: bytes) -> int: ...

    def produce(self, topic: str, messages: Sequence[OutgoingMessage]) -> list[Position]:
        """Append messages; positions come back in input order. Per key, order is kept."""
        ...

    def high_watermarks(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next message will get."""
        ...

    def consumer(
        self,
        group_id: str | None,
        topics: Sequence[str],
        *,
        on_assign: OnAssign | None = None,
        partitions: Collection[int] | None = None,
    ) -> LogConsumer:
        """A member of ``group_id``, or with None a reader of every partition outside any
        group (of ``partitions`` only, when given; a group member takes what the group
        gives it, so ``partitions`` with a group is an error)."""
        ...

    def close(self) -> None: ...
