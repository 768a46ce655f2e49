"""Missed stays missed: a broken promise or an overdue reply stays on the agents' lists after
the keeper records it, until it is kept late, its case resolved, or an agent acknowledges it
(issue 9, item 2); a rebuild lists the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.embedded_log import EmbeddedLog
from consumers.rebuild import rebuild
from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from domain.journey import Journey
from journey.pipeline import ManualClock, Pipeline

# In the past: the fold refuses touchpoints dated beyond now + the allowed skew.
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DUE = T0 + timedelta(days=1)
TOPIC = "missed.test"


def tp(data: c.TouchpointData, at: datetime, customer: str = "c-1") -> Touchpoint:
    return new_touchpoint(data, customer_id=customer, occurred_at=at, source="t")


def broken_promise(tmp_path: Path) -> tuple[EmbeddedLog, Pipeline, ManualClock]:
    """A promise on an open case, its deadline passed and the break recorded by the keeper."""
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(T0 + timedelta(hours=1))
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    pipeline.emit(
        [
            tp(c.InquiryReceived(case_id="k", channel="email", subject="where"), T0),
            tp(
                c.ReplySent(case_id="k", channel="email", agent="a", team="t", country="NO"),
                T0 + timedelta(minutes=5),
            ),
            tp(
                c.PromiseMade(
                    promise_id="p", case_id="k", what="deliver", made_by="agent", due_by=DUE
                ),
                T0 + timedelta(minutes=6),
            ),
        ]
    )
    pipeline.catch_up()
    clock.set(DUE + timedelta(hours=2))
    pipeline.catch_up()
    view = pipeline.customer("c-1")
    assert view is not None and view.promises[0].broken_recorded, "the keeper recorded it"
    assert listed(pipeline) == [("promise", "p", True, DUE)]
    return log, pipeline, clock


def listed(pipeline: Pipeline) -> list[tuple[str, str, bool, datetime | None]]:
    return [(i.kind, i.ref, i.recorded, i.missed_since) for i in pipeline.service_levels().breached]


def test_a_recorded_broken_promise_stays_listed(tmp_path: Path) -> None:
    log, pipeline, _ = broken_promise(tmp_path)
    assert listed(pipeline) == [("promise", "p", True, DUE)]
    # The keeper does not record it twice because it stays listed.
    assert pipeline.keeper.tick() == []
    pipeline.catch_up()
    assert listed(pipeline) == [("promise", "p", True, DUE)]
    pipeline.close()
    # A rebuild lists the same.
    rebuild(log, tmp_path / "views.db", topic=TOPIC, dlq_topic=f"{TOPIC}.dlq")
    again = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=ManualClock(DUE))
    again.catch_up()
    assert listed(again) == [("promise", "p", True, DUE)]
    again.close()


def test_it_leaves_when_kept_late(tmp_path: Path) -> None:
    _, pipeline, _ = broken_promise(tmp_path)
    pipeline.emit([tp(c.PromiseKept(promise_id="p"), DUE + timedelta(hours=3))])
    pipeline.catch_up()
    assert listed(pipeline) == []
    pipeline.close()


def test_it_leaves_when_the_case_is_resolved(tmp_path: Path) -> None:
    _, pipeline, _ = broken_promise(tmp_path)
    pipeline.emit(
        [tp(c.CaseResolved(case_id="k", resolution="refunded"), DUE + timedelta(hours=3))]
    )
    pipeline.catch_up()
    assert listed(pipeline) == []
    pipeline.close()


def test_it_leaves_when_an_agent_acknowledges_it(tmp_path: Path) -> None:
    log, pipeline, _ = broken_promise(tmp_path)
    pipeline.emit(
        [
            tp(
                c.BreachAcknowledged(kind="promise", ref="p", due_by=DUE, agent="Ann"),
                DUE + timedelta(hours=3),
            )
        ]
    )
    pipeline.catch_up()
    assert listed(pipeline) == []
    assert pipeline.keeper.tick() == []
    pipeline.close()
    rebuild(log, tmp_path / "views.db", topic=TOPIC, dlq_topic=f"{TOPIC}.dlq")
    again = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=ManualClock(DUE))
    again.catch_up()
    assert listed(again) == []
    again.close()


def test_an_overdue_reply_stays_until_acknowledged(tmp_path: Path) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(T0 + timedelta(hours=1))
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    pipeline.emit([tp(c.InquiryReceived(case_id="k", channel="email", subject="hi"), T0)])
    pipeline.catch_up()
    clock.set(T0 + timedelta(days=3))
    pipeline.catch_up()
    (item,) = pipeline.service_levels().breached
    clock.set(T0 + timedelta(days=4))
    assert pipeline.keeper.tick() == []
    pipeline.catch_up()
    assert pipeline.service_levels().breached == [
        item.model_copy(update={"age_seconds": 4 * 86400})
    ]
    assert (item.kind, item.ref, item.recorded) == ("first_reply", "k", True)
    assert item.missed_since == item.due_at
    counts = pipeline.service_levels().by_team
    assert sum(v.get("breached", 0) for v in counts.values()) == 1
    pipeline.emit(
        [
            tp(
                c.BreachAcknowledged(kind="first_reply", ref="k", due_by=item.due_at, agent="Bo"),
                T0 + timedelta(days=3),
            )
        ]
    )
    pipeline.catch_up()
    assert pipeline.service_levels().breached == []
    assert pipeline.keeper.tick() == []
    pipeline.close()


def test_an_acknowledgement_covers_only_the_clock_it_names() -> None:
    """An acknowledged first reply does not hide the next missed reply of the same case, and
    acknowledging before the breach is recorded leaves it for the keeper to record."""
    j = Journey("c-1")
    due = T0 + timedelta(days=1)
    j.apply(tp(c.InquiryReceived(case_id="k", channel="email", subject="hi"), T0))
    ack = c.BreachAcknowledged(kind="first_reply", ref="k", due_by=due, agent="Bo")
    j.apply(tp(ack, due + timedelta(hours=1)))
    assert not j.cases["k"].missed_settled, "not on the log yet: the keeper must still see it"
    j.apply(tp(c.ReplyOverdue(case_id="k", target="first_reply", due_by=due), due))
    assert j.cases["k"].missed_settled
    reply = c.ReplySent(case_id="k", channel="email", agent="a", team="t", country="NO")
    j.apply(tp(reply, due + timedelta(hours=2)))
    j.apply(tp(c.InquiryReceived(case_id="k", channel="email"), due + timedelta(hours=3)))
    assert j.cases["k"].reply_owed == "next_reply"
    assert not j.cases["k"].missed_settled


def test_it_leaves_when_withdrawn_and_the_break_stays_a_fact(tmp_path: Path) -> None:
    _, pipeline, _ = broken_promise(tmp_path)
    pipeline.emit(
        [
            tp(
                c.PromiseWithdrawn(promise_id="p", withdrawn_by="agent", reason="order cancelled"),
                DUE + timedelta(hours=3),
            )
        ]
    )
    pipeline.catch_up()
    assert listed(pipeline) == []
    view = pipeline.customer("c-1")
    assert view is not None
    (promise,) = view.promises
    assert (promise.status, promise.broken_recorded) == ("withdrawn", True)
    pipeline.close()


def _withdrawn_story(withdrawn_at: datetime) -> list[Touchpoint]:
    return [
        tp(c.InquiryReceived(case_id="k", channel="email", subject="where"), T0),
        tp(
            c.PromiseMade(promise_id="p", case_id="k", what="deliver", made_by="agent", due_by=DUE),
            T0 + timedelta(minutes=6),
        ),
        tp(c.PromiseWithdrawn(promise_id="p", withdrawn_by="customer"), withdrawn_at),
    ]


def test_withdrawn_by_its_deadline_it_is_never_broken(tmp_path: Path) -> None:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(DUE + timedelta(days=2))
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    pipeline.emit(_withdrawn_story(DUE - timedelta(hours=1)))
    pipeline.settle(clock.now, clock)
    view = pipeline.customer("c-1")
    assert view is not None
    assert [(p.status, p.broken_recorded) for p in view.promises] == [("withdrawn", False)]
    assert [i for i in listed(pipeline) if i[0] == "promise"] == []
    pipeline.close()


def test_withdrawn_after_its_deadline_the_break_is_recorded_by_event_time(tmp_path: Path) -> None:
    """A backfill: the withdrawal arrives with the rest, after the deadline it came too late
    for. A live run would have recorded the break at the deadline; so does this one."""
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(DUE + timedelta(days=2))
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    pipeline.emit(_withdrawn_story(DUE + timedelta(hours=5)))
    pipeline.settle(clock.now, clock)
    view = pipeline.customer("c-1")
    assert view is not None
    assert [(p.status, p.broken_recorded) for p in view.promises] == [("withdrawn", True)]
    assert [i for i in listed(pipeline) if i[0] == "promise"] == []
    pipeline.close()


def test_a_withdrawal_folds_the_same_in_any_order() -> None:
    story = _withdrawn_story(DUE + timedelta(hours=5))
    broken = tp(c.PromiseBroken(promise_id="p", due_by=DUE, what="deliver"), DUE)
    orders = [[*story, broken], [broken, *story], [story[2], broken, story[0], story[1]]]
    promises = []
    for order in orders:
        journey = Journey("c-1")
        for t in order:
            journey.apply(t)
        promises.append(journey.promises["p"])
    assert all(p == promises[0] for p in promises)
    assert promises[0].status == "withdrawn" and promises[0].broken_recorded


def test_the_keeper_finds_deadlines_written_with_any_offset(tmp_path: Path) -> None:
    """The keeper asks the database only for clocks that may be due (a prefilter on the
    stored ISO text): a deadline written at +14:00 or -12:00 is still found on time."""
    from datetime import timezone

    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(DUE + timedelta(hours=2))
    pipeline = Pipeline(log, tmp_path / "views.db", topic=TOPIC, clock=clock)
    story = []
    for n, hours in enumerate((14, -12, 0)):
        zone = timezone(timedelta(hours=hours))
        story.append(
            tp(
                c.PromiseMade(
                    promise_id=f"p{n}",
                    what="call back",
                    made_by="agent",
                    due_by=DUE.astimezone(zone),
                ),
                T0,
            )
        )
    pipeline.emit(story)
    pipeline.settle(clock.now, clock)
    view = pipeline.customer("c-1")
    assert view is not None
    assert sorted((p.promise_id, p.broken_recorded) for p in view.promises) == [
        ("p0", True),
        ("p1", True),
        ("p2", True),
    ]
    pipeline.close()
