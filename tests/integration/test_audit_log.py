"""The audit trail on both logs (embedded and a real Kafka): records appended per customer,
read back filtered by customer (its partition only), key and time, oldest first."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from consumers.log import Log
from journey.security.audit import AuditTrail, read_audit
from journey.security.keys import Principal

ANN = Principal("id-ann", "ann", "agent")
BOB = Principal("id-bob", "bob", "agent")


def test_the_audit_trail_on_every_log(log: Log, unique_topic: str) -> None:
    trail = AuditTrail(log, f"{unique_topic}.audit", 3)
    trail.record(ANN, ["cust-a", "cust-b"], action="search", route="/search", lookup="search")
    time.sleep(0.01)  # the next records are strictly later than the first
    middle = datetime.now(UTC)
    trail.record(BOB, ["cust-a"], action="view", route="/customers/{key}", lookup="identity")
    trail.record(ANN, ["cust-a"], action="live", route="/customers/{key}/events", lookup="id")

    every = read_audit(log, trail.topic)
    assert sorted((r.key_name, r.customer_id, r.action) for r in every) == [
        ("ann", "cust-a", "live"),
        ("ann", "cust-a", "search"),
        ("ann", "cust-b", "search"),
        ("bob", "cust-a", "view"),
    ]
    only_a = read_audit(log, trail.topic, customer="cust-a")
    assert [r.action for r in only_a][-2:] == ["view", "live"]  # in order
    assert {r.customer_id for r in only_a} == {"cust-a"} and len(only_a) == 3
    assert [r.action for r in read_audit(log, trail.topic, key="bob")] == ["view"]
    assert [r.action for r in read_audit(log, trail.topic, key="id-ann", since=middle)] == ["live"]
    assert [r.action for r in read_audit(log, trail.topic, limit=1)] == ["live"]
    assert read_audit(log, f"{unique_topic}.nothing") == []
