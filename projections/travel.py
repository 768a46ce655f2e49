"""Time travel: a customer as of an event time, or as known at a log time.

Two questions an analyst asks of the past (ARCHITECTURE decision 9):

* **as of T** (event time): the customer as they were at T, by all we know now — every
  touchpoint that happened by T (``occurred_at`` ≤ T), late reports that reached the log
  after T included;
* **known at T** (log time): what the engine knew at T — "what could the agent see when the
  customer called?" — every touchpoint the log had received by T (``logged_at`` ≤ T: the
  record's timestamp), the keeper's own facts (``PromiseBroken``, ``ReplyOverdue``) once they
  were logged, folded as the engine folds them: in event-time order.

Either way deadlines, warnings and "unanswered for how long" are judged at T, not now.

Both are folded afresh from the customer's touchpoints rows — each row holds the fact as it
came from the log, its event time and its log time — never filtered from today's view: a
status today's view shows may rest on a fact the cut leaves out. The customer's snapshot is
used when everything it holds passes the cut and nothing recorded since sorts before its
last fact (then its state is exactly the fold of the rows it holds, and so are their stored
timeline entries); otherwise the rows are folded from the first.

Merged customers: the candidates are the customers linked to it today
(``related_customers``); each is folded at the cut, and only those linked by facts that pass
the cut (an ``IdentityLinked``, an identifier shown) are merged. A merge made after T does
not apply at T.

What it cannot show: what an erasure removed (only the customer's current generation has
facts; a view before the erasure shows the customer erased), and a link that no longer holds
today (a candidate must still be linked now). A view reads at most
``TRAVEL_MAX_TOUCHPOINTS`` rows, linked customers' included; beyond that, export the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from domain import catalogue as c
from domain.envelope import Touchpoint, decode
from domain.errors import JourneyError
from domain.journey import FactKey, Journey, TimelineEntry, fact_key, fact_order
from projections.facts import (
    at_micros,
    from_micros,
    id_text,
    type_code,
    type_name,
    unpack,
    unpack_summary,
)
from projections.store import JourneyStore, norm_identity

__all__ = ["TRAVEL_MAX_TOUCHPOINTS", "Cut", "TooLargeToTravel", "Travelled", "travel"]

#: The most touchpoints a view back in time reads, the customer's and its linked customers'
#: together (about 5-10 s of folding at most).
TRAVEL_MAX_TOUCHPOINTS = 100_000

CutKind = Literal["as_of", "known_at"]


class TooLargeToTravel(JourneyError):
    """A customer with more touchpoints than a view back in time folds."""


@dataclass(frozen=True)
class Cut:
    """Which touchpoints a view back in time holds: those that happened by ``at``
    (``as_of``), or those the log had received by ``at`` (``known_at``)."""

    kind: CutKind
    at: datetime

    def passes(self, occurred_us: int, logged_us: int) -> bool:
        return (occurred_us if self.kind == "as_of" else logged_us) <= at_micros(self.at)

    def describe(self) -> str:
        what = "as of" if self.kind == "as_of" else "as known at"
        return f"{what} {self.at.isoformat()}"


@dataclass(frozen=True)
class _Row:
    seq: int
    at: int
    logged_at: int
    type: str
    event_id: str
    summary: str
    case_id: str | None
    text: str | None
    fact: bytes
    customer_id: str

    def raw(self) -> bytes:
        """The touchpoint's envelope, as the log gave it."""
        return unpack(
            self.fact,
            event_id=self.event_id,
            type=self.type,
            customer_id=self.customer_id,
            at=self.at,
        )

    @property
    def key(self) -> FactKey:
        return fact_key(from_micros(self.at), self.type, self.event_id)

    def entry(self) -> TimelineEntry:
        return TimelineEntry(
            from_micros(self.at), self.type, self.summary, self.event_id, self.case_id, self.text
        )


@dataclass(frozen=True)
class _Folded:
    journey: Journey
    touchpoints: int
    entries: list[TimelineEntry]


TimelineKey = tuple[int, str, str]  # (at in microseconds, event_id, customer_id)


