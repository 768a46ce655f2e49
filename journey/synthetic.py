"""Synthetic touchpoints: plausible customer journeys at any volume, deterministic per seed.

For tests and benchmarks (and for users who want to load-test their own deployment): order
and delivery traffic dominates, as in a shop; cases bring acknowledgements, replies,
hand-offs, promises, repairs, refunds; some customers post reviews.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint

__all__ = [
    "Arrival",
    "customer_journey",
    "generate_order_history",
    "generate_touchpoints",
    "service_journey",
]


def _money(amount: int) -> c.Money:
    return c.Money(amount=Decimal(amount), currency="SEK")


def customer_journey(rng: random.Random, cid: str, t0: datetime) -> Iterator[c.TouchpointData]:
    """One customer's endless, plausible journey. Order and delivery traffic dominates,
    as in a shop; cases bring acknowledgements, replies, hand-offs, promises, repairs.

    ``t0`` anchors the deadlines it sets (promised deliveries, call-back promises); every
    draw comes from ``rng``, so a fixed seed and call order give the same journey."""
    yield c.IdentityLinked(kind="name", value=f"Customer {cid}")
    if rng.random() < 0.6:
        yield c.IdentityLinked(kind="email", value=f"{cid}@example.com")
    products = ["Monitor U27", "Laptop X1", "TV OLED55", "Sofa Oslo", "Phone P8", "Jacket"]
    n = 0
    while True:
        n += 1
        product, serial = rng.choice(products), f"SN-{cid}-{n}"
        roll = rng.random()
        if roll < 0.45:
            order, ship = f"{cid}-o{n}", f"{cid}-o{n}-s"
            price = rng.randint(99, 15_000)
            yield c.OrderPlaced(
                order_id=order,
                total=_money(price),
                promised_delivery_by=t0 + timedelta(days=3 * n),
                lines=[
                    c.OrderLine(
                        sku=f"SKU-{products.index(product)}",
                        name=product,
                        unit_price=_money(price),
                        serial_number=serial,
                        batch=rng.choice(["2026-09", "2026-10", "2026-11"]),
                    )
                ],
            )
            yield c.OrderShipped(order_id=order, shipment_id=ship, carrier="PostNord")
            yield c.DeliveryAttempted(shipment_id=ship, carrier="PostNord")
            if rng.random() < 0.2:
                yield c.DeliveryFailed(shipment_id=ship, carrier="PostNord", reason="not home")
                yield c.DeliveryRescheduled(
                    shipment_id=ship, carrier="PostNord", new_location="pick-up point",
                    deliver_by=t0 + timedelta(days=3 * n + 2), promise_id=f"{ship}-r",
                )  # fmt: skip
            yield c.Delivered(shipment_id=ship, carrier="PostNord")
        elif roll < 0.9:
            case = f"{cid}-c{n}"
            channels: list[c.Channel] = ["email", "email", "phone", "chat", "web_form", "social"]
            channel = rng.choice(channels)
            team = rng.choice(["Support SE", "Support NO", "Support PL"])
            if roll < 0.7:
                yield c.InquiryReceived(
                    case_id=case, channel=channel, subject=f"Question {n}", team=team,
                    country=team[-2:],
                )  # fmt: skip
            else:
                yield c.ComplaintFiled(
                    case_id=case, channel=channel, product=product, serial_number_as_given=serial,
                    warranty_claim=True, team=team, country=team[-2:],
                )  # fmt: skip
            yield c.AutoAcknowledgementSent(case_id=case, channel="email")
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                yield c.ReplySent(
                    case_id=case, channel=channel, agent=f"agent-{rng.randint(1, 80)}",
                    team=team, country=team[-2:], awaiting_customer=rng.random() < 0.2,
                )  # fmt: skip
            if rng.random() < 0.1:
                yield c.CaseHandedOff(
                    case_id=case, from_team=team, from_country=team[-2:], to_team="Tier 2",
                    to_country="SE", escalation=True,
                )  # fmt: skip
            if rng.random() < 0.3:
                promise = f"{case}-p"
                yield c.PromiseMade(
                    promise_id=promise, case_id=case, what="call back", kind="callback",
                    due_by=t0 + timedelta(days=n, hours=rng.randint(1, 48)), made_by="agent",
                )  # fmt: skip
                if rng.random() < 0.6:
                    yield c.PromiseKept(promise_id=promise, kept_by="agent")
            if roll >= 0.7:
                for _ in range(rng.choice([0, 1, 1, 2, 3])):
                    yield c.RepairCompleted(case_id=case, product=product, serial_number=serial)
                if rng.random() < 0.2:
                    yield c.RefundIssued(case_id=case, amount=_money(rng.randint(50, 500)))
            if rng.random() < 0.7:
                yield c.CaseResolved(case_id=case, resolution="done")
                if rng.random() < 0.4:
                    yield c.SatisfactionRated(case_id=case, score=rng.randint(1, 5))
        else:
            review = f"{cid}-r{n}"
            yield c.PublicReviewPosted(
                review_id=review, platform="Trustpilot", score=rng.randint(1, 5)
            )
            if rng.random() < 0.5:
                yield c.ReviewAnswered(review_id=review, answered_by="social team")


def service_journey(rng: random.Random, cid: str, t0: datetime) -> Iterator[c.TouchpointData]:
    """A customer who mostly talks to customer service: cases with follow-ups after our
    replies, reopenings, promises kept, kept late, withdrawn or left to break, repairs
    before a replacement, ratings, reviews answered or not — everything the service
    metrics count (docs/metrics.md). Deterministic per ``rng``, like ``customer_journey``."""
    teams = ["Support SE", "Support NO", "Support PL"]
    channels: list[c.Channel] = ["email", "email", "phone", "chat", "web_form", "social"]
    products = ["Monitor U27", "TV OLED55", "Phone P8"]
    n = 0
    while True:
        n += 1
        roll = rng.random()
        if roll < 0.15:
            order, seller = f"{cid}-o{n}", rng.choice(["seller-a", "seller-b", None])
            on_day = rng.random() < 0.5  # a promised day in a zone, or an instant
            yield c.OrderPlaced(
                order_id=order,
                total=_money(999),
                promised_delivery_by=None if on_day else t0 + timedelta(days=2 * n),
                promised_delivery_date=(t0 + timedelta(days=2 * n)).date() if on_day else None,
                time_zone="Europe/Oslo" if on_day else None,
                lines=[
                    c.OrderLine(
                        sku="SKU-1", name=rng.choice(products), unit_price=_money(999),
                        seller=seller, handoff_by=t0 + timedelta(days=2 * n - 1),
                    )
                ],
            )  # fmt: skip
            if rng.random() < 0.1:
                yield c.OrderCancelled(order_id=order, reason="changed my mind")
                continue
            yield c.OrderShipped(
                order_id=order, shipment_id=f"{order}-s", carrier="PostNord", seller=seller
            )
            if rng.random() < 0.85:
                yield c.Delivered(shipment_id=f"{order}-s", carrier="PostNord")
            if rng.random() < 0.3:
                survey = f"{order}-f"
                yield c.FeedbackRequested(feedback_id=survey, channel="email", order_id=order)
                if rng.random() < 0.5:
                    yield c.PublicReviewPosted(
                        review_id=f"{survey}-r", platform="Marketplace",
                        score=rng.randint(1, 5), feedback_id=survey,
                    )  # fmt: skip
            continue
        if roll > 0.92:
            review = f"{cid}-r{n}"
            yield c.PublicReviewPosted(
                review_id=review, platform="Trustpilot", score=rng.randint(1, 5)
            )
            if rng.random() < 0.6:
                yield c.ReviewAnswered(review_id=review, answered_by="social team")
            continue
        case, team = f"{cid}-c{n}", rng.choice(teams)
        channel, product = rng.choice(channels), rng.choice(products)
        routed = team if rng.random() < 0.8 else None
        if roll < 0.6:
            yield c.InquiryReceived(
                case_id=case, channel=channel, subject="Question", product=product, team=routed
            )
        else:
            yield c.ComplaintFiled(case_id=case, channel=channel, product=product, team=routed)
        yield c.AutoAcknowledgementSent(case_id=case, channel="email")
        for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
            yield c.ReplySent(
                case_id=case, channel=channel, agent=f"agent-{rng.randint(1, 40)}",
                team=team, country=team[-2:],
            )  # fmt: skip
            if rng.random() < 0.4:
                yield c.InquiryReceived(case_id=case, channel=channel, body="And another thing")
        if rng.random() < 0.35:
            promise = f"{case}-p"
            yield c.PromiseMade(
                promise_id=promise, case_id=case, what="call back", kind="callback",
                due_by=t0 + timedelta(days=n // 2, hours=rng.randint(1, 72)), made_by="agent",
            )  # fmt: skip
            fate = rng.random()
            if fate < 0.5:
                yield c.PromiseKept(promise_id=promise, kept_by="agent")
            elif fate < 0.65:
                yield c.PromiseWithdrawn(promise_id=promise, withdrawn_by="agent")
        if roll >= 0.6:
            for _ in range(rng.choice([0, 1, 2, 3])):
                yield c.RepairCompleted(case_id=case, product=product)
            if rng.random() < 0.3:
                yield c.ReplacementShipped(case_id=case, product=product)
        if rng.random() < 0.75:
            yield c.CaseResolved(case_id=case, resolution="done")
            if rng.random() < 0.5:
                survey = f"{case}-f"
                yield c.FeedbackRequested(feedback_id=survey, channel="email", case_id=case)
                if rng.random() < 0.7:
                    yield c.SatisfactionRated(
                        case_id=case, score=rng.randint(1, 5), feedback_id=survey
                    )
            if rng.random() < 0.1:
                yield c.CaseReopened(case_id=case, reason="not fixed")
                yield c.ReplySent(
                    case_id=case, channel=channel, agent="agent-1", team=team, country=team[-2:]
                )
                yield c.CaseResolved(case_id=case, resolution="done again")


def generate_touchpoints(
    count: int,
    customers: int,
    *,
    seed: int,
    start: datetime,
    prefix: str = "gen",
    source: str = "generator",
    progress: Callable[[int], None] | None = None,
    journey: Callable[[random.Random, str, datetime], Iterator[c.TouchpointData]] = (
        customer_journey
    ),
    spread_days: int = 3,
) -> list[Touchpoint]:
    """``count`` touchpoints spread over up to ``customers`` customers (ids
    ``<prefix>-000042``), each customer's in time order after ``start``; a customer's first
    touchpoint lies within ``spread_days`` of ``start`` (365 and ``service_journey``: a
    year of customer service)."""
    rng = random.Random(seed)  # noqa: S311 -- synthetic data, not secrets
    journeys: dict[str, tuple[Iterator[c.TouchpointData], list[datetime]]] = {}
    out: list[Touchpoint] = []
    for i in range(count):
        cid = f"{prefix}-{rng.randrange(customers):06d}"
        if cid not in journeys:
            t0 = start + timedelta(minutes=rng.randint(0, spread_days * 24 * 60))
            journeys[cid] = (journey(rng, cid, t0), [t0])
        script, clock = journeys[cid]
        clock[0] += timedelta(minutes=rng.randint(2, 300))
        out.append(
            new_touchpoint(
                next(script),
                customer_id=cid,
                occurred_at=clock[0],
                source=source,
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            )
        )
        if progress is not None:
            progress(i + 1)
    return out


@dataclass(frozen=True)
class Arrival:
    """A touchpoint and when it reached the log (its occurred_at, or later: a late report)."""

    at: datetime
    touchpoint: Touchpoint


def generate_order_history(
    orders: int,
    customers: int,
    *,
    seed: int,
    start: datetime,
    days: int,
    prefix: str = "shop",
    source: str = "webshop",
) -> list[Arrival]:
    """A shop's order history in arrival order: each order carries an implied delivery
    promise (``promised_delivery_by``) two to five days out, and is

    * delivered in time (about half),
    * delivered after its deadline (about a fifth),
    * never delivered (about a sixth), or
    * delivered in time but *reported* after the deadline: the carrier's scan reaches the
      log one to four minutes after the promised time (the rest) — within a few minutes'
      allowed lateness, so event time judges it kept at any replay pace.

    Deterministic per seed; the answer key is in the touchpoints themselves (compare each
    Delivered's occurred_at with its order's promise).
    """
    rng = random.Random(seed)  # noqa: S311 -- synthetic data, not secrets
    span = timedelta(days=days)
    out: list[Arrival] = []

    def add(
        at: datetime, data: c.TouchpointData, cid: str, arrived: datetime | None = None
    ) -> None:
        tp = new_touchpoint(
            data,
            customer_id=cid,
            occurred_at=at,
            source=source,
            event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        )
        out.append(Arrival(arrived or at, tp))

    for n in range(orders):
        cid = f"{prefix}-{rng.randrange(customers):05d}"
        placed = start + span * rng.random()
        placed = placed.replace(microsecond=0)
        due = (placed + timedelta(days=rng.randint(2, 5))).replace(hour=18, minute=0, second=0)
        order, ship = f"{prefix}-o{n:06d}", f"{prefix}-o{n:06d}-s"
        price = _money(rng.randint(99, 15_000))
        add(
            placed,
            c.OrderPlaced(
                order_id=order,
                total=price,
                promised_delivery_by=due,
                lines=[c.OrderLine(sku="SKU-1", name="Lamp", unit_price=price)],
            ),
            cid,
        )
        shipped = placed + timedelta(hours=rng.randint(1, 20))
        add(shipped, c.OrderShipped(order_id=order, shipment_id=ship, carrier="PostNord"), cid)
        delivered = c.Delivered(shipment_id=ship, carrier="PostNord")
        roll = rng.random()
        if roll < 0.5:
            at = due - timedelta(minutes=rng.randint(5, int((due - shipped).total_seconds() // 60)))
            add(max(at, shipped + timedelta(minutes=1)), delivered, cid)
        elif roll < 0.7:
            add(due + timedelta(minutes=rng.randint(1, 4 * 24 * 60)), delivered, cid)
        elif roll < 0.85:
            pass  # lost in the post
        else:
            at = due - timedelta(minutes=rng.randint(1, 120))
            add(at, delivered, cid, arrived=due + timedelta(seconds=rng.randint(60, 240)))
    # Arrival order; one customer's touchpoints keep their order (the log keeps it per key).
    out.sort(key=lambda a: (a.at, a.touchpoint.occurred_at))
    return out
