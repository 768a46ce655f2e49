"""Fold the log into the facts service metrics are made of: cases and their reply waits,
promises, reviews, ratings and replacements.

Why a fold of our own over the log, not the store's projections: metrics are an analyst's
question about history, and the log is the record (the store may lag, be rebuilding, or not
exist on an analyst's laptop). And every definition here is *order-independent* — minima,
counts of distinct event ids, "the first by (occurred_at, cause rank, event_id)" — so the
answer does not depend on arrival order, duplicates or late reports, and the same
definitions can be written in plain SQL over an export (tests/integration/test_metrics_sql.py
checks they agree). Memory grows with the cases, promises, reviews and shipments in the log
(a few small records each), never with the touchpoints themselves: order, delivery and
identity traffic leaves only a shipment-to-order entry behind.

Definitions are in docs/metrics.md.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import structlog

from consumers.log import Log, Message
from domain import catalogue as c
from domain.bounds import DEFAULT_MAX_FUTURE, Bounds
from domain.business_hours import BusinessHours
from domain.envelope import Touchpoint, decode
from domain.errors import InvalidEvent
from domain.journey import fact_order

__all__ = [
    "CaseFact",
    "Facts",
    "PromiseFact",
    "RatingFact",
    "ReplacementFact",
    "ReviewFact",
    "SurveyFact",
    "Wait",
    "fold",
    "read_log",
]

logger = structlog.get_logger(__name__)

# (occurred_at, cause-before-effect rank, event_id): the fold's own order, see fact_order.
Key = tuple[datetime, int, str]

_CONTACTS = (c.InquiryReceived, c.ComplaintFiled, c.SignupRequested)
_CASE_KIND = {
    "InquiryReceived": "inquiry",
    "ComplaintFiled": "complaint",
    "SignupRequested": "signup",
}


@dataclass
class CaseFact:
    """One case (a customer id and a case id) with its derived figures."""

    customer_id: str
    case_id: str
    kind: str
    opened_at: datetime
    channel: str
    team: str | None
    product: str | None
    contacts: int
    first_reply_at: datetime | None
    resolved: bool  # its last resolve/reopen/contact is a resolution
    ever_resolved: bool
    reopened: bool


@dataclass
class Wait:
    """The customer waiting for a real answer: from the opening contact to the first reply
    (``first``), or from a message after one of our replies to the next reply (``next``)."""

    customer_id: str
    case_id: str
    kind: str  # first | next
    started_at: datetime
    replied_at: datetime | None
    seconds: float | None  # business seconds where the case's team has a calendar
    business_hours: bool
    channel: str
    team: str | None
    product: str | None


@dataclass
class PromiseFact:
    customer_id: str
    promise_id: str
    kind: str
    implied: bool
    made_at: datetime
    due_by: datetime
    case_id: str | None
    fulfilled_at: datetime | None
    withdrawn_at: datetime | None
    channel: str | None
    team: str | None
    product: str | None
    cancelled_at: datetime | None = None  # its order was cancelled (OrderCancelled)

    def status(self, as_of: datetime) -> str:
        """kept, kept_late, cancelled, broken or open, judged by event time at ``as_of``."""
        if self.fulfilled_at is not None:
            return "kept" if self.fulfilled_at <= self.due_by else "kept_late"
        if self.withdrawn_at is not None or self.cancelled_at is not None:
            return "cancelled"
        return "broken" if self.due_by <= as_of else "open"


@dataclass
class ReviewFact:
    customer_id: str
    review_id: str
    platform: str
    posted_at: datetime
    score: int | None
    answered_at: datetime | None

    @property
    def answer_seconds(self) -> float | None:
        if self.answered_at is None:
            return None
        return max(0.0, (self.answered_at - self.posted_at).total_seconds())


@dataclass
class SurveyFact:
    """A feedback request (survey, review invitation) and the customer's first answer."""

    customer_id: str
    feedback_id: str
    requested_at: datetime
    answered_at: datetime | None
    channel: str | None
    team: str | None
    product: str | None

    @property
    def answer_seconds(self) -> float | None:
        if self.answered_at is None:
            return None
        return max(0.0, (self.answered_at - self.requested_at).total_seconds())


