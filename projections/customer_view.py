"""The customer view: one document an agent can act on.

Built at read time from the customer's journey aggregates (every customer id linked to the
one asked for) and the query tables, with service rules and ``now`` passed in: deadlines,
warnings and "unanswered for how long" are always computed against the present.

With a ``cut`` (projections.travel) the same view is built from the customer folded afresh
as of an event time or as known at a log time, and judged at that moment.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from domain.aggregates import CustomerJourney
from domain.errors import JourneyError
from domain.journey import (
    Anomaly,
    Case,
    Identity,
    Journey,
    Product,
    Promise,
    Review,
    Shipment,
    Submission,
    TimelineEntry,
)
from domain.rules import Deadline, ServiceRules, case_deadline, promise_deadline
from projections.facts import at_micros
from projections.store import JourneyStore, display_name, norm_identity
from projections.travel import Cut, Travelled, travel

__all__ = [
    "LIST_LIMIT",
    "LIST_NAMES",
    "MATCH_LIMIT",
    "BadCursor",
    "Candidate",
    "CasePage",
    "CustomerView",
    "ItemPage",
    "Lookup",
    "PossibleMatchOut",
    "TimeTravelOut",
    "build_customer_view",
    "customer_case",
    "customer_cases",
    "customer_list",
    "customer_timeline",
    "lookup_customer",
    "possible_matches",
    "related_customers",
    "resolve_customer",
]


#: At most this many items in each list of a view; the rest is one cursor away. Sized so a
#: customer of any size answers in well under 256 KB.
LIST_LIMIT = 50
# A case's own timeline, newest first: a case with more entries shows its latest ones.
CASE_TIMELINE_LIMIT = 500


class BadCursor(JourneyError):
    """A cursor that this service did not hand out, or for another list."""


class IdentityOut(BaseModel):
    kind: str
    value: str
    note: str | None = None
    customer_id: str
    verified: bool = Field(
        False, description="Checked by its producer; an unverified one is only a claim"
    )


#: At most this many possible matches in a view, and candidates in a lookup's answer.
MATCH_LIMIT = 20


class PossibleMatchOut(BaseModel):
    """Another customer that may be the same person, through an unverified claim: an agent
    confirms it with a verified ``IdentityLinked`` (nothing merges until then)."""

    customer_id: str = Field(description="The other customer")
    name: str | None = None
    kind: str = Field(description="Which identifier they share, e.g. phone")
    value: str = Field(description="The identifier as the claim wrote it")
    claimed_by: str = Field(description="The customer whose unverified claim it is")
    verified: bool = Field(description="The other customer holds the identifier verified")


class Candidate(BaseModel):
    """A customer an identity may name, and how."""

    customer_id: str
    name: str | None = None
    kind: str = Field(description="The identity's kind, e.g. email")
    value: str
    verified: bool = Field(description="False: only claimed (a form, an unverified link)")
    touchpoints: int


class Lookup(BaseModel):
    """What a key names: one customer (by its id or a verified identity), or, when only
    unverified claims hold the key, the candidates for an agent to choose from."""

    key: str
    customer_id: str | None
    candidates: list[Candidate] = Field(default_factory=list)


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
    rating: int | None = Field(description="The score, 1-5 stars (PublicReviewPosted score)")
    title: str | None = Field(None, description="The review's title, verbatim")
    text: str | None = Field(description="The review, verbatim")
    order_id: str | None = None
    feedback_id: str | None = Field(
        None, description="The review invitation (FeedbackRequested) this review answers"
    )
    invited_at: datetime | None = Field(
        None, description="When the invitation went out (FeedbackRequested)"
    )
    customer_answer_seconds: float | None = Field(
        None, description="How long the customer took to answer the invitation with this review"
    )
    our_answer_seconds: float | None = Field(
        None, description="How long we took to answer this review (ReviewAnswered)"
    )
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
    claim_decision: Literal["approved", "rejected"] | None = Field(
        None, description="How the claim was decided (ClaimDecided)"
    )
    claim_reason: str | None = None
    reopened: int
    missed_targets: int
    messages: list[MessageOut] = Field(
        default_factory=list,
        description=f"The conversation, oldest first, verbatim: the latest {LIST_LIMIT} in a view",
    )
    messages_total: int = Field(0, description="How many messages the conversation has")


class PromiseOut(BaseModel):
    customer_id: str
    promise_id: str
    what: str
    kind: str
    made_by: str
    made_to: str | None
    made_at: datetime
    due_by: datetime
    status: Literal["pending", "kept", "kept_late", "broken", "overdue", "withdrawn", "cancelled"]
    implied: bool
    due_date: date | None = Field(
        None, description="A promise for a calendar day: the day (due_by is its end in time_zone)"
    )
    time_zone: str | None = None
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
    case_id: str | None = Field(None, description="A replacement's shipment: its case")
    expected_by: datetime | None = Field(None, description="Delivery time the carrier announced")
    carrier: str | None
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
    page: int | None = Field(description="Deprecated page number (None when read by cursor)")
    page_size: int
    total: int
    entries: list[TimelineOut]
    next: str | None = Field(None, description="Cursor to the next (older) entries, if any")


class ItemPage(BaseModel):
    """One page of one of a customer's lists, in the view's order."""

    name: str = Field(description="Which list of the view")
    total: int
    items: list[dict[str, Any]]
    next: str | None = Field(description="Cursor to the rest, if any")


class CasePage(BaseModel):
    """One page of a customer's open or closed cases, newest first."""

    status: Literal["open", "closed"]
    total: int
    items: list[CaseOut]
    next: str | None = Field(description="Cursor to the rest, if any")


class TimeTravelOut(BaseModel):
    """Which moment a view back in time shows."""

    kind: Literal["as_of", "known_at"] = Field(
        description="as_of: what had happened by `at` (event time, late reports included); "
        "known_at: what the log had received by `at` (log time)"
    )
    at: datetime = Field(description="The moment; deadlines are judged at it")


