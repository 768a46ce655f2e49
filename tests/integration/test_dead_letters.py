"""Dead letters on both logs: what cannot be decoded or fails its schema goes to
``<topic>.dlq`` unchanged, with the reason and its origin in headers; the runner moves on.

The bad messages are produced straight onto the log (as a foreign producer would), between
valid touchpoints of the same customers, so they share partitions and poll batches.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from consumers.dead_letters import (
    HEADER_ERROR,
    HEADER_FIELD,
    HEADER_KEY_OF,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_SEALED,
    HEADER_TOPIC,
    sealed_label,
)
from consumers.log import Log, Message, OutgoingMessage, Position, TopicPartition
from consumers.runner import Runner
from domain import catalogue as c
from domain.catalogue import CATALOGUE
from domain.envelope import Touchpoint, encode, new_touchpoint
from domain.personal import open_bytes, open_data
from domain.rules import ServiceRules
from projections.customer_view import build_customer_view
from projections.keys import CustomerKeys
from tests.integration.test_exactly_once import (  # the autouse fixture applies here too
    quiet_logs,  # noqa: F401
    read_topic,
)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Bad:
    what: str
    key: bytes
    value: bytes
    reason: str
    field: str | None = None


def to_message(tp: Touchpoint) -> OutgoingMessage:
    """A touchpoint as a foreign producer would put it on the log: plain JSON."""
    return OutgoingMessage(key=tp.customer_id.encode(), value=encode(tp))


def _valid(cid: str, n: int) -> Touchpoint:
    data: c.TouchpointData = [
        c.InquiryReceived(case_id=f"{cid}-1", channel="email", subject="hello"),
        c.ReplySent(case_id=f"{cid}-1", channel="email", agent="a", team="T", country="SE"),
        c.CaseResolved(case_id=f"{cid}-1", resolution="answered"),
    ][n % 3]
    return new_touchpoint(
        data, customer_id=cid, occurred_at=NOW - timedelta(hours=10 - n), source="test"
    )


def _envelope(cid: str, **changes: Any) -> bytes:
    """A valid ReplySent envelope of ``cid`` as JSON, with ``changes`` applied (None
    removes a field; ``data__x`` changes a data field)."""
    obj = json.loads(encode(_valid(cid, 1)))
    for name, value in changes.items():
        target, key = (obj["data"], name[6:]) if name.startswith("data__") else (obj, name)
        if value is None:
            del target[key]
        else:
            target[key] = value
    return json.dumps(obj).encode()


def _bad_messages() -> list[Bad]:
    a, b = "cust-a", "cust-b"
    return [
        Bad("garbage bytes", a.encode(), b"\xff\xfe\x00 not json at all", "not_json"),
        Bad("empty value", b.encode(), b"", "not_json"),
        Bad("JSON that is not an object", a.encode(), b'["an", "array"]', "invalid_envelope"),
        Bad("JSON scalar", b.encode(), b"42", "invalid_envelope"),
        Bad("unknown type", a.encode(), _envelope(a, type="TeleportRequested"), "unknown_type",
            "type"),
        Bad("unknown version", b.encode(), _envelope(b, schema_version=9), "unknown_version",
            "schema_version"),
        Bad("missing data field", a.encode(), _envelope(a, data__agent=None), "invalid_data",
            "data.agent"),
        Bad("missing envelope field", b.encode(), _envelope(b, occurred_at=None),
            "invalid_envelope", "occurred_at"),
        Bad("time without a zone", a.encode(), _envelope(a, occurred_at="2026-11-23T10:00:00"),
            "invalid_envelope", "occurred_at"),
        Bad("time as a number", b.encode(), _envelope(b, occurred_at=1_763_900_000),
            "invalid_envelope", "occurred_at"),
        Bad("key differs from customer_id", b.encode(), _envelope(a), "key_mismatch",
            "customer_id"),
    ]  # fmt: skip


def _header(msg: Message, name: str) -> str | None:
    value = msg.header(name)
    return None if value is None else value.decode()


def test_bad_messages_go_to_the_dead_letter_topic_and_the_runner_carries_on(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    dlq = f"{unique_topic}.dlq"
    log.ensure_topics([unique_topic, dlq], 6)
    valid = {cid: [_valid(cid, n) for n in range(3)] for cid in ("cust-a", "cust-b")}
    bad = _bad_messages()
    # Valid and bad in turn; each customer's last valid touchpoint comes after all the bad
    # ones, so it is in the view only if the runner carried on.
    a, b = valid["cust-a"], valid["cust-b"]
    kinds: list[Bad | Touchpoint] = [a[0], b[0], *bad[:5], a[1], b[1], *bad[5:], a[2], b[2]]
    legacy = (("producer", b"legacy-system"),)
    outgoing = [
        to_message(k)
        if isinstance(k, Touchpoint)
        else OutgoingMessage(key=k.key, value=k.value, headers=legacy)
        for k in kinds
    ]
    positions = log.produce(unique_topic, outgoing)
    bad_at: dict[Position, Bad] = {
        pos: kind for pos, kind in zip(positions, kinds, strict=True) if isinstance(kind, Bad)
    }
    assert len(bad_at) == len(bad)

    runner = Runner(
        log, tmp_path / "views.db", topic=unique_topic, dlq_topic=dlq,
        group=f"dlq-{uuid.uuid4().hex[:8]}", batch_size=4,
    )  # fmt: skip
    keys = CustomerKeys(tmp_path / "views.db")
    try:
        with structlog.testing.capture_logs() as logs:
            stats = runner.run_until_caught_up(60)
        assert stats.dead_letters == len(bad)
        assert stats.applied == sum(len(v) for v in valid.values())
        # It carried on: every partition is recorded up to its high-water mark.
        marks = log.high_watermarks(unique_topic)
        assert runner.store.positions() == {
            TopicPartition(unique_topic, p): hwm - 1 for p, hwm in marks.items() if hwm
        }

        # On the dead-letter topic: each bad message once, unchanged, with why and whence.
        letters = read_topic(log, dlq)
        assert len(letters) == len(bad)
        by_origin: dict[Position, Message] = {}
        for letter in letters:
            origin = Position(
                str(_header(letter, HEADER_TOPIC)),
                int(str(_header(letter, HEADER_PARTITION))),
                int(str(_header(letter, HEADER_OFFSET))),
            )
            assert origin not in by_origin, f"dead-lettered twice: {origin}"
            by_origin[origin] = letter
        assert set(by_origin) == set(bad_at)
        for origin, expected in bad_at.items():
            letter = by_origin[origin]
            assert _header(letter, HEADER_REASON) == expected.reason, expected.what
            # unchanged once opened with the customer's key (no personal value stays plain)
            assert opened(letter, keys, origin) == expected.value, expected.what
            assert letter.key == expected.key, expected.what
            assert _header(letter, HEADER_FIELD) == expected.field, expected.what
            assert _header(letter, HEADER_ERROR), expected.what
            assert letter.header("producer") == b"legacy-system", expected.what
            # The dead letter sits in the partition of its key, like the original.
            assert letter.partition == log.partition_for(dlq, expected.key)

        # Counted in the store, in the same transactions as the positions.
        rows = runner.store.query('SELECT topic, partition, "offset", reason FROM dead_letters')
        assert sorted(rows) == sorted(
            (pos.topic, pos.partition, pos.offset, kind.reason) for pos, kind in bad_at.items()
        )

        # The log line says where each one was.
        lines = [e for e in logs if e["event"] == "dead letter"]
        assert len(lines) == len(bad)
        assert {(e["topic"], e["partition"], e["offset"]) for e in lines} == {
            (p.topic, p.partition, p.offset) for p in bad_at
        }
        for e in lines:
            pos = Position(e["topic"], e["partition"], e["offset"])
            assert e["reason"] == bad_at[pos].reason
            assert e["log_level"] == "warning"

        # The valid ones are in the views, and only they.
        for cid, tps in valid.items():
            view = build_customer_view(runner.store, cid, rules=ServiceRules(), now=NOW)
            assert view is not None
            assert view.touchpoints == len(tps)
            assert [e.event_id for e in view.timeline.entries] == [
                str(tp.event_id) for tp in reversed(tps)
            ]
            assert [k.status for k in view.closed_cases] == ["resolved"]
    finally:
        runner.close()
        keys.close()


def opened(letter: Message, keys: CustomerKeys, origin: Position) -> bytes:
    """A dead letter's value as the original message had it. Sealed whole, it opens with the
    key its header names; with its personal fields sealed, they open with the customer's
    key (the JSON comes back compact); otherwise it is the original, byte for byte."""
    how = letter.header(HEADER_SEALED)
    value = letter.value or b""
    if how is None:
        return value
    owner = str(_header(letter, HEADER_KEY_OF))
    ring = keys.for_reading([owner])
    if how == b"fields":
        obj = json.loads(value)
        model = CATALOGUE[(obj["type"], obj["schema_version"])]
        data = open_data(obj["data"], model, owner, obj["event_id"], ring.lookup)
        return json.dumps({**obj, "data": data}).encode()
    (key,) = [k for (cid, _), (k, _) in ring.keys.items() if cid == owner]
    msg = Message(origin.topic, origin.partition, origin.offset, letter.key, b"", 0)
    plain = open_bytes(value, key, sealed_label(msg))
    assert plain is not None
    return plain


def same_json(a: bytes, b: bytes) -> bool:
    """Equal bytes, or equal JSON (a dead letter with sealed fields is re-serialised)."""
    try:
        return a == b or json.loads(a) == json.loads(b)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser
        return False


def test_a_rebuild_counts_dead_letters_without_producing_them_again(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    """Replaying the log (a rebuild's runner) meets the same bad messages: it records them
    in its store but does not put a second copy on the dead-letter topic."""
    dlq = f"{unique_topic}.dlq"
    log.ensure_topics([unique_topic, dlq], 6)
    bad = _bad_messages()
    log.produce(unique_topic, [OutgoingMessage(key=b.key, value=b.value) for b in bad])
    log.produce(unique_topic, [to_message(_valid("cust-a", 0))])
    for path, produce in (("live.db", True), ("replay.db", False)):
        runner = Runner(
            log, tmp_path / path, topic=unique_topic, dlq_topic=dlq,
            group=f"dlq-{uuid.uuid4().hex[:8]}", produce_dead_letters=produce,
        )  # fmt: skip
        try:
            stats = runner.run_until_caught_up(60)
            assert (stats.dead_letters, stats.applied) == (len(bad), 1)
            reasons = sorted(r for (r,) in runner.store.query("SELECT reason FROM dead_letters"))
            assert reasons == sorted(b.reason for b in bad)
        finally:
            runner.close()
    assert sum(log.high_watermarks(dlq).values()) == len(bad)
