"""The journey model: touchpoints folded into what we know about one customer.

Pure: no I/O, no clock. ``Journey.apply`` takes one decoded touchpoint and updates the
state; everything time-related uses the touchpoint's ``occurred_at``. Deadlines that depend
on configurable service rules are computed later, at read time, by :mod:`domain.rules`.

Cases and promises live inside the customer's journey rather than in aggregates of their
own: the log orders touchpoints per customer (the Kafka key), not per case, so the customer
is the natural consistency boundary and one fold sees every fact about a case in order.
"""

from __future__ import annotations

import bisect
import operator
import pickle
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Literal, SupportsIndex

from domain import catalogue as c
from domain.envelope import Touchpoint, decode, encode, event_id_bytes

__all__ = [
    "CHECKPOINTS_KEPT",
    "CHECKPOINT_EVERY",
    "Anomaly",
    "Case",
    "Feedback",
    "Handoff",
    "Identity",
    "Journey",
    "Message",
    "Order",
    "Product",
    "Promise",
    "Reply",
    "Review",
    "Shipment",
    "Step",
    "Submission",
    "TimelineEntry",
    "fact_key",
    "fact_order",
    "said",
    "same_identity",
]

CaseKind = Literal["inquiry", "complaint", "signup"]
# pending: neither fulfilled nor recorded broken; kept: fulfilled by its deadline (by the
# fulfilment's occurred_at) and never recorded broken; broken: recorded broken, no fulfilment
# yet; kept_late: fulfilled, but after the deadline or after the break was recorded (late
# data: the fulfilment may have happened in time and been reported too late).
# (occurred_at, cause-before-effect rank, event_id): see ``fact_order``.
FactKey = tuple[datetime, int, str]
PromiseStatus = Literal["pending", "kept", "kept_late", "broken", "withdrawn", "cancelled"]
# Where a late fact refolds from (see ``Journey._refold``): a journey that has had one keeps
# its state every ``checkpoint_every(folded)`` facts in event-time order, the latest
# CHECKPOINTS_KEPT of them (a fact older than all of those refolds from the first touchpoint).
CHECKPOINT_EVERY = 64
CHECKPOINTS_KEPT = 8


