"""Dead letters: what cannot be decoded or fails its schema goes aside, with the reason.

The original bytes are kept unchanged as the value (and the original key as key), so
nothing is lost; headers say why and where it came from. Only a value longer than
``MAX_DLQ_VALUE`` is cut (it would not fit on the DLQ topic); the original stays on the log.
"""

from __future__ import annotations

from consumers.log import Message, OutgoingMessage

__all__ = [
    "HEADER_DROPPED_HEADERS",
    "HEADER_ERROR",
    "HEADER_FIELD",
    "HEADER_OFFSET",
    "HEADER_PARTITION",
    "HEADER_REASON",
    "HEADER_REFUSED",
    "HEADER_TOPIC",
    "HEADER_TRUNCATED",
    "HEADER_VALUE_DROPPED",
    "MAX_DLQ_RECORD",
    "MAX_DLQ_VALUE",
    "dead_letter",
    "stub",
]

HEADER_REASON = "journey-dlq-reason"
HEADER_ERROR = "journey-dlq-error"
HEADER_FIELD = "journey-dlq-field"
HEADER_TOPIC = "journey-dlq-original-topic"
HEADER_PARTITION = "journey-dlq-original-partition"
HEADER_OFFSET = "journey-dlq-original-offset"
HEADER_TRUNCATED = "journey-dlq-truncated-from"
HEADER_DROPPED_HEADERS = "journey-dlq-dropped-headers"
HEADER_VALUE_DROPPED = "journey-dlq-value-dropped"
HEADER_REFUSED = "journey-dlq-refused"
MAX_DLQ_RECORD = 900 * 1024

# A dead letter must fit where the original did not always: Kafka's default limit for a
# record is 1 MiB, and the headers above add a little. A longer value is cut to this many
# bytes, and HEADER_TRUNCATED says how long it was; the original stays on the log at the
# offset the headers name.
MAX_DLQ_VALUE = 512 * 1024


def dead_letter(msg: Message, reason: str, error: str, field: str | None) -> OutgoingMessage:
    ours = [
        (HEADER_REASON, reason.encode()),
        (HEADER_ERROR, error.encode()[:2000]),
        (HEADER_TOPIC, msg.topic.encode()),
        (HEADER_PARTITION, str(msg.partition).encode()),
        (HEADER_OFFSET, str(msg.offset).encode()),
    ]
    if field:
        ours.append((HEADER_FIELD, field.encode()))
    value = msg.value or b""
    if len(value) > MAX_DLQ_VALUE:
        ours.append((HEADER_TRUNCATED, str(len(value)).encode()))
        value = value[:MAX_DLQ_VALUE]
    # The producer's own headers ride along while the whole record stays well within
    # Kafka's limit; past it they are dropped (counted in a header): a dead letter that can
    # never be produced would hold up every dead letter behind it.
    theirs = list(msg.headers)
    if _size(ours) + _size(theirs) + len(value) + len(msg.key or b"") > MAX_DLQ_RECORD:
        ours.append((HEADER_DROPPED_HEADERS, str(len(theirs)).encode()))
        theirs = []
    return OutgoingMessage(key=msg.key or b"", value=value, headers=(*ours, *theirs))


def stub(letter: OutgoingMessage, refusal: str) -> OutgoingMessage:
    """The dead letter without its value and the producer's headers: what is left when the
    DLQ topic refuses the whole one for good (its origin still names the original)."""
    kept = tuple((n, v) for n, v in letter.headers if n.startswith("journey-dlq-"))
    return OutgoingMessage(
        key=letter.key[:1024],
        value=b"",
        headers=(
            *kept,
            (HEADER_VALUE_DROPPED, str(len(letter.value)).encode()),
            (HEADER_REFUSED, refusal.encode()[:500]),
        ),
    )


def _size(headers: list[tuple[str, bytes]]) -> int:
    return sum(len(n) + len(v) + 8 for n, v in headers)
