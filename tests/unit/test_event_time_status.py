"""Issue 9 item 3: every status follows occurred_at, never arrival order, and facts are
matched to each other by exact ids."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from domain.journey import Journey
from journey.stories import all_touchpoints
from journey.synthetic import generate_touchpoints

T0 = datetime(2026, 12, 19, 9, 0, tzinfo=UTC)


def tp(data: c.TouchpointData, hours: float = 0) -> Touchpoint:
    return new_touchpoint(
        data, customer_id="c-1", occurred_at=T0 + timedelta(hours=hours), source="test"
    )


def fold(*touchpoints: Touchpoint) -> Journey:
    journey = Journey("c-1")
    for t in touchpoints:
        journey.apply(t)
    return journey


def _order(order_id: str, due_hours: float) -> c.OrderPlaced:
    return c.OrderPlaced(
        order_id=order_id,
        lines=[c.OrderLine(sku="S", name="Jacket", unit_price=_money())],
        total=_money(),
        promised_delivery_by=T0 + timedelta(hours=due_hours),
    )


def _money() -> c.Money:
    return c.Money(amount=Decimal("10.00"), currency="SEK")


def test_delivered_arriving_before_its_shipment_keeps_the_delivery() -> None:
    """Carriers report late: the Delivered (occurred later) arrives before OrderShipped."""
    placed = tp(_order("1234", due_hours=72))
    shipped = tp(c.OrderShipped(order_id="1234", shipment_id="S-9", carrier="Posten"), 24)
    delivered = tp(c.Delivered(shipment_id="S-9", carrier="Posten", location="door"), 48)
    j = fold(placed, delivered, shipped)
    ship = j.shipments["S-9"]
    assert ship.delivered_at == T0 + timedelta(hours=48)
    assert ship.order_id == "1234"
    assert ship.delivered_location == "door"
    assert j.promises["delivery:1234"].status == "kept"
    assert [e.type for e in j.timeline] == ["OrderPlaced", "OrderShipped", "Delivered"]


def test_delivered_stamped_before_its_shipment_still_counts() -> None:
    """Real data: the carrier's hand-over time is stamped after the delivery time."""
    placed = tp(_order("1234", due_hours=72))
    delivered = tp(c.Delivered(shipment_id="S-9", carrier="Posten"), 24)
    shipped = tp(c.OrderShipped(order_id="1234", shipment_id="S-9", carrier="Posten"), 30)
    for order in ((placed, delivered, shipped), (placed, shipped, delivered)):
        j = fold(*order)
        assert j.shipments["S-9"].delivered_at == T0 + timedelta(hours=24)
        assert j.shipments["S-9"].order_id == "1234"
        assert j.promises["delivery:1234"].status == "kept"


def test_a_shipment_named_1_does_not_keep_the_promise_of_order_1234() -> None:
    j = fold(
        tp(_order("1234", due_hours=72)),
        tp(_order("77", due_hours=72)),
        tp(c.OrderShipped(order_id="77", shipment_id="1", carrier="Posten"), 1),
        tp(c.Delivered(shipment_id="1", carrier="Posten"), 2),
    )
    assert j.promises["delivery:77"].status == "kept"
    assert j.promises["delivery:1234"].status == "pending"


def test_a_rescheduled_delivery_is_kept_by_its_own_shipment_only() -> None:
    j = fold(
        tp(c.OrderShipped(order_id="A", shipment_id="PN-1", carrier="Posten")),
        tp(c.OrderShipped(order_id="B", shipment_id="PN-12", carrier="Posten")),
        tp(
            c.DeliveryRescheduled(
                shipment_id="PN-12", carrier="Posten", deliver_by=T0 + timedelta(hours=10)
            ),
            1,
        ),
        tp(c.Delivered(shipment_id="PN-1", carrier="Posten"), 2),
    )
    (rescheduled,) = [p for p in j.promises.values() if p.promise_id.startswith("reschedule:")]
    assert rescheduled.status == "pending"


def test_case_status_follows_event_time() -> None:
    opened = tp(c.InquiryReceived(case_id="k", channel="email", subject="Hi"))
    resolved = tp(c.CaseResolved(case_id="k", resolution="answered"), 2)
    reopened = tp(c.CaseReopened(case_id="k", reason="not fixed"), 3)
    reply = tp(c.ReplySent(case_id="k", channel="email", agent="a", team="t", country="SE"), 1)
    j = fold(opened, reopened, reply, resolved)
    assert j.cases["k"].status == "open"
    assert j.cases["k"].reopened == 1
    assert j.anomalies == []


# ------------------------------------------------------------------ permutation property


def canonical(journey: Journey) -> dict[str, Any]:
    """Everything the fold decided, the kept facts aside (same set, in any order)."""
    dump = dataclasses.asdict(journey)
    for bookkeeping in ("facts", "born_erased_at", "last_fact", "earlier_facts", "refolded"):
        dump.pop(bookkeeping, None)
    return dump