def checkpoint_every(folded: int) -> int:
    """Facts between two checkpoints of a journey that has folded ``folded``: at least
    CHECKPOINT_EVERY, and an eighth of its history beyond. Keeping one pickles the whole
    state, which grows with the history: at a fixed spacing a 10,000-touchpoint customer
    spent far more pickling checkpoints than folding (a live worker stalled for minutes on
    one such customer's late facts). Spaced with the history, the cost per fact stays flat,
    the kept checkpoints span the whole history, and a late fact refolds at most an eighth
    of it plus the facts after it."""
    return max(CHECKPOINT_EVERY, folded // CHECKPOINTS_KEPT)


# (the key of the last fact it holds, the journey's state then, pickled)
Checkpoint = tuple[FactKey, bytes]

# The parts of a journey are slotted dataclasses: a heavy customer holds thousands of them in
# a writer's cache, and an instance dict each was a fifth of its weight. A slotted field has
# no class-level default for an older pickle to fall back on: a field added to one of them
# changes the snapshot layout (bump projections.integrity.SCHEMA_VERSION).


@dataclass(slots=True)
class Identity:
    kind: str
    value: str
    seen_at: datetime
    note: str | None = None
    # Checked by whoever recorded it (a verified IdentityLinked, our own order): only such
    # an identity merges customers and answers a lookup. A form's field, a serial as the
    # customer typed it or an unverified IdentityLinked is a claim, shown as a possible match.
    verified: bool = False


@dataclass(slots=True)
class Submission:
    """What the customer typed, verbatim."""

    case_id: str
    form: str
    channel: str
    products: list[str]
    fields: dict[str, str]
    submitted_at: datetime


@dataclass(slots=True)
class Reply:
    at: datetime
    agent: str
    team: str
    country: str
    channel: str
    awaiting_customer: bool
    body: str | None = None


@dataclass(slots=True)
class Message:
    """Something the customer wrote on a case, verbatim (body, complaint description)."""

    at: datetime
    channel: str
    subject: str | None
    text: str | None


@dataclass(slots=True)
class Review:
    """A public review and our answer, verbatim."""

    review_id: str
    platform: str
    posted_at: datetime
    rating: int | None = None
    text: str | None = None
    url: str | None = None
    answered_at: datetime | None = None
    answered_by: str | None = None
    answer: str | None = None
    title: str | None = None
    order_id: str | None = None
    feedback_id: str | None = None  # the review invitation (FeedbackRequested) it answers

    @property
    def status(self) -> str:
        return "answered" if self.answered_at is not None else "unanswered"


@dataclass(slots=True)
class Handoff:
    at: datetime
    from_team: str
    from_country: str
    to_team: str
    to_country: str
    copied_to: list[str]
    escalation: bool
    reason: str | None


@dataclass(slots=True)
class Step:
    """A fulfilment step of a case: repair, replacement, pickup, return, refund, goodwill."""

    at: datetime
    kind: str
    detail: str


@dataclass(slots=True)
class Case:
    case_id: str
    kind: CaseKind
    channel: str
    opened_at: datetime
    subject: str | None = None
    product: str | None = None
    team: str | None = None
    country: str | None = None
    copied_to: list[str] = field(default_factory=list)
    handoffs: list[Handoff] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    auto_acknowledgements: list[datetime] = field(default_factory=list)
    customer_messages: list[datetime] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    status: Literal["open", "resolved"] = "open"
    resolved_at: datetime | None = None
    resolution: str | None = None
    reopened: int = 0
    satisfaction: int | None = None
    # The reply clock: which target runs and since when; None while nothing is owed
    # (after a reply, and while waiting on the customer).
    reply_owed: Literal["first_reply", "next_reply"] | None = "first_reply"
    reply_owed_since: datetime | None = None
    awaiting_customer_since: datetime | None = None
    overdue_recorded: list[tuple[str, datetime]] = field(default_factory=list)
    # Reply clocks that stopped (a reply, a resolution): (target, since, stopped at). One
    # that stopped after its target was missed even if nobody recorded it in time: a
    # backfill folds the late reply before the keeper looks; the keeper records it then.
    stopped_clocks: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    # Missed reply deadlines an agent acknowledged: (target, due_by, agent, at).
    acknowledged: list[tuple[str, datetime, str, datetime]] = field(default_factory=list)
    # ClaimDecided: "approved" or "rejected", and why.
    claim_decision: str | None = None
    claim_reason: str | None = None

    def stop_reply_clock(self, at: datetime) -> None:
        if self.reply_owed is not None and self.reply_owed_since is not None:
            self.stopped_clocks.append((self.reply_owed, self.reply_owed_since, at))
        self.reply_owed = None
        self.reply_owed_since = None

    def overdue_recorded_between(self, target: str, since: datetime, until: datetime) -> bool:
        return any(t == target and since <= due <= until for t, due in self.overdue_recorded)

    @property
    def missed_settled(self) -> bool:
        """The running reply clock's breach is on the log and an agent acknowledged it: it
        leaves the agents' missed list (the keeper has nothing left to record for it)."""
        kind, since = self.reply_owed, self.reply_owed_since
        if kind is None or since is None:
            return False
        return any(t == kind and due >= since for t, due in self.overdue_recorded) and any(
            t == kind and due >= since for t, due, _, _ in self.acknowledged
        )

    @property
    def answered(self) -> bool:
        return bool(self.replies)


@dataclass(slots=True)
class Promise:
    promise_id: str
    what: str
    kind: str
    due_by: datetime
    made_by: str
    made_at: datetime
    case_id: str | None = None
    made_to: str | None = None
    implied: bool = False
    status: PromiseStatus = "pending"
    settled_at: datetime | None = None
    kept_late: bool = False
    fulfilled_at: datetime | None = None
    broken_recorded: bool = False
    # An agent acknowledged the missed deadline: (agent, at). Order-independent, so a
    # refold in event time gives the same.
    acknowledged: tuple[str, datetime] | None = None
    # What fulfils a delivery promise, by exact id: a Delivered of this shipment, or of any
    # shipment of this order. Never by words in ``what``.
    order_id: str | None = None
    shipment_id: str | None = None
    # Withdrawn (PromiseWithdrawn): (by whom, when, by event time).
    withdrawn: tuple[str, datetime] | None = None
    # Cancelled with its order (OrderCancelled): (reason, when, by event time).
    cancelled: tuple[str, datetime] | None = None
    # A seller's hand-off promise: whose; kept by OrderShipped of the order by that seller
    # (or of the whole order).
    seller: str | None = None
    # A promise made for a calendar day: the day and its zone (``due_by`` is its end there).
    due_date: date | None = None
    time_zone: str | None = None

    def settle(self) -> None:
        """Status from the facts alone, so the order they are folded in does not matter."""
        if self.fulfilled_at is None and self.cancelled is not None:
            self.status = "cancelled"
        elif self.fulfilled_at is None and self.withdrawn is not None:
            self.status = "withdrawn"
        elif self.fulfilled_at is None:
            self.status = "broken" if self.broken_recorded else "pending"
        elif self.broken_recorded or self.fulfilled_at > self.due_by:
            self.status = "kept_late"
        else:
            self.status = "kept"
        self.kept_late = self.status == "kept_late"

    @property
    def decided(self) -> bool:
        """Nothing left for the promise keeper to record: kept in time, on the log as broken,
        or withdrawn by its deadline (withdrawn later, its deadline passed first: a break)."""
        withdrawn_in_time = self.withdrawn is not None and self.withdrawn[1] <= self.due_by
        cancelled_in_time = self.cancelled is not None and self.cancelled[1] <= self.due_by
        return (
            self.broken_recorded or self.status == "kept" or withdrawn_in_time or cancelled_in_time
        )


@dataclass(slots=True)
class Product:
    """A product the customer owns, keyed by the best serial we have (or its name)."""

    name: str
    serial_as_given: str | None = None
    serial_corrected: str | None = None
    serial_confirmation_requested: bool = False
    serial_confirmed: bool = False
    batch: str | None = None
    order_id: str | None = None
    warranty_terms_shown: str | None = None
    repairs: int = 0
    replacements: int = 0
    complaints: int = 0

    @property
    def serial(self) -> str | None:
        return self.serial_corrected or self.serial_as_given


@dataclass(slots=True)
class Shipment:
    shipment_id: str
    carrier: str | None  # None: the shop does not know it
    order_id: str | None = None
    attempts: int = 0
    failures: list[str] = field(default_factory=list)
    rescheduled_to: str | None = None
    delivered_at: datetime | None = None
    delivered_location: str | None = None
    case_id: str | None = None  # a replacement's shipment: the case it belongs to
    expected_by: datetime | None = None  # what the carrier announced (not a promise)


# Payments an order's line lists (a voucher and a card is two; marketplaces split more).
_PAYMENTS_LISTED = 5


@dataclass(slots=True)
class Order:
    """What we know of an order beyond its summary line."""

    order_id: str
    placed_at: datetime
    channel: str
    what: str  # the summary of what was ordered and the total
    shipping_fee: str | None = None  # "49.00 SEK"
    sellers: list[str] = field(default_factory=list)
    payments: list[str] = field(default_factory=list)  # "credit_card, 3 instalments, 120 BRL"
    more_payments: int = 0  # approved beyond the first _PAYMENTS_LISTED: counted, not listed
    status: Literal["placed", "cancelled"] = "placed"
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None


@dataclass(slots=True)
class Feedback:
    """A feedback request (survey, review invitation) and when it was answered. Either side
    may be folded first."""

    feedback_id: str
    requested_at: datetime | None = None
    channel: str | None = None
    order_id: str | None = None
    case_id: str | None = None
    answered_at: datetime | None = None
    answered_with: str | None = None  # "review <id>" or "rating 4/5"


@dataclass(slots=True)
class TimelineEntry:
    at: datetime
    type: str
    summary: str
    event_id: str
    case_id: str | None = None
    text: str | None = None  # what was said or written, verbatim (see ``said``)


@dataclass(slots=True)
class Anomaly:
    at: datetime
    event_id: str
    type: str
    problem: str


def _pickled_by_fields(cls: type) -> None:
    """Pickle ``cls`` as its constructor and its field values in order: the pickle is the
    class once and a tuple per object, and loading one is a call of its ``__init__``. The
    default for a slotted class writes a dict of field names per object and loads it back
    one ``setattr`` at a time (a 10,000-touchpoint journey has ~10,000 parts: the cold
    read of a heavy customer spent half its time unpickling them)."""
    names = [f.name for f in fields(cls) if f.init]
    assert len(names) > 1 and len(names) == len(fields(cls)), cls
    values = operator.attrgetter(*names)

    def __reduce_ex__(self: object, protocol: SupportsIndex) -> tuple[type, tuple[object, ...]]:
        return cls, values(self)

    cls.__reduce_ex__ = __reduce_ex__  # type: ignore[assignment,method-assign]


for _part in (
    Identity,
    Submission,
    Reply,
    Message,
    Review,
    Handoff,
    Step,
    Case,
    Promise,
    Product,
    Shipment,
    Order,
    Feedback,
    TimelineEntry,
    Anomaly,
):
    _pickled_by_fields(_part)
del _part

_CONTACT_TYPES = (c.InquiryReceived, c.ComplaintFiled, c.SignupRequested)
# Whether a data type is one of them, by type: an isinstance against pydantic's classes is
# a Python call of their metaclass per class, three for every touchpoint (as ``_SAYS``).
_CONTACTS: dict[type, bool] = {}
# Identities and products are looked up by index from this many on (a heavy customer has
# hundreds: a scan per fact grew with its history); below, a scan is as quick, and most
# customers are small enough that an index would only cost memory in a writer's cache.
_INDEX_FROM = 24
# Short values a touchpoint carries (teams, countries, agents, carriers, channels, batches)
# recur in thousands of a heavy customer's replies, cases and shipments, and across the
# customers a writer keeps: each decoded touchpoint brings its own copy. Folded in, they
# share one (``_share_strings``); a snapshot's pickle keeps them shared.
_SHARED_UP_TO = 24


class _ProductIndex:
    """``Journey._products_index``: where in ``products`` (the list it was made for, of
    ``size`` products) each serial is, each name's first product, and by name those still
    without a serial (a superset: each is checked again). Never pickled: made again after
    a restore (``Journey.__getstate__``)."""

    __slots__ = ("by_serial", "first_by_name", "products", "serialless", "size")

    def __init__(
        self,
        products: list[Product],
        size: int,
        by_serial: dict[str, list[int]],
        first_by_name: dict[str, int],
        serialless: dict[str, deque[int]],
    ) -> None:
        self.products = products
        self.size = size
        self.by_serial = by_serial
        self.first_by_name = first_by_name
        self.serialless = serialless


class _PromiseIndex:
    """``Journey._promises_naming``: promise ids by the order and by the shipment they
    name, for ``promises`` (the dict it was made for, of ``size`` promises). Never pickled."""

    __slots__ = ("by_order", "by_shipment", "promises", "size")

    def __init__(self, promises: dict[str, Promise]) -> None:
        self.promises = promises
        self.size = len(promises)
        self.by_order: dict[str, list[str]] = {}
        self.by_shipment: dict[str, list[str]] = {}

    def add(self, promise: Promise) -> None:
        pid, order_id = promise.promise_id, promise.order_id
        # An order's own delivery promise is found by its id (``_promises_naming``): not
        # listed, a heavy customer's index is a fraction of the size.
        if order_id is not None and pid != f"delivery:{order_id}":
            _list_once(self.by_order, order_id, pid)
        if promise.shipment_id is not None:
            _list_once(self.by_shipment, promise.shipment_id, pid)


def _list_once(index: dict[str, list[str]], key: str, value: str) -> None:
    listed = index.setdefault(key, [])
    if value not in listed:
        listed.append(value)


class _ShipmentIndex:
    """``Journey._shipments_of``: shipment ids by order, for ``shipments`` (the dict it
    was made for; only ``Journey._ship_for_order`` gives a shipment its order). Never
    pickled."""

    __slots__ = ("by_order", "shipments")

    def __init__(self, shipments: dict[str, Shipment]) -> None:
        self.shipments = shipments
        self.by_order: dict[str, list[str]] = {}


def _share_strings(values: dict[str, object], depth: int = 1) -> None:
    """Replace the short strings among a model's field ``values`` (and those of the models
    in its lists, ``depth`` levels down) by the interpreter's one shared copy of each."""
    for name, value in values.items():
        if type(value) is str:
            if len(value) <= _SHARED_UP_TO:
                values[name] = sys.intern(value)
        elif depth and type(value) is list:
            for item in value:
                inner = getattr(item, "__dict__", None)
                if type(inner) is dict:
                    _share_strings(inner, depth - 1)


@dataclass
class Journey:
    """Everything we know about one customer id, folded from its touchpoints."""

    customer_id: str
    identities: list[Identity] = field(default_factory=list)
    submissions: list[Submission] = field(default_factory=list)
    cases: dict[str, Case] = field(default_factory=dict)
    promises: dict[str, Promise] = field(default_factory=dict)
    products: list[Product] = field(default_factory=list)
    shipments: dict[str, Shipment] = field(default_factory=dict)
    orders: dict[str, str] = field(default_factory=dict)  # order id -> summary
    linked_customers: list[str] = field(default_factory=list)
    outreach: dict[str, datetime] = field(default_factory=dict)  # defect id -> sent at
    defects_registered: list[str] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    contacts: int = 0
    reviews: dict[str, Review] = field(default_factory=dict)
    order_details: dict[str, Order] = field(default_factory=dict)
    feedback: dict[str, Feedback] = field(default_factory=dict)
    erased_at: datetime | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    # The touchpoints folded, in event-time order (see ``fact_order``), as their compact wire
    # envelopes. Status is decided from these in that order, never in arrival order: a fact
    # older than the newest one folded so far refolds the journey from the start (rare: late
    # carrier reports, backfills), so any arrival order gives the same journey.
    # Used on its own (tests, stories), a journey keeps every fact here. A store takes them
    # over as it persists them (``hand_over``): then only the facts folded since stay here,
    # ``earlier_facts`` fetches the others back for a refold, and memory stays flat.
    facts: list[tuple[FactKey, bytes]] = field(default_factory=list, repr=False, compare=False)
    last_fact: FactKey | None = field(default=None, repr=False, compare=False)
    # Called with an event time, it may leave out the facts that occurred before it.
    earlier_facts: Callable[[datetime | None], Iterable[bytes]] | None = field(
        default=None, repr=False, compare=False
    )
    # Set when a late fact refolded the journey: every timeline entry was made anew, and a
    # store rewrites them all (their summaries may have changed), not only the new ones.
    refolded: bool = field(default=False, repr=False, compare=False)
    # A journey that starts a new generation after an erasure starts erased.
    born_erased_at: datetime | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, object]:
        # A snapshot holds the folded state only: the facts and the timeline live in the
        # store's rows, and the fetcher is the store's, set again on load.
        state = dict(self.__dict__)
        state["earlier_facts"] = None
        state.pop("_derived", None)  # a reader's cache (projections.customer_view)
        state.pop("_ident_index", None)  # lookup indexes, rebuilt on first use
        state.pop("_product_index", None)
        state.pop("_promise_index", None)
        state.pop("_shipment_index", None)
        state.pop("_complaint_seen", None)
        state.pop("_linked_set", None)
        state.pop("_identity_heads", None)  # the store's (projections.rows)
        state.pop("_checkpoints", None)  # the writer's, for late facts (``_refold``)
        state.pop("_since_checkpoint", None)
        state.pop("_folded", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        # A snapshot taken before a field existed lacks it: start from a fresh journey's
        # defaults, so new state (orders, feedback, ...) reads empty, never missing.
        fresh = Journey(str(state.get("customer_id", ""))).__dict__
        self.__dict__.update({**fresh, **state})

    def hand_over(self) -> tuple[list[tuple[FactKey, bytes]], list[TimelineEntry], bool]:
        """Give the facts and timeline entries folded since the last hand-over to a store,
        and whether a refold remade every entry; keep only what the next fold needs."""
        out = (self.facts, self.timeline, self.refolded)
        self.facts, self.timeline, self.refolded = [], [], False
        return out

    # ------------------------------------------------------------------ helpers

    def _identity(
        self,
        kind: str,
        value: str | None,
        at: datetime,
        note: str | None = None,
        *,
        verified: bool = False,
    ) -> None:
        if not value:
            return
        if len(self.identities) < _INDEX_FROM:
            for ident in self.identities:
                if ident.kind == kind and ident.value == value:
                    # A claim confirmed later is verified from then on; never the other way.
                    ident.verified = ident.verified or verified
                    return
            self.identities.append(Identity(kind, value, at, note, verified))
            return
        index = self._identities_by_key()
        known = index.get((kind, value))
        if known is not None:
            known.verified = known.verified or verified
            return
        added = Identity(kind, value, at, note, verified)
        self.identities.append(added)
        index[(kind, value)] = added
        self.__dict__["_ident_index"] = (self.identities, len(self.identities), index)

    def _identities_by_key(self) -> dict[tuple[str, str], Identity]:
        """(kind, value) -> the first identity of ``identities`` with them. Kept beside the
        list (a heavy customer has hundreds: a scan per fact grew with its history) and made
        again whenever the list is not the one it was made for (an unlink, an erasure and a
        refold replace or empty it; only ``_identity`` appends to it)."""
        held = self.__dict__.get("_ident_index")
        if held is not None and held[0] is self.identities and held[1] == len(self.identities):
            return held[2]  # type: ignore[no-any-return]
        index: dict[tuple[str, str], Identity] = {}
        for ident in self.identities:
            index.setdefault((ident.kind, ident.value), ident)
        self.__dict__["_ident_index"] = (self.identities, len(self.identities), index)
        return index

    def _linked(self, customer_id: str) -> bool:
        """Whether ``linked_customers`` holds this id. Many links: a set kept beside the
        list, brought up to date with what was appended since (only ``IdentityLinked``
        appends; an unlink, an erasure and a refold replace the list, which starts it anew)."""
        linked = self.linked_customers
        if len(linked) < _INDEX_FROM:
            return customer_id in linked
        held: tuple[list[str], int, set[str]] | None = self.__dict__.get("_linked_set")
        if held is None or held[0] is not linked or held[1] > len(linked):
            held = (linked, 0, set())
        known = held[2]
        if held[1] < len(linked):
            known.update(linked[held[1] :])
            held = (linked, len(linked), known)
        self.__dict__["_linked_set"] = held
        return customer_id in known

    def _unlink(self, kind: str, value: str) -> bool:
        """Drop this customer's own link to the identifier; False when there was none."""
        key = same_identity(value)
        kept = [
            i for i in self.identities if not (i.kind == kind and same_identity(i.value) == key)
        ]
        removed = len(kept) < len(self.identities)
        self.identities = kept
        if kind == "customer_id":
            others = [o for o in self.linked_customers if same_identity(o) != key]
            removed = removed or len(others) < len(self.linked_customers)
            self.linked_customers = others
        return removed

    def _case(self, tp: Touchpoint, case_id: str | None, what: str) -> Case | None:
        if case_id is None:
            return None
        case = self.cases.get(case_id)
        if case is None:
            self._anomaly(tp, f"{what} for unknown case {case_id}")
        return case

    def _anomaly(self, tp: Touchpoint, problem: str) -> None:
        self.anomalies.append(Anomaly(tp.occurred_at, str(tp.event_id), tp.type, problem))

    def _product(self, name: str, serial: str | None = None) -> Product:
        """The first product with this serial; else the first of this name that has no
        serial yet (or any of this name, without a serial to match); else a new one."""
        return self.products[self._product_at(name, serial)]

    def _product_at(self, name: str, serial: str | None = None) -> int:
        """``_product``'s position in ``products``."""
        products = self.products
        if len(products) < _INDEX_FROM:
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
        index = self._products_index()
        if serial:
            # Positions only ever grow stale (a serial erased): each is checked again.
            for pos in index.by_serial.get(serial, ()):
                product = products[pos]
                if serial in (product.serial_as_given, product.serial_corrected):
                    return pos
        if serial is None:
            first = index.first_by_name.get(name)
            if first is not None:
                return first
        else:
            # The first of this name still without a serial: those that got one since they
            # were listed are dropped from the front as they are met (a product loses its
            # serial only to an erasure, which drops the index).
            waiting = index.serialless.get(name)
            while waiting:
                pos = waiting[0]
                product = products[pos]
                if product.serial is None:
                    if serial and product.serial_as_given is None:
                        product.serial_as_given = serial
                        bisect.insort(index.by_serial.setdefault(serial, []), pos)
                        waiting.popleft()
                    return pos
                waiting.popleft()
        self._add_product(Product(name=name, serial_as_given=serial))
        return len(products) - 1

    def _add_product(self, product: Product) -> None:
        """Append ``product``, and list it in the index when one is kept."""
        held: _ProductIndex | None = self.__dict__.get("_product_index")
        products = self.products
        products.append(product)
        if held is None or held.products is not products or held.size != len(products) - 1:
            return
        held.size = len(products)
        pos = held.size - 1
        held.first_by_name.setdefault(product.name, pos)
        for value in {product.serial_as_given, product.serial_corrected}:
            if value:
                held.by_serial.setdefault(value, []).append(pos)
        if product.serial is None:
            held.serialless.setdefault(product.name, deque()).append(pos)

    def _products_index(self) -> _ProductIndex:
        """Positions in ``products`` by serial (as given or corrected), the first by name,
        and by name those still without a serial, in list order: kept beside the list (a
        heavy customer has thousands; the walk of every product of a name, all with their
        serials, for each new order grew with its history). Made again when the list is not
        the one it was made for or grew elsewhere; an erasure drops it."""
        held: _ProductIndex | None = self.__dict__.get("_product_index")
        if held is not None and held.products is self.products and held.size == len(self.products):
            return held
        index = _ProductIndex(self.products, len(self.products), {}, {}, {})
        for pos, product in enumerate(self.products):
            index.first_by_name.setdefault(product.name, pos)
            for value in {product.serial_as_given, product.serial_corrected}:
                if value:
                    index.by_serial.setdefault(value, []).append(pos)
            if product.serial is None:
                index.serialless.setdefault(product.name, deque()).append(pos)
        self.__dict__["_product_index"] = index
        return index

    def _products_with_serial(self, serial: str) -> list[Product]:
        """Every product with this serial, as given or corrected, in list order."""
        if len(self.products) < _INDEX_FROM or not serial:
            return [p for p in self.products if serial in (p.serial_corrected, p.serial_as_given)]
        products = self.products
        return [
            products[pos]
            for pos in self._products_index().by_serial.get(serial, ())
            if serial in (products[pos].serial_corrected, products[pos].serial_as_given)
        ]

    def _correct_serial(self, pos: int, corrected: str) -> None:
        """Correct the serial of the product at ``pos``; list it under the corrected serial
        when an index is kept."""
        product = self.products[pos]
        product.serial_corrected = corrected
        held: _ProductIndex | None = self.__dict__.get("_product_index")
        if held is None:
            return
        if (
            held.products is not self.products
            or held.size != len(self.products)
            or product.serial is None  # an empty correction: it waits for a serial again
        ):
            self._serial_changed()
            return
        if corrected:
            listed = held.by_serial.setdefault(corrected, [])
            if pos not in listed:
                bisect.insort(listed, pos)

    def _serial_changed(self) -> None:
        self.__dict__.pop("_product_index", None)

    def _step(self, tp: Touchpoint, case_id: str | None, kind: str, detail: str) -> None:
        case = self._case(tp, case_id, kind)
        if case is not None:
            case.steps.append(Step(tp.occurred_at, kind, detail))
        elif case_id is None and not self._has_complaint():
            self._anomaly(tp, f"{kind} before any complaint or case")

    def _has_complaint(self) -> bool:
        """Whether any case is a complaint. Many cases: the answer is kept beside them
        (a heavy customer's step without a case walked every case it ever had), for the
        dict it was made for; ``_open_case``, the only place a case is made, updates it."""
        cases = self.cases
        if len(cases) < _INDEX_FROM:
            return any(k.kind == "complaint" for k in cases.values())
        held: tuple[dict[str, Case], bool] | None = self.__dict__.get("_complaint_seen")
        if held is not None and held[0] is cases:
            return held[1]
        seen = any(k.kind == "complaint" for k in cases.values())
        self.__dict__["_complaint_seen"] = (cases, seen)
        return seen

    def _fulfil(self, promise_id: str, at: datetime) -> bool:
        """Kept at ``at`` (the fulfilment's occurred_at, never its arrival); False when it
        was fulfilled already."""
        promise = self.promises.get(promise_id)
        if promise is None or promise.fulfilled_at is not None:
            return False
        promise.fulfilled_at = promise.settled_at = at
        promise.settle()
        return True

    def _put_promise(self, promise: Promise) -> None:
        """Every promise enters ``promises`` here, so an index kept beside them stays whole."""
        promises = self.promises
        before = len(promises)
        promises[promise.promise_id] = promise
        held: _PromiseIndex | None = self.__dict__.get("_promise_index")
        if held is not None and held.promises is promises and held.size == before:
            held.size = len(promises)
            held.add(promise)

    def _promises_naming(self, order_id: str | None, shipment_ids: Iterable[str]) -> list[Promise]:
        """The promises that may name this order or one of these shipments (a superset:
        callers check each as before). Few promises: all of them. Many (a heavy customer
        has thousands, and every hand-over and delivery looked at each): from an index kept
        beside them, made again when ``promises`` is not the dict it was made for or grew
        elsewhere (``_put_promise`` keeps it whole)."""
        promises = self.promises
        if len(promises) < _INDEX_FROM:
            return list(promises.values())
        held: _PromiseIndex | None = self.__dict__.get("_promise_index")
        if held is None or held.promises is not promises or held.size != len(promises):
            held = _PromiseIndex(promises)
            for promise in promises.values():
                held.add(promise)
            self.__dict__["_promise_index"] = held
        named: dict[str, None] = {}
        if order_id is not None:
            named[f"delivery:{order_id}"] = None
            named.update(dict.fromkeys(held.by_order.get(order_id, ())))
        for shipment_id in shipment_ids:
            named.update(dict.fromkeys(held.by_shipment.get(shipment_id, ())))
        # Ids only: a promise made again under its id replaced the one listed.
        return [promises[pid] for pid in named if pid in promises]

    def _ship_for_order(self, ship: Shipment, order_id: str) -> None:
        """The only place a shipment gets its order, so the index by order stays whole."""
        ship.order_id = order_id
        held: _ShipmentIndex | None = self.__dict__.get("_shipment_index")
        if held is not None and held.shipments is self.shipments:
            listed = held.by_order.setdefault(order_id, [])
            if ship.shipment_id not in listed:
                listed.append(ship.shipment_id)

    def _shipments_of(self, order_id: str) -> set[str]:
        """The ids of this order's shipments. Few shipments: a walk; many: an index kept
        beside them (a shipment listed under an order it left is checked again)."""
        shipments = self.shipments
        if len(shipments) < _INDEX_FROM:
            return {s.shipment_id for s in shipments.values() if s.order_id == order_id}
        held: _ShipmentIndex | None = self.__dict__.get("_shipment_index")
        if held is None or held.shipments is not shipments:
            held = _ShipmentIndex(shipments)
            for ship in shipments.values():
                if ship.order_id is not None:
                    held.by_order.setdefault(ship.order_id, []).append(ship.shipment_id)
            self.__dict__["_shipment_index"] = held
        return {
            sid
            for sid in held.by_order.get(order_id, ())
            if (known := shipments.get(sid)) is not None and known.order_id == order_id
        }

    def _open_case(self, tp: Touchpoint, case_id: str, kind: CaseKind, channel: str) -> Case:
        case = self.cases.get(case_id)
        if case is None:
            case = Case(case_id, kind, channel, tp.occurred_at, reply_owed_since=tp.occurred_at)
            case.team = getattr(tp.data, "team", None)
            case.country = getattr(tp.data, "country", None)
            self.cases[case_id] = case
            if kind == "complaint" and "_complaint_seen" in self.__dict__:
                self.__dict__["_complaint_seen"] = (self.cases, True)
        else:
            # The customer wrote again on an existing case: a reply is owed again.
            if case.status == "resolved":
                case.status = "open"
                case.reopened += 1
            if case.reply_owed is None:
                case.reply_owed = "next_reply" if case.replies else "first_reply"
                case.reply_owed_since = tp.occurred_at
            case.awaiting_customer_since = None
        case.customer_messages.append(tp.occurred_at)
        return case

    # ------------------------------------------------------------------ the fold

    def apply(self, tp: Touchpoint, raw: bytes | None = None) -> str:
        """Fold one touchpoint in, in event-time order among those folded so far; return
        its one-line summary for the timeline. ``raw`` is its wire envelope when the caller
        has it already (``encode(tp)``)."""
        if self.last_fact is None:
            self.born_erased_at = self.erased_at
        if raw is None:
            raw = encode(tp)
        key = fact_order(tp, raw)
        fact = (key, raw)
        if self.last_fact is not None and key < self.last_fact:
            bisect.insort(self.facts, fact, key=lambda f: f[0])
            self._refold(key)
            return next(e.summary for e in self.timeline if e.event_id == key[2])
        self.facts.append(fact)
        self.last_fact = key
        summary = self._apply_in_order(tp, key[2])
        self._checkpoint(key)
        return summary

    def apply_together(self, items: Sequence[tuple[Touchpoint, bytes | None]]) -> bool:
        """Fold a batch of one customer's touchpoints with a single refold when two or more
        of them are late (older than the newest fact folded before them): one refold from the
        earliest, where :meth:`apply` one by one refolds once per late fact. That is what a
        replayed history's keeper facts are — each open deadline decided at once, each dated
        months behind its customer's head. The journey ends as folding them one by one would
        leave it (the same facts in event-time order). Returns False, having changed
        nothing, when there is nothing to gain or the refold raised: then :meth:`apply` one
        by one folds them and blames the very touchpoint a failure comes from."""
        if self.last_fact is None or len(items) < 2:
            return False
        keys = [fact_order(tp, raw) for tp, raw in items]
        newest, late = self.last_fact, []
        for key in keys:
            if key < newest:
                late.append(key)
            else:
                newest = key
        if len(late) < 2:
            return False  # the common case (a rebuild, live traffic): nothing built for it
        before, last_before = list(self.facts), self.last_fact
        for key, (tp, raw) in zip(keys, items, strict=True):
            fact = (key, raw if raw is not None else encode(tp))
            bisect.insort(self.facts, fact, key=lambda f: f[0])
        self.last_fact = newest
        try:
            # _refold builds a new state aside and takes it over only at its end: if it
            # raises, this journey is as it was once its fact list is put back.
            self._refold(min(late))
        except Exception:
            self.facts, self.last_fact = before, last_before
            return False
        return True

    def _refold(self, late: FactKey) -> None:
        """Fold again, in event-time order, every fact after the latest checkpoint that
        holds nothing from ``late`` on (from the first touchpoint when there is none): a
        late fact costs the facts since that checkpoint, not the whole history. The
        timeline entries of those facts are made anew (``refolded``); earlier ones stand,
        since a fact's entry depends only on the facts before it."""
        kept: list[Checkpoint] = self.__dict__.get("_checkpoints") or []
        below = bisect.bisect_left(kept, late, key=lambda point: point[0])
        since: FactKey | None = kept[below - 1][0] if below else None
        earlier: list[tuple[FactKey, Touchpoint]] = []
        if self.earlier_facts is not None:
            for raw in self.earlier_facts(None if since is None else since[0]):
                old = decode(raw)
                key = fact_order(old)
                if since is None or key > since:
                    earlier.append((key, old))
        pending = [(key, decode(raw)) for key, raw in self.facts if since is None or key > since]
        if below:
            fresh = Journey.__new__(Journey)
            fresh.__setstate__(pickle.loads(kept[below - 1][1]))  # noqa: S301 -- our own bytes
        else:
            fresh = Journey(self.customer_id, erased_at=self.born_erased_at)
            fresh.__dict__["_folded"] = 0
        fresh.born_erased_at = self.born_erased_at
        # From now on this journey keeps checkpoints: it has had a late fact, and may again.
        fresh.__dict__["_checkpoints"] = kept[:below]
        fresh.__dict__["_since_checkpoint"] = 0
        for key, tp in sorted([*earlier, *pending], key=lambda f: f[0]):
            fresh._apply_in_order(tp)
            fresh._checkpoint(key)
        if since is not None:
            # The entries not yet handed over of facts the checkpoint holds stand as made.
            held = [e for e in self.timeline if fact_key(e.at, e.type, e.event_id) <= since]
            held.sort(key=lambda e: fact_key(e.at, e.type, e.event_id))
            fresh.timeline[:0] = held
        fresh.facts = self.facts
        fresh.last_fact = self.last_fact
        fresh.earlier_facts = self.earlier_facts
        fresh.refolded = True
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)

    def _checkpoint(self, key: FactKey) -> None:
        """Keep the state as of ``key`` every ``checkpoint_every`` facts, once a late fact has
        made this journey keep checkpoints (most journeys never have one: they pay nothing)."""
        kept: list[Checkpoint] | None = self.__dict__.get("_checkpoints")
        if kept is None:
            return
        total = self.__dict__["_folded"] = self.__dict__.get("_folded", 0) + 1
        since = self.__dict__.get("_since_checkpoint", 0) + 1
        if since < checkpoint_every(total):
            self.__dict__["_since_checkpoint"] = since
            return
        self.__dict__["_since_checkpoint"] = 0
        # The folded state only: the facts and the timeline entries are the store's.
        state = self.__getstate__()
        state["facts"], state["timeline"], state["refolded"] = [], [], False
        state["last_fact"] = key
        state["_folded"] = total
        kept.append((key, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)))
        del kept[:-CHECKPOINTS_KEPT]

    def _apply_in_order(self, tp: Touchpoint, event_id: str | None = None) -> str:
        if self.first_seen is None or tp.occurred_at < self.first_seen:
            self.first_seen = tp.occurred_at
        if self.last_seen is None or tp.occurred_at > self.last_seen:
            self.last_seen = tp.occurred_at
        data = tp.data
        _share_strings(data.__dict__)
        kind = type(data)
        contact = _CONTACTS.get(kind)
        if contact is None:
            contact = _CONTACTS[kind] = issubclass(kind, _CONTACT_TYPES)
        if contact:
            self.contacts += 1
        summary, case_id = self._fold(tp, data)
        self.timeline.append(
            TimelineEntry(
                tp.occurred_at,
                tp.type,
                summary,
                str(tp.event_id) if event_id is None else event_id,
                case_id,
                said(data),
            )
        )
        return summary

    def _fold(self, tp: Touchpoint, d: c.TouchpointData) -> tuple[str, str | None]:
        at = tp.occurred_at
        case: Case | None
        promise: Promise | None
        order: Order | None
        match d:
            case c.OrderPlaced():
                items = ", ".join(f"{ln.quantity}× {ln.name}" for ln in d.lines)
                items = items or "items not listed"
                what = f"{items} — {d.total.amount} {d.total.currency}"
                order = Order(d.order_id, at, d.channel, what)
                if d.shipping_fee is not None:
                    order.shipping_fee = f"{d.shipping_fee.amount} {d.shipping_fee.currency}"
                for line in d.lines:
                    if line.seller and line.seller not in order.sellers:
                        order.sellers.append(line.seller)
                self.order_details[d.order_id] = order
                self._order_summary(d.order_id)
                # Our own shop recorded the order under this customer: verified.
                self._identity("order_number", d.order_id, at, verified=True)
                for line in d.lines:
                    product = self._product(line.name, line.serial_number)
                    product.order_id = d.order_id
                    product.batch = line.batch or product.batch
                    product.warranty_terms_shown = (
                        line.warranty_terms_shown or product.warranty_terms_shown
                    )
                    self._identity("serial_number", line.serial_number, at, verified=True)
                due_by = d.promised_delivery_by
                if d.promised_delivery_date is not None and d.time_zone is not None:
                    due_by = c.end_of_day(d.promised_delivery_date, d.time_zone)
                if due_by is not None:
                    on_day = (
                        f" by {d.promised_delivery_date.isoformat()} ({d.time_zone})"
                        if d.promised_delivery_date is not None
                        else ""
                    )
                    self._put_promise(
                        Promise(
                            f"delivery:{d.order_id}",
                            f"deliver order {d.order_id}{on_day}",
                            "delivery",
                            due_by,
                            made_by="checkout",
                            made_at=at,
                            implied=True,
                            order_id=d.order_id,
                            due_date=d.promised_delivery_date,
                            time_zone=d.time_zone,
                        )
                    )
                self._handoff_promises(d, at)
                return f"Order {d.order_id}: {items}", None
            case c.OrderCancelled():
                order = self.order_details.get(d.order_id)
                if d.order_id not in self.orders:
                    self._anomaly(tp, f"cancelled unknown order {d.order_id}")
                if order is not None and order.status != "cancelled":
                    order.status, order.cancelled_at, order.cancel_reason = (
                        "cancelled",
                        at,
                        d.reason,
                    )
                    self._order_summary(d.order_id)
                shipments = self._shipments_of(d.order_id)
                for promise in self._promises_naming(d.order_id, shipments):
                    if promise.cancelled is None and (
                        promise.order_id == d.order_id or promise.shipment_id in shipments
                    ):
                        promise.cancelled = (d.reason, at)
                        if promise.fulfilled_at is None:
                            promise.settled_at = at
                        promise.settle()
                by = f" by {d.cancelled_by}" if d.cancelled_by else ""
                return f"Order {d.order_id} cancelled{by}: {d.reason}", None
            case c.PaymentApproved():
                money = f", {d.amount.amount} {d.amount.currency}" if d.amount else ""
                plan = f", {d.instalments} instalments" if d.instalments > 1 else ""
                paid = f"{d.method}{plan}{money}"
                order = self.order_details.get(d.order_id)
                if order is None:
                    self._anomaly(tp, f"payment for unknown order {d.order_id}")
                else:
                    # Bounded: payments re-sent with new ids would grow the line (and its
                    # rebuild) without end.
                    if len(order.payments) < _PAYMENTS_LISTED:
                        order.payments.append(paid)
                    else:
                        order.more_payments += 1
                    self._order_summary(d.order_id)
                return f"Payment for order {d.order_id} approved: {paid}", None
            case c.OrderShipped():
                ship = self.shipments.get(d.shipment_id) or Shipment(d.shipment_id, d.carrier)
                self.shipments[d.shipment_id] = ship
                # Carriers' clocks disagree with ours: a delivery stamped before the
                # hand-over is still a delivery, and keeps the order's promise.
                ship.carrier = d.carrier or ship.carrier
                self._ship_for_order(ship, d.order_id)
                if d.expected_delivery_date is not None and d.time_zone is not None:
                    ship.expected_by = c.end_of_day(d.expected_delivery_date, d.time_zone)
                else:
                    ship.expected_by = d.expected_delivery_by or ship.expected_by
                if ship.delivered_at is not None:
                    self._delivered(ship, ship.delivered_at)
                for promise in self._promises_naming(d.order_id, ()):
                    if (
                        promise.kind == "handoff"
                        and promise.order_id == d.order_id
                        and (d.seller is None or promise.seller == d.seller)
                    ):
                        self._fulfil(promise.promise_id, at)
                if d.order_id not in self.orders:
                    self._anomaly(tp, f"shipment of unknown order {d.order_id}")
                by = f" by {d.seller}" if d.seller else ""
                to = f" to {d.carrier}" if d.carrier else " to the carrier"
                return f"Order {d.order_id} handed{to}{by}", None
            case c.DeliveryAttempted():
                ship = self._shipment(tp, d.shipment_id, d.carrier)
                ship.attempts += 1
                return f"{d.carrier or 'The carrier'} tried to deliver {d.shipment_id}", None
            case c.DeliveryFailed():
                ship = self._shipment(tp, d.shipment_id, d.carrier)
                ship.failures.append(d.reason)
                return f"Delivery of {d.shipment_id} failed: {d.reason}", None
            case c.DeliveryRescheduled():
                ship = self._shipment(tp, d.shipment_id, d.carrier)
                ship.rescheduled_to = d.new_location or ship.rescheduled_to
                deliver_by = d.deliver_by
                if d.deliver_on is not None and d.time_zone is not None:
                    deliver_by = c.end_of_day(d.deliver_on, d.time_zone)
                if deliver_by is not None:
                    pid = d.promise_id or f"reschedule:{d.shipment_id}:{at.isoformat()}"
                    on_day = (
                        f" by {d.deliver_on.isoformat()} ({d.time_zone})" if d.deliver_on else ""
                    )
                    self._put_promise(
                        Promise(
                            pid,
                            f"deliver {d.shipment_id}"
                            + (f" to {d.new_location}" if d.new_location else "")
                            + on_day,
                            "delivery",
                            deliver_by,
                            made_by=d.agreed_by or d.carrier or "carrier",
                            made_at=at,
                            shipment_id=d.shipment_id,
                            due_date=d.deliver_on,
                            time_zone=d.time_zone,
                        )
                    )
                where = f" to {d.new_location}" if d.new_location else ""
                return f"Delivery of {d.shipment_id} rescheduled{where}", None
            case c.Delivered():
                ship = self._shipment(tp, d.shipment_id, d.carrier)
                ship.delivered_at = at
                ship.delivered_location = d.location
                self._delivered(ship, at)
                return f"{d.shipment_id} delivered" + (
                    f" at {d.location}" if d.location else ""
                ), None
            case c.SignupRequested():
                self.submissions.append(
                    Submission(d.case_id, d.form, d.channel, list(d.products), dict(d.fields), at)
                )
                for key, value in d.fields.items():
                    kind = _identity_kind_of_field(key)
                    if kind:
                        self._identity(kind, value.strip(), at, "from form")
                case = self._open_case(tp, d.case_id, "signup", d.channel)
                case.subject = "Signup: " + (", ".join(d.products) or d.form)
                return f"Signup request via {d.form}: {', '.join(d.products)}", d.case_id
            case c.IdentityLinked():
                self._identity(d.kind, d.value, at, verified=d.verified)
                # Only a verified link merges two customers; a claim waits for an agent.
                if (
                    d.verified
                    and d.kind == "customer_id"
                    and d.value != self.customer_id
                    and not self._linked(d.value)
                ):
                    self.linked_customers.append(d.value)
                how = "verified" if d.verified else "unverified claim"
                return f"Identity linked ({how}): {d.kind} {d.value}", None
            case c.IdentityUnlinked():
                if not self._unlink(d.kind, d.value):
                    self._anomaly(tp, f"unlinked {d.kind} {d.value}, which was never linked")
                by = f" by {d.unlinked_by}" if d.unlinked_by else ""
                return f"Identity unlinked{by}: {d.kind} {d.value}", None
            case c.ErasureRequested():
                self._erase(at)
                return "Customer asked to be forgotten", None
            case c.InquiryReceived():
                known = d.case_id in self.cases
                case = self._open_case(tp, d.case_id, "inquiry", d.channel)
                case.messages.append(Message(at, d.channel, d.subject, d.body))
                if not known:
                    # An SMS or chat has no subject line: its first words stand in for one.
                    case.subject = d.subject or _first_words(d.body)
                    case.product = d.product
                verb = "wrote again" if known else "inquiry"
                return f"{d.channel} {verb}: {d.subject or d.body or ''}".strip(), d.case_id
            case c.ComplaintFiled():
                case = self._open_case(tp, d.case_id, "complaint", d.channel)
                case.messages.append(Message(at, d.channel, None, d.description))
                case.subject = case.subject or f"Complaint: {d.product}"
                case.product = d.product
                product = self._product(d.product, d.serial_number_as_given)
                product.complaints += 1
                self._identity("serial_number", d.serial_number_as_given, at, "as given")
                claim = "warranty claim" if d.warranty_claim else "complaint"
                return f"{d.channel} {claim} about {d.product}", d.case_id
            case c.AutoAcknowledgementSent():
                case = self._case(tp, d.case_id, "auto-acknowledgement")
                if case is not None:
                    case.auto_acknowledgements.append(at)
                return "Automatic acknowledgement sent (not an answer)", d.case_id
            case c.ReplySent():
                case = self._case(tp, d.case_id, "reply")
                if case is not None:
                    case.replies.append(
                        Reply(
                            at, d.agent, d.team, d.country, d.channel, d.awaiting_customer, d.body
                        )
                    )
                    case.team = case.team or d.team
                    case.country = case.country or d.country
                    for copy in d.copied_to:
                        if copy not in case.copied_to:
                            case.copied_to.append(copy)
                    case.stop_reply_clock(at)
                    case.awaiting_customer_since = at if d.awaiting_customer else None
                return f"Reply by {d.agent} ({d.team}, {d.country}) via {d.channel}", d.case_id
            case c.CaseHandedOff():
                case = self._case(tp, d.case_id, "handoff")
                if case is not None:
                    case.handoffs.append(
                        Handoff(
                            at,
                            d.from_team,
                            d.from_country,
                            d.to_team,
                            d.to_country,
                            list(d.copied_to),
                            d.escalation,
                            d.reason,
                        )
                    )
                    case.team, case.country = d.to_team, d.to_country
                    for copy in d.copied_to:
                        if copy not in case.copied_to:
                            case.copied_to.append(copy)
                verb = "escalated" if d.escalation else "handed off"
                copy = f", copy to {', '.join(d.copied_to)}" if d.copied_to else ""
                return (
                    f"Case {verb} {d.from_team} ({d.from_country}) → "
                    f"{d.to_team} ({d.to_country}){copy}",
                    d.case_id,
                )
            case c.CaseResolved():
                case = self._case(tp, d.case_id, "resolution")
                if case is not None:
                    case.status = "resolved"
                    case.resolved_at = at
                    case.resolution = d.resolution
                    case.stop_reply_clock(at)
                return f"Resolved: {d.resolution}", d.case_id
            case c.CaseReopened():
                case = self._case(tp, d.case_id, "reopening")
                if case is not None:
                    case.status = "open"
                    case.reopened += 1
                    case.reply_owed = "next_reply"
                    case.reply_owed_since = at
                return f"Reopened: {d.reason or ''}".strip(), d.case_id
            case c.SatisfactionRated():
                case = self._case(tp, d.case_id, "rating")
                if case is not None:
                    case.satisfaction = d.score
                if d.feedback_id is not None:
                    self._feedback_answered(d.feedback_id, at, f"rating {d.score}/5")
                return f"Rated the service {d.score}/5", d.case_id
            case c.FeedbackRequested():
                asked = self.feedback.get(d.feedback_id) or Feedback(d.feedback_id)
                asked.requested_at, asked.channel = at, d.channel
                asked.order_id, asked.case_id = d.order_id, d.case_id
                self.feedback[d.feedback_id] = asked
                if d.case_id is not None:
                    self._case(tp, d.case_id, "feedback request")
                about = f" about order {d.order_id}" if d.order_id else ""
                return f"Feedback requested{about} via {d.channel}", d.case_id
            case c.ClaimDecided():
                case = self._case(tp, d.case_id, "claim decision")
                why = f": {d.reason}" if d.reason else ""
                if case is not None:
                    case.claim_decision, case.claim_reason = d.decision, d.reason
                    case.steps.append(Step(at, "claim", f"claim {d.decision}{why}"))
                return f"Claim {d.decision}{why}", d.case_id
            case c.ProofOfPurchaseReceived():
                of = f" for order {d.order_id}" if d.order_id else ""
                kind = d.kind.replace("_", " ")
                self._step(tp, d.case_id, "proof", f"proof of purchase ({kind}) received{of}")
                return f"Proof of purchase received ({kind}){of}", d.case_id
            case c.PickupCompleted():
                self._step(tp, d.case_id, "pickup", f"{d.product} collected")
                return f"Pickup of {d.product} completed", d.case_id
            case c.PickupFailed():
                self._step(tp, d.case_id, "pickup", f"pickup of {d.product} failed: {d.reason}")
                return f"Pickup of {d.product} failed: {d.reason}", d.case_id
            case c.PromiseMade():
                if d.case_id is not None:
                    self._case(tp, d.case_id, "promise")
                self._put_promise(
                    Promise(
                        d.promise_id, d.what, d.kind, d.due_by, d.made_by, at, d.case_id, d.made_to
                    )
                )
                return (
                    f"Promise by {d.made_by}: {d.what} by {d.due_by.isoformat(timespec='minutes')}",
                    d.case_id,
                )
            case c.PromiseKept():
                promise = self.promises.get(d.promise_id)
                if promise is None:
                    self._anomaly(tp, f"kept an unknown promise {d.promise_id}")
                elif not self._fulfil(d.promise_id, at):
                    self._anomaly(tp, f"promise {d.promise_id} was already kept")
                promise = self.promises.get(d.promise_id)
                late = " (late)" if promise and promise.kept_late else ""
                return f"Promise kept{late}: {promise.what if promise else d.promise_id}", (
                    promise.case_id if promise else None
                )
            case c.PromiseWithdrawn():
                promise = self.promises.get(d.promise_id)
                if promise is None:
                    self._anomaly(tp, f"withdrew an unknown promise {d.promise_id}")
                    return f"Promise withdrawn by {d.withdrawn_by}: {d.promise_id}", None
                if promise.withdrawn is None:
                    promise.withdrawn = (d.withdrawn_by, at)
                    if promise.fulfilled_at is None:
                        promise.settled_at = at
                    promise.settle()
                reason = f" ({d.reason})" if d.reason else ""
                return (
                    f"Promise withdrawn by {d.withdrawn_by}: {promise.what}{reason}",
                    promise.case_id,
                )
            case c.PromiseBroken():
                if d.promise_id not in self.promises:
                    self._anomaly(tp, f"broken promise {d.promise_id} was never made")
                else:
                    # The break stays a fact; a fulfilment folded before or after it makes
                    # the promise kept late, never kept.
                    broken = self.promises[d.promise_id]
                    broken.broken_recorded = True
                    if broken.fulfilled_at is None:
                        broken.settled_at = at
                    broken.settle()
                promise = self.promises.get(d.promise_id)
                return f"Promise broken: {d.what or d.promise_id}", (
                    promise.case_id if promise else None
                )
            case c.ReplyOverdue():
                case = self._case(tp, d.case_id, "overdue reply")
                if case is not None:
                    case.overdue_recorded.append((d.target, d.due_by))
                label = "first reply" if d.target == "first_reply" else "reply"
                return (
                    f"No {label} by {d.due_by.isoformat(timespec='minutes')}: target missed",
                    d.case_id,
                )
            case c.BreachAcknowledged():
                if d.kind == "promise":
                    promise = self.promises.get(d.ref)
                    if promise is None:
                        self._anomaly(tp, f"acknowledged an unknown promise {d.ref}")
                        return f"Missed promise acknowledged by {d.agent}", None
                    if promise.acknowledged is None:
                        promise.acknowledged = (d.agent, at)
                    return f"Missed promise acknowledged by {d.agent}: {promise.what}", (
                        promise.case_id
                    )
                case = self._case(tp, d.ref, "acknowledgement")
                if case is not None:
                    case.acknowledged.append((d.kind, d.due_by, d.agent, at))
                label = "first reply" if d.kind == "first_reply" else "reply"
                return f"Missed {label} acknowledged by {d.agent}", d.ref
            case c.SerialNumberCorrected():
                at_pos = self._product_at(d.product, d.serial_number_as_given)
                self._correct_serial(at_pos, d.corrected_serial_number)
                product = self.products[at_pos]
                product.serial_confirmed = False
                self._identity(
                    "serial_number", d.corrected_serial_number, at, "corrected", verified=True
                )
                if d.case_id:
                    self._case(tp, d.case_id, "serial correction")
                return (
                    f"Serial corrected {d.serial_number_as_given or '?'} → "
                    f"{d.corrected_serial_number}, awaits the customer's confirmation",
                    d.case_id,
                )
            case c.SerialConfirmationRequested():
                for product in self._products_with_serial(d.serial_number):
                    product.serial_confirmation_requested = True
                if d.case_id:
                    case = self._case(tp, d.case_id, "serial confirmation request")
                    if case is not None:
                        case.awaiting_customer_since = at
                return f"Asked the customer to confirm serial {d.serial_number}", d.case_id
            case c.SerialNumberConfirmed():
                found = False
                for product in self._products_with_serial(d.serial_number):
                    product.serial_confirmed = True
                    found = True
                if not found:
                    self._anomaly(tp, f"confirmed serial {d.serial_number} that we never had")
                if d.case_id and (case := self.cases.get(d.case_id)):
                    case.awaiting_customer_since = None
                return f"Customer confirmed serial {d.serial_number}", d.case_id
            case c.RepairCompleted():
                product = self._product(d.product, d.serial_number)
                product.repairs += 1
                self._step(tp, d.case_id, "repair", f"repair #{product.repairs} of {d.product}")
                return f"Repair #{product.repairs} of {d.product} completed", d.case_id
            case c.ReplacementShipped():
                product = self._product(d.product, None)
                product.replacements += 1
                proof = " before proof was asked" if d.before_proof else ""
                self._step(tp, d.case_id, "replacement", f"replacement {d.product} shipped{proof}")
                if d.serial_number:
                    self._add_product(Product(name=d.product, serial_as_given=d.serial_number))
                    self._identity(
                        "serial_number", d.serial_number, at, "replacement", verified=True
                    )
                if d.shipment_id is not None:
                    ship = self.shipments.get(d.shipment_id) or Shipment(d.shipment_id, d.carrier)
                    ship.carrier = d.carrier or ship.carrier
                    ship.case_id = d.case_id
                    self.shipments[d.shipment_id] = ship
                return f"Replacement {d.product} shipped{proof}", d.case_id
            case c.PickupBooked():
                when = f" for {d.pickup_at.isoformat(timespec='minutes')}" if d.pickup_at else ""
                self._step(tp, d.case_id, "pickup", f"pickup of {d.product} booked{when}")
                return f"Pickup of {d.product} booked{when}", d.case_id
            case c.ReturnReceived():
                self._step(tp, d.case_id, "return", f"{d.product} received back")
                return f"Return of {d.product} received", d.case_id
            case c.RefundIssued():
                money = f"{d.amount.amount} {d.amount.currency}"
                self._step(tp, d.case_id, "refund", f"refund {money}")
                return f"Refund of {money} issued", d.case_id
            case c.GoodwillGranted():
                value = f" {d.value.amount} {d.value.currency}" if d.value else ""
                if d.case_id:
                    case = self._case(tp, d.case_id, "goodwill")
                    if case is not None:
                        case.steps.append(Step(at, "goodwill", f"{d.kind}{value}"))
                return f"Goodwill: {d.kind.replace('_', ' ')}{value}", d.case_id
            case c.KnownDefectRegistered():
                self.defects_registered.append(d.defect_id)
                batch = f" batch {d.batch}" if d.batch else ""
                return f"Known defect {d.defect_id} registered: {d.product}{batch}", None
            case c.ProactiveOutreachSent():
                self.outreach.setdefault(d.defect_id, at)
                return f"Proactive outreach about {d.defect_id} via {d.channel}", None
            case c.PublicReviewPosted():
                review = self.reviews.get(d.review_id) or Review(d.review_id, d.platform, at)
                review.platform, review.posted_at = d.platform, at
                review.rating, review.text, review.url = d.score, d.text, d.url
                review.title, review.order_id, review.feedback_id = (
                    d.title,
                    d.order_id,
                    d.feedback_id,
                )
                self.reviews[d.review_id] = review
                if d.feedback_id is not None:
                    self._feedback_answered(d.feedback_id, at, f"review {d.review_id}")
                stars = f" {d.score}/5" if d.score else ""
                return f"Public review on {d.platform}{stars}", None
            case c.ReviewAnswered():
                answered = self.reviews.get(d.review_id)
                if answered is None:
                    self._anomaly(tp, f"answered unknown review {d.review_id}")
                    answered = self.reviews[d.review_id] = Review(d.review_id, "unknown", at)
                answered.answered_at, answered.answered_by = at, d.answered_by
                answered.answer = d.text
                return f"Review answered by {d.answered_by}", None
        self._anomaly(tp, f"no fold rule for {tp.type}")
        return tp.type, None

    def _order_summary(self, order_id: str) -> None:
        """The order's line in the view: what was ordered, then what happened to it."""
        order = self.order_details.get(order_id)
        if order is None:
            return
        parts = [order.what]
        if order.shipping_fee:
            parts.append(f"shipping {order.shipping_fee}")
        if order.sellers:
            parts.append("sold by " + ", ".join(order.sellers))
        parts += [f"paid: {p}" for p in order.payments]
        if order.more_payments:
            parts.append(f"and {order.more_payments} more payments")
        if order.status == "cancelled":
            parts.append(f"cancelled: {order.cancel_reason}")
        self.orders[order_id] = " · ".join(parts)

    def _handoff_promises(self, d: c.OrderPlaced, at: datetime) -> None:
        """Each seller's hand-off deadline (the earliest of its lines) is an implied promise,
        ``handoff:<order>:<seller>`` (``handoff:<order>`` for lines without a seller)."""
        due: dict[str | None, datetime] = {}
        for line in d.lines:
            if line.handoff_by is not None:
                seen = due.get(line.seller)
                due[line.seller] = line.handoff_by if seen is None else min(seen, line.handoff_by)
        for seller, by in due.items():
            pid = f"handoff:{d.order_id}" + (f":{seller}" if seller else "")
            self._put_promise(
                Promise(
                    pid,
                    f"hand order {d.order_id} to the carrier" + (f" ({seller})" if seller else ""),
                    "handoff",
                    by,
                    made_by=seller or "seller",
                    made_at=at,
                    implied=True,
                    order_id=d.order_id,
                    seller=seller,
                )
            )

    def _feedback_answered(self, feedback_id: str, at: datetime, answer: str) -> None:
        asked = self.feedback.get(feedback_id) or Feedback(feedback_id)
        if asked.answered_at is None or at < asked.answered_at:
            asked.answered_at, asked.answered_with = at, answer
        self.feedback[feedback_id] = asked

    def _delivered(self, ship: Shipment, at: datetime) -> None:
        """Keep the delivery promises this shipment fulfils, matched by exact ids."""
        for promise in self._promises_naming(ship.order_id, (ship.shipment_id,)):
            if promise.kind != "delivery" or promise.fulfilled_at is not None:
                continue
            if promise.shipment_id == ship.shipment_id or (
                ship.order_id is not None and promise.order_id == ship.order_id
            ):
                self._fulfil(promise.promise_id, at)

    def _shipment(self, tp: Touchpoint, shipment_id: str, carrier: str | None) -> Shipment:
        ship = self.shipments.get(shipment_id)
        if ship is None:
            self._anomaly(tp, f"{tp.type} for unknown shipment {shipment_id}")
            ship = Shipment(shipment_id, carrier)
            self.shipments[shipment_id] = ship
        ship.carrier = ship.carrier or carrier
        return ship

    def _erase(self, at: datetime) -> None:
        """Keep the shape (counts, dates, statuses); drop what identifies or was said."""
        self.erased_at = at
        self.identities.clear()
        self.submissions.clear()
        self.orders = {k: "(erased)" for k in self.orders}
        for case in self.cases.values():
            case.subject = None
            case.replies = [
                Reply(r.at, "(erased)", r.team, r.country, r.channel, r.awaiting_customer)
                for r in case.replies
            ]
            case.messages = [Message(m.at, m.channel, None, None) for m in case.messages]
        for review in self.reviews.values():
            review.text = review.answer = review.url = review.title = None
        for order in self.order_details.values():
            order.what, order.cancel_reason = "(erased)", None
        for promise in self.promises.values():
            promise.made_to = None
        for product in self.products:
            product.serial_as_given = product.serial_corrected = None
        self._serial_changed()  # every product is without a serial now
        for ship in self.shipments.values():
            ship.delivered_location = ship.rescheduled_to = None
        self.timeline = [
            TimelineEntry(e.at, e.type, "(erased)", e.event_id, e.case_id) for e in self.timeline
        ]
        self.anomalies = [Anomaly(a.at, a.event_id, a.type, "(erased)") for a in self.anomalies]