@dataclass
class Travelled:
    """The customer's journeys folded at a cut (the one asked for first, then those linked
    to it at the cut), their timeline newest first, and the known defects not reached."""

    cut: Cut
    journeys: list[Journey]
    touchpoints: int
    entries: list[tuple[TimelineEntry, str]]
    known_defects: list[str]

    def timeline(
        self,
        *,
        before: TimelineKey | None = None,
        limit: int = 50,
        offset: int = 0,
        case_id: str | None = None,
    ) -> list[tuple[TimelineEntry, str]]:
        """As ``JourneyStore.timeline``: newest first, after the cursor ``before``."""
        rows = (
            e
            for e in self.entries
            if (case_id is None or e[0].case_id == case_id)
            and (before is None or _timeline_key(e) < before)
        )
        out: list[tuple[TimelineEntry, str]] = []
        for n, entry in enumerate(rows):
            if n >= offset + limit:
                break
            if n >= offset:
                out.append(entry)
        return out

    def timeline_total(self, case_id: str | None = None) -> int:
        if case_id is None:
            return len(self.entries)
        return sum(1 for e, _ in self.entries if e.case_id == case_id)


def _timeline_key(item: tuple[TimelineEntry, str]) -> TimelineKey:
    return (at_micros(item[0].at), item[0].event_id, item[1])


def travel(
    store: JourneyStore, customer_id: str, cut: Cut, candidates: Sequence[str]
) -> Travelled | None:
    """``customer_id`` at ``cut`` merged with those of ``candidates`` (today's linked
    customers) linked to it at the cut; None when it had no touchpoint by then."""
    folded: dict[str, _Folded] = {}
    budget = TRAVEL_MAX_TOUCHPOINTS  # for the customer and every candidate together
    for cid in dict.fromkeys([customer_id, *candidates]):
        one, rows = _fold_at(store, cid, cut, budget, customer_id)
        budget -= rows
        if one is not None:
            folded[cid] = one
    if customer_id not in folded:
        return None
    order = _linked_at(customer_id, {cid: f.journey for cid, f in folded.items()})
    journeys = [folded[cid].journey for cid in order]
    entries = [(e, cid) for cid in order for e in folded[cid].entries]
    entries.sort(key=_timeline_key, reverse=True)
    return Travelled(
        cut=cut,
        journeys=journeys,
        touchpoints=sum(folded[cid].touchpoints for cid in order),
        entries=entries,
        known_defects=_known_defects(store, journeys, cut),
    )


def _fold_at(
    store: JourneyStore, customer_id: str, cut: Cut, budget: int, asked: str
) -> tuple[_Folded | None, int]:
    """The customer folded at the cut (None: nothing passes it), and how many rows it has."""
    found = store.query(
        "SELECT generation, erased_at, touchpoints FROM customers WHERE customer_id = ?",
        (customer_id,),
    )
    if not found:
        return None, 0
    generation, erased_at, count = int(found[0][0]), found[0][1], int(found[0][2])
    if count > budget:
        raise TooLargeToTravel(
            f"customer {asked!r} and those linked to it have more than "
            f"{TRAVEL_MAX_TOUCHPOINTS} touchpoints, the most a view back in time folds: "
            "export the log (`journey export`) to study it"
        )
    rows = [
        _Row(
            int(seq),
            int(at),
            int(logged),
            type_name(kind),
            id_text(eid),
            unpack_summary(s, customer_id),
            None if case is None else str(case),
            None if text is None else str(text),
            bytes(fact),
            customer_id,
        )
        for seq, at, logged, kind, eid, s, case, text, fact in store.query(
            "SELECT seq, at, logged_at, type, event_id, summary, case_id, text, fact"
            " FROM touchpoints WHERE customer_id = ? AND generation = ? AND fact IS NOT NULL"
            " ORDER BY seq",
            (customer_id, generation),
        )
    ]
    passing = [r for r in rows if cut.passes(r.at, r.logged_at)]
    if not passing:
        return None, count
    start = _from_snapshot(store, customer_id, generation, rows, cut)
    if start is None:
        born_erased = datetime.fromisoformat(str(erased_at)) if generation and erased_at else None
        entries: list[TimelineEntry] = []
        journey, since = Journey(customer_id, erased_at=born_erased), 0
    else:
        journey, entries, since = start
    tail = sorted(
        (_decoded(r) for r in passing if r.seq > since), key=lambda pair: fact_order(pair[0])
    )
    for tp, raw in tail:
        journey.apply(tp, raw)  # in event-time order: each folds on top, no refold
    erased = journey.erased_at
    for entry in journey.timeline:
        if erased is not None and entry.at <= erased:
            entry.text = None  # as the store keeps it: said before the erasure is gone
        entry.at = entry.at.astimezone(UTC)  # as the store's rows give it (today's timeline)
        entries.append(entry)
    return _Folded(journey, len(passing), entries), count