@dataclass
class RatingFact:
    customer_id: str
    case_id: str | None
    rated_at: datetime
    score: int
    channel: str | None
    team: str | None
    product: str | None


@dataclass
class ReplacementFact:
    """The first replacement of a product for a customer, and the repairs before it."""

    customer_id: str
    product: str
    shipped_at: datetime
    repairs_before: int
    case_id: str | None
    channel: str | None
    team: str | None


@dataclass
class Facts:
    """Everything the metrics are computed from, for one period of interest."""

    since: datetime
    until: datetime
    cases: list[CaseFact]
    waits: list[Wait]
    promises: list[PromiseFact]
    reviews: list[ReviewFact]
    ratings: list[RatingFact]
    replacements: list[ReplacementFact]
    surveys: list[SurveyFact]
    # (person, UTC day) for every day in [since, until) a person had a touchpoint
    active_days: set[tuple[str, date]]
    person: dict[str, str]  # customer id -> the person's id (identity merges applied)
    touchpoints: int = 0
    skipped: int = 0  # messages that are no valid touchpoint (the engine dead-letters them)


# ------------------------------------------------------------------ the fold's state


@dataclass
class _Case:
    contacts: dict[str, tuple[Key, str, str, str | None, str | None]] = field(
        default_factory=dict
    )  # event id -> (key, type, channel, team, product)
    replies: dict[str, tuple[Key, str]] = field(default_factory=dict)  # -> (key, team)
    resolutions: dict[str, Key] = field(default_factory=dict)
    reopens: dict[str, Key] = field(default_factory=dict)


@dataclass(frozen=True)
class _Made:
    key: Key
    kind: str
    due_by: datetime
    case_id: str | None
    implied: bool = False
    order_id: str | None = None  # kept by a delivery of the order (or its hand-over)
    shipment_id: str | None = None  # kept by a delivery of this shipment
    seller: str | None = None  # a hand-off promise: kept by this seller's hand-over


@dataclass
class _Promise:
    made: _Made | None = None
    kept: datetime | None = None
    withdrawn: datetime | None = None


