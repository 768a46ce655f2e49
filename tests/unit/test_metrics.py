"""Service metrics (journey.analytics) and business hours: what each figure counts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from consumers.embedded_log import EmbeddedLog
from domain import catalogue as c
from domain.business_hours import BusinessHours
from domain.envelope import Touchpoint, new_touchpoint
from domain.journey import Journey
from domain.rules import ServiceRules, case_deadline
from journey import analytics
from journey.pipeline import ManualClock, Pipeline

STOCKHOLM = BusinessHours(
    time_zone="Europe/Stockholm",
    hours={d: ["08:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    holidays=["2026-12-25"],
)
# Friday 27 November 2026, 18:30 in Stockholm (UTC+1); answered Monday 30th at 09:30 local
FRIDAY_EVENING = datetime(2026, 11, 27, 17, 30, tzinfo=UTC)
MONDAY_MORNING = datetime(2026, 11, 30, 8, 30, tzinfo=UTC)
SINCE, UNTIL = "2026-11-01", "2026-12-31"
AS_OF = datetime(2026, 12, 30, tzinfo=UTC)


def tp(data: c.TouchpointData, at: datetime, cid: str = "cust-1") -> Touchpoint:
    return new_touchpoint(data, customer_id=cid, occurred_at=at, source="test",
                          event_id=uuid.uuid4())  # fmt: skip


def complaint(case: str = "k1", team: str | None = "Support SE") -> c.ComplaintFiled:
    return c.ComplaintFiled(case_id=case, channel="email", product="TV", team=team)


def reply(case: str = "k1", team: str = "Support SE") -> c.ReplySent:
    return c.ReplySent(case_id=case, channel="email", agent="a", team=team, country="SE")


def test_friday_evening_complaint_answered_monday_morning_waited_business_hours() -> None:
    story = [tp(complaint(), FRIDAY_EVENING), tp(reply(), MONDAY_MORNING)]
    plain = analytics.metrics(story, SINCE, UNTIL, as_of=AS_OF)
    business = analytics.metrics(
        story, SINCE, UNTIL, as_of=AS_OF, business_hours={"Support SE": STOCKHOLM}
    )
    assert plain["first_reply_hours"]["p50"] == 63.0  # around the clock
    assert business["first_reply_hours"] == {"p50": 1.5, "p90": 1.5, "p99": 1.5, "n": 1}


def test_a_target_in_business_hours_falls_due_after_the_weekend() -> None:
    journey = Journey("cust-1")
    journey.apply(tp(complaint(), FRIDAY_EVENING))
    calendar_rules = ServiceRules(first_reply_hours={"email": 4, "default": 4})
    business_rules = ServiceRules(
        first_reply_hours={"email": 4, "default": 4},
        business_hours={"Support SE": STOCKHOLM},
        business_time={"first_reply": ["email"]},
    )
    around_the_clock = case_deadline(journey.cases["k1"], calendar_rules)
    business = case_deadline(journey.cases["k1"], business_rules)
    assert around_the_clock is not None and business is not None
    assert around_the_clock.due_at == FRIDAY_EVENING + timedelta(hours=4)
    # four open hours: Monday 08:00-12:00 Stockholm = 07:00-11:00 UTC
    assert business.due_at == datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
    assert business.warn_at == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # 3 of 4 hours
    # a target that does not say so runs around the clock, calendar or not
    other = ServiceRules(
        first_reply_hours={"email": 4, "default": 4},
        business_hours={"Support SE": STOCKHOLM},
        business_time={"first_reply": ["chat"]},
    )
    assert case_deadline(journey.cases["k1"], other) == around_the_clock


def test_holidays_and_time_zones() -> None:
    christmas_eve = datetime(2026, 12, 24, 15, 0, tzinfo=UTC)  # Thursday 16:00 local
    after = datetime(2026, 12, 28, 8, 0, tzinfo=UTC)  # Monday 09:00 local
    # 1 h on the 24th, the 25th a holiday, the weekend closed, 1 h on Monday
    assert STOCKHOLM.open_between(christmas_eve, after) == timedelta(hours=2)
    assert STOCKHOLM.add(christmas_eve, timedelta(hours=1, minutes=30)) == datetime(
        2026, 12, 28, 7, 30, tzinfo=UTC
    )
    # summer time: 08:00 in Stockholm is 06:00 UTC
    june = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)
    assert STOCKHOLM.add(june, timedelta(minutes=30)) == datetime(2026, 6, 1, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hours", "zone", "says"),
    [
        ({"mon": ["17:00-08:00"]}, "Europe/Oslo", "open before close"),
        ({"mon": ["8-17"]}, "Europe/Oslo", "08:00-17:00"),
        ({"mon": ["08:00-12:00", "11:00-13:00"]}, "Europe/Oslo", "overlap"),
        ({}, "Europe/Oslo", "open some time"),
        ({"mon": ["08:00-17:00"]}, "Europe/Olso", "unknown time zone"),
    ],
)
def test_a_wrong_calendar_is_refused_saying_why(
    hours: dict[str, list[str]], zone: str, says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        BusinessHours.model_validate({"time_zone": zone, "hours": hours})


def test_auto_acknowledgements_are_not_replies_and_follow_ups_wait_for_the_next() -> None:
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    story = [
        tp(complaint(team=None), t0),
        tp(c.AutoAcknowledgementSent(case_id="k1", channel="email"), t0 + timedelta(minutes=1)),
        tp(reply(), t0 + timedelta(hours=5)),
        tp(
            c.InquiryReceived(case_id="k1", channel="email", body="still broken"),
            t0 + timedelta(hours=6),
        ),
        tp(
            c.InquiryReceived(case_id="k1", channel="email", body="hello?"), t0 + timedelta(hours=7)
        ),
        tp(reply(), t0 + timedelta(hours=9)),
        tp(c.InquiryReceived(case_id="k2", channel="chat", body="anyone?"), t0),
        tp(c.AutoAcknowledgementSent(case_id="k2", channel="chat"), t0),
    ]
    m = analytics.metrics(story, SINCE, UNTIL, as_of=AS_OF)
    assert m["first_reply_hours"]["n"] == 1 and m["first_reply_hours"]["p50"] == 5.0
    assert m["next_reply_hours"]["n"] == 1 and m["next_reply_hours"]["p50"] == 3.0
    assert m["unanswered_share"] == 0.5  # k2 got only an automatic acknowledgement
    assert m["cases"] == {"opened": 2, "answered": 1, "resolved": 0}
    by_team = analytics.metrics(story, SINCE, UNTIL, "team", as_of=AS_OF)["groups"]
    assert set(by_team) == {"Support SE", "(none)"}  # the team of the first reply
    table = analytics.reply_time_distribution(story, SINCE, UNTIL)
    assert sorted(table.column("hours").to_pylist(), key=lambda h: (h is None, h)) == [
        3.0, 5.0, None,
    ]  # fmt: skip


def test_promise_outcomes_by_event_time() -> None:
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def made(pid: str, due: timedelta) -> Touchpoint:
        return tp(c.PromiseMade(promise_id=pid, what="call", kind="callback", due_by=t0 + due,
                                made_by="agent"), t0)  # fmt: skip

    story = [
        made("kept", timedelta(days=1)),
        tp(c.PromiseKept(promise_id="kept"), t0 + timedelta(hours=2)),
        made("late", timedelta(days=1)),
        tp(c.PromiseKept(promise_id="late"), t0 + timedelta(days=2)),
        made("broken", timedelta(days=1)),
        made("open", timedelta(days=90)),
        made("cancelled", timedelta(days=1)),
        tp(c.PromiseWithdrawn(promise_id="cancelled", withdrawn_by="customer"), t0),
        # an implied delivery promise, kept by the delivery of its order's shipment
        tp(
            c.OrderPlaced(
                order_id="o1",
                total=c.Money(amount=1, currency="SEK"),
                lines=[
                    c.OrderLine(sku="s", name="Lamp", unit_price=c.Money(amount=1, currency="SEK"))
                ],
                promised_delivery_by=t0 + timedelta(days=3),
            ),
            t0,
        ),
        tp(c.OrderShipped(order_id="o1", shipment_id="s1", carrier="PostNord"), t0),
        tp(c.Delivered(shipment_id="s1", carrier="PostNord"), t0 + timedelta(days=4)),
    ]
    story += story[:2]  # re-sent touchpoints count once
    m = analytics.metrics(story, SINCE, UNTIL, as_of=AS_OF)
    assert m["promises"] == {
        "made": 6, "kept": 1, "kept_late": 2, "broken": 1, "cancelled": 1, "open": 1,
    }  # fmt: skip
    statuses = analytics.promise_outcomes(story, SINCE, UNTIL, as_of=AS_OF)
    assert dict(zip(statuses.column("promise_id").to_pylist(),
                    statuses.column("status").to_pylist(), strict=True))["delivery:o1"] == (
        "kept_late"
    )  # fmt: skip


def test_effort_reopenings_repairs_and_reviews() -> None:
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    h = timedelta(hours=1)
    story = [
        tp(complaint("k1"), t0),
        tp(reply("k1"), t0 + h),
        tp(c.RepairCompleted(case_id="k1", product="TV"), t0 + 2 * h),
        tp(c.RepairCompleted(case_id="k1", product="TV"), t0 + 3 * h),
        tp(c.CaseResolved(case_id="k1", resolution="repaired"), t0 + 4 * h),
        tp(c.InquiryReceived(case_id="k1", channel="email", body="broken again"), t0 + 5 * h),
        tp(c.ReplacementShipped(case_id="k1", product="TV"), t0 + 6 * h),
        tp(c.CaseResolved(case_id="k1", resolution="replaced"), t0 + 7 * h),
        tp(c.SatisfactionRated(case_id="k1", score=2), t0 + 8 * h),
        tp(complaint("k2"), t0, cid="cust-2"),
        tp(c.CaseResolved(case_id="k2", resolution="done"), t0 + h, cid="cust-2"),
        tp(c.PublicReviewPosted(review_id="r1", platform="Trustpilot", score=1), t0),
        tp(c.ReviewAnswered(review_id="r1", answered_by="social"), t0 + 3 * h),
        tp(c.PublicReviewPosted(review_id="r2", platform="Trustpilot", score=4), t0),
    ]
    m = analytics.metrics(story, SINCE, UNTIL, as_of=AS_OF)
    assert m["contacts_per_resolved_case"] == 1.5  # (2 + 1) contacts over two cases
    assert m["reopen_rate"] == 0.5
    assert m["repairs_before_replacement"] == {"n": 1, "mean": 2.0, "max": 2}
    assert m["satisfaction"] == {"n": 1, "mean": 2.0, "low_scores": 1}
    assert m["reviews"] == {"n": 2, "low_scores": 1, "answer_hours": {"p50": 3.0, "p90": 3.0}}
    assert m["customers"] == 2
    assert list(m)[:6] == [
        "customers", "promises", "first_reply_hours", "unanswered_share",
        "contacts_per_resolved_case", "reviews",
    ]  # fmt: skip


def test_periods_attribute_by_opening_and_group_by_week() -> None:
    inside = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)  # ISO week 46
    before = datetime(2026, 10, 20, 9, 0, tzinfo=UTC)
    story = [
        tp(complaint("old"), before),
        tp(reply("old"), inside),  # answered in the period, opened before it: not counted
        tp(complaint("new"), inside, cid="cust-2"),
        tp(reply("new"), inside + timedelta(hours=2), cid="cust-2"),
    ]
    m = analytics.metrics(story, SINCE, UNTIL, "week", as_of=AS_OF)
    assert m["first_reply_hours"]["n"] == 1 and m["first_reply_hours"]["p50"] == 2.0
    assert m["customers"] == 2  # both had a touchpoint in the period
    assert list(m["groups"]) == ["2026-W46"]
    weekly = analytics.weekly(story, SINCE, UNTIL, as_of=AS_OF)
    assert weekly.column("group").to_pylist() == ["2026-W46"]
    assert weekly.column("first_reply_hours_p50").to_pylist() == [2.0]


def test_the_service_levels_and_the_keeper_wait_for_business_hours(tmp_path: Path) -> None:
    """A target that says so is breached after its open hours, not over the weekend: the
    agents' lists and the keeper's ReplyOverdue both follow the team's calendar."""
    rules = ServiceRules(
        first_reply_hours={"email": 4, "default": 4},
        business_hours={"Support SE": STOCKHOLM},
        business_time={"first_reply": ["*"]},
    )
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(FRIDAY_EVENING + timedelta(minutes=5))
    pipeline = Pipeline(log, tmp_path / "views.db", topic="bh", rules=rules, clock=clock)
    pipeline.emit([tp(complaint(), FRIDAY_EVENING)])
    pipeline.catch_up()
    clock.set(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))  # Saturday noon: not due yet
    pipeline.catch_up()
    levels = pipeline.service_levels()
    assert levels.breached == [] and [i.ref for i in levels.unanswered] == ["k1"]
    monday_noon_local = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)  # 08:00-12:00 open
    assert levels.unanswered[0].due_at == monday_noon_local
    clock.set(monday_noon_local + timedelta(minutes=30))
    pipeline.catch_up()
    pipeline.catch_up()
    (item,) = pipeline.service_levels().breached
    assert (item.kind, item.due_at, item.recorded) == ("first_reply", monday_noon_local, True)
    pipeline.close()