def _decoded(row: _Row) -> tuple[Touchpoint, bytes]:
    raw = row.raw()
    return decode(raw), raw


def _from_snapshot(
    store: JourneyStore, customer_id: str, generation: int, rows: list[_Row], cut: Cut
) -> tuple[Journey, list[TimelineEntry], int] | None:
    """The snapshot's journey, the timeline entries of the rows it holds, and how many it
    holds — when it may be folded on from: it holds only rows that pass the cut, and every
    row recorded after it sorts after its last fact (nothing since refolded what it holds,
    so their stored entries read as the fold at the cut makes them)."""
    found = store.snapshot(customer_id)
    if found is None:
        return None
    agg, since = found
    journey = agg.journey
    if agg.generation != generation or since <= 0 or journey.last_fact is None:
        return None
    held = [r for r in rows if r.seq <= since]
    if len(held) != since or not all(cut.passes(r.at, r.logged_at) for r in held):
        return None
    last = journey.last_fact
    if any(r.key <= last for r in rows if r.seq > since):
        return None
    journey.earlier_facts = lambda since=None: [
        r.raw() for r in held if since is None or r.at >= at_micros(since)
    ]
    return journey, [r.entry() for r in held], since


def _linked_at(customer_id: str, journeys: dict[str, Journey]) -> list[str]:
    """``customer_id`` and every customer of ``journeys`` linked to it by what they hold:
    a verified IdentityLinked either way, or a verified identifier of one that is the
    other's id."""
    # As related_customers: only verified identifiers merge (a claim is a possible match).
    shown = {
        cid: {norm_identity(i.value) for i in j.identities if i.kind != "name" and i.verified}
        for cid, j in journeys.items()
    }

    def linked(a: str, b: str) -> bool:
        return (
            b in journeys[a].linked_customers
            or a in journeys[b].linked_customers
            or norm_identity(b) in shown[a]
            or norm_identity(a) in shown[b]
        )

    seen = [customer_id]
    frontier = [customer_id]
    while frontier:
        cid = frontier.pop()
        for other in sorted(journeys):
            if other not in seen and linked(cid, other):
                seen.append(other)
                frontier.append(other)
    return seen


def _known_defects(store: JourneyStore, journeys: list[Journey], cut: Cut) -> list[str]:
    """Defects registered by the cut that match a product these customers owned at it and
    that no outreach had reached by then."""
    owned = {(p.name, p.batch) for j in journeys for p in j.products}
    names = sorted({name for name, _ in owned})
    # The stream each defect was registered on: its product's (``product:<name>``), or, for
    # a version-1 registration, the registering organisation's id (kept as registered_by).
    streams: dict[str, set[str]] = {}
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for defect_id, product, batch, by in store.query(
            "SELECT defect_id, product, batch, registered_by FROM defects"
            f" WHERE product IN ({marks})",
            chunk,
        ):
            if batch is None or (product, batch) in owned:
                streams[str(defect_id)] = {str(by), c.product_key(str(product))}
    reached = {d for j in journeys for d in j.outreach}
    pending = {d: keys for d, keys in streams.items() if d not in reached}
    known: set[str] = set()
    for by in sorted(set().union(*pending.values())):
        # The registration itself must pass the cut (a few rows: one stream's registrations).
        for at, logged, fact, eid in store.query(
            "SELECT at, logged_at, fact, event_id FROM touchpoints WHERE customer_id = ?"
            " AND type = ? AND fact IS NOT NULL",
            (by, type_code("KnownDefectRegistered")),
        ):
            if cut.passes(int(at), int(logged)):
                raw = unpack(
                    fact, event_id=eid, type="KnownDefectRegistered", customer_id=by, at=at
                )
                data: Any = decode(raw).data
                if isinstance(data, c.KnownDefectRegistered):
                    known.add(data.defect_id)
    return sorted(d for d in pending if d in known)
