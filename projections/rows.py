"""The query-table rows of one customer, derived from the folded journey, and the writes
that turn the rows last written into the rows now due: only what changed is written
(upserts and deletes by primary key), never a customer's rows deleted and inserted again.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from domain import catalogue as c
from domain.envelope import Touchpoint
from domain.journey import Journey, same_identity
from domain.positions import TopicPartition
from projections.backends import Statement

__all__ = [
    "DEFERRABLE",
    "EVERY_BATCH",
    "PENDING",
    "CustomerRows",
    "clock_text",
    "customer_rows",
    "diff_writes",
    "display_name",
    "fact_writes",
    "norm_identity",
]

Row = tuple[Any, ...]
# table -> primary key -> row
CustomerRows = dict[str, dict[Row, Row]]


class _Table:
    def __init__(self, name: str, columns: Sequence[str], key: Sequence[str]) -> None:
        self.name = name
        self.columns = list(columns)
        self.key_index = [self.columns.index(k) for k in key]
        getter: Callable[[Row], Any] = operator.itemgetter(*self.key_index)
        # itemgetter of one index gives the value itself: keys are always tuples.
        self.key: Callable[[Row], Row] = (
            getter if len(self.key_index) > 1 else lambda row: (getter(row),)
        )
        cols = ", ".join(f'"{c}"' for c in self.columns)
        marks = ", ".join("?" * len(self.columns))
        others = [c for c in self.columns if c not in key]
        update = ", ".join(f'"{c}" = excluded."{c}"' for c in others)
        conflict = ", ".join(f'"{k}"' for k in key)
        self.upsert = f"INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT ({conflict}) " + (
            f"DO UPDATE SET {update}" if update else "DO NOTHING"
        )
        self.delete = f"DELETE FROM {name} WHERE " + " AND ".join(f'"{k}" = ?' for k in key)


_TABLES = {
    t.name: t
    for t in (
        _Table(
            "customers",
            (
                "customer_id",
                "id_norm",
                "generation",
                "name",
                "email",
                "phone",
                "touchpoints",
                "last_seen",
                "erased_at",
                "topic",
                "partition",
            ),
            ("customer_id",),
        ),
        _Table(
            "identities",
            ("kind", "value", "norm", "customer_id", "verified"),
            ("kind", "value", "customer_id"),
        ),
        _Table("links", ("customer_id", "other_id"), ("customer_id", "other_id")),
        _Table(
            "clocks",
            (
                "customer_id",
                "kind",
                "ref",
                "channel",
                "team",
                "country",
                "started_at",
                "due_at",
                "label",
                "case_kind",
                "due_us",
            ),
            ("customer_id", "kind", "ref"),
        ),
        _Table(
            "stopped_clocks",
            (
                "customer_id",
                "kind",
                "ref",
                "channel",
                "team",
                "country",
                "started_at",
                "stopped_at",
                "case_kind",
                "due_us",
            ),
            ("customer_id", "kind", "ref", "started_at"),
        ),
        _Table(
            "owned_products",
            ("customer_id", "pos", "product", "batch", "serial"),
            ("customer_id", "pos"),
        ),
    )
}
# A clock's due_us as a live store's fold writes it: the promise keeper has yet to work out
# its deadline by its rules (projections/due.py). Never a deadline: datetime's range is
# about +-2**58 microseconds.
PENDING = -(2**62)

# Every table holds rows of one customer's journey only (a link is the row of the customer
# whose stream made it, read in both directions), so a diff may delete any of them: an
# IdentityUnlinked or an erasure takes the customer's links away with its journey's.
_NEVER_DELETED: frozenset[str] = frozenset()


def clock_text(at: datetime) -> str:
    """UTC with microseconds always present: text order is time order."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


@functools.lru_cache(maxsize=65536)
def norm_identity(value: str) -> str:
    # Cached: a customer's rows are derived again each batch it is in, and a heavy
    # customer's hundreds of identities would be normalised again every time.
    return same_identity(value)


_NAME_FIELDS = ("name", "full_name", "fullname", "navn", "namn", "fornavn", "förnamn")


def display_name(journey: Journey) -> str | None:
    for ident in journey.identities:
        if ident.kind == "name":
            return ident.value
    return _submitted_name(journey)


def _submitted_name(journey: Journey) -> str | None:
    for sub in reversed(journey.submissions):
        for key, value in sub.fields.items():
            if key.lower().replace(" ", "_") in _NAME_FIELDS and value.strip():
                return value.strip()
        first = sub.fields.get("first_name") or sub.fields.get("fornavn")
        last = sub.fields.get("last_name") or sub.fields.get("etternavn")
        if first or last:
            return " ".join(p for p in (first, last) if p)
    return None


