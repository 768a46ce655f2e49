"""Dead letters: what cannot be decoded or fails its schema goes aside, with the reason.

The original bytes are kept unchanged as the value (and the original key as key), so
nothing is lost; headers say why and where it came from.
"""

from __future__ import annotations

from consumers.log import Message, OutgoingMessage

__all__ = ["HEADER_ERROR", "HEADER_FIELD", "HEADER_REASON", "dead_letter"]

HEADER_REASON = "journey-dlq-reason"
HEADER_ERROR = "journey-dlq-error"
HEADER_FIELD = "journey-dlq-field"
HEADER_TOPIC = "journey-dlq-original-topic"
HEADER_PARTITION = "journey-dlq-original-partition"
HEADER_OFFSET = "journey-dlq-original-offset"


def dead_letter(msg: Message, reason: str, error: str, field: str | None) -> OutgoingMessage:
    headers = [
        (HEADER_REASON, reason.encode()),
        (HEADER_ERROR, error.encode()[:2000]),
        (HEADER_TOPIC, msg.topic.encode()),
        (HEADER_PARTITION, str(msg.partition).encode()),
        (HEADER_OFFSET, str(msg.offset).encode()),
    ]
    if field:
        headers.append((HEADER_FIELD, field.encode()))
    headers.extend(msg.headers)
    return OutgoingMessage(
        key=msg.key or b"",
        value=msg.value or b"",
        headers=tuple(headers),
    )
