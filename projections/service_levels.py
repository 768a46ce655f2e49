"""Service levels across customers: who still waits for an answer, what is due soon,
what was breached, and counts by team and channel."""

from __future__ import annotations

import bisect
from collections import Counter
from datetime import datetime

from pydantic import BaseModel, Field

from domain.bounds import after_hours
from domain.rules import ServiceRules
from projections.customer_view import related_customers
from projections.store import JourneyStore

__all__ = [
    "ServiceItem",
    "ServiceLevels",
    "build_service_levels",
    "page_items",
    "running_deadline",
    "unknown_filter",
]


class ServiceItem(BaseModel):
    customer_id: str
    name: str | None
    kind: str = Field(description="first_reply, next_reply or promise")
    ref: str = Field(description="case id or promise id")
    case_kind: str | None
    label: str | None
    channel: str | None
    team: str | None
    country: str | None
    started_at: datetime
    warn_at: datetime
    due_at: datetime
    age_seconds: float
    state: str = Field(description="ok, warning or breached")
    recorded: bool = Field(False, description="The breach is on the log as a fact")
    missed_since: datetime | None = Field(
        None,
        description="When the deadline was missed (breached items only); it stays listed "
        "until kept late, replied to, resolved or acknowledged (BreachAcknowledged)",
    )

    @classmethod
    def of_clock(
        cls,
        clock: tuple[str, str, str, str | None, str | None, str | None, str | None, str | None],
        *,
        started_at: datetime,
        warn_at: datetime,
        due_at: datetime,
        age_seconds: float,
        state: str = "breached",
        name: str | None = None,
        recorded: bool = False,
    ) -> ServiceItem:
        """A clock as the agents' lists and the promise keeper show it: ``clock`` is (customer
        id, kind, ref, case kind, label, channel, team, country); a breached one was missed
        at its deadline."""
        customer_id, kind, ref, case_kind, label, channel, team, country = clock
        return cls(
            customer_id=customer_id,
            name=name,
            kind=kind,
            ref=ref,
            case_kind=case_kind,
            label=label,
            channel=channel,
            team=team,
            country=country,
            started_at=started_at,
            warn_at=warn_at,
            due_at=due_at,
            age_seconds=age_seconds,
            state=state,
            recorded=recorded,
            missed_since=due_at if state == "breached" else None,
        )


def running_deadline(
    rules: ServiceRules,
    kind: str,
    channel: str | None,
    team: str | None,
    *,
    started_at: datetime,
    due_at: str | None,
) -> tuple[datetime, datetime]:
    """(warn at, due at) of a running clock: the deadline the store holds (the keeper worked
    it out, business hours included), else the rules'."""
    if due_at is None:
        return rules.deadline(kind, channel or "default", team, started_at)
    due = _parse(due_at)
    return started_at + (due - started_at) * rules.warn_at_fraction, due


class ServiceLevels(BaseModel):
    computed_at: datetime
    due_within_hours: float
    unanswered: list[ServiceItem] = Field(
        description="Contacts without a real answer, oldest first"
    )
    due_soon: list[ServiceItem]
    breached: list[ServiceItem]
    # Over HTTP each list is one page: its whole size and a cursor to the rest
    # (/service-levels/<list>?cursor=). Null where the list is given whole.
    unanswered_total: int | None = None
    unanswered_next: str | None = None
    due_soon_total: int | None = None
    due_soon_next: str | None = None
    breached_total: int | None = None
    breached_next: str | None = None
    by_team: dict[str, dict[str, int]]
    by_channel: dict[str, dict[str, int]]


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _person_name(store: JourneyStore, customer_id: str) -> str | None:
    """The name of the person behind a stream keyed by something else (e.g. a phone)."""
    for cid in related_customers(store, customer_id)[1:]:
        rows = store.query(
            "SELECT name FROM customers WHERE customer_id = ? AND erased_at IS NULL", (cid,)
        )
        if rows and rows[0][0]:
            return str(rows[0][0])
    return None


