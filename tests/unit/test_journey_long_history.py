"""A long history must not make each touchpoint dearer (issue 10, the fold of a heavy
customer): the walks of everything a customer accumulates (promises at every hand-over and
delivery, products of a name at every new serial, cases, shipments, links) are indexed
from ``_INDEX_FROM`` on. Each index must give what the walk gave: ``LongWay`` below is the
journey with the walks as they were (the oracle), and random histories that reuse a few ids
(promise ids made again, shipments moved between orders, serials corrected, erasures,
late facts, snapshots restored half-way) must fold to the same journey both ways. That the
cost no longer grows is counted (walks of ``promises``, products looked at), never timed;
``python -m bench.fold_history`` times it."""

from __future__ import annotations

import dataclasses
import pickle
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain import catalogue as c
from domain import journey as journey_module
from domain.envelope import Touchpoint, new_touchpoint
from domain.journey import Case, Journey, Product, Promise, Shipment

_T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
_MONEY = c.Money(amount=Decimal("10"), currency="SEK")


class LongWay(Journey):
    """The journey with the walks of its history as they were before the indexes."""

    def _product_at(self, name: str, serial: str | None = None) -> int:
        products = self.products
        for pos, product in enumerate(products):
            if serial and serial in (product.serial_as_given, product.serial_corrected):
                return pos
        for pos, product in enumerate(products):
            if product.name == name and (serial is None or product.serial is None):
                if serial and product.serial_as_given is None:
                    product.serial_as_given = serial
                return pos
        products.append(Product(name=name, serial_as_given=serial))
        return len(products) - 1

    def _add_product(self, product: Product) -> None:
        self.products.append(product)

    def _products_with_serial(self, serial: str) -> list[Product]:
        return [p for p in self.products if serial in (p.serial_corrected, p.serial_as_given)]

    def _correct_serial(self, pos: int, corrected: str) -> None:
        self.products[pos].serial_corrected = corrected

    def _put_promise(self, promise: Promise) -> None:
        self.promises[promise.promise_id] = promise

    def _promises_naming(self, order_id: str | None, shipment_ids: Iterable[str]) -> list[Promise]:
        return list(self.promises.values())

    def _ship_for_order(self, ship: Shipment, order_id: str) -> None:
        ship.order_id = order_id

    def _shipments_of(self, order_id: str) -> set[str]:
        return {s.shipment_id for s in self.shipments.values() if s.order_id == order_id}

    def _has_complaint(self) -> bool:
        return any(k.kind == "complaint" for k in self.cases.values())

    def _linked(self, customer_id: str) -> bool:
        return customer_id in self.linked_customers


def _canonical(j: Journey) -> dict[str, Any]:
    dump = dataclasses.asdict(j)
    for bookkeeping in ("facts", "last_fact", "earlier_facts", "refolded"):
        dump.pop(bookkeeping, None)
    return dump


