"""Service metrics from folded facts: the figures of `journey metrics`, overall and per
group. Definitions (which events, which clock, which period) are in docs/metrics.md."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from journey.analytics.facts import Facts, Wait

__all__ = ["BY", "NONE", "By", "compute", "group_of", "percentile", "week_of"]

By = Literal["week", "month", "channel", "team", "product"]
BY: tuple[By, ...] = ("week", "month", "channel", "team", "product")
NONE = "(none)"
DECIMALS = 4


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, SQL's quantile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, DECIMALS)


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, DECIMALS)


def week_of(at: datetime) -> str:
    """ISO week of the UTC date, e.g. 2026-W48."""
    year, week, _ = at.astimezone(_utc()).isocalendar()
    return f"{year}-W{week:02d}"


def _month_of(at: datetime) -> str:
    return at.astimezone(_utc()).strftime("%Y-%m")


def _utc() -> Any:
    from datetime import UTC

    return UTC


def group_of(
    by: By, at: datetime, channel: str | None, team: str | None, product: str | None
) -> str:
    if by == "week":
        return week_of(at)
    if by == "month":
        return _month_of(at)
    value = {"channel": channel, "team": team, "product": product}[by]
    return value or NONE


def _hours(waits: Iterable[Wait], kind: str) -> dict[str, Any]:
    hours = [w.seconds / 3600 for w in waits if w.kind == kind and w.seconds is not None]
    return {
        "p50": _r(percentile(hours, 0.5)),
        "p90": _r(percentile(hours, 0.9)),
        "p99": _r(percentile(hours, 0.99)),
        "n": len(hours),
    }


def _figures(facts: Facts, keep: Callable[[str, Any], bool], as_of: datetime) -> dict[str, Any]:
    """The metrics over the items ``keep`` accepts (kind of item, the item)."""
    inside = _inside(facts)
    cases = [k for k in facts.cases if inside(k.opened_at) and keep("case", k)]
    waits = [w for w in facts.waits if inside(w.started_at) and keep("wait", w)]
    promises = [p for p in facts.promises if inside(p.made_at) and keep("promise", p)]
    reviews = [r for r in facts.reviews if inside(r.posted_at) and keep("review", r)]
    ratings = [r for r in facts.ratings if inside(r.rated_at) and keep("rating", r)]
    replaced = [r for r in facts.replacements if inside(r.shipped_at) and keep("replacement", r)]
    people = {p for p, day in facts.active_days if keep("day", (p, day))}
    if keep("case_customers", None):
        people = {facts.person[k.customer_id] for k in cases}
    outcomes = {s: 0 for s in ("kept", "kept_late", "broken", "cancelled", "open")}
    for promise in promises:
        outcomes[promise.status(as_of)] += 1
    first = [w for w in waits if w.kind == "first"]
    resolved = [k for k in cases if k.resolved]
    ever_resolved = [k for k in cases if k.ever_resolved]
    answer_hours = [s / 3600 for r in reviews if (s := r.answer_seconds) is not None]
    scores = [r.score for r in ratings]
    repairs = [r.repairs_before for r in replaced]
    return {
        "customers": len(people),
        "promises": {"made": len(promises), **outcomes},
        "first_reply_hours": _hours(waits, "first"),
        "unanswered_share": _share(sum(1 for w in first if w.replied_at is None), len(first)),
        "contacts_per_resolved_case": (
            _r(sum(k.contacts for k in resolved) / len(resolved)) if resolved else None
        ),
        "reviews": {
            "n": len(reviews),
            "low_scores": sum(1 for r in reviews if r.rating is not None and r.rating <= 2),
            "answer_hours": {
                "p50": _r(percentile(answer_hours, 0.5)),
                "p90": _r(percentile(answer_hours, 0.9)),
            },
        },
        "next_reply_hours": _hours(waits, "next"),
        "cases": {
            "opened": len(cases),
            "answered": sum(1 for w in first if w.replied_at is not None),
            "resolved": len(resolved),
        },
        "reopen_rate": _share(sum(1 for k in ever_resolved if k.reopened), len(ever_resolved)),
        "repairs_before_replacement": {
            "n": len(repairs),
            "mean": _r(sum(repairs) / len(repairs)) if repairs else None,
            "max": max(repairs, default=None),
        },
        "satisfaction": {
            "n": len(scores),
            "mean": _r(sum(scores) / len(scores)) if scores else None,
            "low_scores": sum(1 for s in scores if s <= 2),
        },
    }


def _inside(facts: Facts) -> Callable[[datetime], bool]:
    return lambda at: facts.since <= at < facts.until


def _group_key(by: By, kind: str, item: Any) -> str | None:
    """The group an item belongs to (None: counted in no group of this kind)."""
    if kind == "day":
        _person, day = item
        if by not in ("week", "month"):
            return None
        midnight = datetime(day.year, day.month, day.day, tzinfo=_utc())
        return group_of(by, midnight, None, None, None)
    if kind == "case_customers":
        return None
    at = {
        "case": "opened_at",
        "wait": "started_at",
        "promise": "made_at",
        "review": "posted_at",
        "rating": "rated_at",
        "replacement": "shipped_at",
    }[kind]
    return group_of(
        by,
        getattr(item, at),
        getattr(item, "channel", None),
        getattr(item, "team", None),
        getattr(item, "product", None),
    )


def compute(facts: Facts, *, by: By | None = None, as_of: datetime) -> dict[str, Any]:
    """The metrics of ``facts`` over its period, and with ``by`` the same per group."""
    result = _figures(facts, lambda kind, item: kind != "case_customers", as_of)
    result["period"] = {
        "since": facts.since.isoformat(),
        "until": facts.until.isoformat(),
        "as_of": as_of.isoformat(),
        "by": by,
    }
    if by is None:
        return result
    inside = _inside(facts)
    keys: set[str] = set()
    for kind, items, at in (
        ("case", facts.cases, "opened_at"),
        ("wait", facts.waits, "started_at"),
        ("promise", facts.promises, "made_at"),
        ("review", facts.reviews, "posted_at"),
        ("rating", facts.ratings, "rated_at"),
        ("replacement", facts.replacements, "shipped_at"),
    ):
        keys.update(
            k
            for item in items
            if inside(getattr(item, at)) and (k := _group_key(by, kind, item)) is not None
        )
    if by in ("week", "month"):
        keys.update(k for d in facts.active_days if (k := _group_key(by, "day", d)) is not None)
    groups = {}
    for name in sorted(keys):

        def keep(kind: str, item: Any, name: str = name) -> bool:
            if kind == "case_customers":
                # a customer belongs to a channel, team or product by the cases they opened
                return by not in ("week", "month")
            return _group_key(by, kind, item) == name

        groups[name] = _figures(facts, keep, as_of)
    result["groups"] = groups
    return result