def open_items(
    store: JourneyStore,
    rules: ServiceRules,
    now: datetime,
    *,
    with_names: bool = True,
) -> list[ServiceItem]:
    """Every running clock (reply targets and pending promises) with its deadline today.

    ``with_names`` looks up the person behind linked streams for the agent's lists. (The
    promise keeper asks only for what is due, through the deadlines' index:
    projections/due.py.)"""
    rows = store.query(
        "SELECT k.customer_id, c.name, k.kind, k.ref, k.case_kind, k.label, k.channel, k.team,"
        " k.country, k.started_at, k.due_at, c.erased_at FROM clocks k"
        " JOIN customers c USING (customer_id)"
        # A total order, so ties in the (stable) sorts below do not depend on the order the
        # rows happened to be written in: a rebuilt store lists exactly what the live one did.
        " ORDER BY k.customer_id, k.kind, k.ref",
    )
    recorded = {
        (str(r[0]), str(r[1]), str(r[2]), str(r[3]))
        for r in store.query("SELECT customer_id, kind, ref, due_at FROM breaches")
    }
    items = []
    person_names: dict[str, str | None] = {}
    for (
        cid,
        own_name,
        kind,
        ref,
        case_kind,
        label,
        channel,
        team,
        country,
        started,
        due,
        erased,
    ) in rows:
        start = _parse(started)
        warn_at, due_at = running_deadline(rules, kind, channel, team, started_at=start, due_at=due)
        state = "breached" if now >= due_at else "warning" if now >= warn_at else "ok"
        name = own_name
        if with_names and name is None and not erased:
            # Once per customer, not per clock: a customer may have thousands of clocks.
            if cid not in person_names:
                person_names[cid] = _person_name(store, cid)
            name = person_names[cid]
        items.append(
            ServiceItem.of_clock(
                (cid, kind, ref, case_kind, None if erased else label, channel, team, country),
                started_at=start,
                warn_at=warn_at,
                due_at=due_at,
                age_seconds=(now - start).total_seconds(),
                state=state,
                name=None if erased else name,
                recorded=(cid, kind, ref, due_at.isoformat()) in recorded,
            )
        )
    return items


def build_service_levels(
    store: JourneyStore,
    *,
    rules: ServiceRules,
    now: datetime,
    due_within_hours: float = 24,
    team: str | None = None,
    channel: str | None = None,
) -> ServiceLevels:
    items = [
        i
        for i in open_items(store, rules, now)
        if (team is None or i.team == team) and (channel is None or i.channel == channel)
    ]
    horizon = after_hours(now, due_within_hours)
    unanswered = sorted((i for i in items if i.kind == "first_reply"), key=lambda i: i.started_at)
    due_soon = sorted(
        (i for i in items if i.state != "breached" and i.due_at <= horizon),
        key=lambda i: i.due_at,
    )
    breached = sorted((i for i in items if i.state == "breached"), key=lambda i: i.due_at)
    by_team: dict[str, Counter[str]] = {}
    by_channel: dict[str, Counter[str]] = {}
    for item in items:
        for table, key in (
            (by_team, item.team or "(unassigned)"),
            (by_channel, item.channel or "(none)"),
        ):
            counter = table.setdefault(key, Counter())
            counter["open"] += 1
            counter[item.state] += 1
            if item.kind == "first_reply":
                counter["unanswered"] += 1
    return ServiceLevels(
        computed_at=now,
        due_within_hours=due_within_hours,
        unanswered=unanswered,
        due_soon=due_soon,
        breached=breached,
        by_team={k: dict(v) for k, v in sorted(by_team.items())},
        by_channel={k: dict(v) for k, v in sorted(by_channel.items())},
    )


def unknown_filter(
    store: JourneyStore, team: str | None, channel: str | None
) -> tuple[str, str] | None:
    """(field, why) when a team or channel filter names nothing (a typo, not an empty list),
    listing the ones there are — teams: those this store has seen; channels: the
    catalogue's. None when both are known."""
    from typing import get_args

    from domain.catalogue import Channel

    if channel is not None and channel not in get_args(Channel):
        return "channel", f"unknown channel {channel!r}: use one of {', '.join(get_args(Channel))}"
    if team is None:
        return None
    known = sorted(
        str(row[0])
        for row in store.query(
            "SELECT team FROM clocks UNION SELECT team FROM stopped_clocks"
            " UNION SELECT team FROM breaches"
        )
        if row[0] is not None
    )
    if team in known:
        return None
    # One line, however many teams: the first 20, and how many more.
    listed = ", ".join(repr(t) for t in known[:20]) + (
        f" and {len(known) - 20} more" if len(known) > 20 else ""
    )
    return "team", f"unknown team {team!r}: " + (
        f"use one of {listed}" if known else "this store has seen no team yet"
    )


def _order_key(item: ServiceItem, by: str) -> tuple[str, ...]:
    at = item.started_at if by == "started_at" else item.due_at
    return (f"{at.timestamp():020.6f}", item.customer_id, item.kind, item.ref)


def page_items(
    items: list[ServiceItem], *, by: str, after: tuple[str, ...] | None, limit: int
) -> tuple[list[ServiceItem], tuple[str, ...] | None]:
    """One page of a work list in its order (``by`` started_at or due_at, then customer,
    kind, ref: a total order, so pages never repeat or skip an item that stays listed) after
    the key ``after``; and the key to continue from, or None on the last page."""
    keyed = sorted(((_order_key(i, by), i) for i in items), key=lambda p: p[0])
    start = 0 if after is None else bisect.bisect_right(keyed, after, key=lambda p: p[0])
    page = keyed[start : start + limit + 1]
    more = len(page) > limit
    page = page[:limit]
    return [i for _, i in page], (page[-1][0] if more and page else None)
