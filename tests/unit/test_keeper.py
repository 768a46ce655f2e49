"""The promise keeper: one fact per passed deadline, also across restarts and rebuilds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.embedded_log import EmbeddedLog
from consumers.rebuild import rebuild
from domain import catalogue as c
from domain.envelope import decode, new_touchpoint
from journey.pipeline import ManualClock, Pipeline
from projections.store import active_store_path

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TOPIC = "keeper.test"


def derived_on_log(log: EmbeddedLog) -> list[str]:
    consumer = log.consumer("count", [TOPIC])
    types = []
    try:
        while batch := consumer.poll(0.05, 1000):
            types += [decode(m.value).type for m in batch]
    finally:
        consumer.close()
    return [t for t in types if t in ("PromiseBroken", "ReplyOverdue")]


def seed(pipeline: Pipeline) -> None:
    pipeline.emit(
        [
            new_touchpoint(
                c.PromiseMade(
                    promise_id="cb",
                    what="call back",
                    made_by="agent",
                    due_by=T0 + timedelta(days=1),
                ),
                customer_id="c-1",
                occurred_at=T0,
                source="t",
            ),
            new_touchpoint(
                c.InquiryReceived(case_id="k", channel="email"),
                customer_id="c-2",
                occurred_at=T0,
                source="t",
            ),
        ]
    )


def test_nothing_before_the_deadline_one_fact_after(tmp_path: Path) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(T0 + timedelta(hours=23))
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    seed(pipeline)
    pipeline.catch_up()
    assert derived_on_log(log) == []
    clock.set(T0 + timedelta(hours=25))
    pipeline.catch_up()
    assert sorted(derived_on_log(log)) == ["PromiseBroken", "ReplyOverdue"]
    # Ticking again, or much later, adds nothing.
    clock.set(T0 + timedelta(days=10))
    pipeline.catch_up()
    assert pipeline.keeper.tick() == []
    assert len(derived_on_log(log)) == 2
    broken = pipeline.customer("c-1")
    assert broken is not None and broken.promises[0].status == "broken"
    # The fact happened at the deadline, not when the keeper noticed.
    assert broken.timeline.entries[0].at == T0 + timedelta(days=1)
    pipeline.close()


def test_exactly_one_across_restart_and_rebuild(tmp_path: Path) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(T0 + timedelta(days=2))
    first = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    seed(first)
    first.runner.run_until_caught_up()
    # Nothing on the log moves event time past the deadlines: the wall clock decides, once
    # the partitions have been idle for the idle timeout.
    assert first.keeper.tick() == []
    clock.set(clock.now + timedelta(seconds=30))
    # The keeper emits, then the process "dies" before the runner folds its facts.
    assert len(first.keeper.tick()) == 2
    first.close()
    second = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    second.catch_up()
    assert second.keeper.tick() == []
    second.close()
    assert len(derived_on_log(log)) == 2
    rebuild(log, tmp_path / "views.db", topic=TOPIC, dlq_topic=f"{TOPIC}.dlq")
    assert active_store_path(tmp_path / "views.db") != tmp_path / "views.db"
    third = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    third.catch_up()
    assert third.keeper.tick() == []
    assert len(derived_on_log(log)) == 2
    third.close()