class CustomerView(BaseModel):
    """Every list holds at most ``LIST_LIMIT`` items; ``<list>_total`` says how many there are
    and ``<list>_next`` is a cursor to the rest (``GET /customers/{key}/lists/<list>``)."""

    customer_id: str
    linked_customer_ids: list[str]
    possible_matches: list[PossibleMatchOut] = Field(
        default_factory=list,
        description="Customers who may be the same person through an unverified claim; "
        "confirm one with a verified IdentityLinked (POST /customers/{id}/identities)",
    )
    name: str | None
    flags: Flags
    open_cases: list[CaseOut] = Field(description="Newest first")
    open_cases_total: int = 0
    open_cases_next: str | None = None
    promises: list[PromiseOut] = Field(description="Earliest deadline first")
    promises_total: int = 0
    promises_next: str | None = None
    submissions: list[SubmissionOut] = Field(description="Newest first")
    submissions_total: int = 0
    submissions_next: str | None = None
    shipments: list[ShipmentOut]
    shipments_total: int = 0
    shipments_next: str | None = None
    reviews: list[ReviewOut] = Field(default_factory=list, description="Newest first")
    reviews_total: int = 0
    reviews_next: str | None = None
    closed_cases: list[CaseOut] = Field(description="Newest first")
    closed_cases_total: int = 0
    closed_cases_next: str | None = None
    identities: list[IdentityOut]
    identities_total: int = 0
    identities_next: str | None = None
    products: list[ProductOut]
    products_total: int = 0
    products_next: str | None = None
    orders: dict[str, str] = Field(description="Order id -> what was ordered")
    orders_total: int = 0
    orders_next: str | None = None
    contacts: int = Field(description="How many times the customer had to contact us")
    touchpoints: int
    anomalies: list[AnomalyOut]
    anomalies_total: int = 0
    anomalies_next: str | None = None
    erased_at: datetime | None
    timeline: TimelinePage
    computed_at: datetime
    time_travel: TimeTravelOut | None = Field(
        None, description="Set when the view looks back in time (as_of / known_at)"
    )


# ---------------------------------------------------------------------- lookups


def resolve_customer(store: JourneyStore, key: str) -> str | None:
    """The customer a key names: a customer id, or an identity held verified (see
    :func:`lookup_customer`); None when only unverified claims hold it, or nothing does."""
    return lookup_customer(store, key).customer_id


def lookup_customer(store: JourneyStore, key: str) -> Lookup:
    """The customer a key names, or the candidates when that would be a guess.

    A customer id names itself. Any other key (e-mail, phone, order, serial, name) names the
    customer who holds it verified — however many touchpoints an older unverified claim has.
    Held verified by customers who are not one person, or only claimed (a form, an
    unverified link), it names nobody: the answer lists the candidates instead, so a lookup
    never silently shows someone's view. A stream keyed by the identifier (the phone system
    keys a text by its number) names itself too."""
    if store.query("SELECT 1 FROM customers WHERE customer_id = ?", (key,)):
        return Lookup(key=key, customer_id=key)
    norm = norm_identity(key)
    if not norm:
        return Lookup(key=key, customer_id=None)
    rows = store.query(
        "SELECT i.customer_id, c.name, i.kind, i.value, i.verified, c.touchpoints"
        " FROM identities i JOIN customers c USING (customer_id) WHERE i.norm = ?"
        " ORDER BY i.verified DESC, c.touchpoints DESC, i.customer_id LIMIT ?",
        (norm, MATCH_LIMIT),
    )
    candidates = [
        Candidate(
            customer_id=str(cid),
            name=None if name is None else str(name),
            kind=str(kind),
            value=str(value),
            verified=bool(verified),
            touchpoints=int(count),
        )
        for cid, name, kind, value, verified, count in rows
    ]
    owners = list(dict.fromkeys(c.customer_id for c in candidates if c.verified))
    if owners:
        # Several verified owners answer only when they are one person (merged).
        group = related_customers(store, owners[0]) if len(owners) > 1 else owners
        if set(owners) <= set(group):
            return Lookup(key=key, customer_id=owners[0])
        return Lookup(key=key, customer_id=None, candidates=candidates)
    keyed = store.query(
        "SELECT customer_id FROM customers WHERE id_norm = ? ORDER BY customer_id LIMIT 1",
        (norm,),
    )
    if keyed:
        return Lookup(key=key, customer_id=str(keyed[0][0]))
    return Lookup(key=key, customer_id=None, candidates=candidates)


def related_customers(store: JourneyStore, customer_id: str) -> list[str]:
    """Every customer id that is the same person: linked by a verified IdentityLinked of
    kind customer_id (made on either's stream), or keyed by an identifier this person holds
    verified. Unverified claims never merge (see :func:`possible_matches`)."""
    seen = [customer_id]
    frontier = [customer_id]
    while frontier:
        cid = frontier.pop()
        found: set[str] = set()
        found.update(
            str(r[0])
            for r in store.query(
                "SELECT other_id FROM links WHERE customer_id = ?"
                " UNION SELECT customer_id FROM links WHERE other_id = ?",
                (cid, cid),
            )
        )
        # Someone else's verified identifier equals this id (the touchpoint was keyed by
        # it) ...
        found.update(
            str(r[0])
            for r in store.query(
                # Names are not identifiers: two people may share one.
                "SELECT customer_id FROM identities WHERE norm = ? AND kind != 'name'"
                " AND verified = 1",
                (norm_identity(cid),),
            )
        )
        # ... or this customer's verified identifiers are used as ids of other streams.
        found.update(
            str(r[0])
            for r in store.query(
                "SELECT c.customer_id FROM identities i JOIN customers c ON c.id_norm = i.norm"
                " WHERE i.customer_id = ? AND i.kind != 'name' AND i.verified = 1",
                (cid,),
            )
        )
        for other in sorted(found):
            if other not in seen:
                seen.append(other)
                frontier.append(other)
    return seen


