"""Issue 9 observation 3, end to end: carriers report late. A `Delivered` that reaches the
log before its `OrderShipped` — or is stamped before the hand-over, as three orders of a
real dataset are — still delivers the order: the view shows it delivered, the promise kept,
and the keeper records no `PromiseBroken` for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from consumers.embedded_log import EmbeddedLog
from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from journey.pipeline import ManualClock, Pipeline
from projections.store import JourneyStore, StoreAddress, active_store
from tests.scenarios.test_event_time import broken_on_log

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
DUE = T0 + timedelta(days=3)
END = T0 + timedelta(days=30)
TOPIC = "journey.touchpoints"


def _tp(customer: str, data: c.TouchpointData, at: datetime) -> Touchpoint:
    return new_touchpoint(data, customer_id=customer, occurred_at=at, source="test")


def _order(customer: str, order_id: str) -> list[Touchpoint]:
    money = c.Money(amount=Decimal("10.00"), currency="SEK")
    return [
        _tp(
            customer,
            c.OrderPlaced(
                order_id=order_id,
                lines=[c.OrderLine(sku="S", name="Jacket", unit_price=money)],
                total=money,
                promised_delivery_by=DUE,
            ),
            T0,
        )
    ]


@pytest.mark.parametrize(
    ("shipped_at", "delivered_at", "delivered_arrives", "shipped_arrives"),
    [
        # happened in order, the delivery report reaches the log first
        (T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=2), DUE),
        # the carrier's hand-over stamp is after its delivery stamp (real data)
        (
            T0 + timedelta(days=2),
            T0 + timedelta(days=1),
            T0 + timedelta(days=1),
            T0 + timedelta(days=2),
        ),
    ],
    ids=["reported-late", "stamped-out-of-order"],
)
def test_a_delivery_reported_before_its_shipment_keeps_the_promise(  # noqa: PLR0917 (fixtures)
    tmp_path: Path,
    store_address: StoreAddress,
    shipped_at: datetime,
    delivered_at: datetime,
    delivered_arrives: datetime,
    shipped_arrives: datetime,
) -> None:
    cid = "cust-late-carrier"
    touchpoints = [
        *_order(cid, "1234"),
        _tp(cid, c.OrderShipped(order_id="1234", shipment_id="S-9", carrier="Posten"), shipped_at),
        _tp(cid, c.Delivered(shipment_id="S-9", carrier="Posten"), delivered_at),
    ]
    arrivals = [T0, shipped_arrives, delivered_arrives]
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(T0)
    pipeline = Pipeline(log, store_address, topic=TOPIC, clock=clock)
    try:
        pipeline.play(touchpoints, clock, END, arrivals=arrivals)
    finally:
        pipeline.close()
    try:
        assert broken_on_log(log, TOPIC) == []
        store = JourneyStore(active_store(store_address))
        try:
            agg = store.journey(cid)
            assert agg is not None
            journey = agg.journey
            assert journey.shipments["S-9"].delivered_at == delivered_at
            assert journey.shipments["S-9"].order_id == "1234"
            assert journey.promises["delivery:1234"].status == "kept"
        finally:
            store.close()
    finally:
        log.close()