def _min(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


class _Fold:
    def __init__(self, since: datetime, until: datetime) -> None:
        self.since, self.until = since, until
        self.cases: dict[tuple[str, str], _Case] = {}
        self.promises: dict[tuple[str, str], _Promise] = {}
        self.ship_order: dict[tuple[str, str], str] = {}
        self.delivered: dict[tuple[str, str], datetime] = {}
        self.reviews: dict[tuple[str, str], tuple[Key, str, int | None]] = {}
        self.answers: dict[tuple[str, str], datetime] = {}
        self.ratings: dict[str, tuple[str, str | None, datetime, int]] = {}
        self.repairs: dict[tuple[str, str], dict[str, Key]] = {}
        self.replaced: dict[tuple[str, str], dict[str, tuple[Key, str | None]]] = {}
        self.cancelled: dict[tuple[str, str], datetime] = {}  # order -> cancelled at
        # (customer, order, seller or None) -> first hand-over to a carrier
        self.handed_over: dict[tuple[str, str, str | None], datetime] = {}
        self.surveys: dict[tuple[str, str], tuple[Key, str | None]] = {}
        self.survey_answers: dict[tuple[str, str], datetime] = {}
        self.parent: dict[str, str] = {}
        self.active: set[tuple[str, date]] = set()
        self.touchpoints = 0

    def _case(self, cid: str, case_id: str) -> _Case:
        case = self.cases.get((cid, case_id))
        if case is None:
            case = self.cases[(cid, case_id)] = _Case()
        return case

    def _promise(self, cid: str, pid: str) -> _Promise:
        promise = self.promises.get((cid, pid))
        if promise is None:
            promise = self.promises[(cid, pid)] = _Promise()
        return promise

    def _made(
        self,
        cid: str,
        pid: str,
        made: _Made,
    ) -> None:
        promise = self._promise(cid, pid)
        if promise.made is None or made.key < promise.made.key:
            promise.made = made

    def _answered(self, cid: str, feedback_id: str, at: datetime) -> None:
        self.survey_answers[(cid, feedback_id)] = _min(
            self.survey_answers.get((cid, feedback_id)), at
        )

    def _root(self, cid: str) -> str:
        root = cid
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while cid != root:  # path compression
            cid, self.parent[cid] = self.parent[cid], root
        return root

    def apply(self, tp: Touchpoint) -> None:
        self.touchpoints += 1
        cid, at, eid, d = tp.customer_id, tp.occurred_at, str(tp.event_id), tp.data
        key = fact_order(tp)
        if self.since <= at < self.until:
            self.active.add((cid, at.astimezone(UTC).date()))
        match d:
            case c.InquiryReceived() | c.ComplaintFiled() | c.SignupRequested():
                product = getattr(d, "product", None)
                self._case(cid, d.case_id).contacts.setdefault(
                    eid, (key, tp.type, d.channel, d.team, product)
                )
            case c.ReplySent():
                self._case(cid, d.case_id).replies.setdefault(eid, (key, d.team))
            case c.CaseResolved():
                self._case(cid, d.case_id).resolutions.setdefault(eid, key)
            case c.CaseReopened():
                self._case(cid, d.case_id).reopens.setdefault(eid, key)
            case c.SatisfactionRated():
                self.ratings.setdefault(eid, (cid, d.case_id, at, d.score))
                if d.feedback_id is not None:
                    self._answered(cid, d.feedback_id, at)
            case c.FeedbackRequested():
                seen_request = self.surveys.get((cid, d.feedback_id))
                if seen_request is None or key < seen_request[0]:
                    self.surveys[(cid, d.feedback_id)] = (key, d.case_id)
            case c.PromiseMade():
                self._made(cid, d.promise_id, _Made(key, d.kind, d.due_by, d.case_id))
            case c.OrderPlaced():
                due = d.promised_delivery_by
                if d.promised_delivery_date is not None and d.time_zone is not None:
                    due = c.end_of_day(d.promised_delivery_date, d.time_zone)
                if due is not None:
                    made = _Made(key, "delivery", due, None, implied=True, order_id=d.order_id)
                    self._made(cid, f"delivery:{d.order_id}", made)
                # each seller's hand-off deadline (the earliest of its lines) is a promise
                handoffs: dict[str | None, datetime] = {}
                for line in d.lines:
                    if line.handoff_by is not None:
                        seen_by = handoffs.get(line.seller)
                        handoffs[line.seller] = _min(seen_by, line.handoff_by)
                for seller, by in handoffs.items():
                    pid = f"handoff:{d.order_id}" + (f":{seller}" if seller else "")
                    made = _Made(key, "handoff", by, None, True, d.order_id, seller=seller)
                    self._made(cid, pid, made)
            case c.OrderCancelled():
                self.cancelled[(cid, d.order_id)] = _min(self.cancelled.get((cid, d.order_id)), at)
            case c.DeliveryRescheduled():
                due = d.deliver_by
                if d.deliver_on is not None and d.time_zone is not None:
                    due = c.end_of_day(d.deliver_on, d.time_zone)
                if due is not None:
                    pid = d.promise_id or f"reschedule:{d.shipment_id}:{at.isoformat()}"
                    made = _Made(key, "delivery", due, None, shipment_id=d.shipment_id)
                    self._made(cid, pid, made)
            case c.OrderShipped():
                self.ship_order[(cid, d.shipment_id)] = d.order_id
                handed = (cid, d.order_id, d.seller)
                self.handed_over[handed] = _min(self.handed_over.get(handed), at)
            case c.Delivered():
                self.delivered[(cid, d.shipment_id)] = _min(
                    self.delivered.get((cid, d.shipment_id)), at
                )
            case c.PromiseKept():
                promise = self._promise(cid, d.promise_id)
                promise.kept = _min(promise.kept, at)
            case c.PromiseWithdrawn():
                promise = self._promise(cid, d.promise_id)
                promise.withdrawn = _min(promise.withdrawn, at)
            case c.PublicReviewPosted():
                seen = self.reviews.get((cid, d.review_id))
                if seen is None or key < seen[0]:
                    self.reviews[(cid, d.review_id)] = (key, d.platform, d.score)
                if d.feedback_id is not None:
                    self._answered(cid, d.feedback_id, at)
            case c.ReviewAnswered():
                self.answers[(cid, d.review_id)] = _min(self.answers.get((cid, d.review_id)), at)
            case c.RepairCompleted():
                self.repairs.setdefault((cid, d.product), {}).setdefault(eid, key)
            case c.ReplacementShipped():
                self.replaced.setdefault((cid, d.product), {}).setdefault(eid, (key, d.case_id))
            case c.IdentityLinked() if d.kind == "customer_id" and d.value != cid:
                a, b = self._root(cid), self._root(d.value)
                if a != b:
                    # the smaller id names the person: the same whichever link came first
                    lo, hi = sorted((a, b))
                    self.parent[hi] = lo
            case _:
                pass

    # -------------------------------------------------------------- results

    def facts(
        self,
        calendars: Mapping[str, BusinessHours],
        skipped: int,
        resolve: Callable[[str], str] | None = None,
    ) -> Facts:
        person = resolve or self._root
        cases: list[CaseFact] = []
        waits: list[Wait] = []
        attrs: dict[tuple[str, str], tuple[str, str | None, str | None]] = {}
        for (cid, case_id), case in self.cases.items():
            if not case.contacts:
                continue  # replies to a case nobody opened: an anomaly, not a case
            fact, case_waits = _case_fact(cid, case_id, case, calendars)
            cases.append(fact)
            waits.extend(case_waits)
            attrs[(cid, case_id)] = (fact.channel, fact.team, fact.product)

        def of_case(cid: str, case_id: str | None) -> tuple[str | None, str | None, str | None]:
            if case_id is None:
                return None, None, None
            return attrs.get((cid, case_id), (None, None, None))

        shipped_orders: dict[tuple[str, str], datetime] = {}
        for (cid, ship), order in self.ship_order.items():
            if (cid, ship) in self.delivered:
                shipped_orders[(cid, order)] = _min(
                    shipped_orders.get((cid, order)), self.delivered[(cid, ship)]
                )
        promises = []
        for (cid, pid), p in self.promises.items():
            m = p.made
            if m is None:
                continue  # kept or withdrawn, never made: an anomaly, not a promise
            fulfilled = p.kept
            cancelled: datetime | None = None
            if m.kind == "handoff" and m.order_id is not None:
                # handed over by this seller, or in a hand-over naming no seller
                for seller in {m.seller, None}:
                    if (cid, m.order_id, seller) in self.handed_over:
                        fulfilled = _min(fulfilled, self.handed_over[(cid, m.order_id, seller)])
            elif m.order_id is not None and (cid, m.order_id) in shipped_orders:
                fulfilled = _min(fulfilled, shipped_orders[(cid, m.order_id)])
            if m.shipment_id is not None and (cid, m.shipment_id) in self.delivered:
                fulfilled = _min(fulfilled, self.delivered[(cid, m.shipment_id)])
            # cancelled with its order: the promise's order, or the order of its shipment
            of_shipment = self.ship_order.get((cid, m.shipment_id or ""))
            for order_id in {m.order_id, of_shipment}:
                if order_id is not None and (cid, order_id) in self.cancelled:
                    cancelled = _min(cancelled, self.cancelled[(cid, order_id)])
            promises.append(
                PromiseFact(
                    cid,
                    pid,
                    m.kind,
                    m.implied,
                    m.key[0],
                    m.due_by,
                    m.case_id,
                    fulfilled,
                    p.withdrawn,
                    *of_case(cid, m.case_id),
                    cancelled_at=cancelled,
                )
            )
        surveys = []
        for (cid, fid), (key, survey_case) in self.surveys.items():
            channel, team, product = of_case(cid, survey_case)
            surveys.append(
                SurveyFact(
                    cid, fid, key[0], self.survey_answers.get((cid, fid)), channel, team, product
                )
            )
        reviews = [
            ReviewFact(cid, rid, platform, key[0], rating, self.answers.get((cid, rid)))
            for (cid, rid), (key, platform, rating) in self.reviews.items()
        ]
        ratings = [
            RatingFact(cid, rated_case, at, score, *of_case(cid, rated_case))
            for cid, rated_case, at, score in self.ratings.values()
        ]
        replacements = []
        for (cid, product), shipped in self.replaced.items():
            first, shipped_case = min(shipped.values(), key=lambda v: v[0])
            repairs = self.repairs.get((cid, product), {})
            before = sum(1 for k in repairs.values() if k < first)
            channel, team, _ = of_case(cid, shipped_case)
            replacements.append(
                ReplacementFact(cid, product, first[0], before, shipped_case, channel, team)
            )
        ids = {cid for cid, _ in self.active} | {cid for cid, _ in self.cases}
        return Facts(
            since=self.since,
            until=self.until,
            cases=cases,
            waits=waits,
            promises=promises,
            reviews=reviews,
            ratings=ratings,
            replacements=replacements,
            surveys=surveys,
            active_days={(person(cid), day) for cid, day in self.active},
            person={cid: person(cid) for cid in ids},
            touchpoints=self.touchpoints,
            skipped=skipped,
        )


def _case_fact(
    cid: str, case_id: str, case: _Case, calendars: Mapping[str, BusinessHours]
) -> tuple[CaseFact, list[Wait]]:
    first_key, first_type, channel, team, product = min(case.contacts.values())
    replies = sorted(case.replies.values())
    if team is None and replies:
        team = replies[0][1]
    calendar = calendars.get(team) if team is not None else None

    def seconds(start: datetime, end: datetime) -> float:
        if calendar is not None:
            return calendar.open_between(start, end).total_seconds()
        return max(0.0, (end - start).total_seconds())

    first_reply = replies[0][0][0] if replies else None
    waits = [
        Wait(
            cid,
            case_id,
            "first",
            first_key[0],
            first_reply,
            None if first_reply is None else seconds(first_key[0], first_reply),
            calendar is not None,
            channel,
            team,
            product,
        )
    ]
    # Next-reply waits: a message (or a reopening) right after one of our replies starts
    # one; the next reply after it ends it.
    items: list[tuple[Key, str]] = sorted(
        [(k[0], "contact") for k in case.contacts.values()]
        + [(k[0], "reply") for k in case.replies.values()]
        + [(k, "reopen") for k in case.reopens.values()]
    )
    for i, (key, what) in enumerate(items):
        if what == "reply" or key == first_key or i == 0 or items[i - 1][1] != "reply":
            continue
        replied = next((k[0] for k, w in items[i + 1 :] if w == "reply"), None)
        waits.append(
            Wait(
                cid,
                case_id,
                "next",
                key[0],
                replied,
                None if replied is None else seconds(key[0], replied),
                calendar is not None,
                channel,
                team,
                product,
            )
        )
    ends = sorted(
        [(k[0], "contact") for k in case.contacts.values()]
        + [(k, "resolved") for k in case.resolutions.values()]
        + [(k, "reopen") for k in case.reopens.values()]
    )
    first_resolution = min(case.resolutions.values(), default=None)
    reopened = bool(case.reopens) or (
        first_resolution is not None
        and any(k[0] > first_resolution for k in case.contacts.values())
    )
    fact = CaseFact(
        customer_id=cid,
        case_id=case_id,
        kind=_CASE_KIND[first_type],
        opened_at=first_key[0],
        channel=channel,
        team=team,
        product=product,
        contacts=len(case.contacts),
        first_reply_at=first_reply,
        resolved=ends[-1][1] == "resolved",
        ever_resolved=first_resolution is not None,
        reopened=reopened and first_resolution is not None,
    )
    return fact, waits


# ------------------------------------------------------------------ entry points


def fold(
    touchpoints: Iterable[Touchpoint],
    since: datetime,
    until: datetime,
    *,
    business_hours: Mapping[str, BusinessHours] | None = None,
    resolve: Callable[[str], str] | None = None,
    skipped: int = 0,
) -> Facts:
    """The facts of ``touchpoints`` (any order, duplicates allowed: the first copy of an
    event id counts) for [since, until). ``resolve``: customer id -> the person's id (the
    export's resolver, from the store); without it, ids linked by ``IdentityLinked`` of kind
    ``customer_id`` are one person, named by the smallest id."""
    state = _Fold(since, until)
    for tp in touchpoints:
        state.apply(tp)
    return state.facts(business_hours or {}, skipped, resolve)


def read_log(
    log: Log,
    topic: str,
    since: datetime,
    until: datetime,
    *,
    business_hours: Mapping[str, BusinessHours] | None = None,
    resolve: Callable[[str], str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 2000,
    timeout_s: float = 3600.0,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
) -> Facts:
    """Stream ``topic`` from the beginning to the head it had when reading began (outside
    any consumer group, like a rebuild: the engine's group is never disturbed) and fold it.
    Messages that are no valid touchpoint are counted in ``skipped`` (the engine
    dead-letters them; they count in no metric)."""
    skipped = [0]

    def touchpoints() -> Iterator[Touchpoint]:
        try:
            heads = log.high_watermarks(topic)
        except Exception:  # the topic does not exist yet: nothing to read
            logger.info("metrics: no topic to read", topic=topic)
            return
        total = sum(heads.values())
        todo = {p: hwm for p, hwm in heads.items() if hwm > 0}
        if not todo:
            return
        consumer = log.consumer(None, [topic], on_assign=lambda tps: {tp: 0 for tp in tps})
        done = 0
        deadline = time.monotonic() + timeout_s
        try:
            while todo:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic} took longer than {timeout_s} s")
                for msg in consumer.poll(timeout_s=1.0, max_records=batch_size):
                    hwm = todo.get(msg.partition)
                    if hwm is None or msg.offset >= hwm:
                        continue  # arrived after reading began
                    if msg.offset >= hwm - 1:
                        del todo[msg.partition]
                    done += 1
                    tp = _as_the_engine_reads(msg, max_future)
                    if tp is None:
                        skipped[0] += 1
                    else:
                        yield tp
                if progress is not None:
                    progress(done, total)
        finally:
            consumer.close()

    state = _Fold(since, until)
    for tp in touchpoints():
        state.apply(tp)
    return state.facts(business_hours or {}, skipped[0], resolve)


def _as_the_engine_reads(msg: Message, max_future: timedelta) -> Touchpoint | None:
    """The touchpoint, or None where the engine's runner dead-letters the message: its
    bounds judged at the message's log time (so any replay judges alike), its key equal to
    its customer id. The export skips exactly these too."""
    now = datetime.now(UTC)
    if msg.timestamp_ms > 0:
        with contextlib.suppress(OverflowError, ValueError, OSError):
            now = datetime.fromtimestamp(msg.timestamp_ms / 1000, UTC)
    try:
        tp = decode(msg.value, Bounds(now, max_future))
    except InvalidEvent:
        return None
    except Exception:  # decoding is pure: whatever it raises is the message's fault
        return None
    if msg.key is None or tp.customer_id.encode() != msg.key:
        return None
    return tp