def _by_customer(touchpoints: list[Touchpoint]) -> list[list[Touchpoint]]:
    groups: dict[str, list[Touchpoint]] = defaultdict(list)
    for t in touchpoints:
        groups[t.customer_id].append(t)
    return [g for g in groups.values() if len(g) > 1]


_NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
_STORY_CUSTOMERS = _by_customer(all_touchpoints(_NOW))
_SYNTHETIC_CUSTOMERS = _by_customer(
    generate_touchpoints(400, 12, seed=9, start=_NOW - timedelta(days=30))
)


def _edge_cases() -> list[Touchpoint]:
    """What the stories lack: reviews and answers, a reopening, a rating, a promise made
    and broken, a delivery stamped before its shipment, and an erasure with facts after."""
    return [
        tp(_order("9", due_hours=24)),
        tp(c.Delivered(shipment_id="S-1", carrier="Posten"), 5),
        tp(c.OrderShipped(order_id="9", shipment_id="S-1", carrier="Posten"), 6),
        tp(c.InquiryReceived(case_id="k", channel="chat", body="hello?"), 1),
        tp(c.ReplySent(case_id="k", channel="chat", agent="a", team="t", country="NO"), 2),
        tp(c.CaseResolved(case_id="k", resolution="done"), 3),
        tp(c.CaseReopened(case_id="k", reason="no"), 4),
        tp(c.SatisfactionRated(case_id="k", score=2), 4),
        tp(
            c.PromiseMade(
                promise_id="p",
                what="call back",
                kind="callback",
                due_by=T0 + timedelta(hours=8),
                made_by="a",
                case_id="k",
            ),
            4,
        ),
        tp(
            c.PromiseBroken(promise_id="p", what="call back", due_by=T0 + timedelta(hours=8)),
            8,
        ),
        tp(c.PublicReviewPosted(review_id="r", platform="Trustpilot", score=1, text="bad"), 7),
        tp(c.ReviewAnswered(review_id="r", answered_by="social", text="sorry"), 9),
        tp(c.IdentityLinked(kind="email", value="x@example.org"), 0),
        # Linked, unlinked at the same instant (the unlink folds after), linked again.
        tp(c.IdentityLinked(kind="customer_id", value="c-9", verified=True), 2),
        tp(c.IdentityUnlinked(kind="customer_id", value="c-9"), 2),
        tp(c.IdentityLinked(kind="phone", value="+46 70 1", verified=True), 3),
        tp(c.IdentityUnlinked(kind="phone", value="+46701"), 5),
        tp(c.IdentityLinked(kind="phone", value="+46 70 1"), 6),
        tp(c.ErasureRequested(), 10),
        tp(c.InquiryReceived(case_id="k2", channel="email", subject="again"), 11),
    ]


_BASES = [*_STORY_CUSTOMERS, *_SYNTHETIC_CUSTOMERS, _edge_cases()]


def _fold_all(customer_id: str, touchpoints: list[Touchpoint]) -> Journey:
    journey = Journey(customer_id)
    for t in touchpoints:
        journey.apply(t)
    return journey


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_permutation_of_a_customers_touchpoints_folds_to_the_same_journey(
    data: st.DataObject,
) -> None:
    base = data.draw(st.sampled_from(_BASES), label="customer")
    shuffled = data.draw(st.permutations(base), label="arrival order")
    cid = base[0].customer_id
    assert canonical(_fold_all(cid, shuffled)) == canonical(_fold_all(cid, base))


def test_the_property_covers_every_kind_of_fact() -> None:
    """The bases hold orders, shipments, deliveries, promises, cases, replies, resolutions
    and identity links, so the property above is not vacuous."""
    types = {t.type for base in _BASES for t in base}
    assert {
        "OrderPlaced",
        "OrderShipped",
        "Delivered",
        "PromiseMade",
        "PromiseKept",
        "InquiryReceived",
        "ComplaintFiled",
        "SignupRequested",
        "ReplySent",
        "CaseResolved",
        "IdentityLinked",
        "IdentityUnlinked",
        "CaseReopened",
        "PromiseBroken",
        "ReviewAnswered",
        "ErasureRequested",
    } <= types


def test_the_edge_cases_fold_the_same_reversed() -> None:
    base = _edge_cases()
    reversed_fold = _fold_all("c-1", list(reversed(base)))
    assert canonical(reversed_fold) == canonical(_fold_all("c-1", base))
    assert reversed_fold.shipments["S-1"].delivered_at is not None
    assert reversed_fold.promises["delivery:9"].status == "kept"
    assert reversed_fold.cases["k"].status == "open" and reversed_fold.cases["k"].reopened == 1
    assert reversed_fold.reviews["r"].answered_at is not None
    assert reversed_fold.erased_at == T0 + timedelta(hours=10)
    assert reversed_fold.cases["k2"].subject == "again", "facts after the erasure are kept"
