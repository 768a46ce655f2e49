"""Property: whatever bytes land on the log, the consumer stays alive and every message is
either folded (or recognised as a duplicate) or dead-lettered — none vanishes, none is
counted twice.

hypothesis draws random bytes, random JSON (deeply nested too) and mutations of valid
envelopes; they are produced raw onto an embedded log between valid touchpoints, and the
runner is driven by the same supervised loop as ``journey run``.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.embedded_log import EmbeddedLog
from consumers.log import OutgoingMessage
from consumers.runner import Runner
from consumers.supervisor import Supervisor
from domain import catalogue as c
from domain.envelope import encode, new_touchpoint

TOPIC = "prop.touchpoints"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


def _valid(i: int) -> dict[str, Any]:
    tp = new_touchpoint(
        c.InquiryReceived(case_id=f"k-{i}", channel="email", subject=f"question {i}"),
        customer_id=f"cust-{i % 3}",
        occurred_at=NOW + timedelta(minutes=i),
        source="test",
    )
    obj: dict[str, Any] = json.loads(encode(tp))
    return obj


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


mutations = st.sampled_from(
    [
        ("event_id", "not-a-uuid"),
        ("schema_version", "1"),
        ("schema_version", True),
        ("occurred_at", "9999-12-31T23:59:59Z"),
        ("occurred_at", "yesterday"),
        ("type", "NoSuchType"),
        ("customer_id", ""),
        ("data", {"case_id": 1}),
        ("data", None),
    ]
)


@st.composite
def raw_messages(draw: st.DrawFn) -> tuple[bytes, bytes | None]:
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "deep", "valid"]))
    i = draw(st.integers(0, 10_000))
    valid = _valid(i)
    key = valid["customer_id"].encode()
    if kind == "bytes":
        return key, draw(st.binary(max_size=200))
    if kind == "json":
        return key, json.dumps(draw(json_values)).encode()
    if kind == "deep":
        return key, _nested(draw(st.integers(100, 6000)))
    if kind == "mutated":
        field, value = draw(mutations)
        valid[field] = value
        return key, json.dumps(valid).encode()
    return key, json.dumps(valid).encode()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(raw_messages(), min_size=1, max_size=30))
def test_every_message_is_folded_or_dead_lettered_and_the_consumer_lives(
    messages: list[tuple[bytes, bytes | None]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = EmbeddedLog(str(Path(tmp) / "log.db"))
        log.ensure_topics([TOPIC, f"{TOPIC}.dlq"], 3)
        log.produce(TOPIC, [OutgoingMessage(key=k, value=v or b"") for k, v in messages])
        runner = Runner(
            log,
            Path(tmp) / "views.db",
            topic=TOPIC,
            dlq_topic=f"{TOPIC}.dlq",
            group=f"g-{uuid.uuid4().hex[:8]}",
            follow_swaps=False,
        )
        supervisor = Supervisor(runner, None, backoff_max_s=0.01, progress_interval_s=3600)
        try:
            for _ in range(200):
                if all(v == 0 for v in runner.lag().values()):
                    break
                supervisor.turn()
            assert all(v == 0 for v in runner.lag().values()), supervisor.health
            assert not supervisor.health.failing, supervisor.health
            stats = runner.stats
            assert stats.applied + stats.duplicates + stats.dead_letters == len(messages)
            dead = runner.store.query("SELECT COUNT(*) FROM dead_letters")[0][0]
            folded = runner.store.query("SELECT COUNT(*) FROM touchpoints")[0][0]
            assert (folded, dead) == (stats.applied, stats.dead_letters)
            on_dlq = sum(log.high_watermarks(f"{TOPIC}.dlq").values())
            assert on_dlq == dead, "each dead letter on the DLQ exactly once"
        finally:
            runner.close()
            log.close()