# Facts stamped with the same instant fold in cause-before-effect order (an order before its
# shipment, a case before its reply, a reply before the resolution), then by event_id, so
# the tie-break never depends on arrival either.
_RANK: dict[str, int] = {
    **dict.fromkeys(
        (
            "IdentityLinked",
            "OrderPlaced",
            "InquiryReceived",
            "ComplaintFiled",
            "SignupRequested",
            "PublicReviewPosted",
            "PromiseMade",
            "KnownDefectRegistered",
            "FeedbackRequested",
        ),
        0,
    ),
    "OrderShipped": 1,
    **dict.fromkeys(
        (
            "Delivered",
            "CaseResolved",
            "PromiseKept",
            "PromiseWithdrawn",
            "PromiseBroken",
            "IdentityUnlinked",
            "ReplyOverdue",
            "ReviewAnswered",
            "SatisfactionRated",
        ),
        3,
    ),
    "CaseReopened": 4,
    "ErasureRequested": 5,
}


def fact_order(tp: Touchpoint, raw: bytes | None = None) -> FactKey:
    """The order facts are folded in: occurred_at, then cause before effect, then event_id.
    ``raw``: the touchpoint's envelope as ``encode`` wrote it, when the caller has it: its
    event id is read from there (``str(UUID)`` was ~1 us, on every touchpoint folded)."""
    event_id = str(tp.event_id) if raw is None else event_id_bytes(tp, raw).decode()
    return (tp.occurred_at, _RANK.get(tp.type, 2), event_id)


