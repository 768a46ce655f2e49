"""Event time decides: the same order history records the same PromiseBroken facts, once
each, whatever the pace it reaches the engine at — all before the engine starts, month by
month into a running engine, or lived with a test clock — and a restart adds none.

The embedded log here; tests/integration/test_event_time_kafka.py does the same on a real
broker with the history produced by kcat.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path

from consumers.embedded_log import EmbeddedLog
from consumers.keeper import derived_event_id
from consumers.log import Log
from domain import catalogue as c
from domain.envelope import decode, new_touchpoint
from journey.emitter import Emitter
from journey.pipeline import ManualClock, Pipeline
from journey.synthetic import Arrival, generate_order_history
from projections.keys import CustomerKeys
from projections.store import JourneyStore, StoreAddress, active_store

START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 181  # January to June
NOW = datetime(2025, 8, 1, tzinfo=UTC)  # the wall clock: after every deadline
ORDERS = 1000


def history(orders: int = ORDERS, seed: int = 8) -> list[Arrival]:
    return generate_order_history(orders, orders // 4, seed=seed, start=START, days=DAYS)


def truth(arrivals: Iterable[Arrival]) -> set[uuid.UUID]:
    """Computed from the history alone: every delivery promise not fulfilled by its
    deadline (by when the delivery happened, not when it was reported) is broken."""
    due: dict[str, tuple[str, datetime]] = {}
    shipment_of: dict[str, str] = {}
    delivered: dict[str, datetime] = {}
    for a in arrivals:
        tp, d = a.touchpoint, a.touchpoint.data
        if isinstance(d, c.OrderPlaced) and d.promised_delivery_by is not None:
            due[d.order_id] = (tp.customer_id, d.promised_delivery_by)
        elif isinstance(d, c.OrderShipped):
            shipment_of[d.shipment_id] = d.order_id
        elif isinstance(d, c.Delivered):
            delivered[shipment_of[d.shipment_id]] = tp.occurred_at
    return {
        derived_event_id("promise", cid, f"delivery:{order}", by)
        for order, (cid, by) in due.items()
        if order not in delivered or delivered[order] > by
    }


def statuses_in_truth(arrivals: Iterable[Arrival]) -> Counter[str]:
    """kept (delivered by the deadline, however late reported), kept_late, broken (never)."""
    due: dict[str, datetime] = {}
    shipment_of: dict[str, str] = {}
    delivered: dict[str, datetime] = {}
    for a in arrivals:
        d = a.touchpoint.data
        if isinstance(d, c.OrderPlaced) and d.promised_delivery_by is not None:
            due[d.order_id] = d.promised_delivery_by
        elif isinstance(d, c.OrderShipped):
            shipment_of[d.shipment_id] = d.order_id
        elif isinstance(d, c.Delivered):
            delivered[shipment_of[d.shipment_id]] = a.touchpoint.occurred_at
    return Counter(
        "broken" if order not in delivered else "kept" if delivered[order] <= by else "kept_late"
        for order, by in due.items()
    )


def statuses_in_store(store_path: StoreAddress) -> Counter[str]:
    store = JourneyStore(active_store(store_path))
    try:
        found: Counter[str] = Counter()
        for (cid,) in store.query("SELECT customer_id FROM customers"):
            agg = store.journey(str(cid))
            assert agg is not None
            found.update(p.status for p in agg.journey.promises.values())
        return found
    finally:
        store.close()


def broken_on_log(log: Log, topic: str) -> list[uuid.UUID]:
    """Every PromiseBroken on the log, duplicates included."""
    consumer = log.consumer(f"count-{uuid.uuid4().hex[:8]}", [topic])
    targets = log.high_watermarks(topic)
    seen: dict[int, int] = {}
    found: list[uuid.UUID] = []
    try:
        while any(seen.get(p, -1) < hwm - 1 for p, hwm in targets.items()):
            for msg in consumer.poll(0.5, 2000):
                seen[msg.partition] = msg.offset
                tp = decode(msg.value)
                if tp.type == "PromiseBroken":
                    found.append(tp.event_id)
    finally:
        consumer.close()
    return found


def months(arrivals: list[Arrival]) -> list[list[Arrival]]:
    return [list(g) for _, g in groupby(arrivals, key=lambda a: (a.at.year, a.at.month))]


def drive(pipeline: Pipeline) -> None:
    """A running engine: the keeper looks after every runner batch, also while partitions
    are still behind, until the store has everything and the keeper has nothing to add."""
    while True:
        pipeline.runner.step()
        emitted = pipeline.keeper.tick()
        if not emitted and not any(pipeline.runner.lag().values()):
            return


def restart_adds_nothing(log: Log, store: StoreAddress, topic: str, **kwargs: object) -> None:
    before = sorted(broken_on_log(log, topic))
    clock = ManualClock(NOW + timedelta(days=1))
    again = Pipeline(log, store, topic=topic, clock=clock, **kwargs)  # type: ignore[arg-type]
    try:
        again.settle(clock.now, clock)
        assert again.keeper.tick() == []
    finally:
        again.close()
    assert sorted(broken_on_log(log, topic)) == before


def check(found: list[uuid.UUID], expected: set[uuid.UUID], how: str) -> None:
    assert len(found) == len(set(found)), f"{how}: a PromiseBroken was emitted twice"
    missing, invented = expected - set(found), set(found) - expected
    assert not missing and not invented, (
        f"{how}: {len(missing)} broken promises not recorded, {len(invented)} recorded for "
        f"promises kept in time (of {len(expected)})"
    )


Run = Callable[[Log, StoreAddress, str, list[Arrival]], None]


def all_before_start(log: Log, store: StoreAddress, topic: str, arrivals: list[Arrival]) -> None:
    keys = CustomerKeys(store)
    Emitter(log, topic=topic, source="backfill", keys=keys).emit_touchpoints(
        [a.touchpoint for a in arrivals]
    )
    keys.close()
    clock = ManualClock(NOW)
    pipeline = Pipeline(log, store, topic=topic, clock=clock)
    try:
        drive(pipeline)
        pipeline.settle(NOW, clock)
    finally:
        pipeline.close()


def month_by_month(log: Log, store: StoreAddress, topic: str, arrivals: list[Arrival]) -> None:
    clock = ManualClock(NOW)
    pipeline = Pipeline(log, store, topic=topic, clock=clock)
    pipeline.runner.batch_size = 37  # many batches: the keeper often sees partitions behind
    try:
        for month in months(arrivals):
            pipeline.emit([a.touchpoint for a in month])
            drive(pipeline)
        pipeline.settle(NOW, clock)
    finally:
        pipeline.close()


def lived(log: Log, store: StoreAddress, topic: str, arrivals: list[Arrival]) -> None:
    clock = ManualClock(START)
    pipeline = Pipeline(log, store, topic=topic, clock=clock)
    try:
        pipeline.play(
            [a.touchpoint for a in arrivals],
            clock,
            NOW,
            arrivals=[a.at for a in arrivals],
            tick_every=timedelta(hours=6),
        )
    finally:
        pipeline.close()


def test_the_history_has_every_kind_of_order() -> None:
    arrivals = history()
    placed = sum(isinstance(a.touchpoint.data, c.OrderPlaced) for a in arrivals)
    reported_late = [
        a
        for a in arrivals
        if isinstance(a.touchpoint.data, c.Delivered) and a.at > a.touchpoint.occurred_at
    ]
    assert placed == ORDERS
    assert len(reported_late) > 50
    assert 300 < len(truth(arrivals)) < 500
    assert [a.at for a in arrivals] == sorted(a.at for a in arrivals)


def test_same_facts_at_any_pace_and_after_a_restart(
    tmp_path: Path, new_store: Callable[[str], StoreAddress]
) -> None:
    arrivals = history()
    expected = truth(arrivals)
    runs: dict[str, Run] = {
        "all before the engine starts": all_before_start,
        "month by month into a running engine": month_by_month,
        "lived with a test clock": lived,
    }
    for n, (how, run) in enumerate(runs.items()):
        log = EmbeddedLog(str(tmp_path / f"log{n}.db"))
        store = new_store(f"views{n}")
        try:
            run(log, store, "shop", arrivals)
            check(broken_on_log(log, "shop"), expected, how)
            # And the view counts what happened: kept, kept late, broken.
            assert statuses_in_store(store) == statuses_in_truth(arrivals), how
            restart_adds_nothing(log, store, "shop")
        finally:
            log.close()


def overdue_on_log(log: Log, topic: str) -> list[tuple[str, str, datetime]]:
    consumer = log.consumer(f"count-{uuid.uuid4().hex[:8]}", [topic])
    found = []
    try:
        while batch := consumer.poll(0.2, 2000):
            for msg in batch:
                tp = decode(msg.value)
                if isinstance(tp.data, c.ReplyOverdue):
                    found.append((tp.customer_id, tp.data.case_id, tp.data.due_by))
    finally:
        consumer.close()
    return sorted(found)


def test_a_reply_target_missed_is_a_fact_whether_the_late_reply_is_folded_first_or_not(
    tmp_path: Path, new_store: Callable[[str], StoreAddress]
) -> None:
    """An e-mail answered after 30 hours missed its 24-hour target, and a case resolved
    after two days without a word missed it too; one answered after an hour did not. A
    backfill folds the late answer before the keeper looks; live, the target passes first."""

    def tp(data: c.TouchpointData, customer: str, hours: float) -> Arrival:
        at = START + timedelta(hours=hours)
        return Arrival(at, new_touchpoint(data, customer_id=customer, occurred_at=at, source="t"))

    inquiry = c.InquiryReceived(case_id="k", channel="email", subject="Where is my lamp?")
    reply = c.ReplySent(case_id="k", channel="email", agent="a", team="T", country="SE")
    arrivals = sorted(
        [
            tp(inquiry, "late", 0),
            tp(reply, "late", 30),
            tp(inquiry, "silent", 1),
            tp(c.CaseResolved(case_id="k", resolution="duplicate"), "silent", 49),
            tp(inquiry, "quick", 2),
            tp(reply, "quick", 3),
        ],
        key=lambda a: a.at,
    )
    expected = [
        ("late", "k", START + timedelta(hours=24)),
        ("silent", "k", START + timedelta(hours=25)),
    ]
    for n, run in enumerate((all_before_start, lived)):
        log = EmbeddedLog(str(tmp_path / f"log{n}.db"))
        store = new_store(f"views{n}")
        try:
            run(log, store, "cases", arrivals)
            assert overdue_on_log(log, "cases") == expected, run.__name__
            restart_adds_nothing(log, store, "cases")
            assert overdue_on_log(log, "cases") == expected, run.__name__
        finally:
            log.close()
