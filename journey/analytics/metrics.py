"""Service metrics from folded facts: the figures of `journey metrics`, overall and per
group. Definitions (which events, which clock, which period) are in docs/metrics.md."""

from __future__ import annotations

import math
from collections.abc import Iterable
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


_AT = {
    "cases": "opened_at",
    "waits": "started_at",
    "promises": "made_at",
    "reviews": "posted_at",
    "ratings": "rated_at",
    "replacements": "shipped_at",
    "surveys": "requested_at",
}


def _figures(items: dict[str, list[Any]], people: set[str], as_of: datetime) -> dict[str, Any]:
    """The metrics over ``items`` (per kind, those of one period and group) and ``people``."""
    cases, waits, promises = items["cases"], items["waits"], items["promises"]
    reviews, ratings, replaced = items["reviews"], items["ratings"], items["replacements"]
    outcomes = {s: 0 for s in ("kept", "kept_late", "broken", "cancelled", "open")}
    for promise in promises:
        outcomes[promise.status(as_of)] += 1
    first = [w for w in waits if w.kind == "first"]
    resolved = [k for k in cases if k.resolved]
    ever_resolved = [k for k in cases if k.ever_resolved]
    answer_hours = [s / 3600 for r in reviews if (s := r.answer_seconds) is not None]
    scores = [r.score for r in ratings]
    repairs = [r.repairs_before for r in replaced]
    survey_hours = [s / 3600 for r in items["surveys"] if (s := r.answer_seconds) is not None]
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
            "low_scores": sum(1 for r in reviews if r.score is not None and r.score <= 2),
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
        "surveys": {
            "n": len(items["surveys"]),
            "answered": len(survey_hours),
            "answer_hours": {
                "p50": _r(percentile(survey_hours, 0.5)),
                "p90": _r(percentile(survey_hours, 0.9)),
            },
        },
        "satisfaction": {
            "n": len(scores),
            "mean": _r(sum(scores) / len(scores)) if scores else None,
            "low_scores": sum(1 for s in scores if s <= 2),
        },
    }


def _group_key(by: By, kind: str, item: Any) -> str:
    """The group an item of ``kind`` (cases, waits, ..., or ``day``: a (person, date)
    pair) belongs to."""
    if kind == "day":
        _person, day = item
        midnight = datetime(day.year, day.month, day.day, tzinfo=_utc())
        return group_of(by, midnight, None, None, None)
    return group_of(
        by,
        getattr(item, _AT[kind]),
        getattr(item, "channel", None),
        getattr(item, "team", None),
        getattr(item, "product", None),
    )


def compute(facts: Facts, *, by: By | None = None, as_of: datetime) -> dict[str, Any]:
    """The metrics of ``facts`` over its period, and with ``by`` the same per group.

    Each item's group is worked out once, so grouping costs one pass over the items."""
    inside: dict[str, list[Any]] = {
        kind: [i for i in getattr(facts, kind) if facts.since <= getattr(i, at) < facts.until]
        for kind, at in _AT.items()
    }
    everyone = {person for person, _ in facts.active_days}
    result = _figures(inside, everyone, as_of)
    result["period"] = {
        "since": facts.since.isoformat(),
        "until": facts.until.isoformat(),
        "as_of": as_of.isoformat(),
        "by": by,
    }
    if by is None:
        return result
    buckets: dict[str, dict[str, list[Any]]] = {}
    for kind, items in inside.items():
        for item in items:
            name = _group_key(by, kind, item)
            bucket = buckets.setdefault(name, {k: [] for k in _AT})
            bucket[kind].append(item)
    people: dict[str, set[str]] = {}
    if by in ("week", "month"):
        for day in facts.active_days:
            name = _group_key(by, "day", day)
            buckets.setdefault(name, {k: [] for k in _AT})
            people.setdefault(name, set()).add(day[0])
    else:
        # a customer belongs to a channel, team or product by the cases they opened there
        for name, bucket in buckets.items():
            people[name] = {facts.person[k.customer_id] for k in bucket["cases"]}
    result["groups"] = {
        name: _figures(buckets[name], people.get(name, set()), as_of) for name in sorted(buckets)
    }
    return result
