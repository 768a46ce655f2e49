"""`journey.analytics` reads Kafka and the embedded log alike: the metrics of a log equal the
metrics of the touchpoints on it, whatever the partitioning, with re-sent touchpoints counted
once and what the engine dead-letters (not JSON, a key that is not the customer id) counted in
no figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.log import Log, OutgoingMessage
from domain.envelope import encode
from journey import analytics
from journey.stories import all_touchpoints

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SINCE, UNTIL = NOW - timedelta(days=400), NOW + timedelta(days=1)


def test_the_metrics_of_a_log_are_those_of_its_touchpoints(log: Log, unique_topic: str) -> None:
    touchpoints = all_touchpoints(NOW)
    log.ensure_topics([unique_topic], 3)
    stamp = int(NOW.timestamp() * 1000)
    messages = [
        OutgoingMessage(key=tp.customer_id.encode(), value=encode(tp), timestamp_ms=stamp)
        for tp in touchpoints
    ]
    wrong_key = OutgoingMessage(key=b"someone-else", value=messages[0].value, timestamp_ms=stamp)
    not_json = OutgoingMessage(key=b"cust-x", value=b"{not json", timestamp_ms=stamp)
    log.produce(unique_topic, [*messages, *messages[:5], wrong_key, not_json])

    facts = analytics.read(log, SINCE, UNTIL, topic=unique_topic)
    assert facts.skipped == 2
    assert facts.touchpoints == len(touchpoints) + 5  # the re-sent five read, counted once
    from_log = analytics.metrics(facts, as_of=NOW)
    from_list = analytics.metrics(touchpoints, SINCE, UNTIL, as_of=NOW)
    assert from_log == from_list
    assert from_log["cases"]["opened"] > 5
    assert analytics.metrics(facts, by="team", as_of=NOW) == analytics.metrics(
        touchpoints, SINCE, UNTIL, "team", as_of=NOW
    )


def test_the_bounds_are_the_engines(log: Log, unique_topic: str) -> None:
    """A touchpoint dated two days after its log time is dead-lettered by an engine allowing
    one day of clock skew (the default), and counted by one allowing three."""
    (tp,) = [t for t in all_touchpoints(NOW) if t.type == "ComplaintFiled"][:1]
    log.ensure_topics([unique_topic], 1)
    early = int((tp.occurred_at - timedelta(days=2)).timestamp() * 1000)
    log.produce(
        unique_topic,
        [OutgoingMessage(key=tp.customer_id.encode(), value=encode(tp), timestamp_ms=early)],
    )
    strict = analytics.read(log, SINCE, UNTIL, topic=unique_topic)
    lenient = analytics.read(log, SINCE, UNTIL, topic=unique_topic, max_future=timedelta(days=3))
    assert (strict.skipped, len(strict.cases)) == (1, 0)
    assert (lenient.skipped, len(lenient.cases)) == (0, 1)