def fact_key(occurred_at: datetime, type_name: str, event_id: str) -> FactKey:
    """``fact_order`` of a fact known only by its columns (a store's row), undecoded."""
    return (occurred_at, _RANK.get(type_name, 2), event_id)


def said(d: c.TouchpointData) -> str | None:
    """What the customer said or was told in this touchpoint, verbatim: message and reply
    bodies, complaint descriptions, form fields (``name: value`` lines), review texts and
    our answers. None when the touchpoint carries no words."""
    kind = type(d)
    says = _SAYS.get(kind)
    if says is None:
        says = _SAYS[kind] = issubclass(kind, _SAYING)
    if not says:
        return None  # most touchpoints: one look-up, not a class check per case below
    match d:
        case c.InquiryReceived():
            return d.body
        case c.ComplaintFiled():
            return d.description
        case c.ReplySent():
            return d.body
        case c.SignupRequested():
            return "\n".join(f"{key}: {value}" for key, value in d.fields.items()) or None
        case c.PublicReviewPosted():
            return "\n".join(t for t in (d.title, d.text) if t) or None
        case c.ReviewAnswered():
            return d.text
    return None


# The types ``said`` reads words from (each of its cases), and whether a data type is one
# of them (its check is pydantic's metaclass's, a Python call per class: six per touchpoint
# that says nothing).
_SAYS: dict[type, bool] = {}
_SAYING = (
    c.InquiryReceived,
    c.ComplaintFiled,
    c.ReplySent,
    c.SignupRequested,
    c.PublicReviewPosted,
    c.ReviewAnswered,
)


def same_identity(value: str) -> str:
    """An identifier as compared: case, spaces and punctuation aside (``+46 70-123`` is
    ``+4670123``), so an unlink names a link however it was written."""
    return _NOT_IDENTITY.sub("", value.lower())


# What same_identity drops: all but letters and digits (str.isalnum: for str patterns, re's
# \w is exactly isalnum and _, checked for every code point in tests/unit/test_journey.py)
# and @ . _ +. A tenth of the character-by-character join's cost.
_NOT_IDENTITY = re.compile(r"[^\w@.+]")


def _first_words(text: str | None, limit: int = 60) -> str | None:
    if not text:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rsplit(" ", 1)[0] + "…"


def _identity_kind_of_field(name: str) -> str | None:
    """Which identifier a form field holds, judged by its name (English and Nordic)."""
    key = name.lower().replace("-", "_").replace(" ", "_")
    if "mail" in key or key in ("e_post", "epost"):
        return "email"
    if "phone" in key or "mobil" in key or key.startswith("tel"):
        return "phone"
    if key in ("name", "full_name", "fullname", "navn", "namn", "fullt_navn"):
        return "name"
    return None
