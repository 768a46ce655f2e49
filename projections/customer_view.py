"""The customer view: one document an agent can act on.

Built at read time from the customer's journey aggregates (every customer id linked to the
one asked for) and the query tables, with service rules and ``now`` passed in: deadlines,
warnings and "unanswered for how long" are always computed against the present.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from domain.journey import Case, Journey, Promise, TimelineEntry
from domain.rules import Deadline, ServiceRules, case_deadline, promise_deadline
from projections.store import JourneyStore, display_name, norm_identity

__all__ = [
    "CustomerView",
    "build_customer_view",
    "related_customers",
    "resolve_customer",
]


class IdentityOut(BaseModel):
    kind: str
    value: str
    note: str | None = None
    customer_id: str


class SubmissionOut(BaseModel):
    case_id: str
    form: str
    channel: str
    products: list[str]
    fields: dict[str, str] = Field(description="Exactly what the customer typed")
    submitted_at: datetime
    answered: bool


class DeadlineOut(BaseModel):
    kind: str
    due_at: datetime
    warn_at: datetime
    state: Literal["ok", "warning", "breached"]
    remaining_seconds: float


class HandoffOut(BaseModel):
    at: datetime
    from_team: str
    from_country: str
    to_team: str
    to_country: str
    copied_to: list[str]
    escalation: bool


class MessageOut(BaseModel):
    at: datetime
    from_customer: bool = Field(description="True: the customer wrote it; False: we answered")
    by: str = Field(description="'customer', or the agent who answered")
    channel: str
    subject: str | None = None
    text: str | None = Field(None, description="Exactly what was written or said")


class ReviewOut(BaseModel):
    customer_id: str
    review_id: str
    platform: str
    posted_at: datetime
    rating: int | None
    text: str | None = Field(description="The review, verbatim")
    url: str | None
    status: Literal["answered", "unanswered"]
    answered_at: datetime | None
    answered_by: str | None
    answer: str | None = Field(description="Our answer, verbatim")


class CaseOut(BaseModel):
    customer_id: str
    case_id: str
    kind: str
    channel: str
    subject: str | None
    product: str | None
    status: str
    opened_at: datetime
    owner_team: str | None
    owner_country: str | None
    copied_to: list[str]
    handoffs: list[HandoffOut]
    replies: int
    auto_acknowledgements: int
    answered: bool
    waiting_on_customer: bool
    next_deadline: DeadlineOut | None
    steps: list[str]
    satisfaction: int | None
    reopened: int
    missed_targets: int
    messages: list[MessageOut] = Field(
        default_factory=list, description="The conversation, oldest first, verbatim"
    )


class PromiseOut(BaseModel):
    customer_id: str
    promise_id: str
    what: str
    kind: str
    made_by: str
    made_to: str | None
    made_at: datetime
    due_by: datetime
    status: Literal["pending", "kept", "kept_late", "broken", "overdue"]
    implied: bool
    kept_late: bool = Field(
        description="Fulfilled after the deadline, or reported after the break was recorded"
    )
    fulfilled_at: datetime | None = Field(None, description="When it was kept (occurred_at)")
    broken_recorded: bool = Field(False, description="A PromiseBroken fact is on the log")
    deadline: DeadlineOut | None


class ProductOut(BaseModel):
    name: str
    serial_as_given: str | None
    serial_corrected: str | None
    serial_status: Literal["as given", "awaiting confirmation", "confirmed", "unknown"]
    batch: str | None
    repairs: int
    replacements: int
    complaints: int
    warranty_terms_shown: str | None
    replace_dont_repair: bool


class ShipmentOut(BaseModel):
    customer_id: str
    shipment_id: str
    order_id: str | None
    carrier: str
    attempts: int
    failures: list[str]
    rescheduled_to: str | None
    delivered_at: datetime | None
    delivered_location: str | None


class Flags(BaseModel):
    unanswered_for_seconds: float | None = Field(
        None, description="Age of the oldest contact still without a real answer"
    )
    promise_broken: bool = False
    replace_dont_repair: bool = False
    known_defects: list[str] = Field(default_factory=list, description="Defect ids not reached")
    erased: bool = False
    deadline_warning: bool = False
    deadline_breached: bool = False
    anomalies: int = 0


class TimelineOut(BaseModel):
    at: datetime
    type: str
    summary: str
    event_id: str
    case_id: str | None
    customer_id: str
    text: str | None = Field(None, description="What was said or written, verbatim")


class AnomalyOut(BaseModel):
    at: datetime
    type: str
    problem: str
    event_id: str


class TimelinePage(BaseModel):
    page: int
    page_size: int
    total: int
    entries: list[TimelineOut]


class CustomerView(BaseModel):
    customer_id: str
    linked_customer_ids: list[str]
    name: str | None
    identities: list[IdentityOut]
    submissions: list[SubmissionOut]
    open_cases: list[CaseOut]
    closed_cases: list[CaseOut]
    promises: list[PromiseOut]
    products: list[ProductOut]
    shipments: list[ShipmentOut]
    reviews: list[ReviewOut] = Field(default_factory=list)
    orders: dict[str, str] = Field(description="Order id -> what was ordered")
    flags: Flags
    contacts: int = Field(description="How many times the customer had to contact us")
    touchpoints: int
    anomalies: list[AnomalyOut]
    erased_at: datetime | None
    timeline: TimelinePage
    computed_at: datetime


# ---------------------------------------------------------------------- lookups


def resolve_customer(store: JourneyStore, key: str) -> str | None:
    """A customer id from a customer id or any identity (e-mail, phone, order, serial)."""
    if store.query("SELECT 1 FROM customers WHERE customer_id = ?", (key,)):
        return key
    norm = norm_identity(key)
    if not norm:
        return None
    rows = store.query(
        "SELECT i.customer_id FROM identities i JOIN customers c USING (customer_id)"
        " WHERE i.norm = ? ORDER BY c.touchpoints DESC LIMIT 1",
        (norm,),
    )
    if rows:
        return str(rows[0][0])
    rows = store.query("SELECT customer_id FROM customers WHERE id_norm = ? LIMIT 1", (norm,))
    return str(rows[0][0]) if rows else None


def related_customers(store: JourneyStore, customer_id: str) -> list[str]:
    """Every customer id that is the same person: linked explicitly (IdentityLinked with
    kind customer_id, in either direction) or keyed by an identifier this person showed."""
    seen = [customer_id]
    frontier = [customer_id]
    while frontier:
        cid = frontier.pop()
        found: set[str] = set()
        found.update(
            str(r[0])
            for r in store.query("SELECT other_id FROM links WHERE customer_id = ?", (cid,))
        )
        # Someone else's identifier equals this id (the touchpoint was keyed by it) ...
        found.update(
            str(r[0])
            for r in store.query(
                # Names are not identifiers: two people may share one.
                "SELECT customer_id FROM identities WHERE norm = ? AND kind != 'name'",
                (norm_identity(cid),),
            )
        )
        # ... or this customer's identifiers are used as ids of other streams.
        found.update(
            str(r[0])
            for r in store.query(
                "SELECT c.customer_id FROM identities i JOIN customers c ON c.id_norm = i.norm"
                " WHERE i.customer_id = ? AND i.kind != 'name'",
                (cid,),
            )
        )
        for other in sorted(found):
            if other not in seen:
                seen.append(other)
                frontier.append(other)
    return seen


# ---------------------------------------------------------------------- the view


def _deadline_out(deadline: Deadline | None, now: datetime) -> DeadlineOut | None:
    if deadline is None:
        return None
    return DeadlineOut(
        kind=deadline.kind,
        due_at=deadline.due_at,
        warn_at=deadline.warn_at,
        state=deadline.state(now),
        remaining_seconds=deadline.remaining(now).total_seconds(),
    )


def _case_out(cid: str, case: Case, rules: ServiceRules, now: datetime) -> CaseOut:
    return CaseOut(
        customer_id=cid,
        case_id=case.case_id,
        kind=case.kind,
        channel=case.channel,
        subject=case.subject,
        product=case.product,
        status=case.status,
        opened_at=case.opened_at,
        owner_team=case.team,
        owner_country=case.country,
        copied_to=list(case.copied_to),
        handoffs=[
            HandoffOut(
                at=h.at,
                from_team=h.from_team,
                from_country=h.from_country,
                to_team=h.to_team,
                to_country=h.to_country,
                copied_to=list(h.copied_to),
                escalation=h.escalation,
            )
            for h in case.handoffs
        ],
        replies=len(case.replies),
        auto_acknowledgements=len(case.auto_acknowledgements),
        answered=case.answered,
        waiting_on_customer=case.awaiting_customer_since is not None,
        next_deadline=_deadline_out(case_deadline(case, rules), now),
        steps=[f"{s.at:%Y-%m-%d} {s.detail}" for s in case.steps],
        satisfaction=case.satisfaction,
        reopened=case.reopened,
        missed_targets=len(case.overdue_recorded),
        messages=_conversation(case),
    )


def _conversation(case: Case) -> list[MessageOut]:
    said = [
        MessageOut(
            at=m.at,
            from_customer=True,
            by="customer",
            channel=m.channel,
            subject=m.subject,
            text=m.text,
        )
        for m in case.messages
    ]
    said += [
        MessageOut(at=r.at, from_customer=False, by=r.agent, channel=r.channel, text=r.body)
        for r in case.replies
    ]
    said.sort(key=lambda m: m.at)
    return said


def _promise_out(cid: str, p: Promise, rules: ServiceRules, now: datetime) -> PromiseOut:
    status: Literal["pending", "kept", "kept_late", "broken", "overdue"] = p.status
    if status == "pending" and now >= p.due_by:
        status = "overdue"  # the promise keeper will record it as broken
    return PromiseOut(
        customer_id=cid,
        promise_id=p.promise_id,
        what=p.what,
        kind=p.kind,
        made_by=p.made_by,
        made_to=p.made_to,
        made_at=p.made_at,
        due_by=p.due_by,
        status=status,
        implied=p.implied,
        kept_late=p.kept_late,
        fulfilled_at=p.fulfilled_at,
        broken_recorded=p.broken_recorded,
        deadline=_deadline_out(promise_deadline(p, rules), now),
    )


def _unreached_defects(store: JourneyStore, ids: list[str]) -> list[str]:
    marks = ",".join("?" * len(ids))
    rows = store.query(
        "SELECT DISTINCT d.defect_id FROM defects d JOIN owned_products o"
        " ON o.product = d.product AND (d.batch IS NULL OR o.batch = d.batch)"
        f" WHERE o.customer_id IN ({marks}) AND NOT EXISTS ("
        f"  SELECT 1 FROM outreach r WHERE r.defect_id = d.defect_id"
        f"  AND r.customer_id IN ({marks})) ORDER BY d.defect_id",
        [*ids, *ids],
    )
    return [str(r[0]) for r in rows]


def build_customer_view(
    store: JourneyStore,
    customer_id: str,
    *,
    rules: ServiceRules,
    now: datetime,
    page: int = 1,
    page_size: int = 50,
) -> CustomerView | None:
    """The merged view of ``customer_id`` and every id linked to it, or None if unknown."""
    journeys: list[Journey] = []
    touchpoints = 0
    for cid in related_customers(store, customer_id):
        agg = store.journey(cid)
        if agg is not None:
            journeys.append(agg.journey)
            touchpoints += agg.touchpoints
    if not journeys:
        return None
    main = journeys[0]
    erased_at = main.erased_at
    identities = [
        IdentityOut(kind=i.kind, value=i.value, note=i.note, customer_id=j.customer_id)
        for j in journeys
        for i in j.identities
    ]
    submissions = [
        SubmissionOut(
            case_id=s.case_id,
            form=s.form,
            channel=s.channel,
            products=s.products,
            fields=s.fields,
            submitted_at=s.submitted_at,
            answered=bool(j.cases.get(s.case_id) and j.cases[s.case_id].answered),
        )
        for j in journeys
        for s in j.submissions
    ]
    cases = [_case_out(j.customer_id, k, rules, now) for j in journeys for k in j.cases.values()]
    cases.sort(key=lambda k: k.opened_at, reverse=True)
    promises = [
        _promise_out(j.customer_id, p, rules, now) for j in journeys for p in j.promises.values()
    ]
    promises.sort(key=lambda p: p.due_by)
    products = []
    for j in journeys:
        for p in j.products:
            serial_status: Literal["as given", "awaiting confirmation", "confirmed", "unknown"]
            if p.serial_confirmed:
                serial_status = "confirmed"
            elif p.serial_corrected:
                serial_status = "awaiting confirmation"
            elif p.serial_as_given:
                serial_status = "as given"
            else:
                serial_status = "unknown"
            products.append(
                ProductOut(
                    name=p.name,
                    serial_as_given=p.serial_as_given,
                    serial_corrected=p.serial_corrected,
                    serial_status=serial_status,
                    batch=p.batch,
                    repairs=p.repairs,
                    replacements=p.replacements,
                    complaints=p.complaints,
                    warranty_terms_shown=p.warranty_terms_shown,
                    replace_dont_repair=p.repairs >= rules.replace_after_repairs
                    and p.replacements == 0,
                )
            )
    shipments = [
        ShipmentOut(
            customer_id=j.customer_id,
            shipment_id=sh.shipment_id,
            order_id=sh.order_id,
            carrier=sh.carrier,
            attempts=sh.attempts,
            failures=list(sh.failures),
            rescheduled_to=sh.rescheduled_to,
            delivered_at=sh.delivered_at,
            delivered_location=sh.delivered_location,
        )
        for j in journeys
        for sh in j.shipments.values()
    ]
    entries: list[tuple[TimelineEntry, str]] = [
        (e, j.customer_id) for j in journeys for e in j.timeline
    ]
    entries.sort(key=lambda pair: pair[0].at, reverse=True)
    page = max(page, 1)
    start = (page - 1) * page_size
    timeline = TimelinePage(
        page=page,
        page_size=page_size,
        total=len(entries),
        entries=[
            TimelineOut(
                at=e.at,
                type=e.type,
                summary=e.summary,
                event_id=e.event_id,
                case_id=e.case_id,
                customer_id=cid,
                text=e.text,
            )
            for e, cid in entries[start : start + page_size]
        ],
    )
    anomalies = [
        AnomalyOut(at=a.at, type=a.type, problem=a.problem, event_id=a.event_id)
        for j in journeys
        for a in j.anomalies
    ]
    open_cases = [k for k in cases if k.status == "open"]
    unanswered = [now - k.opened_at for k in open_cases if not k.answered]
    flags = Flags(
        unanswered_for_seconds=max(unanswered).total_seconds() if unanswered else None,
        promise_broken=any(p.status in ("broken", "overdue") for p in promises),
        replace_dont_repair=any(p.replace_dont_repair for p in products),
        known_defects=_unreached_defects(store, [j.customer_id for j in journeys]),
        erased=erased_at is not None,
        deadline_warning=any(
            k.next_deadline and k.next_deadline.state == "warning" for k in open_cases
        )
        or any(p.deadline and p.deadline.state == "warning" for p in promises),
        deadline_breached=any(
            k.next_deadline and k.next_deadline.state == "breached" for k in open_cases
        ),
        anomalies=len(anomalies),
    )
    name = None
    for j in journeys:
        name = name or display_name(j)
    return CustomerView(
        customer_id=customer_id,
        linked_customer_ids=[j.customer_id for j in journeys[1:]],
        name=name,
        identities=identities,
        submissions=submissions,
        open_cases=open_cases,
        closed_cases=[k for k in cases if k.status != "open"],
        promises=promises,
        products=products,
        shipments=shipments,
        reviews=[
            ReviewOut(
                customer_id=j.customer_id,
                review_id=r.review_id,
                platform=r.platform,
                posted_at=r.posted_at,
                rating=r.rating,
                text=r.text,
                url=r.url,
                status="answered" if r.answered_at is not None else "unanswered",
                answered_at=r.answered_at,
                answered_by=r.answered_by,
                answer=r.answer,
            )
            for j in journeys
            for r in j.reviews.values()
        ],
        orders={k: v for j in journeys for k, v in j.orders.items()},
        flags=flags,
        contacts=sum(j.contacts for j in journeys),
        touchpoints=touchpoints,
        anomalies=anomalies,
        erased_at=erased_at,
        timeline=timeline,
        computed_at=now,
    )
