"""The consumer keeps the bounds of every door (issue 8, item 2), on both logs.

Whatever a foreign producer puts on the log — a date in 9999, a value nested 5,000 deep, an
envelope over 1 MiB, "1" for a number — lands in the DLQ once, with its own reason, and the
runner folds the good touchpoints around it. The views built from that store, service levels
and a rebuild from the same log all answer. "Now" for a message is its log time, so
what was within bounds when produced stays within them, and what was not stays out.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.dead_letters import (
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TOPIC,
    MAX_DLQ_VALUE,
)
from consumers.kafka_log import KafkaLog
from consumers.log import Log, Message, OutgoingMessage, Position
from consumers.rebuild import rebuild
from consumers.runner import Runner
from domain.rules import ServiceRules
from projections.customer_view import build_customer_view
from projections.keys import CustomerKeys
from projections.service_levels import build_service_levels
from projections.store import JourneyStore
from tests.bounds_cases import cases, inquiry
from tests.integration.test_dead_letters import opened, same_json
from tests.integration.test_exactly_once import (  # the autouse fixture applies here too
    quiet_logs,  # noqa: F401
    read_topic,
)

CID = "cust-bounds"  # every case envelope belongs to this customer


def _runner(log: Log, path: Path, topic: str, **kwargs: object) -> Runner:
    return Runner(
        log,
        path,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        group=f"bounds-{uuid.uuid4().hex[:8]}",
        batch_size=4,
        follow_swaps=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_each_message_out_of_bounds_is_dead_lettered_once_with_its_reason(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    dlq = f"{unique_topic}.dlq"
    log.ensure_topics([unique_topic, dlq], 6)
    poison = cases()
    if isinstance(log, KafkaLog):  # the tests' own-groups subclass too
        # a default broker (and client) refuses a record over 1 MiB: it cannot reach the log
        del poison["1 MiB + 1"]
    good = [inquiry(CID) for _ in range(len(poison) + 1)]
    values: list[bytes] = []
    for n, case in enumerate(poison.values()):
        values += [json.dumps(good[n]).encode(), case.text.encode()]
    values.append(json.dumps(good[-1]).encode())
    log.produce(unique_topic, [OutgoingMessage(key=CID.encode(), value=v) for v in values])

    runner = _runner(log, tmp_path / "views.db", unique_topic)
    try:
        stats = runner.run_until_caught_up(120)
        assert (stats.applied, stats.dead_letters) == (len(good), len(poison))
        now = datetime.now(UTC)
        view = build_customer_view(runner.store, CID, rules=ServiceRules(), now=now)
        assert view is not None and view.touchpoints == len(good)
        levels = build_service_levels(runner.store, rules=ServiceRules(), now=now)
        assert len(levels.unanswered) == len(good)
    finally:
        runner.close()

    letters = read_topic(log, dlq)
    assert sorted(str(m.header(HEADER_REASON), "utf-8") for m in letters) == sorted(
        c.reason for c in poison.values()
    )
    # unchanged once opened with the customer's key (no personal value stays plain there),
    # except that a value over MAX_DLQ_VALUE is cut to fit the DLQ topic
    keys = CustomerKeys(tmp_path / "views.db")
    try:
        got = [opened(m, keys, origin(m)) for m in letters]
    finally:
        keys.close()
    expected = [c.text.encode()[:MAX_DLQ_VALUE] for c in poison.values()]
    assert all(any(same_json(g, e) for g in got) for e in expected)
    assert all(any(same_json(g, e) for e in expected) for g in got)

    # A rebuild replays the same log into a new store: same folds, no second dead letters.
    new_file, again, _ = rebuild(log, tmp_path / "views.db", topic=unique_topic, dlq_topic=dlq)
    assert (again.applied, again.dead_letters) == (len(good), len(poison))
    assert sum(log.high_watermarks(dlq).values()) == len(poison)
    store = JourneyStore(new_file)
    try:
        view = build_customer_view(store, CID, rules=ServiceRules(), now=datetime.now(UTC))
        assert view is not None and view.touchpoints == len(good)
    finally:
        store.close()


def test_now_for_a_message_is_its_log_time_live_and_on_replay(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    """A producer whose clock runs ahead stamps its touchpoint and its record alike: within
    a day of its log time, the touchpoint is folded, now and on replay; one more than a day
    ahead of both clocks is dead-lettered. (Kafka 4 refuses record times more than an hour
    ahead of the broker, log.message.timestamp.after.max.ms, so 50 minutes ahead it is.)"""
    log.ensure_topics([unique_topic, f"{unique_topic}.dlq"], 6)
    ahead = datetime.now(UTC) + timedelta(minutes=50)
    stamp = int(ahead.timestamp() * 1000)
    within = inquiry(CID, at=ahead + timedelta(hours=23, minutes=30))  # > wall clock + 1 day
    beyond = inquiry(CID, at=ahead + timedelta(days=1, hours=1))
    old = inquiry(CID, at=datetime(1999, 12, 31, 23, tzinfo=UTC))  # history still decodes
    log.produce(
        unique_topic,
        [
            OutgoingMessage(key=CID.encode(), value=json.dumps(e).encode(), timestamp_ms=stamp)
            for e in (within, beyond)
        ]
        + [OutgoingMessage(key=CID.encode(), value=json.dumps(old).encode())],
    )
    for name in ("live.db", "replay.db"):
        runner = _runner(log, tmp_path / name, unique_topic, produce_dead_letters=False)
        try:
            stats = runner.run_until_caught_up(60)
            assert (stats.applied, stats.dead_letters) == (2, 1), name
            rows = runner.store.query("SELECT reason FROM dead_letters")
            assert [r for (r,) in rows] == ["out_of_range"]
        finally:
            runner.close()


def origin(letter: Message) -> Position:
    """Where a dead letter came from, as its headers say."""
    return Position(
        (letter.header(HEADER_TOPIC) or b"").decode(),
        int(letter.header(HEADER_PARTITION) or b"0"),
        int(letter.header(HEADER_OFFSET) or b"0"),
    )
