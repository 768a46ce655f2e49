"""The numbers a report shows, asked of :mod:`journey.analytics` — the one place metrics are
computed. The log is read once; every breakdown is asked of those facts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from domain.bounds import DEFAULT_MAX_FUTURE
from domain.business_hours import BusinessHours
from journey import analytics
from journey.analytics.metrics import NONE, week_of
from journey.report.figures import Distribution, ReportInput

__all__ = ["MAX_WEEKS", "gather", "weeks_between"]

MAX_WEEKS = 106  # two years of weekly bars; a longer period is refused before reading


def weeks_between(since: datetime, until: datetime) -> list[tuple[str, datetime]]:
    """Every ISO week that [since, until) touches — its name as the metrics name it, and
    when it starts within the period — so a quiet week shows in a trend instead of
    vanishing from it."""
    weeks: list[tuple[str, datetime]] = []
    at = since
    while at < until:
        label = week_of(at)
        if not weeks or weeks[-1][0] != label:
            weeks.append((label, at))
        at += timedelta(days=1)
    return weeks


def gather(
    source: Any,
    since: datetime,
    until: datetime,
    *,
    as_of: datetime,
    topic: str = analytics.DEFAULT_TOPIC,
    business_hours: Mapping[str, BusinessHours] | None = None,
    resolve: Callable[[str], str] | None = None,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
    source_name: str = "",
) -> ReportInput:
    """Everything a report of [since, until) shows; promises judged as at ``as_of``.

    ``source`` and the keywords are what :func:`journey.analytics.read` takes — a broker
    URL, an open log, or the facts read already — so the report counts what `journey
    metrics` counts.
    """
    facts = analytics.read(
        source,
        since,
        until,
        topic=topic,
        business_hours=business_hours,
        resolve=resolve,
        max_future=max_future,
    )

    def groups(by: analytics.By) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = analytics.metrics(facts, by=by, as_of=as_of)["groups"]
        # What belongs to no team or channel (an order's implied promise, a review), in words.
        return {(f"(no {by})" if name == NONE else name): m for name, m in found.items()}

    weekly = groups("week")
    waits = analytics.reply_time_distribution(facts).to_pylist()
    return ReportInput(
        since=facts.since,
        until=facts.until,
        overall=analytics.metrics(facts, as_of=as_of),
        weeks=[
            # A week without a group had nothing in it: the analytics say what that reads as.
            (week, weekly.get(week) or analytics.metrics([], start, start + timedelta(days=7)))
            for week, start in weeks_between(facts.since, facts.until)
        ],
        teams=sorted(groups("team").items()),
        channels=sorted(groups("channel").items()),
        distributions=[
            Distribution(
                title,
                [w["hours"] for w in waits if w["kind"] == kind and w["hours"] is not None],
                unanswered=sum(1 for w in waits if w["kind"] == kind and w["hours"] is None),
            )
            for kind, title in (("first", "Time to first reply"), ("next", "Time to next reply"))
        ],
        source=source_name,
        touchpoints=facts.touchpoints,
    )
