"""The promise keeper: one fact per passed deadline, also across restarts and rebuilds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.rebuild import rebuild
from domain import catalogue as c
from domain.envelope import Touchpoint, decode, new_touchpoint
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


def promise(customer: str, pid: str, due: datetime, at: datetime = T0) -> Touchpoint:
    return new_touchpoint(
        c.PromiseMade(promise_id=pid, what="call back", made_by="agent", due_by=due),
        customer_id=customer,
        occurred_at=at,
        source="t",
    )


def kept(customer: str, pid: str, at: datetime) -> Touchpoint:
    return new_touchpoint(
        c.PromiseKept(promise_id=pid, kept_by="agent"),
        customer_id=customer,
        occurred_at=at,
        source="t",
    )


def note(customer: str, at: datetime) -> Touchpoint:
    return new_touchpoint(
        c.IdentityLinked(kind="email", value=f"{customer}@example.com"),
        customer_id=customer,
        occurred_at=at,
        source="t",
    )


def test_a_touchpoint_dated_tomorrow_breaks_nothing_early(tmp_path: Path) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(T0 + timedelta(hours=1))
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    pipeline.emit([promise("c-1", "cb", T0 + timedelta(hours=2))])
    # A clock gone wrong somewhere: dated a day ahead, same customer, same partition.
    pipeline.emit([note("c-1", T0 + timedelta(days=1))])
    pipeline.catch_up()
    assert derived_on_log(log) == []
    clock.set(T0 + timedelta(hours=2, minutes=5))
    pipeline.catch_up()
    assert derived_on_log(log) == ["PromiseBroken"]
    pipeline.close()


def test_a_report_later_than_the_allowed_lateness_is_late_data(tmp_path: Path) -> None:
    """Within the allowed lateness a fulfilment that happened in time keeps the promise;
    after it, the break is already a fact: the view says kept, reported late."""
    log = EmbeddedLog(str(tmp_path / "log.db"))
    due = T0 + timedelta(hours=2)
    clock = ManualClock(T0)
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    pipeline.emit([promise("c-1", "in-time", due), promise("c-1", "too-late", due)])
    pipeline.catch_up()
    # Two minutes after the deadline both calls are reported; one arrives in time for the
    # keeper (the partition is busy until then), the other an hour later.
    clock.set(due + timedelta(minutes=2))
    pipeline.emit([kept("c-1", "in-time", due - timedelta(minutes=30))])
    pipeline.catch_up()
    assert derived_on_log(log) == []
    # Nothing more arrives: idle, the wall clock passes the deadline, the keeper decides.
    clock.set(due + timedelta(hours=1))
    pipeline.catch_up()
    assert derived_on_log(log) == ["PromiseBroken"]
    pipeline.emit([kept("c-1", "too-late", due - timedelta(minutes=30))])
    pipeline.catch_up()
    view = pipeline.customer("c-1")
    assert view is not None
    status = {p.promise_id: (p.status, p.broken_recorded) for p in view.promises}
    assert status == {"in-time": ("kept", False), "too-late": ("kept_late", True)}
    late = next(p for p in view.promises if p.promise_id == "too-late")
    assert late.fulfilled_at == due - timedelta(minutes=30)
    assert view.flags.promise_broken is False
    clock.set(clock.now + timedelta(days=1))
    pipeline.catch_up()
    assert derived_on_log(log) == ["PromiseBroken"]  # the fact stays, and stays alone
    pipeline.close()


def test_an_idle_partition_follows_the_busy_ones_not_the_wall_clock(tmp_path: Path) -> None:
    """History replayed long after it happened: a partition with nothing new follows the
    partitions that move, so its deadlines pass with the replay, not with today's date."""
    log = EmbeddedLog(str(tmp_path / "log.db"))
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=ManualClock(T0))
    quiet, busy = (
        "c-1",
        next(
            f"c-{n}"
            for n in range(2, 100)
            if log.partition_for(TOPIC, f"c-{n}".encode()) != log.partition_for(TOPIC, b"c-1")
        ),
    )
    pipeline.close()
    clock = ManualClock(T0 + timedelta(days=365))  # today: long after the history
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    pipeline.emit([promise(quiet, "cb", T0 + timedelta(hours=2)), note(busy, T0)])
    pipeline.catch_up()
    clock.set(clock.now + timedelta(seconds=30))
    pipeline.emit([note(busy, T0 + timedelta(hours=1))])
    pipeline.catch_up()
    assert derived_on_log(log) == []  # the busy partition is at 00:55 of event time
    clock.set(clock.now + timedelta(seconds=1))
    pipeline.emit([note(busy, T0 + timedelta(hours=2, minutes=5))])
    pipeline.catch_up()
    assert derived_on_log(log) == ["PromiseBroken"]
    pipeline.close()


def test_lateness_and_idle_timeout_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from journey.settings import Settings

    assert (Settings().allowed_lateness, Settings().idle_timeout) == (300, 30)
    monkeypatch.setenv("JOURNEY_ALLOWED_LATENESS", "60")
    monkeypatch.setenv("JOURNEY_IDLE_TIMEOUT", "600")
    settings = Settings.from_env()
    assert (settings.allowed_lateness, settings.idle_timeout) == (60, 600)


def test_the_fact_goes_to_the_partition_the_customer_was_folded_from(tmp_path: Path) -> None:
    # The embedded log's side of tests/integration/test_keeper_partitions.py: a customer put
    # in another partition than its key's hash (a producer with another partitioner) gets its
    # keeper facts there, and stays there.
    log = EmbeddedLog(str(tmp_path / "log.db"))
    start = T0 - timedelta(days=20)  # in the past: the log's bounds judge by the wall clock
    pipeline = Pipeline(
        log, tmp_path / "views.db", topic=TOPIC, clock=ManualClock(start + timedelta(days=10))
    )
    log.ensure_topics([TOPIC, f"{TOPIC}.dlq"], 6)
    placed = (log.partition_for(TOPIC, b"c-2") + 1) % 6
    inquiries = [  # the second moves the partition's clock past the first's reply target
        new_touchpoint(
            c.InquiryReceived(case_id=case, channel="email"),
            customer_id="c-2",
            occurred_at=at,
            source="t",
        )
        for case, at in (("k", start), ("k2", start + timedelta(days=3)))
    ]
    messages = pipeline.emitter.messages(inquiries)
    log.produce(TOPIC, [replace(m, partition=placed) for m in messages])
    pipeline.catch_up()
    consumer = log.consumer("where", [TOPIC])
    try:
        overdue = [
            m.partition for m in consumer.poll(0.05, 1000) if decode(m.value).type == "ReplyOverdue"
        ]
    finally:
        consumer.close()
    assert overdue == [placed]
    assert pipeline.store.query("SELECT partition FROM customers WHERE customer_id = 'c-2'") == [
        (placed,)
    ]
    pipeline.close()