def test_promised_days_hand_offs_cancelled_orders_and_surveys() -> None:
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    sek = c.Money(amount=1, currency="SEK")

    def order(order_id: str, seller: str) -> Touchpoint:
        line = c.OrderLine(sku="s", name="Lamp", unit_price=sek, seller=seller,
                           handoff_by=t0 + timedelta(days=1))  # fmt: skip
        return tp(c.OrderPlaced(order_id=order_id, total=sek, lines=[line],
                                promised_delivery_date=(t0 + timedelta(days=3)).date(),
                                time_zone="Europe/Oslo"), t0)  # fmt: skip

    story = [
        order("o1", "seller-a"),
        # handed over a day late, delivered at 23:30 on the promised day in Oslo: in time
        tp(
            c.OrderShipped(order_id="o1", shipment_id="s1", seller="seller-a"),
            t0 + timedelta(days=2),
        ),
        tp(c.Delivered(shipment_id="s1"), datetime(2026, 11, 5, 22, 30, tzinfo=UTC)),
        order("o2", "seller-b"),
        tp(c.OrderCancelled(order_id="o2", reason="out of stock"), t0 + timedelta(days=5)),
        tp(c.FeedbackRequested(feedback_id="f1", channel="email", order_id="o1"), t0),
        tp(
            c.PublicReviewPosted(review_id="r1", platform="Shop", score=5, feedback_id="f1"),
            t0 + timedelta(hours=2),
        ),
        tp(c.FeedbackRequested(feedback_id="f2", channel="email", order_id="o2"), t0),
    ]
    m = analytics.metrics(story, SINCE, UNTIL, as_of=AS_OF)
    outcomes = analytics.promise_outcomes(story, SINCE, UNTIL, as_of=AS_OF).to_pylist()
    assert {p["promise_id"]: p["status"] for p in outcomes} == {
        "delivery:o1": "kept",
        "handoff:o1:seller-a": "kept_late",
        "delivery:o2": "cancelled",  # cancelled after its day passed: still not broken
        "handoff:o2:seller-b": "cancelled",
    }
    assert m["promises"]["cancelled"] == 2 and m["promises"]["broken"] == 0
    assert m["surveys"] == {"n": 2, "answered": 1, "answer_hours": {"p50": 2.0, "p90": 2.0}}
    assert m["reviews"]["answer_hours"] == {"p50": None, "p90": None}  # we never answered
