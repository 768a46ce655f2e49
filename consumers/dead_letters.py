"""Dead letters: what cannot be decoded or fails its schema goes aside, with the reason.

The original bytes are kept unchanged as the value (and the original key as key), so
nothing is lost; headers say why and where it came from. Only a value longer than
``MAX_DLQ_VALUE`` is cut (it would not fit on the DLQ topic); the original stays on the log.
"""

from __future__ import annotations

from consumers.log import Message, OutgoingMessage

__all__ = [
    "HEADER_ERROR",
    "HEADER_FIELD",
    "HEADER_OFFSET",
    "HEADER_PARTITION",
    "HEADER_REASON",
    "HEADER_TOPIC",
    "HEADER_TRUNCATED",
    "MAX_DLQ_VALUE",
    "dead_letter",
]

HEADER_REASON = "journey-dlq-reason"
HEADER_ERROR = "journey-dlq-error"
HEADER_FIELD = "journey-dlq-field"
HEADER_TOPIC = "journey-dlq-original-topic"
HEADER_PARTITION = "journey-dlq-original-partition"
HEADER_OFFSET = "journey-dlq-original-offset"
HEADER_TRUNCATED = "journey-dlq-truncated-from"

# A dead letter must fit where the original did not always: Kafka's default limit for a
# record is 1 MiB, and the headers above add a little. A longer value is cut to this many
# bytes, and HEADER_TRUNCATED says how long it was; the original stays on the log at the
# offset the headers name.
MAX_DLQ_VALUE = 512 * 1024


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
    value = msg.value or b""
    if len(value) > MAX_DLQ_VALUE:
        headers.append((HEADER_TRUNCATED, str(len(value)).encode()))
        value = value[:MAX_DLQ_VALUE]
    headers.extend(msg.headers)
    return OutgoingMessage(key=msg.key or b"", value=value, headers=tuple(headers))
