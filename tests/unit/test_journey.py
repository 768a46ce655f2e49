"""The journey model: pure fold, time passed in, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from domain.journey import Journey
from domain.rules import ServiceRules, case_deadline, promise_deadline

T0 = datetime(2026, 12, 19, 9, 0, tzinfo=UTC)


def tp(data: c.TouchpointData, minutes: float = 0, customer: str = "c-1") -> Touchpoint:
    return new_touchpoint(
        data, customer_id=customer, occurred_at=T0 + timedelta(minutes=minutes), source="test"
    )


def fold(*touchpoints: Touchpoint) -> Journey:
    journey = Journey("c-1")
    for t in touchpoints:
        journey.apply(t)
    return journey


def test_auto_acknowledgement_is_not_an_answer() -> None:
    j = fold(
        tp(c.InquiryReceived(case_id="k", channel="email", subject="Where is my order?")),
        tp(c.AutoAcknowledgementSent(case_id="k", channel="email"), 1),
    )
    case = j.cases["k"]
    assert not case.answered
    assert case.reply_owed == "first_reply" and case.reply_owed_since == T0
    deadline = case_deadline(case, ServiceRules())
    assert deadline is not None and deadline.due_at == T0 + timedelta(hours=24)


def test_reply_stops_the_clock_and_customer_message_starts_next_reply() -> None:
    j = fold(
        tp(c.InquiryReceived(case_id="k", channel="chat")),
        tp(c.ReplySent(case_id="k", channel="chat", agent="a", team="t", country="SE"), 5),
    )
    assert case_deadline(j.cases["k"], ServiceRules()) is None
    j.apply(tp(c.InquiryReceived(case_id="k", channel="chat", body="and?"), 30))
    deadline = case_deadline(j.cases["k"], ServiceRules())
    assert deadline is not None
    assert deadline.kind == "next_reply"
    assert deadline.due_at == T0 + timedelta(minutes=30 + 15)
    assert j.contacts == 2


def test_waiting_on_customer_pauses_the_clock() -> None:
    j = fold(
        tp(c.ComplaintFiled(case_id="k", channel="email", product="TV")),
        tp(c.SerialConfirmationRequested(case_id="k", serial_number="X1"), 10),
    )
    assert case_deadline(j.cases["k"], ServiceRules()) is None  # paused
    j.apply(tp(c.SerialNumberConfirmed(case_id="k", serial_number="X1"), 60))
    assert j.cases["k"].awaiting_customer_since is None


def test_warning_before_breach() -> None:
    j = fold(tp(c.InquiryReceived(case_id="k", channel="email")))
    deadline = case_deadline(j.cases["k"], ServiceRules(warn_at_fraction=0.75))
    assert deadline is not None
    assert deadline.state(T0 + timedelta(hours=17)) == "ok"
    assert deadline.state(T0 + timedelta(hours=18)) == "warning"
    assert deadline.state(T0 + timedelta(hours=24)) == "breached"


def test_rules_are_configurable_per_channel() -> None:
    rules = ServiceRules(first_reply_hours={"default": 8, "email": 2})
    j = fold(tp(c.InquiryReceived(case_id="k", channel="email")))
    deadline = case_deadline(j.cases["k"], rules)
    assert deadline is not None and deadline.due_at == T0 + timedelta(hours=2)
    j2 = fold(tp(c.InquiryReceived(case_id="k", channel="letter")))
    d2 = case_deadline(j2.cases["k"], rules)
    assert d2 is not None and d2.due_at == T0 + timedelta(hours=8)


def test_promise_kept_in_time_late_and_broken() -> None:
    due = T0 + timedelta(days=2)
    made = tp(c.PromiseMade(promise_id="p", what="call back", due_by=due, made_by="agent"))
    kept = fold(made, tp(c.PromiseKept(promise_id="p"), 60))
    assert kept.promises["p"].status == "kept" and not kept.promises["p"].kept_late
    late = fold(made, tp(c.PromiseKept(promise_id="p"), 60 * 24 * 3))
    assert late.promises["p"].status == "kept_late" and late.promises["p"].kept_late
    # Kept late but the break not yet recorded: the keeper still has to record it.
    assert not late.promises["p"].decided
    only_broken = fold(made, tp(c.PromiseBroken(promise_id="p", due_by=due), 60 * 48))
    assert only_broken.promises["p"].status == "broken" and only_broken.promises["p"].decided
    broken = fold(
        made,
        tp(c.PromiseBroken(promise_id="p", due_by=due), 60 * 48),
        tp(c.PromiseKept(promise_id="p"), 60 * 24 * 30),
    )
    # Late data: the fulfilment clears the broken flag; the break stays recorded.
    assert broken.promises["p"].status == "kept_late" and broken.promises["p"].kept_late
    assert broken.promises["p"].broken_recorded
    assert broken.promises["p"].fulfilled_at == T0 + timedelta(days=30)
    assert broken.anomalies == []
    deadline = promise_deadline(fold(made).promises["p"], ServiceRules())
    assert deadline is not None and deadline.due_at == due
    assert deadline.warn_at == T0 + timedelta(hours=36)


def test_implied_delivery_promise_from_checkout() -> None:
    order = c.OrderPlaced(
        order_id="o1",
        total=c.Money(amount=10, currency="SEK"),  # type: ignore[arg-type]
        promised_delivery_by=T0 + timedelta(days=2),
        lines=[c.OrderLine(sku="s", name="Lamp", unit_price=c.Money(amount=10, currency="SEK"))],  # type: ignore[arg-type]
    )
    j = fold(
        tp(order),
        tp(c.OrderShipped(order_id="o1", shipment_id="sh1", carrier="Posten"), 60),
        tp(c.Delivered(shipment_id="sh1", carrier="Posten"), 60 * 24),
    )
    promise = j.promises["delivery:o1"]
    assert promise.implied and promise.status == "kept"


@pytest.mark.parametrize("repairs,flag", [(2, False), (3, True)])
def test_replace_dont_repair_counts_repairs_per_product(repairs: int, flag: bool) -> None:
    steps = [
        tp(
            c.ComplaintFiled(
                case_id="k", channel="phone", product="TV", serial_number_as_given="S1"
            )
        )
    ]
    steps += [
        tp(c.RepairCompleted(case_id="k", product="TV", serial_number="S1"), 10 * (i + 1))
        for i in range(repairs)
    ]
    j = fold(*steps)
    (product,) = j.products
    assert product.repairs == repairs
    assert (product.repairs >= ServiceRules().replace_after_repairs) is flag


def test_serial_as_given_and_corrected_kept_side_by_side() -> None:
    j = fold(
        tp(
            c.ComplaintFiled(
                case_id="k", channel="email", product="Monitor", serial_number_as_given="CN-1"
            )
        ),
        tp(
            c.SerialNumberCorrected(
                product="Monitor", serial_number_as_given="CN-1", corrected_serial_number="CN-1-74"
            ),
            10,
        ),
    )
    (product,) = j.products
    assert (product.serial_as_given, product.serial_corrected) == ("CN-1", "CN-1-74")
    assert not product.serial_confirmed
    j.apply(tp(c.SerialNumberConfirmed(serial_number="CN-1-74"), 20))
    assert product.serial_confirmed
    assert {i.value for i in j.identities if i.kind == "serial_number"} == {"CN-1", "CN-1-74"}


def test_anomalies_are_kept_not_dropped() -> None:
    j = fold(
        tp(c.ReplySent(case_id="nope", channel="email", agent="a", team="t", country="SE")),
        tp(c.PickupBooked(product="TV"), 5),
        tp(c.PromiseKept(promise_id="never-made"), 6),
    )
    problems = [a.problem for a in j.anomalies]
    assert problems == [
        "reply for unknown case nope",
        "pickup before any complaint or case",
        "kept an unknown promise never-made",
    ]
    assert len(j.timeline) == 3  # still on the timeline


def test_signup_fields_kept_verbatim_and_identities_extracted() -> None:
    fields = {"Navn": "Kari  Nordmann", "E-post": "kari@example.no", "Telefon": "+47 99 88 77 66"}
    j = fold(tp(c.SignupRequested(case_id="s", form="bli-kunde", fields=fields)))
    assert j.submissions[0].fields == fields
    assert {(i.kind, i.value) for i in j.identities} == {
        ("name", "Kari  Nordmann"),
        ("email", "kari@example.no"),
        ("phone", "+47 99 88 77 66"),
    }
    assert j.cases["s"].kind == "signup" and not j.cases["s"].answered


def test_handoff_changes_owner_and_keeps_copies() -> None:
    j = fold(
        tp(
            c.ComplaintFiled(
                case_id="k", channel="email", product="M", team="Support", country="PL"
            )
        ),
        tp(
            c.CaseHandedOff(
                case_id="k",
                from_team="Support",
                from_country="PL",
                to_team="Support SE",
                to_country="SE",
                copied_to=["Support"],
            ),
            5,
        ),
    )
    case = j.cases["k"]
    assert (case.team, case.country) == ("Support SE", "SE")
    assert case.copied_to == ["Support"]
    assert case.reply_owed == "first_reply"  # a handoff is not an answer


def test_erasure_drops_what_identifies() -> None:
    j = fold(
        tp(c.SignupRequested(case_id="s", form="f", fields={"email": "x@example.org"})),
        tp(c.ErasureRequested(), 5),
    )
    assert j.erased_at == T0 + timedelta(minutes=5)
    assert j.identities == [] and j.submissions == []
    assert all(e.summary == "(erased)" for e in j.timeline[:-1])


def test_erasure_drops_what_was_said_and_a_late_fact_is_erased_too() -> None:
    j = fold(
        tp(c.InquiryReceived(case_id="k", channel="email", subject="Hi", body="my secret")),
        tp(
            c.ReplySent(case_id="k", channel="email", agent="a", team="t", country="SE", body="ok"),
            1,
        ),
        tp(c.PublicReviewPosted(review_id="r", platform="p", text="bad"), 2),
        tp(c.ErasureRequested(), 5),
        # reported after the erasure, happened before it: erased as well
        tp(c.ComplaintFiled(case_id="k2", channel="email", product="TV", description="late"), 3),
    )
    assert [e.text for e in j.timeline] == [None] * 5
    assert [m.text for m in j.cases["k"].messages] == [None]
    assert [r.body for r in j.cases["k"].replies] == [None]
    assert [m.text for m in j.cases["k2"].messages] == [None]
    assert j.reviews["r"].text is None


def test_a_message_without_subject_is_labelled_by_its_first_words() -> None:
    body = "Will DHL call before the pickup? I am away on Thursday and Friday, back Monday."
    j = fold(tp(c.InquiryReceived(case_id="k", channel="sms", body=body)))
    assert j.cases["k"].subject == "Will DHL call before the pickup? I am away on Thursday and…"


def test_kept_is_judged_by_occurred_at_and_folding_order_does_not_matter() -> None:
    """A delivery that happened before the deadline but is reported after the break was
    recorded is kept, reported late; a late delivery is kept late whichever of it and the
    break is folded first (a backfill folds the delivery first, a live run the break)."""
    due = T0 + timedelta(days=2)
    order = tp(
        c.OrderPlaced(
            order_id="o1",
            total=c.Money(amount=Decimal(10), currency="SEK"),
            promised_delivery_by=due,
            lines=[
                c.OrderLine(
                    sku="s", name="Lamp", unit_price=c.Money(amount=Decimal(10), currency="SEK")
                )
            ],
        )
    )
    shipped = tp(c.OrderShipped(order_id="o1", shipment_id="s1", carrier="DHL"), 10)
    in_time = tp(c.Delivered(shipment_id="s1", carrier="DHL"), 60 * 47)
    too_late = tp(c.Delivered(shipment_id="s1", carrier="DHL"), 60 * 49)
    broken = tp(c.PromiseBroken(promise_id="delivery:o1", due_by=due), 60 * 48)

    assert fold(order, shipped, in_time).promises["delivery:o1"].status == "kept"
    reported_late = fold(order, shipped, broken, in_time).promises["delivery:o1"]
    assert reported_late.status == "kept_late" and reported_late.fulfilled_at == in_time.occurred_at
    for facts in ((too_late, broken), (broken, too_late)):
        promise = fold(order, shipped, *facts).promises["delivery:o1"]
        assert (promise.status, promise.broken_recorded) == ("kept_late", True)
    assert not fold(order, shipped, too_late).promises["delivery:o1"].decided


def test_same_identity_keeps_letters_digits_and_at_dot_underscore_plus_of_any_script() -> None:
    # Its regular expression stands for the character-by-character rule, for every code point.
    from domain.journey import same_identity

    def by_character(value: str) -> str:
        return "".join(ch for ch in value.lower() if ch.isalnum() or ch in "@._+")

    for code in range(0x110000):
        ch = chr(code)
        assert same_identity(ch) == by_character(ch), hex(code)
    assert same_identity("+46 70-123 45") == "+467012345"
    assert same_identity("Kari.Nordmann@Example.COM") == "kari.nordmann@example.com"
    # İ lowers to i and a combining dot, which is no letter: dropped, as it always was.
    turkish = "İstanbul Ørsta_Å"
    assert same_identity(turkish) == by_character(turkish) == "istanbulørsta_å"