def _history(rng: random.Random, count: int, customer: str) -> list[Touchpoint]:
    """A history that reuses a few ids of everything, so lookups collide: orders,
    shipments moved between orders, promise ids made again (also an order's own), products
    of three names, serials given, corrected and confirmed, links made and undone."""
    names = ["Sofa", "Lamp", "Desk"]
    serials = [f"SN{n}" for n in range(40)]
    orders = [f"o{n}" for n in range(60)]
    ships = [f"s{n}" for n in range(60)]
    cases = [f"c{n}" for n in range(80)]
    pids = [f"p{n}" for n in range(30)] + [f"delivery:o{n}" for n in range(5)]
    sellers = ["acme", "bolt", None]
    others = [f"other{n}" for n in range(80)]
    # Some histories have no complaint for a long while: a step without a case asks.
    complaints_from = rng.choice([0, count // 2, count])

    def maybe(value: Any, p: float = 0.5) -> Any:
        return value if rng.random() < p else None

    def data(at: datetime) -> c.TouchpointData:
        pick = rng.random()
        if pick < 0.16:
            lines = [
                c.OrderLine(
                    sku="K",
                    name=rng.choice(names),
                    unit_price=_MONEY,
                    serial_number=maybe(rng.choice(serials), 0.7),
                    seller=rng.choice(sellers),
                    handoff_by=maybe(at + timedelta(days=rng.randint(0, 3))),
                )
                for _ in range(rng.randint(0, 3))
            ]
            return c.OrderPlaced(
                order_id=rng.choice(orders),
                lines=lines,
                total=_MONEY,
                promised_delivery_by=maybe(at + timedelta(days=rng.randint(1, 9)), 0.8),
            )
        if pick < 0.28:
            return c.OrderShipped(
                order_id=rng.choice(orders),
                shipment_id=rng.choice(ships),
                seller=rng.choice(sellers),
                carrier=maybe("PostNord"),
            )
        if pick < 0.38:
            return c.Delivered(shipment_id=rng.choice(ships))
        if pick < 0.43:
            return c.DeliveryRescheduled(
                shipment_id=rng.choice(ships),
                deliver_by=at + timedelta(days=rng.randint(0, 4)),
                promise_id=maybe(rng.choice(pids)),
            )
        if pick < 0.47:
            return c.OrderCancelled(order_id=rng.choice(orders), reason="changed mind")
        if pick < 0.53:
            return c.PromiseMade(
                promise_id=rng.choice(pids),
                what="call back",
                kind=rng.choice(["callback", "delivery", "refund"]),
                due_by=at + timedelta(days=rng.randint(0, 5)),
                made_by="agent",
                case_id=maybe(rng.choice(cases), 0.3),
            )
        if pick < 0.56:
            return c.PromiseKept(promise_id=rng.choice(pids))
        if pick < 0.62 and len(out) >= complaints_from:
            return c.ComplaintFiled(
                case_id=rng.choice(cases),
                channel="email",
                product=rng.choice(names),
                serial_number_as_given=maybe(rng.choice(serials)),
            )
        if pick < 0.68:
            return c.InquiryReceived(case_id=rng.choice(cases), channel="chat", body="hello")
        if pick < 0.73:
            return c.RepairCompleted(
                product=rng.choice(names),
                serial_number=maybe(rng.choice(serials)),
                case_id=maybe(rng.choice(cases)),
            )
        if pick < 0.76:
            return c.ReplacementShipped(
                product=rng.choice(names),
                serial_number=maybe(rng.choice(serials)),
                case_id=maybe(rng.choice(cases)),
                shipment_id=maybe(rng.choice(ships)),
            )
        if pick < 0.79:
            return c.RefundIssued(amount=_MONEY, case_id=maybe(rng.choice(cases), 0.2))
        if pick < 0.82:
            return c.SerialNumberCorrected(
                product=rng.choice(names),
                serial_number_as_given=maybe(rng.choice(serials)),
                corrected_serial_number=rng.choice(serials),
            )
        if pick < 0.85:
            return c.SerialConfirmationRequested(serial_number=rng.choice(serials))
        if pick < 0.88:
            return c.SerialNumberConfirmed(serial_number=rng.choice(serials))
        if pick < 0.995 and not 0.95 <= pick < 0.965:
            return c.IdentityLinked(
                kind="customer_id", value=rng.choice(others), verified=rng.random() < 0.8
            )
        if pick < 0.995:
            return c.IdentityUnlinked(kind="customer_id", value=rng.choice(others))
        return c.ErasureRequested()

    out = []
    at = _T0
    for _ in range(count):
        at += timedelta(minutes=rng.randint(1, 300))
        # Some facts come late (a carrier's report, a backfill): a refold from a checkpoint.
        when = at - timedelta(days=rng.randint(1, 20)) if rng.random() < 0.03 else at
        out.append(new_touchpoint(data(when), customer_id=customer, occurred_at=when, source="t"))
    return out


def _fold_both(history: list[Touchpoint], restore_at: int | None = None) -> None:
    short, long = Journey(history[0].customer_id), LongWay(history[0].customer_id)
    for n, tp in enumerate(history):
        if n == restore_at:
            # As a store does: the snapshot holds the folded state, never an index.
            state = pickle.loads(pickle.dumps(short))  # noqa: S301 -- our own bytes
            assert not [k for k in state.__dict__ if k.startswith("_")]
            short = state
        assert short.apply(tp) == long.apply(tp), (n, tp.type)
        if n % 50 == 0 or n == len(history) - 1:
            assert _canonical(short) == _canonical(long), (n, tp.type)


@pytest.mark.parametrize("seed", range(24))
def test_the_indexed_fold_gives_what_the_walks_gave(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 -- reproducible histories, not secrets
    _fold_both(_history(rng, 500, f"cust{seed}"), restore_at=rng.randint(100, 400))


def test_the_oracle_overrides_every_short_cut_the_fold_takes() -> None:
    """A new short cut with no walk as it was beside it here would go unchecked."""
    short_cuts = {
        "_product_at",
        "_add_product",
        "_products_with_serial",
        "_correct_serial",
        "_put_promise",
        "_promises_naming",
        "_ship_for_order",
        "_shipments_of",
        "_has_complaint",
        "_linked",
    }
    assert short_cuts <= set(vars(LongWay))
    assert short_cuts <= set(vars(Journey))


def _heavy(orders: int, *, first: int = 0) -> list[Touchpoint]:
    """Orders of one product name, each asked about, shipped, delivered and refunded
    (without a case: the fold checks there is a complaint), as a heavy customer's."""
    out = []
    for n in range(first, first + orders):
        at = _T0 + timedelta(hours=n)
        for data in (
            c.InquiryReceived(case_id=f"c{n}", channel="chat", body="where is it?"),
            c.OrderPlaced(
                order_id=f"o{n}",
                lines=[
                    c.OrderLine(
                        sku="K",
                        name="Sofa",
                        unit_price=_MONEY,
                        serial_number=f"SN{n}",
                        seller="acme",
                        handoff_by=at + timedelta(days=1),
                    )
                ],
                total=_MONEY,
                promised_delivery_by=at + timedelta(days=5),
            ),
            c.OrderShipped(order_id=f"o{n}", shipment_id=f"s{n}", seller="acme"),
            c.Delivered(shipment_id=f"s{n}"),
            c.RefundIssued(amount=_MONEY),
        ):
            at += timedelta(minutes=1)  # in order: no refold
            out.append(new_touchpoint(data, customer_id="heavy", occurred_at=at, source="t"))
    return out


class _CountedPromises(dict[str, Promise]):
    walks = 0

    def values(self) -> Any:
        _CountedPromises.walks += 1
        return super().values()


class _CountedCases(dict[str, Case]):
    walks = 0

    def values(self) -> Any:
        _CountedCases.walks += 1
        return super().values()


def test_a_long_history_does_not_walk_its_promises_or_cases_at_each_touchpoint() -> None:
    journey = Journey("heavy")
    for tp in _heavy(300):
        journey.apply(tp)
    journey.promises = _CountedPromises(journey.promises)
    journey.cases = _CountedCases(journey.cases)
    _CountedPromises.walks = _CountedCases.walks = 0
    for tp in _heavy(200, first=300):
        journey.apply(tp)
    # Each index is made once for the dict it serves; the walks were once a touchpoint.
    assert _CountedPromises.walks <= 1, _CountedPromises.walks
    assert _CountedCases.walks <= 1, _CountedCases.walks


def test_a_new_serial_does_not_look_at_every_product_of_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A product's ``serial`` is asked for each product looked at by name: counted."""
    journey = Journey("heavy")
    for tp in _heavy(300):
        journey.apply(tp)
    looked = [0]
    real = Product.serial

    def counted(self: Product) -> str | None:
        looked[0] += 1
        return real.fget(self)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(Product, "serial", property(counted))
    for tp in _heavy(200, first=300):
        journey.apply(tp)
    # 200 new products of one name, each with a new serial: a few looks each, where the
    # walk looked at every earlier product of the name (~300 each, 80,000 in all).
    assert looked[0] <= 5 * 200, looked[0]
    assert len(journey.products) == 500


def test_the_indexes_are_never_part_of_a_snapshot() -> None:
    """A snapshot from before the indexes loads as one from after: they are made again."""
    journey = Journey("heavy")
    for tp in _heavy(60):
        journey.apply(tp)
    journey._has_complaint()
    journey._linked("x")
    kept = set(journey.__dict__) - set(Journey("x").__dict__)
    assert {"_product_index", "_promise_index"} <= kept
    assert not kept & set(journey.__getstate__())
    assert journey_module.__name__ == "domain.journey"


def test_contacts_are_counted_as_the_isinstance_check_counted_them() -> None:
    """The contact count reads a cache by data type (``_CONTACTS``): every story's
    customers, and this file's histories, count what ``isinstance`` counts."""
    from journey.stories import all_touchpoints

    rng = random.Random(5)  # noqa: S311 -- reproducible histories, not secrets
    tps = [*all_touchpoints(_T0), *_history(rng, 300, "contacts")]
    tps += [
        new_touchpoint(
            c.SignupRequested(case_id="s1", form="newsletter", fields={"email": "a@b.se"}),
            customer_id="contacts",
            occurred_at=_T0 + timedelta(days=400),
            source="t",
        )
    ]
    by_customer: dict[str, list[Touchpoint]] = {}
    for tp in tps:
        by_customer.setdefault(tp.customer_id, []).append(tp)
    for customer, history in by_customer.items():
        journey = Journey(customer)
        for tp in history:
            journey.apply(tp)
        expected = sum(isinstance(tp.data, journey_module._CONTACT_TYPES) for tp in history)
        assert journey.contacts == expected, customer
