"""Implied promises of the catalogue real shops need, lived on the embedded log with a test
clock and decided by the promise keeper on event time: a cancelled order's delivery promise
is never broken, a promised day in Oslo ends at local midnight, and a seller's hand-off
deadline is kept by its shipment or broken without one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.keeper import derived_event_id
from domain import catalogue as c
from domain.envelope import Touchpoint, decode, new_touchpoint
from journey.pipeline import ManualClock, Pipeline
from projections.customer_view import CustomerView
from projections.store import StoreAddress

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
OSLO = "Europe/Oslo"
DAY = date(2026, 12, 1)
MIDNIGHT_OSLO = datetime(2026, 12, 2, 0, 0, tzinfo=ZoneInfo(OSLO))  # the day after, 00:00
TOPIC = "shop"


def tp(customer: str, data: c.TouchpointData, at: datetime) -> Touchpoint:
    return new_touchpoint(data, customer_id=customer, occurred_at=at, source="webshop")


def placed(customer: str, order_id: str, **kw: object) -> Touchpoint:
    total = c.Money(amount="100.00", currency="NOK")  # type: ignore[arg-type]
    return tp(customer, c.OrderPlaced(order_id=order_id, total=total, **kw), T0)  # type: ignore[arg-type]


@pytest.fixture
def lived(
    tmp_path: Path, new_store: Callable[[str], StoreAddress]
) -> Iterator[Callable[[list[Touchpoint], datetime], Pipeline]]:
    pipelines: list[Pipeline] = []
    logs: list[EmbeddedLog] = []

    def live(touchpoints: list[Touchpoint], end: datetime) -> Pipeline:
        log = EmbeddedLog(str(tmp_path / f"log{len(logs)}.db"))
        logs.append(log)
        clock = ManualClock(T0 - timedelta(hours=1))
        pipeline = Pipeline(log, new_store(f"views{len(logs)}"), topic=TOPIC, clock=clock)
        pipelines.append(pipeline)
        pipeline.play(touchpoints, clock, end)
        return pipeline

    yield live
    for pipeline in pipelines:
        pipeline.close()
    for log in logs:
        log.close()


def broken(pipeline: Pipeline) -> dict[uuid.UUID, Touchpoint]:
    """Every PromiseBroken on the log by event id (asserting none is there twice)."""
    log = pipeline.log
    consumer = log.consumer(f"count-{uuid.uuid4().hex[:8]}", [TOPIC])
    hwms = log.high_watermarks(TOPIC)
    seen: dict[int, int] = {}
    found: dict[uuid.UUID, Touchpoint] = {}
    try:
        while any(seen.get(p, -1) < hwm - 1 for p, hwm in hwms.items()):
            for msg in consumer.poll(0.5, 2000):
                seen[msg.partition] = msg.offset
                fact = decode(msg.value)
                if fact.type == "PromiseBroken":
                    assert fact.event_id not in found, "a PromiseBroken was emitted twice"
                    found[fact.event_id] = fact
    finally:
        consumer.close()
    return found


def view(pipeline: Pipeline, customer: str) -> CustomerView:
    got = pipeline.customer(customer)
    assert got is not None
    return got


def test_a_cancelled_order_is_never_broken_after_its_deadline_passes(
    lived: Callable[[list[Touchpoint], datetime], Pipeline],
) -> None:
    promise = {"promised_delivery_date": DAY, "time_zone": OSLO}
    history = [
        placed("cust-kept-waiting", "o-1", **promise),
        placed("cust-cancelled", "o-2", **promise),
        tp(
            "cust-cancelled",
            c.OrderCancelled(order_id="o-2", reason="Changed my mind", cancelled_by="customer"),
            T0 + timedelta(days=1),
        ),
    ]
    end = T0 + timedelta(days=10)  # long after both deadlines
    pipeline = lived(history, end)
    due = c.end_of_day(DAY, OSLO)
    # The keeper did decide: the order nobody cancelled or delivered is broken ...
    assert set(broken(pipeline)) == {
        derived_event_id("promise", "cust-kept-waiting", "delivery:o-1", due)
    }
    # ... and the cancelled one is cancelled, not broken, and no later look breaks it.
    (cancelled,) = view(pipeline, "cust-cancelled").promises
    assert (cancelled.promise_id, cancelled.status, cancelled.broken_recorded) == (
        "delivery:o-2",
        "cancelled",
        False,
    )
    assert cancelled.deadline is None
    assert "cancelled: Changed my mind" in view(pipeline, "cust-cancelled").orders["o-2"]
    assert not view(pipeline, "cust-cancelled").flags.promise_broken
    clock = pipeline.clock
    assert isinstance(clock, ManualClock)
    pipeline.settle(end + timedelta(days=30), clock)
    assert len(broken(pipeline)) == 1


def test_a_promised_day_in_oslo_ends_at_local_midnight(
    lived: Callable[[list[Touchpoint], datetime], Pipeline],
) -> None:
    promise = {"promised_delivery_date": DAY, "time_zone": OSLO}
    just_before = MIDNIGHT_OSLO - timedelta(minutes=1)  # 23:59 in Oslo, 22:59Z
    just_after = MIDNIGHT_OSLO + timedelta(minutes=30)
    history = [
        placed("cust-in-time", "o-1", **promise),
        placed("cust-late", "o-2", **promise),
        placed("cust-never", "o-3", **promise),
    ]
    for customer, order_id, delivered in (
        ("cust-in-time", "o-1", just_before),
        ("cust-late", "o-2", just_after),
    ):
        ship = f"s-{order_id}"
        history += [
            tp(
                customer,
                c.OrderShipped(order_id=order_id, shipment_id=ship),
                T0 + timedelta(days=1),
            ),
            tp(customer, c.Delivered(shipment_id=ship), delivered),
        ]
    pipeline = lived(history, T0 + timedelta(days=10))
    found = broken(pipeline)
    # Midnight in Oslo in December is 23:00 UTC: that is the deadline, and the break's time.
    assert datetime(2026, 12, 1, 23, 0, tzinfo=UTC) == MIDNIGHT_OSLO
    assert sorted((f.customer_id, f.occurred_at) for f in found.values()) == [
        ("cust-late", MIDNIGHT_OSLO),
        ("cust-never", MIDNIGHT_OSLO),
    ]
    statuses = {
        cid: view(pipeline, cid).promises[0] for cid in ("cust-in-time", "cust-late", "cust-never")
    }
    assert {cid: p.status for cid, p in statuses.items()} == {
        "cust-in-time": "kept",
        "cust-late": "kept_late",
        "cust-never": "broken",
    }
    kept = statuses["cust-in-time"]
    assert (kept.due_date, kept.time_zone, kept.due_by) == (DAY, OSLO, MIDNIGHT_OSLO)


def test_a_sellers_handoff_deadline_is_kept_by_its_shipment_and_broken_without(
    lived: Callable[[list[Touchpoint], datetime], Pipeline],
) -> None:
    handoff = T0 + timedelta(days=2)

    def line(sku: str, seller: str) -> c.OrderLine:
        price = c.Money(amount="50.00", currency="NOK")  # type: ignore[arg-type]
        return c.OrderLine(sku=sku, name=sku, unit_price=price, seller=seller, handoff_by=handoff)

    history = [
        placed("cust-m", "o-7", lines=[line("lamp", "seller-a"), line("rug", "seller-b")]),
        tp(
            "cust-m",
            c.OrderShipped(order_id="o-7", shipment_id="s-a", seller="seller-a"),
            T0 + timedelta(days=1),
        ),
    ]
    pipeline = lived(history, T0 + timedelta(days=5))
    (fact,) = broken(pipeline).values()
    assert fact.event_id == derived_event_id("promise", "cust-m", "handoff:o-7:seller-b", handoff)
    assert isinstance(fact.data, c.PromiseBroken) and fact.occurred_at == handoff
    promises = {p.promise_id: p for p in view(pipeline, "cust-m").promises}
    assert {pid: (p.status, p.implied, p.kind, p.made_by) for pid, p in promises.items()} == {
        "handoff:o-7:seller-a": ("kept", True, "handoff", "seller-a"),
        "handoff:o-7:seller-b": ("broken", True, "handoff", "seller-b"),
    }
