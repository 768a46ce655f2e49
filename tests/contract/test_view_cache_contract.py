"""A view read again is the view read afresh, on every store (SQLite and PostgreSQL).

The query service's read handle (``ReadStore``) keeps what a view derives from a
customer's folded state, and the look-ups across customers (who is merged, possible
matches, unreached defects) while the store records nothing new. These tests read through
one long-lived handle and compare each answer with a fresh handle's first read: a moment
that moves a deadline, another customer's claim, a merge and a defect must each show at
once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from domain.positions import TopicPartition
from domain.rules import ServiceRules
from journey.service.reading import ReadStore
from projections.customer_view import CustomerView, build_customer_view
from projections.store import JourneyStore

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TP = TopicPartition("cache.touchpoints", 0)
RULES = ServiceRules()
EMAIL = "anna.lind@example.se"


def tp(cid: str, data: c.TouchpointData, minutes: float) -> Touchpoint:
    return new_touchpoint(
        data, customer_id=cid, occurred_at=T0 + timedelta(minutes=minutes), source="test"
    )


class Writer:
    def __init__(self, address: Path | str) -> None:
        self.store = JourneyStore(address)
        self.offset = -1

    def play(self, *touchpoints: Touchpoint) -> None:
        items = []
        for t in touchpoints:
            self.offset += 1
            items.append((self.offset, t))
        self.store.process(TP, items, self.offset)


@pytest.fixture
def stores(store_address: Path | str) -> Iterator[tuple[Writer, ReadStore]]:
    writer = Writer(store_address)
    reader = ReadStore(store_address)
    yield writer, reader
    reader.close()
    writer.store.close()


def fresh(address: Path | str, cid: str, now: datetime) -> CustomerView:
    store = ReadStore(address)
    try:
        found = build_customer_view(store, cid, rules=RULES, now=now)
    finally:
        store.close()
    assert found is not None
    return found


def read(reader: ReadStore, cid: str, now: datetime) -> CustomerView:
    found = build_customer_view(reader, cid, rules=RULES, now=now)
    assert found is not None
    again = build_customer_view(reader, cid, rules=RULES, now=now)
    assert again is not None
    assert again.model_dump_json() == found.model_dump_json()
    return found


def anna() -> list[Touchpoint]:
    return [
        tp("cust-anna", c.IdentityLinked(kind="email", value=EMAIL, verified=True), 0),
        tp("cust-anna", c.InquiryReceived(case_id="a-1", channel="email", body="Help"), 1),
        tp(
            "cust-anna",
            c.PromiseMade(
                promise_id="p-1",
                case_id="a-1",
                what="call back",
                kind="callback",
                due_by=T0 + timedelta(days=2),
                made_by="ola",
            ),
            2,
        ),
        tp(
            "cust-anna",
            c.OrderPlaced(
                order_id="o-1",
                lines=[
                    c.OrderLine(
                        sku="m-1", name="Monitor", unit_price=c.Money(amount=199, currency="EUR")
                    )
                ],
                total=c.Money(amount=199, currency="EUR"),
            ),
            3,
        ),
    ]


def test_each_read_judges_deadlines_at_its_own_moment(
    stores: tuple[Writer, ReadStore], store_address: Path | str
) -> None:
    writer, reader = stores
    writer.play(*anna())
    states = []
    # Read warm at moments that move the reply target and the promise: ok, then past due.
    for at in (T0 + timedelta(minutes=5), T0 + timedelta(days=1), T0 + timedelta(days=3)):
        warm = read(reader, "cust-anna", at)
        assert warm.model_dump_json() == fresh(store_address, "cust-anna", at).model_dump_json()
        deadline = warm.open_cases[0].next_deadline
        assert deadline is not None
        states.append((deadline.state, warm.promises[0].status, warm.flags.deadline_breached))
    assert states[0] == ("ok", "pending", False)
    assert states[-1] == ("breached", "overdue", True)


def test_another_customers_claim_shows_at_once(
    stores: tuple[Writer, ReadStore], store_address: Path | str
) -> None:
    writer, reader = stores
    writer.play(*anna())
    now = T0 + timedelta(hours=1)
    assert read(reader, "cust-anna", now).possible_matches == []
    # Only cust-mallory's batch changes: cust-anna's own state is as it was.
    writer.play(tp("cust-mallory", c.IdentityLinked(kind="email", value=EMAIL), 10))
    warm = read(reader, "cust-anna", now)
    assert [m.customer_id for m in warm.possible_matches] == ["cust-mallory"]
    assert warm.model_dump_json() == fresh(store_address, "cust-anna", now).model_dump_json()


def test_a_merge_made_on_another_stream_shows_at_once(
    stores: tuple[Writer, ReadStore], store_address: Path | str
) -> None:
    writer, reader = stores
    writer.play(*anna(), tp("cust-b", c.InquiryReceived(case_id="b-1", channel="chat"), 4))
    now = T0 + timedelta(hours=1)
    before = read(reader, "cust-anna", now)
    assert before.linked_customer_ids == []
    writer.play(
        tp("cust-b", c.IdentityLinked(kind="customer_id", value="cust-anna", verified=True), 11)
    )
    warm = read(reader, "cust-anna", now)
    assert warm.linked_customer_ids == ["cust-b"]
    assert warm.open_cases_total == before.open_cases_total + 1
    assert warm.timeline.total == before.timeline.total + 2
    assert warm.model_dump_json() == fresh(store_address, "cust-anna", now).model_dump_json()


def test_a_defect_registered_for_what_a_customer_owns_shows_at_once(
    stores: tuple[Writer, ReadStore], store_address: Path | str
) -> None:
    writer, reader = stores
    writer.play(*anna())
    now = T0 + timedelta(hours=1)
    assert read(reader, "cust-anna", now).flags.known_defects == []
    writer.play(
        tp(
            "product:Monitor",
            c.KnownDefectRegistered(
                defect_id="d-1",
                product="Monitor",
                description="flickers",
            ),
            20,
        )
    )
    warm = read(reader, "cust-anna", now)
    assert warm.flags.known_defects == ["d-1"]
    assert warm.model_dump_json() == fresh(store_address, "cust-anna", now).model_dump_json()
