"""Dead letters: what cannot be decoded or fails its schema goes aside, with the reason.

The original key is kept as key, and headers say why and where it came from. The value
keeps what the message said, but never a personal value in the clear (crypto-shredding,
docs/events.md "Personal fields"):

* a message that is a valid envelope (it failed later: bounds, key, a conflict, the fold)
  keeps its JSON with each plain personal value sealed with its customer's key — a message
  whose personal values were sealed already (every door seals them) is kept byte for byte;
* anything else (not JSON, an unknown type, a body that fails its schema: personal data may
  sit in any field) is sealed whole, with the key of the customer the message key names,
  or — without a usable message key — a key of its own, ``dlq:<topic>:<partition>:<offset>``
  in the key table, which deleting shreds.

``journey-dlq-sealed`` says which (``fields`` or ``whole``) and ``journey-dlq-key-of`` whose
key; deleting that key (an erasure does) makes the dead letter's personal data unreadable.
A value longer than ``MAX_DLQ_VALUE`` is cut before it is sealed (it would not fit on the DLQ
topic); the original stays on the log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import structlog

from consumers.log import Log, LogError, LogUnavailable, Message, OutgoingMessage
from domain.catalogue import CATALOGUE
from domain.envelope import loads, parse_envelope
from domain.errors import InvalidEvent
from domain.personal import CustomerKey, has_personal_values, seal_bytes, seal_data

__all__ = [
    "HEADER_DROPPED_HEADERS",
    "HEADER_ERROR",
    "HEADER_FIELD",
    "HEADER_KEY_OF",
    "HEADER_OFFSET",
    "HEADER_PARTITION",
    "HEADER_REASON",
    "HEADER_REFUSED",
    "HEADER_SEALED",
    "HEADER_TOPIC",
    "HEADER_TRUNCATED",
    "HEADER_VALUE_DROPPED",
    "MAX_DLQ_RECORD",
    "MAX_DLQ_VALUE",
    "KeyFor",
    "dead_letter",
    "produce_dead_letters",
    "sealed_label",
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
HEADER_SEALED = "journey-dlq-sealed"
HEADER_KEY_OF = "journey-dlq-key-of"
MAX_DLQ_RECORD = 900 * 1024

logger = structlog.get_logger(__name__)

# A dead letter must fit where the original did not always: Kafka's default limit for a
# record is 1 MiB, and the headers above add a little. A longer value is cut to this many
# bytes, and HEADER_TRUNCATED says how long it was; the original stays on the log at the
# offset the headers name.
MAX_DLQ_VALUE = 512 * 1024


KeyFor = Callable[[str], CustomerKey]
"""customer id -> its key (made when it has none)."""


def sealed_label(msg: Message) -> str:
    """The authenticated data of a dead letter sealed whole: where it came from."""
    return f"journey/dlq|{msg.topic}|{msg.partition}|{msg.offset}"


def _owner(msg: Message) -> str:
    try:
        key = (msg.key or b"").decode("utf-8")
    except UnicodeDecodeError:
        key = ""
    if key and len(key) <= 200 and key == key.strip():
        return key
    return f"dlq:{msg.topic}:{msg.partition}:{msg.offset}"


def _sealed_fields(value: bytes, key_for: KeyFor) -> tuple[bytes, str] | None:
    """The envelope with its plain personal values sealed, and whose key sealed them; the
    value itself when nothing was plain; None when it is no valid envelope."""
    try:
        obj = loads(value)
        if not isinstance(obj, dict):
            return None
        parse_envelope(obj)  # a valid shape: personal data can only be where the schema says
    except InvalidEvent:
        return None
    except Exception:
        return None
    model = CATALOGUE[(obj["type"], obj["schema_version"])]
    customer_id = str(obj["customer_id"])
    if not has_personal_values(obj["data"], model):
        return value, customer_id
    event_id = str(uuid.UUID(str(obj["event_id"])))
    data = seal_data(obj["data"], model, key_for(customer_id), event_id)
    sealed = json.dumps({**obj, "data": data}, separators=(",", ":"), ensure_ascii=False)
    return sealed.encode(), customer_id


def dead_letter(
    msg: Message, reason: str, error: str, field: str | None, key_for: KeyFor
) -> OutgoingMessage:
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
    kept = _sealed_fields(value, key_for) if len(value) <= MAX_DLQ_VALUE else None
    if kept is not None and len(kept[0]) <= MAX_DLQ_VALUE:
        if kept[0] != value:
            ours += [(HEADER_SEALED, b"fields"), (HEADER_KEY_OF, kept[1].encode())]
        value = kept[0]
    elif value:
        if len(value) > MAX_DLQ_VALUE:
            ours.append((HEADER_TRUNCATED, str(len(value)).encode()))
            value = value[:MAX_DLQ_VALUE]
        owner = _owner(msg)
        ours += [(HEADER_SEALED, b"whole"), (HEADER_KEY_OF, owner.encode())]
        value = seal_bytes(value, key_for(owner), sealed_label(msg))
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


def produce_dead_letters(log: Log, topic: str, letters: list[OutgoingMessage]) -> None:
    """Produce ``letters`` to the DLQ ``topic``. The broker away: raised (transient, try
    again). A letter the DLQ refuses for good (e.g. too large for the broker) is produced as
    a :func:`stub`, so that it cannot hold up the ones behind it."""
    try:
        log.produce(topic, letters)
    except LogUnavailable:
        raise
    except LogError:
        for letter in letters:  # one by one: which of them is refused, and why?
            try:
                log.produce(topic, [letter])
            except LogUnavailable:
                raise
            except LogError as exc:
                logger.error(
                    "the DLQ refused a dead letter; producing it without its value",
                    error=str(exc),
                    key=letter.key[:200].decode(errors="replace"),
                )
                log.produce(topic, [stub(letter, str(exc))])