# The tables a rebuilding store writes only when a customer's folding is complete (it
# leaves the writer's cache, or the rebuild ends): nothing reads them meanwhile, and a
# heavy customer's rows of them are most of its rows. ``customers`` (a reload checks it)
# and ``links`` (an erasure follows them) are written with every batch.
DEFERRABLE: tuple[str, ...] = ("identities", "clocks", "stopped_clocks", "owned_products")
EVERY_BATCH: tuple[str, ...] = ("customers", "links")


def customer_rows(
    j: Journey,
    generation: int,
    touchpoints: int,
    tp: TopicPartition,
    tables: Collection[str] | None = None,
    *,
    due: int | None = PENDING,
) -> CustomerRows:
    """Every query-table row the journey ``j`` is due, by table and primary key (of
    ``tables`` only, when given). ``due``: the clocks' due_us (PENDING: for the keeper to
    work out; a rebuilding store writes NULL, and the first keeper on it works out every
    row: projections/due.py)."""
    want = _TABLES.keys() if tables is None else tables
    cid = j.customer_id
    out: CustomerRows = {name: {} for name in want}

    def put(table: str, row: Row) -> None:
        rows = out.get(table)
        if rows is not None:  # clocks and stopped_clocks come from one walk of the cases
            rows[_TABLES[table].key(row)] = row

    if "customers" in want:
        put("customers", _customer_row(j, generation, touchpoints, tp))
    if "identities" in want:
        for ident in j.identities:
            put(
                "identities",
                (ident.kind, ident.value, norm_identity(ident.value), cid, int(ident.verified)),
            )
    if "links" in want:
        for other in j.linked_customers:
            put("links", (cid, other))
    if "clocks" in want or "stopped_clocks" in want:
        _clock_rows(j, cid, put, due)
    if "owned_products" in want:
        for pos, product in enumerate(j.products):
            put("owned_products", (cid, pos, product.name, product.batch, product.serial))
    return out


# The identity kinds the customers row shows: the first of each.
_HEAD_KINDS = ("name", "email", "phone")
# ... kept beside a journey from this many identities on (below, a walk is as quick, and
# a writer's cache holds thousands of small customers whose memory is counted).
_HEADS_KEPT_FROM = 32


def _identity_heads(j: Journey) -> dict[str, str]:
    """The first identity value of each of ``_HEAD_KINDS`` the journey has, as the
    customers row shows them. Kept beside the journey and brought up to date by looking at
    the identities appended since (``Journey._identity`` only ever appends; an unlink, an
    erasure and a refold replace or empty the list, which starts it again): a heavy
    customer's thousands of identities were walked again at every batch it was in — at 1M
    ten times as often a touchpoint as at 100k, its history spread over ten times the batches."""
    idents = j.identities
    if len(idents) < _HEADS_KEPT_FROM:  # most customers: a short walk, nothing kept
        heads: dict[str, str] = {}
        for ident in idents:
            if ident.kind in _HEAD_KINDS and ident.kind not in heads:
                heads[ident.kind] = ident.value
        return heads
    held = j.__dict__.get("_identity_heads")
    if (
        held is not None
        and held[0] is idents
        and held[1] <= len(idents)
        and (held[1] == 0 or idents[held[1] - 1] is held[2])
    ):
        start, heads = held[1], held[3]
    else:
        start, heads = 0, {}
    if len(heads) < len(_HEAD_KINDS):
        for at in range(start, len(idents)):
            ident = idents[at]
            if ident.kind in _HEAD_KINDS and ident.kind not in heads:
                heads[ident.kind] = ident.value
    j.__dict__["_identity_heads"] = (idents, len(idents), idents[-1] if idents else None, heads)
    return heads


def _customer_row(j: Journey, generation: int, touchpoints: int, tp: TopicPartition) -> Row:
    heads = _identity_heads(j)
    name = heads.get("name")
    cid = j.customer_id
    return (
        cid,
        norm_identity(cid),
        generation,
        name if name is not None else _submitted_name(j),
        heads.get("email"),
        heads.get("phone"),
        touchpoints,
        j.last_seen.isoformat() if j.last_seen else None,
        j.erased_at.isoformat() if j.erased_at else None,
        tp.topic,
        tp.partition,
    )


