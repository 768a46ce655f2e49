"""Dead letters in the store: recorded in the batch's transaction, and the outbox of the
dead-letter topic (``published`` = 0 rows still hold the message to produce)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from domain.positions import TopicPartition
from projections.backends import Statement

__all__ = ["DeadLetterRow", "PendingDeadLetter", "dead_letter_write"]


@dataclass(frozen=True)
class DeadLetterRow:
    """A dead letter of the batch: recorded with it, and the message for the DLQ topic
    (None when it was produced already, e.g. a rebuild replaying the log)."""

    offset: int
    reason: str
    error: str
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    publish: bool = True


@dataclass(frozen=True)
class PendingDeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def dead_letter_write(tp: TopicPartition, dead: DeadLetterRow) -> Statement:
    outbox = dead.publish and dead.value is not None
    headers = (
        json.dumps([[n, base64.b64encode(v).decode()] for n, v in dead.headers]) if outbox else None
    )
    return (
        'INSERT INTO dead_letters (topic, partition, "offset", reason, error,'
        " published, dlq_key, dlq_value, dlq_headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (
            tp.topic,
            tp.partition,
            dead.offset,
            dead.reason,
            dead.error[:2000],
            0 if outbox else 1,
            dead.key if outbox else None,
            dead.value if outbox else None,
            headers,
        ),
    )


def decode_headers(text: str | None) -> tuple[tuple[str, bytes], ...]:
    return tuple((str(n), base64.b64decode(v)) for n, v in json.loads(text or "[]"))
