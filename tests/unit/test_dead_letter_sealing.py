"""A dead letter keeps what the message said, but no personal value in the clear.

Before: the DLQ held a byte-for-byte copy of the message, so a plain name in a message that
failed later (or was never parseable) stayed readable there after the customer's erasure.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from consumers.dead_letters import (
    HEADER_KEY_OF,
    HEADER_SEALED,
    dead_letter,
    sealed_label,
)
from consumers.log import Message, OutgoingMessage
from domain import catalogue as c
from domain.envelope import decode, encode, encode_sealed, new_touchpoint
from domain.personal import CustomerKey, new_key, open_bytes

NAME = "Ragnhild Dlqsdottir"
AT = datetime(2026, 3, 2, 9, tzinfo=UTC)


class Keys:
    """An in-memory key table standing in for projections.keys (pure function of ids)."""

    def __init__(self) -> None:
        self.keys: dict[str, CustomerKey] = {}

    def __call__(self, customer_id: str) -> CustomerKey:
        return self.keys.setdefault(customer_id, new_key(customer_id))

    def lookup(self, customer_id: str, kid: str) -> bytes | None:
        key = self.keys.get(customer_id)
        return key.key if key is not None and key.kid == kid else None


def message(value: bytes, key: bytes | None = b"c-1", offset: int = 7) -> Message:
    return Message("t", 2, offset, key, value, 0)


def inquiry(cid: str = "c-1") -> c.TouchpointData:
    return c.InquiryReceived(case_id="k", channel="sms", body=f"I am {NAME}")


def header(letter: OutgoingMessage, name: str) -> bytes | None:
    return dict(letter.headers).get(name)


def test_a_plain_envelope_that_failed_later_keeps_its_json_with_personal_values_sealed() -> None:
    keys = Keys()
    tp = new_touchpoint(inquiry(), customer_id="c-1", occurred_at=AT, source="kcat")
    # the key names another customer: a valid envelope, dead-lettered as key_mismatch
    letter = dead_letter(message(encode(tp), key=b"c-2"), "key_mismatch", "...", None, keys)
    assert NAME.encode() not in letter.value
    assert header(letter, HEADER_SEALED) == b"fields"
    assert header(letter, HEADER_KEY_OF) == b"c-1"  # the envelope's customer
    assert decode(letter.value, keys=keys.lookup) == tp
    assert json.loads(letter.value)["data"]["case_id"] == "k"  # still readable where not personal


def test_an_envelope_sealed_already_is_kept_byte_for_byte() -> None:
    keys = Keys()
    tp = new_touchpoint(inquiry(), customer_id="c-1", occurred_at=AT, source="test")
    raw = encode_sealed(tp, keys("c-1"))
    letter = dead_letter(message(raw), "conflicting_duplicate", "...", "event_id", keys)
    assert letter.value == raw
    assert header(letter, HEADER_SEALED) is None


def test_a_message_that_is_no_valid_envelope_is_sealed_whole_with_its_customers_key() -> None:
    keys = Keys()
    tp = new_touchpoint(inquiry(), customer_id="c-1", occurred_at=AT, source="kcat")
    body = json.loads(encode(tp))
    body["data"]["full_name"] = NAME  # an unknown field: personal data where no schema says
    for raw in (json.dumps(body).encode(), b"not json at all, " + NAME.encode()):
        msg = message(raw)
        letter = dead_letter(msg, "invalid_data", "...", None, keys)
        assert NAME.encode() not in letter.value
        assert header(letter, HEADER_SEALED) == b"whole"
        assert header(letter, HEADER_KEY_OF) == b"c-1"
        assert open_bytes(letter.value, keys("c-1").key, sealed_label(msg)) == raw
        # once the key is deleted (erasure) nothing opens it
        assert open_bytes(letter.value, new_key("c-1").key, sealed_label(msg)) is None


def test_a_message_without_a_usable_key_is_sealed_with_a_key_of_its_own() -> None:
    keys = Keys()
    for key in (None, b"", b"\xff\xfe", b" padded "):
        letter = dead_letter(message(NAME.encode(), key=key), "not_json", "...", None, keys)
        assert NAME.encode() not in letter.value
        assert header(letter, HEADER_KEY_OF) == b"dlq:t:2:7"
    assert set(keys.keys) == {"dlq:t:2:7"}