def possible_matches(store: JourneyStore, group: list[str]) -> list[PossibleMatchOut]:
    """Other customers who may be the same person as ``group`` (one merged view) through an
    unverified claim: one the group made (its claim equals their id or an identifier they
    hold) or one they made on the group's id or verified identifiers. Names are left out:
    two people may share one. At most ``MATCH_LIMIT``."""
    marks = ",".join("?" * len(group))
    ids = [norm_identity(cid) for cid in group]
    limit = MATCH_LIMIT * 4
    # Each query starts from the group's own rows (indexed by customer) and meets the others
    # through the norm indexes: a view never scans the whole identities table.
    rows = store.query(
        # The group's claims on identifiers others hold (verified or not) ...
        "SELECT s.customer_id, h.customer_id, s.kind, s.value, h.verified"
        " FROM identities s JOIN identities h ON h.norm = s.norm"
        f" WHERE s.customer_id IN ({marks}) AND s.verified = 0 AND s.kind != 'name'"
        f" AND h.kind != 'name' AND h.customer_id NOT IN ({marks}) LIMIT ?",
        [*group, *group, limit],
    )
    rows += store.query(
        # ... or on other customers' ids ...
        "SELECT s.customer_id, c.customer_id, s.kind, s.value, 1"
        " FROM identities s JOIN customers c ON c.id_norm = s.norm"
        f" WHERE s.customer_id IN ({marks}) AND s.verified = 0 AND s.kind != 'name'"
        f" AND c.customer_id NOT IN ({marks}) LIMIT ?",
        [*group, *group, limit],
    )
    rows += store.query(
        # ... others' claims on what the group holds ...
        "SELECT s.customer_id, h.customer_id, s.kind, s.value, h.verified"
        " FROM identities h JOIN identities s ON s.norm = h.norm"
        f" WHERE h.customer_id IN ({marks}) AND h.kind != 'name' AND s.verified = 0"
        f" AND s.kind != 'name' AND s.customer_id NOT IN ({marks}) LIMIT ?",
        [*group, *group, limit],
    )
    id_marks = ",".join("?" * len(ids))
    rows += store.query(
        # ... or on the group's ids.
        "SELECT s.customer_id, c.customer_id, s.kind, s.value, 1"
        " FROM identities s JOIN customers c ON c.id_norm = s.norm"
        f" WHERE s.norm IN ({id_marks}) AND c.customer_id IN ({marks}) AND s.verified = 0"
        f" AND s.kind != 'name' AND s.customer_id NOT IN ({marks}) LIMIT ?",
        [*ids, *group, *group, limit],
    )
    rows.sort(key=lambda r: (str(r[0]), str(r[1]), str(r[2]), str(r[3])))
    out: dict[tuple[str, str, str], PossibleMatchOut] = {}
    for claimer, holder, kind, value, verified in rows:
        other = str(holder) if str(claimer) in group else str(claimer)
        key = (other, str(kind), str(value))
        # A claim against a verified holding says more than one against another claim.
        if key in out and (out[key].verified or not verified):
            continue
        out[key] = PossibleMatchOut(
            customer_id=other,
            kind=str(kind),
            value=str(value),
            claimed_by=str(claimer),
            verified=bool(verified) and other == str(holder),
        )
    matches = list(out.values())[:MATCH_LIMIT]
    names = _names(store, [m.customer_id for m in matches])
    for m in matches:
        m.name = names.get(m.customer_id)
    return matches


def _names(store: JourneyStore, ids: list[str]) -> dict[str, str | None]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = store.query(
        f"SELECT customer_id, name FROM customers WHERE customer_id IN ({marks})", ids
    )
    return {str(cid): None if name is None else str(name) for cid, name in rows}


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


def _case_out(
    cid: str, case: Case, rules: ServiceRules, now: datetime, messages: int | None = LIST_LIMIT
) -> CaseOut:
    out, deadline = _case_at_any_time(cid, case, rules, messages)
    return _case_now(out, deadline, now)


def _case_now(out: CaseOut, deadline: Deadline | None, now: datetime) -> CaseOut:
    """The case as of ``now``: its running deadline judged then (a copy; ``out`` stays)."""
    if deadline is None:
        return out
    return out.model_copy(update={"next_deadline": _deadline_out(deadline, now)})


def _case_at_any_time(
    cid: str, case: Case, rules: ServiceRules, messages: int | None = LIST_LIMIT
) -> tuple[CaseOut, Deadline | None]:
    """The case without its deadline's state (which depends on the moment), and that
    deadline: what a reader keeps per folded state."""
    conversation = _conversation(case)
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
        next_deadline=None,
        steps=[f"{s.at:%Y-%m-%d} {s.detail}" for s in case.steps],
        satisfaction=case.satisfaction,
        claim_decision=_decision(case.claim_decision),
        claim_reason=case.claim_reason,
        reopened=case.reopened,
        missed_targets=len(case.overdue_recorded),
        # The latest messages: the ones an agent answers.
        messages=conversation if messages is None else conversation[-messages:],
        messages_total=len(conversation),
    ), case_deadline(case, rules)


def _decision(value: str | None) -> Literal["approved", "rejected"] | None:
    return "approved" if value == "approved" else "rejected" if value == "rejected" else None


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
    return _promise_now(_promise_at_any_time(cid, p, rules), p, rules, now)


def _promise_now(out: PromiseOut, p: Promise, rules: ServiceRules, now: datetime) -> PromiseOut:
    """The promise as of ``now`` (a copy when the moment changes it; ``out`` stays)."""
    if p.status != "pending":
        return out  # neither its status nor a deadline depends on the moment
    return out.model_copy(
        update={
            # past due: the promise keeper will record it as broken
            "status": "overdue" if now >= p.due_by else "pending",
            "deadline": _deadline_out(promise_deadline(p, rules), now),
        }
    )


