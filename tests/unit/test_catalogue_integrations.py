"""The catalogue real shops need (issue 11 item 7): each new type and version validates,
old versions upcast so the log folds as before, and each folds into the journey sensibly."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from domain import catalogue as c
from domain.envelope import Touchpoint, decode, new_touchpoint
from domain.errors import InvalidEvent
from domain.journey import Journey
from domain.positions import TopicPartition
from projections.rows import customer_rows
from projections.snapshots import PickleTranscoder

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
OSLO = "Europe/Oslo"


def envelope(type_name: str, data: dict[str, Any], version: int = 1, **env: Any) -> str:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": type_name,
            "schema_version": version,
            "customer_id": env.get("customer_id", "cust-1"),
            "occurred_at": env.get("occurred_at", "2026-11-28T10:00:00+01:00"),
            "source": "webshop",
            "data": data,
        }
    )


def tp(data: c.TouchpointData, hours: float = 0, customer: str = "cust-1") -> Touchpoint:
    return new_touchpoint(
        data, customer_id=customer, occurred_at=T0 + timedelta(hours=hours), source="test"
    )


def fold(*touchpoints: Touchpoint) -> Journey:
    journey = Journey("cust-1")
    for t in touchpoints:
        journey.apply(t)
    return journey


def money(amount: str, currency: str = "BRL") -> c.Money:
    return c.Money(amount=amount, currency=currency)  # type: ignore[arg-type]


def order(order_id: str = "o-1", **kw: Any) -> c.OrderPlaced:
    return c.OrderPlaced(order_id=order_id, total=money("120.00"), **kw)


def reason_of(raw: str) -> str:
    with pytest.raises(InvalidEvent) as err:
        decode(raw)
    return err.value.reason


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("type_name", "data"),
    [
        ("OrderCancelled", {"order_id": "o-1", "reason": "unavailable", "cancelled_by": "seller"}),
        ("PaymentApproved", {"order_id": "o-1", "method": "credit_card", "instalments": 3}),
        (
            "PaymentApproved",
            {"order_id": "o-1", "method": "boleto", "amount": {"amount": 99.9, "currency": "BRL"}},
        ),
        ("FeedbackRequested", {"feedback_id": "s-1", "channel": "marketplace", "order_id": "o"}),
        ("ClaimDecided", {"case_id": "k", "decision": "rejected", "reason": "water damage"}),
        ("ProofOfPurchaseReceived", {"case_id": "k", "kind": "invoice", "channel": "email"}),
        ("PickupCompleted", {"case_id": "k", "product": "TV", "carrier": "Bring"}),
        ("PickupFailed", {"product": "TV", "reason": "nobody home"}),
        ("ReplacementShipped", {"product": "TV", "shipment_id": "rs-1"}),
        ("OrderPlaced", {"order_id": "o-1", "total": {"amount": "0", "currency": "BRL"}}),
        ("Delivered", {"shipment_id": "s-1"}),
        ("OrderShipped", {"order_id": "o-1", "shipment_id": "s-1", "seller": "sel-9"}),
        ("InquiryReceived", {"case_id": "k", "channel": "marketplace"}),
        ("InquiryReceived", {"case_id": "k", "channel": "web_shop"}),
        ("IdentityLinked", {"kind": "external_id", "value": "olist:9ef432eb6251297304e76186"}),
    ],
)
def test_new_types_and_fields_validate(type_name: str, data: dict[str, Any]) -> None:
    assert decode(envelope(type_name, data)).type == type_name


@pytest.mark.parametrize(
    ("type_name", "data"),
    [
        ("ClaimDecided", {"case_id": "k", "decision": "maybe"}),
        ("PaymentApproved", {"order_id": "o-1", "method": "card", "instalments": 0}),
        ("PaymentApproved", {"order_id": "o-1", "method": "card", "instalments": 361}),
        ("PaymentApproved", {"order_id": "o-1", "method": "card", "instalments": "3"}),
        ("FeedbackRequested", {"feedback_id": "s-1"}),
        ("OrderCancelled", {"order_id": "o-1"}),
        ("PickupFailed", {"product": "TV"}),
        ("IdentityLinked", {"kind": "account", "value": "x"}),
    ],
)
def test_new_types_refuse_what_is_wrong(type_name: str, data: dict[str, Any]) -> None:
    assert reason_of(envelope(type_name, data)) == "invalid_data"


def test_a_promised_date_needs_a_known_zone_and_stays_in_the_years() -> None:
    base = {"order_id": "o-1", "total": {"amount": "1", "currency": "NOK"}}
    ok = decode(
        envelope("OrderPlaced", {**base, "promised_delivery_date": "2026-12-01", "time_zone": OSLO})
    )
    assert isinstance(ok.data, c.OrderPlaced) and ok.data.promised_delivery_date == date(
        2026, 12, 1
    )
    for data, why in [
        ({"promised_delivery_date": "2026-12-01"}, "invalid_data"),  # no zone
        ({"promised_delivery_date": "2026-12-01", "time_zone": "Europe/Atlantis"}, "invalid_data"),
        ({"promised_delivery_date": "2026-12-01", "time_zone": "../../etc/passwd"}, "invalid_data"),
        ({"promised_delivery_date": "2026-12-01", "time_zone": "/etc/localtime"}, "invalid_data"),
        ({"promised_delivery_date": "2026-12-01T00:00:00Z", "time_zone": OSLO}, "invalid_data"),
        ({"promised_delivery_date": "2301-01-01", "time_zone": OSLO}, "out_of_range"),
        (
            {
                "promised_delivery_date": "2026-12-01",
                "time_zone": OSLO,
                "promised_delivery_by": "2026-12-01T12:00:00Z",
            },
            "invalid_data",
        ),
    ]:
        assert reason_of(envelope("OrderPlaced", {**base, **data})) == why, data
    with pytest.raises(InvalidEvent, match="time_zone"):
        decode(envelope("DeliveryRescheduled", {"shipment_id": "s", "deliver_on": "2026-12-01"}))


def test_the_end_of_a_day_is_local_midnight_in_summer_and_winter() -> None:
    winter = c.end_of_day(date(2026, 12, 1), OSLO)
    summer = c.end_of_day(date(2026, 7, 1), OSLO)
    assert winter == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # CET, UTC+1
    assert summer == datetime(2026, 7, 1, 22, 0, tzinfo=UTC)  # CEST, UTC+2
    assert winter.isoformat() == "2026-12-02T00:00:00+01:00"
    # the last day of October 2026: clocks go back, the day has 25 hours
    assert c.end_of_day(date(2026, 10, 25), OSLO) - c.end_of_day(date(2026, 10, 24), OSLO) == (
        timedelta(hours=25)
    )
    assert c.end_of_day(date(2200, 12, 31), "UTC").year == 2201


# --------------------------------------------------------------------------- upcasting


def test_a_v1_review_reads_as_v2_and_folds_as_before() -> None:
    v1 = decode(
        envelope(
            "PublicReviewPosted",
            {"review_id": "r-1", "platform": "Trustpilot", "rating": 2, "text": "Late"},
        )
    )
    assert v1.schema_version == 2
    assert isinstance(v1.data, c.PublicReviewPosted)
    assert (v1.data.score, v1.data.text, v1.data.title, v1.data.order_id) == (2, "Late", None, None)
    j = Journey("cust-1")
    assert j.apply(v1) == "Public review on Trustpilot 2/5"
    assert j.reviews["r-1"].rating == 2
    # v2 with a v1 field, or v1 with a v2 field: refused, not guessed
    assert (
        reason_of(
            envelope("PublicReviewPosted", {"review_id": "r", "platform": "p", "rating": 2}, 2)
        )
        == "invalid_data"
    )
    assert (
        reason_of(envelope("PublicReviewPosted", {"review_id": "r", "platform": "p", "score": 2}))
        == "invalid_data"
    )


def test_a_defect_is_keyed_by_its_product_and_v1_keyed_by_anyone_still_reads() -> None:
    body = {"defect_id": "d-1", "product": "Hagesett Oslo", "description": "Paint flakes"}
    old = decode(envelope("KnownDefectRegistered", body, 1, customer_id="flust.no"))
    assert old.schema_version == 2 and old.customer_id == "flust.no"
    new = decode(envelope("KnownDefectRegistered", body, 2, customer_id="product:Hagesett Oslo"))
    assert new.customer_id == c.product_key("Hagesett Oslo")
    with pytest.raises(InvalidEvent, match="product:Hagesett Oslo") as err:
        decode(envelope("KnownDefectRegistered", body, 2, customer_id="flust.no"))
    assert err.value.reason == "invalid_envelope" and err.value.field == "customer_id"
    with pytest.raises(InvalidEvent, match="keyed by its product"):
        new_touchpoint(
            c.KnownDefectRegistered(**body),  # type: ignore[arg-type]
            customer_id="company",
            occurred_at=T0,
            source="quality",
        )


# --------------------------------------------------------------------------- folding


def test_an_order_cancelled_cancels_its_implied_promises_and_they_are_never_due() -> None:
    line = c.OrderLine(
        sku="s",
        name="Lamp",
        unit_price=money("100.00"),
        seller="sel-1",
        handoff_by=T0 + timedelta(days=1),
    )
    j = fold(
        tp(order(lines=[line], promised_delivery_date=date(2026, 12, 3), time_zone=OSLO)),
        tp(c.OrderCancelled(order_id="o-1", reason="Out of stock", cancelled_by="seller"), 2),
    )
    assert {p: (x.status, x.decided) for p, x in j.promises.items()} == {
        "delivery:o-1": ("cancelled", True),
        "handoff:o-1:sel-1": ("cancelled", True),
    }
    assert "cancelled: Out of stock" in j.orders["o-1"]
    assert j.order_details["o-1"].status == "cancelled"
    assert j.timeline[-1].summary == "Order o-1 cancelled by seller: Out of stock"
    # no running clock: the keeper never sees these promises
    rows = customer_rows(j, 0, 2, TopicPartition("t", 0))
    assert [k for k in rows["clocks"] if k[1] == "promise"] == []


def test_an_order_cancelled_after_its_deadline_leaves_the_break_to_the_keeper() -> None:
    j = fold(
        tp(order(promised_delivery_by=T0 + timedelta(days=1))),
        tp(c.OrderCancelled(order_id="o-1", reason="Never arrived"), 48),
    )
    promise = j.promises["delivery:o-1"]
    assert promise.status == "cancelled" and not promise.decided


def test_a_cancellation_of_an_unknown_order_is_an_anomaly_not_a_refusal() -> None:
    j = fold(tp(c.OrderCancelled(order_id="nope", reason="x")))
    assert [a.problem for a in j.anomalies] == ["cancelled unknown order nope"]


def test_a_promised_date_is_due_at_local_midnight() -> None:
    j = fold(tp(order(promised_delivery_date=date(2026, 12, 1), time_zone=OSLO)))
    promise = j.promises["delivery:o-1"]
    assert promise.due_by == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    assert (promise.due_date, promise.time_zone) == (date(2026, 12, 1), OSLO)
    assert promise.what == "deliver order o-1 by 2026-12-01 (Europe/Oslo)"


def test_a_rescheduled_delivery_day_is_a_promise_too() -> None:
    j = fold(
        tp(order()),
        tp(c.OrderShipped(order_id="o-1", shipment_id="s-1"), 1),
        tp(
            c.DeliveryRescheduled(shipment_id="s-1", deliver_on=date(2026, 12, 5), time_zone=OSLO),
            2,
        ),
    )
    (pid,) = [p for p in j.promises if p.startswith("reschedule:")]
    assert j.promises[pid].due_by == datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
    assert j.promises[pid].made_by == "carrier"  # no carrier named: still a promise


def test_seller_handoff_promises_per_seller_kept_by_their_shipment() -> None:
    def line(sku: str, seller: str | None, hours: float) -> c.OrderLine:
        return c.OrderLine(
            sku=sku,
            name=sku,
            unit_price=money("10.00"),
            seller=seller,
            handoff_by=T0 + timedelta(hours=hours),
        )

    j = fold(
        tp(order(lines=[line("a", "s-1", 30), line("b", "s-1", 20), line("c", "s-2", 40)])),
        tp(c.OrderShipped(order_id="o-1", shipment_id="x", seller="s-1"), 10),
    )
    one, two = j.promises["handoff:o-1:s-1"], j.promises["handoff:o-1:s-2"]
    assert (one.due_by, one.kind, one.implied, one.made_by) == (
        T0 + timedelta(hours=20),
        "handoff",
        True,
        "s-1",
    )
    assert (one.status, two.status) == ("kept", "pending")
    assert "sold by s-1, s-2" in j.orders["o-1"]
    # a shipment naming no seller hands over the whole order
    j.apply(tp(c.OrderShipped(order_id="o-1", shipment_id="y"), 50))
    assert j.promises["handoff:o-1:s-2"].status == "kept_late"


def test_an_order_without_lines_with_payment_and_shipping_fee() -> None:
    j = fold(
        tp(order(shipping_fee=money("15.10"), channel="marketplace")),
        tp(
            c.PaymentApproved(
                order_id="o-1", method="credit_card", instalments=3, amount=money("120.00")
            ),
            1,
        ),
        tp(c.PaymentApproved(order_id="missing", method="voucher"), 2),
    )
    assert j.orders["o-1"] == (
        "items not listed — 120.00 BRL · shipping 15.10 BRL · "
        "paid: credit_card, 3 instalments, 120.00 BRL"
    )
    assert j.timeline[1].summary == (
        "Payment for order o-1 approved: credit_card, 3 instalments, 120.00 BRL"
    )
    assert [a.problem for a in j.anomalies] == ["payment for unknown order missing"]


def test_unknown_carriers_fold() -> None:
    j = fold(
        tp(order(promised_delivery_by=T0 + timedelta(days=3))),
        tp(c.OrderShipped(order_id="o-1", shipment_id="s-1"), 1),
        tp(c.DeliveryAttempted(shipment_id="s-1"), 20),
        tp(c.Delivered(shipment_id="s-1"), 30),
    )
    assert j.shipments["s-1"].carrier is None
    assert j.promises["delivery:o-1"].status == "kept"
    assert [e.summary for e in j.timeline[1:3]] == [
        "Order o-1 handed to the carrier",
        "The carrier tried to deliver s-1",
    ]


def test_survey_and_review_answer_times_are_two_facts() -> None:
    j = fold(
        tp(order()),
        tp(c.FeedbackRequested(feedback_id="sv-1", channel="email", order_id="o-1"), 24),
        tp(
            c.PublicReviewPosted(
                review_id="r-1",
                platform="marketplace",
                score=1,
                title="Never arrived",
                text="Still waiting",
                order_id="o-1",
                feedback_id="sv-1",
            ),
            72,
        ),
        tp(c.ReviewAnswered(review_id="r-1", answered_by="Care"), 80),
    )
    asked, review = j.feedback["sv-1"], j.reviews["r-1"]
    assert asked.answered_at is not None and asked.requested_at is not None
    assert asked.answered_at - asked.requested_at == timedelta(hours=48)  # the customer's
    assert review.answered_at is not None
    assert review.answered_at - review.posted_at == timedelta(hours=8)  # ours
    assert (review.title, review.order_id, review.rating) == ("Never arrived", "o-1", 1)
    assert j.timeline[1].summary == "Feedback requested about order o-1 via email"
    assert j.timeline[2].text == "Never arrived\nStill waiting"


def test_a_survey_answered_before_it_was_folded_still_links() -> None:
    rated = tp(c.SatisfactionRated(score=4, feedback_id="sv-2"), 5)
    asked = tp(c.FeedbackRequested(feedback_id="sv-2", channel="sms"), 1)
    j = Journey("cust-1")
    j.apply(rated)
    j.apply(asked)  # late: the journey refolds in event time
    got = j.feedback["sv-2"]
    assert (got.requested_at, got.answered_at, got.answered_with) == (
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=5),
        "rating 4/5",
    )


def test_a_claim_decided_with_proof_and_pickup_steps() -> None:
    j = fold(
        tp(c.ComplaintFiled(case_id="k", channel="email", product="TV", warranty_claim=True)),
        tp(c.ProofOfPurchaseReceived(case_id="k", order_id="o-9", kind="receipt"), 1),
        tp(c.ClaimDecided(case_id="k", decision="approved", reason="Covered", decided_by="W"), 2),
        tp(c.PickupBooked(case_id="k", product="TV"), 3),
        tp(c.PickupFailed(case_id="k", product="TV", reason="Nobody home"), 4),
        tp(c.PickupCompleted(case_id="k", product="TV"), 5),
        tp(c.ReplacementShipped(case_id="k", product="TV", shipment_id="rs-1"), 6),
        tp(c.Delivered(shipment_id="rs-1"), 30),
        tp(c.ClaimDecided(case_id="nope", decision="rejected"), 31),
    )
    case = j.cases["k"]
    assert (case.claim_decision, case.claim_reason) == ("approved", "Covered")
    assert [s.detail for s in case.steps] == [
        "proof of purchase (receipt) received for order o-9",
        "claim approved: Covered",
        "pickup of TV booked",
        "pickup of TV failed: Nobody home",
        "TV collected",
        "replacement TV shipped",
    ]
    shipment = j.shipments["rs-1"]
    assert (shipment.case_id, shipment.delivered_at) == ("k", T0 + timedelta(hours=30))
    assert [a.problem for a in j.anomalies] == ["claim decision for unknown case nope"]


def test_a_snapshot_from_before_these_fields_loads_with_them_empty() -> None:
    j = fold(tp(order()))
    state = j.__getstate__()
    for name in ("order_details", "feedback"):
        state.pop(name)
    old = Journey.__new__(Journey)
    old.__setstate__(state)
    assert old.order_details == {} and old.feedback == {}
    # a snapshot goes through the allow-listed unpickler: a date promise's deadline carries
    # a fixed offset, never a zoneinfo object it would refuse
    dated = fold(tp(order(promised_delivery_date=date(2026, 12, 1), time_zone=OSLO)))
    codec = PickleTranscoder()
    again = codec.decode(codec.encode(dated))
    assert again.promises["delivery:o-1"].due_by.utcoffset() == timedelta(hours=1)


def test_an_order_line_stays_short_however_many_payments_arrive() -> None:
    # A message can be sent again and again with new ids (a producer retrying): before, the
    # order's line listed every payment and was rebuilt at every one (quadratic, unbounded).
    payments = [
        tp(
            c.PaymentApproved(order_id="o-1", method=f"voucher-{i}", amount=money("1.00")),
            1 + i / 3600,  # in order: a fact folded out of order refolds them all
        )
        for i in range(2_000)
    ]
    j = fold(tp(order()), *payments)
    line = j.orders["o-1"]
    assert len(line) < 500, len(line)
    assert line.startswith("items not listed — 120.00 BRL · paid: voucher-0, 1.00 BRL")
    assert line.endswith("· and 1995 more payments")
    assert len(j.order_details["o-1"].payments) == 5


@pytest.mark.parametrize("zone", ["America", "America/Argentina", "Etc"])
def test_a_zone_that_names_a_folder_or_file_of_the_tz_database_is_invalid_data(zone: str) -> None:
    # Before: "America" made decoding raise IsADirectoryError, not InvalidEvent.
    base = {"order_id": "o-1", "total": {"amount": "1", "currency": "NOK"}}
    day = {"promised_delivery_date": "2026-12-01", "time_zone": zone}
    raw = envelope("OrderPlaced", {**base, **day})
    with pytest.raises(InvalidEvent, match="unknown time zone") as err:
        decode(raw)
    assert err.value.reason == "invalid_data"