def _clock_rows(j: Journey, cid: str, put: Callable[[str, Row], None], due: int | None) -> None:
    for case in j.cases.values():
        # An overdue reply stays listed (its clock row stays) until a reply stops the clock,
        # the case is resolved, or an agent acknowledges the recorded breach.
        if (
            case.status == "open"
            and case.reply_owed
            and case.reply_owed_since
            and not case.missed_settled
        ):
            put(
                "clocks",
                (
                    cid,
                    case.reply_owed,
                    case.case_id,
                    case.channel,
                    case.team,
                    case.country,
                    case.reply_owed_since.isoformat(),
                    None,
                    None if j.erased_at else case.subject,
                    case.kind,
                    due,
                ),
            )
        recorded = case.overdue_recorded  # mostly empty: no scan set up for each clock
        for kind, since, stopped in case.stopped_clocks:
            if recorded and case.overdue_recorded_between(kind, since, stopped):
                continue
            put(
                "stopped_clocks",
                (
                    cid,
                    kind,
                    case.case_id,
                    case.channel,
                    case.team,
                    case.country,
                    since.isoformat(),
                    stopped.isoformat(),
                    case.kind,
                    due,
                ),
            )
    for promise in j.promises.values():
        # A promise fulfilled after its deadline keeps its clock row until the break is
        # recorded: the keeper records it whether the late fulfilment was folded first (a
        # backfill) or the deadline passed first (live). A recorded break keeps its row too,
        # so missed stays missed on the agents' lists, until the promise is kept late, its
        # case is resolved, or an agent acknowledges it (the keeper skips recorded rows).
        owner = j.cases.get(promise.case_id) if promise.case_id else None
        still_missed = (
            promise.status == "broken"
            and promise.acknowledged is None
            and (owner is None or owner.status == "open")
        )
        if not promise.decided or still_missed:
            put(
                "clocks",
                (
                    cid,
                    "promise",
                    promise.promise_id,
                    owner.channel if owner else None,
                    owner.team if owner else None,
                    owner.country if owner else None,
                    promise.made_at.isoformat(),
                    promise.due_by.isoformat(),
                    promise.what,
                    owner.kind if owner else None,
                    due,
                ),
            )


def diff_writes(before: CustomerRows | None, after: CustomerRows) -> list[Statement]:
    """The writes that take the tables of ``after`` from ``before`` (None: nothing written
    yet) to ``after``: deletes of rows no longer due, upserts of new and changed ones."""
    writes: list[Statement] = []
    for name, table in _TABLES.items():
        if name not in after:
            continue
        old = before.get(name, {}) if before is not None else {}
        new = after.get(name, {})
        if name not in _NEVER_DELETED:
            writes.extend((table.delete, key) for key in old.keys() - new.keys())
        writes.extend((table.upsert, row) for key, row in new.items() if old.get(key) != row)
    return writes


_FACT_ROW_TYPES = (
    c.KnownDefectRegistered,
    c.ProactiveOutreachSent,
    c.ReplyOverdue,
    c.PromiseBroken,
)


def fact_writes(tp: Touchpoint) -> list[Statement]:
    """Rows that come straight from one touchpoint, whoever's journey it is in."""
    d = tp.data
    if not isinstance(d, _FACT_ROW_TYPES):
        return []  # nearly every touchpoint: no time formatted for nothing
    at = tp.occurred_at.isoformat()
    if isinstance(d, c.KnownDefectRegistered):
        return [
            (
                "INSERT INTO defects VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (defect_id)"
                " DO UPDATE SET product = excluded.product, batch = excluded.batch,"
                " description = excluded.description, remedy = excluded.remedy,"
                " registered_at = excluded.registered_at, registered_by = excluded.registered_by",
                (
                    d.defect_id,
                    d.product,
                    d.batch,
                    d.description,
                    d.remedy,
                    at,
                    d.registered_by or tp.customer_id,
                ),
            )
        ]
    if isinstance(d, c.ProactiveOutreachSent):
        return [
            (
                "INSERT INTO outreach VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (tp.customer_id, d.defect_id, at),
            )
        ]
    if isinstance(d, c.ReplyOverdue):
        return [
            (
                "INSERT INTO breaches (customer_id, kind, ref, due_at, recorded_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (tp.customer_id, d.target, d.case_id, d.due_by.isoformat(), at),
            )
        ]
    if isinstance(d, c.PromiseBroken):
        return [
            (
                "INSERT INTO breaches (customer_id, kind, ref, due_at, recorded_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (tp.customer_id, "promise", d.promise_id, d.due_by.isoformat(), at),
            )
        ]
    return []