def _promise_at_any_time(cid: str, p: Promise, rules: ServiceRules) -> PromiseOut:
    """The promise as far as the moment does not change it: what a reader keeps."""
    return PromiseOut(
        customer_id=cid,
        promise_id=p.promise_id,
        what=p.what,
        kind=p.kind,
        made_by=p.made_by,
        made_to=p.made_to,
        made_at=p.made_at,
        due_by=p.due_by,
        status=p.status,
        implied=p.implied,
        due_date=p.due_date,
        time_zone=p.time_zone,
        kept_late=p.kept_late,
        fulfilled_at=p.fulfilled_at,
        broken_recorded=p.broken_recorded,
        deadline=None,
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


# ---------------------------------------------------------------------- paging

Key = tuple[str, ...]
T = TypeVar("T")


def _ts(at: datetime) -> str:
    """A timestamp that sorts as text: fixed-width epoch seconds (cheap: a key is made for
    every item of a list, however long, before a page is picked)."""
    return f"{at.timestamp():018.6f}"


def _pos(n: int, i: int) -> Key:
    return (f"{n:09d}", f"{i:09d}")


def encode_cursor(name: str, key: Key) -> str:
    raw = json.dumps([name, list(key)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(name: str, cursor: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got, key = json.loads(raw)
        if not isinstance(got, str) or not all(isinstance(k, str) for k in key):
            raise ValueError(cursor)
    except ValueError as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise BadCursor(
            f"cursor {cursor[:40]!r} is not one this service handed out: "
            "use the <list>_next or next value of an earlier answer"
        ) from exc
    if got != name:
        raise BadCursor(f"that cursor is for the list {got!r}, not {name!r}: use it with {got!r}")
    return tuple(key)


@dataclass(frozen=True)
class _Window(Generic[T]):
    items: list[T]
    total: int
    next: str | None


def _window(
    name: str,
    pairs: list[tuple[Key, T]],
    *,
    newest_first: bool,
    after: Key | None,
    limit: int,
) -> _Window[T]:
    """``limit`` items after the cursor key, in order, from ``pairs`` sorted by key: two
    bisections and a slice, however long the list."""
    if newest_first:
        end = len(pairs) if after is None else bisect.bisect_left(pairs, after, key=_key_of)
        page = pairs[max(0, end - limit - 1) : end][::-1]
    else:
        start = 0 if after is None else bisect.bisect_right(pairs, after, key=_key_of)
        page = pairs[start : start + limit + 1]
    more = len(page) > limit
    page = page[:limit]
    return _Window(
        items=[item for _, item in page],
        total=0,  # set by the caller, which knows the whole list's size
        next=encode_cursor(name, page[-1][0]) if more and page else None,
    )


def _key_of(pair: tuple[Key, Any]) -> Key:
    return pair[0]


def _stamp(j: Journey) -> object:
    """What identifies the state a journey was folded to: any fold changes it."""
    return (j.last_fact, len(j.facts), j.refolded)


def _derived(j: Journey) -> dict[object, Any]:
    """Data derived from a journey as folded (its lists' sorted keys, its deadlines),
    computed once per state: a reader's cached journey is read again and again, and a
    customer with 20,000 cases must not cost 20,000 keys per request. Kept on the journey
    itself (never pickled: see Journey.__getstate__), so it goes when the journey goes."""
    held = j.__dict__.get("_derived")
    stamp = _stamp(j)
    if held is None or held[0] != stamp:
        held = (stamp, {})
        j.__dict__["_derived"] = held
    cache: dict[object, Any] = held[1]
    return cache


def _sorted_pairs(name: str, journeys: list[Journey]) -> list[tuple[Key, tuple[str, Any]]]:
    cache = _derived(journeys[0])
    memo_key = (name, tuple((id(j), _stamp(j)) for j in journeys))
    found: list[tuple[Key, tuple[str, Any]]] | None = cache.get(memo_key)
    if found is None:
        found = sorted(_SOURCES[name].keyed(journeys), key=_key_of)
        if len(cache) > 64:  # other link sets of the same journey: keep it bounded
            cache.clear()
        cache[memo_key] = found
    return found


# Each list of the view: its order (a key per item) and how an item becomes an answer.
@dataclass(frozen=True)
class _Source:
    newest_first: bool
    keyed: Callable[[list[Journey]], list[tuple[Key, tuple[str, Any]]]]
    # A list in the order it grew: its items per journey (its first page needs no sort).
    positions: Callable[[Journey], Iterable[Any]] | None = None


def _cases(open_: bool) -> Callable[[list[Journey]], list[tuple[Key, tuple[str, Any]]]]:
    def keyed(journeys: list[Journey]) -> list[tuple[Key, tuple[str, Any]]]:
        return [
            ((_ts(k.opened_at), j.customer_id, k.case_id), (j.customer_id, k))
            for j in journeys
            for k in j.cases.values()
            if (k.status == "open") == open_
        ]

    return keyed


def _positional(items: Callable[[Journey], Iterable[Any]]) -> _Source:
    """A list kept in the order it grew (oldest first), keyed by position."""
    return _Source(
        False,
        lambda js: [
            (_pos(n, i), (j.customer_id, x))
            for n, j in enumerate(js)
            for i, x in enumerate(items(j))
        ],
        items,
    )


def _first_positions(
    name: str, items: Callable[[Journey], Iterable[Any]], journeys: list[Journey], limit: int
) -> _Window[tuple[str, Any]]:
    """The first page of a positional list without a key for every item: its order is
    the order it grew in, so the first ``limit`` items are the page (``_window`` of the
    same list gives the same)."""
    page: list[tuple[Key, tuple[str, Any]]] = []
    total = 0
    for n, j in enumerate(journeys):
        mine = items(j)
        size = len(mine) if isinstance(mine, Sized) else sum(1 for _ in mine)
        if len(page) <= limit:
            page.extend(
                (_pos(n, i), (j.customer_id, x))
                for i, x in enumerate(itertools.islice(items(j), limit + 1 - len(page)))
            )
        total += size
    more = len(page) > limit
    page = page[:limit]
    return _Window(
        items=[item for _, item in page],
        total=total,
        next=encode_cursor(name, page[-1][0]) if more and page else None,
    )


_SOURCES: dict[str, _Source] = {
    "open_cases": _Source(True, _cases(True)),
    "closed_cases": _Source(True, _cases(False)),
    "promises": _Source(
        False,
        lambda js: [
            ((_ts(p.due_by), j.customer_id, p.promise_id), (j.customer_id, p))
            for j in js
            for p in j.promises.values()
        ],
    ),
    "submissions": _Source(
        True,
        lambda js: [
            ((_ts(s.submitted_at), *_pos(n, i)), (j.customer_id, (j, s)))
            for n, j in enumerate(js)
            for i, s in enumerate(j.submissions)
        ],
    ),
    "shipments": _positional(lambda j: j.shipments.values()),
    "reviews": _Source(
        True,
        lambda js: [
            ((_ts(r.posted_at), j.customer_id, r.review_id), (j.customer_id, (j, r)))
            for j in js
            for r in j.reviews.values()
        ],
    ),
    "identities": _positional(lambda j: j.identities),
    "products": _positional(lambda j: j.products),
    "orders": _positional(lambda j: j.orders.items()),
    "anomalies": _positional(lambda j: j.anomalies),
}

#: The lists of a view that page by cursor (the timeline pages on its own endpoint).
LIST_NAMES = tuple(_SOURCES)


def _submission_out(j: Journey, s: Submission) -> SubmissionOut:
    case = j.cases.get(s.case_id)
    return SubmissionOut(
        case_id=s.case_id,
        form=s.form,
        channel=s.channel,
        products=s.products,
        fields=s.fields,
        submitted_at=s.submitted_at,
        answered=bool(case and case.answered),
    )


def _product_out(p: Product, rules: ServiceRules) -> ProductOut:
    serial_status: Literal["as given", "awaiting confirmation", "confirmed", "unknown"]
    if p.serial_confirmed:
        serial_status = "confirmed"
    elif p.serial_corrected:
        serial_status = "awaiting confirmation"
    elif p.serial_as_given:
        serial_status = "as given"
    else:
        serial_status = "unknown"
    return ProductOut(
        name=p.name,
        serial_as_given=p.serial_as_given,
        serial_corrected=p.serial_corrected,
        serial_status=serial_status,
        batch=p.batch,
        repairs=p.repairs,
        replacements=p.replacements,
        complaints=p.complaints,
        warranty_terms_shown=p.warranty_terms_shown,
        replace_dont_repair=_replace_dont_repair(p, rules),
    )


def _replace_dont_repair(p: Product, rules: ServiceRules) -> bool:
    return p.repairs >= rules.replace_after_repairs and p.replacements == 0


def _shipment_out(cid: str, sh: Shipment) -> ShipmentOut:
    return ShipmentOut(
        customer_id=cid,
        shipment_id=sh.shipment_id,
        order_id=sh.order_id,
        case_id=sh.case_id,
        expected_by=sh.expected_by,
        carrier=sh.carrier,
        attempts=sh.attempts,
        failures=list(sh.failures),
        rescheduled_to=sh.rescheduled_to,
        delivered_at=sh.delivered_at,
        delivered_location=sh.delivered_location,
    )


def _review_out(cid: str, r: Review, invited_at: datetime | None = None) -> ReviewOut:
    return ReviewOut(
        customer_id=cid,
        review_id=r.review_id,
        platform=r.platform,
        posted_at=r.posted_at,
        rating=r.rating,
        title=r.title,
        order_id=r.order_id,
        feedback_id=r.feedback_id,
        invited_at=invited_at,
        customer_answer_seconds=(r.posted_at - invited_at).total_seconds()
        if invited_at is not None
        else None,
        our_answer_seconds=(r.answered_at - r.posted_at).total_seconds()
        if r.answered_at is not None
        else None,
        text=r.text,
        url=r.url,
        status="answered" if r.answered_at is not None else "unanswered",
        answered_at=r.answered_at,
        answered_by=r.answered_by,
        answer=r.answer,
    )


def _identity_out(cid: str, i: Identity) -> IdentityOut:
    return IdentityOut(
        kind=i.kind, value=i.value, note=i.note, customer_id=cid, verified=i.verified
    )


def _anomaly_out(a: Anomaly) -> AnomalyOut:
    return AnomalyOut(at=a.at, type=a.type, problem=a.problem, event_id=a.event_id)


def _convert(name: str, cid: str, item: Any, rules: ServiceRules, now: datetime) -> BaseModel:
    match name:
        case "open_cases" | "closed_cases":
            return _case_out(cid, item, rules, now)
        case "promises":
            return _promise_out(cid, item, rules, now)
        case "submissions":
            return _submission_out(*item)
        case "shipments":
            return _shipment_out(cid, item)
        case "reviews":
            journey, review = item
            asked = journey.feedback.get(review.feedback_id) if review.feedback_id else None
            return _review_out(cid, review, asked.requested_at if asked else None)
        case "identities":
            return _identity_out(cid, item)
        case "products":
            return _product_out(item, rules)
        case "anomalies":
            return _anomaly_out(item)
    raise AssertionError(name)  # orders are not models


def _page(
    name: str,
    journeys: list[Journey],
    *,
    after: Key | None,
    limit: int,
) -> _Window[tuple[str, Any]]:
    source = _SOURCES[name]
    if after is None and source.positions is not None:
        return _first_positions(name, source.positions, journeys, limit)
    pairs = _sorted_pairs(name, journeys)
    window = _window(name, pairs, newest_first=source.newest_first, after=after, limit=limit)
    return _Window(items=window.items, total=len(pairs), next=window.next)


def _travelled(store: JourneyStore, customer_id: str, cut: Cut | None) -> Travelled | None:
    if cut is None:
        return None
    return travel(store, customer_id, cut, related_customers(store, customer_id)[1:])


def _journeys(
    store: JourneyStore, customer_id: str, travelled: Travelled | None = None
) -> tuple[list[Journey], int]:
    if travelled is not None:
        return travelled.journeys, travelled.touchpoints
    aggs = _current(store, customer_id)
    return [a.journey for a in aggs], sum(a.touchpoints for a in aggs)


def _current(
    store: JourneyStore, customer_id: str, version: object = None
) -> list[CustomerJourney]:
    """The customer's journey and those of every id merged with it, as committed. Who is
    merged is read from tables any batch may change: looked up once per store version."""
    if version is None:
        version = store.read_version()
    group = store.memo(
        version, ("related", customer_id), lambda: related_customers(store, customer_id)
    )
    return [agg for cid in group if (agg := store.journey(cid)) is not None]


def _timeline_out(e: TimelineEntry, cid: str) -> TimelineOut:
    return TimelineOut(
        at=e.at,
        type=e.type,
        summary=e.summary,
        event_id=e.event_id,
        case_id=e.case_id,
        customer_id=cid,
        text=e.text,
    )


def _generations(store: JourneyStore, journeys: list[Journey]) -> list[tuple[str, int]]:
    """(customer, current generation) of each journey: whose timeline rows to read."""
    ids = [j.customer_id for j in journeys]
    marks = ",".join("?" * len(ids))
    rows = store.query(
        f"SELECT customer_id, generation FROM customers WHERE customer_id IN ({marks})", ids
    )
    return [(str(cid), int(gen)) for cid, gen in rows]


def _timeline(
    store: JourneyStore,
    journeys: list[Journey],
    *,
    page: int | None,
    page_size: int,
    cursor: str | None,
    travelled: Travelled | None = None,
) -> TimelinePage:
    """Newest first, by cursor (``next``) or, deprecated, by page number: one indexed range
    read of the touchpoints rows, whatever the history's length (back in time: the
    entries of the fold at the cut)."""
    keys = _generations(store, journeys) if travelled is None else []
    total = store.timeline_total(keys) if travelled is None else travelled.timeline_total()
    if cursor is not None or page is None:
        before = decode_cursor("timeline", cursor) if cursor is not None else None
        if before is not None and len(before) != 3:
            raise BadCursor("that timeline cursor is from an older version: start again")
        try:
            after = (
                None if before is None else (int(before[0]), str(uuid.UUID(before[1])), before[2])
            )
        except ValueError:
            raise BadCursor("that timeline cursor is from an older version: start again") from None
        rows = (
            store.timeline(keys, before=after, limit=page_size + 1)
            if travelled is None
            else travelled.timeline(before=after, limit=page_size + 1)
        )
        shown_page = None if cursor is not None else 1
        offset_more = len(rows) > page_size
    else:
        page = max(page, 1)
        rows = (
            store.timeline(keys, offset=(page - 1) * page_size, limit=page_size + 1)
            if travelled is None
            else travelled.timeline(offset=(page - 1) * page_size, limit=page_size + 1)
        )
        shown_page = page
        offset_more = len(rows) > page_size
    rows = rows[:page_size]
    last = rows[-1] if rows else None
    return TimelinePage(
        page=shown_page,
        page_size=page_size,
        total=total,
        entries=[_timeline_out(e, cid) for e, cid in rows],
        next=encode_cursor("timeline", (str(at_micros(last[0].at)), last[0].event_id, last[1]))
        if offset_more and last
        else None,
    )


@dataclass(frozen=True)
class _Deadlines:
    """One journey's running deadlines, sorted by due time, with the earliest warning time
    among each suffix: whether any is breached or warning at ``now`` is two bisections."""

    due: list[datetime]
    warn_from: list[datetime]  # warn_from[i] = min(warn_at of due[i:])

    @classmethod
    def of(cls, deadlines: Iterable[Deadline]) -> _Deadlines:
        ordered = sorted(deadlines, key=lambda d: d.due_at)
        warn_from: list[datetime] = []
        for d in reversed(ordered):
            warn_from.append(min(d.warn_at, warn_from[-1]) if warn_from else d.warn_at)
        return cls([d.due_at for d in ordered], warn_from[::-1])

    def breached(self, now: datetime) -> bool:
        return bool(self.due) and self.due[0] <= now

    def warning(self, now: datetime) -> bool:
        first_running = bisect.bisect_right(self.due, now)
        return first_running < len(self.due) and self.warn_from[first_running] <= now


@dataclass(frozen=True)
class _FlagFacts:
    """Everything the flags need from one journey that does not depend on ``now``."""

    oldest_unanswered: datetime | None
    cases: _Deadlines
    promises: _Deadlines
    broken: bool
    pending_due: datetime | None
    replace_dont_repair: bool


def _flag_facts(j: Journey, rules: ServiceRules) -> _FlagFacts:
    cache = _derived(j)
    key = ("flags", id(rules))
    found: _FlagFacts | None = cache.get(key)
    if found is None:
        open_cases = [k for k in j.cases.values() if k.status == "open"]
        unanswered = [k.opened_at for k in open_cases if not k.answered]
        pending = [p for p in j.promises.values() if p.status == "pending"]
        found = _FlagFacts(
            oldest_unanswered=min(unanswered) if unanswered else None,
            cases=_Deadlines.of(
                d for k in open_cases if (d := case_deadline(k, rules)) is not None
            ),
            promises=_Deadlines.of(
                d for p in pending if (d := promise_deadline(p, rules)) is not None
            ),
            broken=any(p.status == "broken" for p in j.promises.values()),
            pending_due=min((p.due_by for p in pending), default=None),
            replace_dont_repair=any(_replace_dont_repair(p, rules) for p in j.products),
        )
        cache[key] = found
    return found


def _flags(
    store: JourneyStore,
    journeys: list[Journey],
    rules: ServiceRules,
    now: datetime,
    *,
    travelled: Travelled | None = None,
    known_defects: list[str] | None = None,
) -> Flags:
    """Over every item, from facts derived once per folded state (see ``_flag_facts``)."""
    facts = [_flag_facts(j, rules) for j in journeys]
    if known_defects is None:
        known_defects = (
            _unreached_defects(store, [j.customer_id for j in journeys])
            if travelled is None
            else travelled.known_defects
        )
    oldest = [f.oldest_unanswered for f in facts if f.oldest_unanswered is not None]
    return Flags(
        unanswered_for_seconds=(now - min(oldest)).total_seconds() if oldest else None,
        promise_broken=any(
            f.broken or (f.pending_due is not None and now >= f.pending_due) for f in facts
        ),
        replace_dont_repair=any(f.replace_dont_repair for f in facts),
        known_defects=known_defects,
        erased=journeys[0].erased_at is not None,
        deadline_warning=any(f.cases.warning(now) or f.promises.warning(now) for f in facts),
        deadline_breached=any(f.cases.breached(now) for f in facts),
        anomalies=sum(len(j.anomalies) for j in journeys),
    )


def build_customer_view(
    store: JourneyStore,
    customer_id: str,
    *,
    rules: ServiceRules,
    now: datetime,
    page: int | None = 1,
    page_size: int = 50,
    limit: int = LIST_LIMIT,
    timeline_cursor: str | None = None,
    cut: Cut | None = None,
) -> CustomerView | None:
    """The merged view of ``customer_id`` and every id linked to it, or None if unknown.

    Bounded at any size: each list holds at most ``limit`` items (open items first), with
    its total and a cursor to the rest; the timeline holds one page.

    With ``cut``: the view back in time (projections.travel), judged at the cut's moment
    (``now`` is not used); None when the customer had no touchpoint by then."""
    if cut is None:
        return _view_now(
            store,
            customer_id,
            rules=rules,
            now=now,
            page=page,
            page_size=page_size,
            limit=limit,
            timeline_cursor=timeline_cursor,
        )
    travelled = _travelled(store, customer_id, cut)
    if travelled is None:
        return None
    now = cut.at
    journeys, touchpoints = _journeys(store, customer_id, travelled)
    if not journeys:
        return None
    lists: dict[str, Any] = {}
    for name in LIST_NAMES:
        window = _page(name, journeys, after=None, limit=limit)
        if name == "orders":
            lists[name] = dict(item for _, item in window.items)
        else:
            lists[name] = [_convert(name, cid, item, rules, now) for cid, item in window.items]
        lists[f"{name}_total"] = window.total
        lists[f"{name}_next"] = window.next
    shown = None
    for j in journeys:
        shown = shown or display_name(j)
    return CustomerView(
        customer_id=customer_id,
        linked_customer_ids=[j.customer_id for j in journeys[1:]],
        possible_matches=possible_matches(store, [j.customer_id for j in journeys]),
        name=shown,
        flags=_flags(store, journeys, rules, now, travelled=travelled),
        contacts=sum(j.contacts for j in journeys),
        touchpoints=touchpoints,
        erased_at=journeys[0].erased_at,
        timeline=_timeline(
            store,
            journeys,
            page=page,
            page_size=page_size,
            cursor=timeline_cursor,
            travelled=travelled,
        ),
        computed_at=now,
        time_travel=None if cut is None else TimeTravelOut(kind=cut.kind, at=cut.at),
        **lists,
    )


@dataclass(frozen=True)
class _AtAnyTime:
    """Everything of a view that depends on the folded state and not on the moment: kept
    per state of the customers it shows, so a view read again judges only its deadlines."""

    lists: dict[str, Any]  # each list's page, total and cursor (cases and promises apart)
    cases: dict[str, list[tuple[CaseOut, Deadline | None]]]  # open_cases, closed_cases
    promises: list[tuple[PromiseOut, Promise]]
    name: str | None
    contacts: int
    timeline: TimelinePage


def _at_any_time(
    store: JourneyStore,
    aggs: list[CustomerJourney],
    rules: ServiceRules,
    *,
    page: int | None,
    page_size: int,
    limit: int,
    timeline_cursor: str | None,
) -> _AtAnyTime:
    journeys = [a.journey for a in aggs]
    cache = _derived(journeys[0])
    # (generation, touchpoints) names a customer's committed state: its rows (the timeline)
    # change only with it.
    key = (
        "view",
        tuple((a.customer_id, a.generation, a.touchpoints, id(a.journey)) for a in aggs),
        id(rules),
        page,
        page_size,
        limit,
        timeline_cursor,
    )
    found: _AtAnyTime | None = cache.get(key)
    if found is not None:
        return found
    lists: dict[str, Any] = {}
    cases: dict[str, list[tuple[CaseOut, Deadline | None]]] = {}
    promises: list[tuple[PromiseOut, Promise]] = []
    for name in LIST_NAMES:
        window = _page(name, journeys, after=None, limit=limit)
        if name == "orders":
            lists[name] = dict(item for _, item in window.items)
        elif name in ("open_cases", "closed_cases"):
            cases[name] = [_case_at_any_time(cid, k, rules) for cid, k in window.items]
        elif name == "promises":
            promises = [(_promise_at_any_time(cid, p, rules), p) for cid, p in window.items]
        else:
            lists[name] = [
                _convert(name, cid, item, rules, _NO_MOMENT) for cid, item in window.items
            ]
        lists[f"{name}_total"] = window.total
        lists[f"{name}_next"] = window.next
    shown = None
    for j in journeys:
        shown = shown or display_name(j)
    found = _AtAnyTime(
        lists=lists,
        cases=cases,
        promises=promises,
        name=shown,
        contacts=sum(j.contacts for j in journeys),
        timeline=_timeline(store, journeys, page=page, page_size=page_size, cursor=timeline_cursor),
    )
    if len(cache) > 64:  # other pages and link sets of the same journey: keep it bounded
        cache.clear()
    cache[key] = found
    return found


# Lists other than cases and promises never look at the moment.
_NO_MOMENT = datetime.min


def _view_now(
    store: JourneyStore,
    customer_id: str,
    *,
    rules: ServiceRules,
    now: datetime,
    page: int | None,
    page_size: int,
    limit: int,
    timeline_cursor: str | None,
) -> CustomerView | None:
    """Today's view: the parts kept per folded state (``_at_any_time``), the look-ups
    across customers kept per store version, and only what depends on ``now`` made anew."""
    version = store.read_version()
    aggs = _current(store, customer_id, version)
    if not aggs:
        return None
    journeys = [a.journey for a in aggs]
    ids = tuple(a.customer_id for a in aggs)
    base = _at_any_time(
        store,
        aggs,
        rules,
        page=page,
        page_size=page_size,
        limit=limit,
        timeline_cursor=timeline_cursor,
    )
    lists = dict(base.lists)
    for name, items in base.cases.items():
        lists[name] = [_case_now(out, deadline, now) for out, deadline in items]
    lists["promises"] = [_promise_now(out, p, rules, now) for out, p in base.promises]
    return CustomerView(
        customer_id=customer_id,
        linked_customer_ids=list(ids[1:]),
        possible_matches=store.memo(
            version, ("matches", ids), lambda: possible_matches(store, list(ids))
        ),
        name=base.name,
        flags=_flags(
            store,
            journeys,
            rules,
            now,
            known_defects=store.memo(
                version, ("defects", ids), lambda: _unreached_defects(store, list(ids))
            ),
        ),
        contacts=base.contacts,
        touchpoints=sum(a.touchpoints for a in aggs),
        erased_at=journeys[0].erased_at,
        timeline=base.timeline,
        computed_at=now,
        time_travel=None,
        **lists,
    )


def customer_list(
    store: JourneyStore,
    customer_id: str,
    name: str,
    *,
    rules: ServiceRules,
    now: datetime,
    cursor: str | None = None,
    limit: int = LIST_LIMIT,
    cut: Cut | None = None,
) -> ItemPage | None:
    """One page of one list of the view (``name`` in ``LIST_NAMES``), after ``cursor``
    (with ``cut``: of the view back in time, judged at its moment)."""
    travelled = _travelled(store, customer_id, cut)
    now = now if cut is None else cut.at
    journeys, _ = _journeys(store, customer_id, travelled)
    if not journeys or (cut is not None and travelled is None):
        return None
    after = decode_cursor(name, cursor) if cursor is not None else None
    window = _page(name, journeys, after=after, limit=limit)
    if name == "orders":
        items = [{"order_id": k, "what": v} for _, (k, v) in window.items]
    else:
        items = [
            _convert(name, cid, item, rules, now).model_dump(mode="json")
            for cid, item in window.items
        ]
    return ItemPage(name=name, total=window.total, items=items, next=window.next)


def customer_cases(
    store: JourneyStore,
    customer_id: str,
    status: Literal["open", "closed"],
    *,
    rules: ServiceRules,
    now: datetime,
    cursor: str | None = None,
    limit: int = LIST_LIMIT,
    cut: Cut | None = None,
) -> CasePage | None:
    """One page of a customer's open (or closed) cases, newest first, after ``cursor``
    (with ``cut``: of the view back in time, judged at its moment)."""
    travelled = _travelled(store, customer_id, cut)
    now = now if cut is None else cut.at
    journeys, _ = _journeys(store, customer_id, travelled)
    if not journeys or (cut is not None and travelled is None):
        return None
    name = f"{status}_cases"
    after = decode_cursor(name, cursor) if cursor is not None else None
    window = _page(name, journeys, after=after, limit=limit)
    return CasePage(
        status=status,
        total=window.total,
        items=[_case_out(cid, k, rules, now) for cid, k in window.items],
        next=window.next,
    )


def customer_timeline(
    store: JourneyStore,
    customer_id: str,
    *,
    page: int | None,
    page_size: int,
    cursor: str | None,
    cut: Cut | None = None,
) -> TimelinePage | None:
    travelled = _travelled(store, customer_id, cut)
    journeys, _ = _journeys(store, customer_id, travelled)
    if not journeys or (cut is not None and travelled is None):
        return None
    return _timeline(
        store, journeys, page=page, page_size=page_size, cursor=cursor, travelled=travelled
    )


def customer_case(
    store: JourneyStore,
    customer_id: str,
    case_id: str,
    *,
    rules: ServiceRules,
    now: datetime,
    cut: Cut | None = None,
) -> tuple[CaseOut, SubmissionOut | None, list[TimelineOut]] | None:
    """One case of a customer (or of one linked to them) in full: its whole conversation,
    what was submitted for it, and its timeline (with ``cut``: back in time)."""
    travelled = _travelled(store, customer_id, cut)
    now = now if cut is None else cut.at
    journeys, _ = _journeys(store, customer_id, travelled)
    if cut is not None and travelled is None:
        return None
    for j in journeys:
        case = j.cases.get(case_id)
        if case is None:
            continue
        submission = next((s for s in j.submissions if s.case_id == case_id), None)
        if travelled is None:
            keys = [k for k in _generations(store, [j]) if k[0] == j.customer_id]
            entries = store.timeline(keys, case_id=case_id, limit=CASE_TIMELINE_LIMIT)
        else:
            entries = [
                (e, cid)
                for e, cid in travelled.timeline(case_id=case_id, limit=CASE_TIMELINE_LIMIT)
                if cid == j.customer_id
            ]
        return (
            _case_out(j.customer_id, case, rules, now, messages=None),
            _submission_out(j, submission) if submission else None,
            [_timeline_out(e, cid) for e, cid in entries],
        )
    return None
