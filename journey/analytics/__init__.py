"""What analysts read: the log exported as tables (``journey.analytics.export``), and
the views and figures built on it — here, service metrics over history, for the command
line and for notebooks.

Every function takes a *source* — a broker URL (``embedded:///journey.db``,
``kafka://host:9092``), an open :class:`~consumers.log.Log`, an iterable of touchpoints, or
the :class:`Facts` an earlier :func:`read` returned (read once, ask many questions) — and a
period ``[since, until)``. Tables are :mod:`pyarrow` tables; ``.to_pandas()`` makes a
pandas DataFrame of any of them::

    from journey import analytics
    facts = analytics.read("embedded:///journey.db", since="2026-01-01", until="2027-01-01")
    analytics.metrics(facts)                       # dict, as `journey metrics --json`
    analytics.weekly(facts).to_pandas()            # one row per ISO week
    analytics.reply_time_distribution(facts)       # one row per wait for a reply

Return shapes (stable; docs/metrics.md defines every figure):

* :func:`metrics` -> dict with ``customers``, ``promises`` {made, kept, kept_late, broken,
  cancelled, open}, ``first_reply_hours`` {p50, p90, p99, n}, ``unanswered_share``,
  ``contacts_per_resolved_case``, ``reviews`` {n, low_scores, answer_hours {p50, p90}},
  ``next_reply_hours`` {p50, p90, p99, n}, ``cases`` {opened, answered, resolved},
  ``reopen_rate``, ``repairs_before_replacement`` {n, mean, max}, ``surveys`` {n,
  answered, answer_hours {p50, p90}}, ``satisfaction`` {n, mean, low_scores}, ``period``
  {since, until, as_of, by}; with ``by``, the same figures
  per group under ``groups`` (group name -> figures).
* :func:`metrics_table` -> one row per group (``group``; one row ``all`` without ``by``),
  the figures flattened to columns: ``customers``, ``promises_made``, ``promises_kept``,
  ``promises_kept_late``, ``promises_broken``, ``promises_cancelled``, ``promises_open``,
  ``first_reply_hours_p50`` / ``_p90`` / ``_p99`` / ``_n``, ``next_reply_hours_*``,
  ``unanswered_share``, ``contacts_per_resolved_case``, ``reopen_rate``, ``reviews_n``,
  ``reviews_low_scores``, ``reviews_answer_hours_p50`` / ``_p90``, ``cases_opened``,
  ``cases_answered``, ``cases_resolved``, ``repairs_before_replacement_n`` / ``_mean`` /
  ``_max``, ``surveys_n``, ``surveys_answered``, ``surveys_answer_hours_p50`` / ``_p90``,
  ``satisfaction_n`` / ``_mean`` / ``_low_scores``.
* :func:`weekly` / :func:`monthly` -> :func:`metrics_table` by week (``2026-W48``) / month.
* :func:`reply_time_distribution` -> one row per wait: ``customer_id``, ``case_id``,
  ``kind`` (first | next), ``started_at``, ``replied_at``, ``hours`` (null: never
  answered), ``business_hours`` (bool), ``channel``, ``team``, ``product``, ``week``.
* :func:`promise_outcomes` -> one row per promise made in the period: ``customer_id``,
  ``promise_id``, ``kind``, ``implied``, ``made_at``, ``due_by``, ``fulfilled_at``,
  ``withdrawn_at``, ``cancelled_at`` (its order cancelled), ``status`` (kept | kept_late |
  broken | cancelled | open), ``case_id``,
  ``channel``, ``team``, ``product``, ``week``.
* :func:`case_table` -> one row per case opened in the period.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from domain.bounds import DEFAULT_MAX_FUTURE
from domain.business_hours import BusinessHours
from domain.errors import JourneyError
from journey.analytics.facts import Facts, fold, read_log
from journey.analytics.metrics import BY, By, compute, week_of

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "BY",
    "By",
    "Facts",
    "case_table",
    "metrics",
    "metrics_table",
    "monthly",
    "parse_time",
    "promise_outcomes",
    "read",
    "reply_time_distribution",
    "weekly",
]

DEFAULT_TOPIC = "journey.touchpoints"

Moment = datetime | date | str


def parse_time(value: Moment, name: str = "time") -> datetime:
    """A period bound: an aware datetime, a date (its midnight UTC), or RFC 3339 / ISO
    date text."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise JourneyError(f"{name} {value} has no time zone: add one, e.g. +00:00")
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = value.strip()
    try:
        if len(text) == 10:
            return parse_time(date.fromisoformat(text), name)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise JourneyError(
            f"{name} {value!r} is not a date or time: use 2026-11-01 or 2026-11-01T08:00:00+01:00"
        ) from None
    return parse_time(parsed, name)


def read(
    source: Any,
    since: Moment | None = None,
    until: Moment | None = None,
    *,
    topic: str = DEFAULT_TOPIC,
    business_hours: Mapping[str, BusinessHours] | None = None,
    resolve: Callable[[str], str] | None = None,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
    progress: Callable[[int, int], None] | None = None,
) -> Facts:
    """Fold a source into the facts of [since, until). A broker URL or a Log is streamed
    from the beginning (outside any consumer group) to the head it had when reading
    began. ``business_hours``: team -> calendar (the rules file's ``business_hours``).
    ``resolve``: customer id -> person id, e.g. ``journey.analytics.export.store_resolver``
    (the export's ``resolved_customer_id``); without it, ids linked by ``IdentityLinked``
    of kind ``customer_id`` are one person. ``max_future``: the bounds the engine reads
    with (``JOURNEY_MAX_FUTURE``), so the same messages count. ``progress(read, total)``
    is called after every poll of a log."""
    if isinstance(source, Facts):
        return source
    if since is None or until is None:
        raise JourneyError("give since and until (or Facts from analytics.read)")
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if end <= start:
        raise JourneyError(f"until ({end.isoformat()}) must be after since ({start.isoformat()})")
    options: dict[str, Any] = {"business_hours": business_hours, "resolve": resolve}
    if isinstance(source, str):
        from consumers import open_log

        log = open_log(source, must_exist=True)
        try:
            return read_log(
                log, topic, start, end, max_future=max_future, progress=progress, **options
            )
        finally:
            log.close()
    if hasattr(source, "high_watermarks"):
        return read_log(
            source, topic, start, end, max_future=max_future, progress=progress, **options
        )
    return fold(source, start, end, **options)


def metrics(
    source: Any,
    since: Moment | None = None,
    until: Moment | None = None,
    by: By | None = None,
    *,
    as_of: datetime | None = None,
    topic: str = DEFAULT_TOPIC,
    business_hours: Mapping[str, BusinessHours] | None = None,
) -> dict[str, Any]:
    """The metrics as `journey metrics --json` prints them. ``as_of`` (default now) is
    the moment promise deadlines are judged at: past due and unfulfilled is broken."""
    if by is not None and by not in BY:
        raise JourneyError(f"unknown grouping {by!r}: use one of {', '.join(BY)}")
    facts = read(source, since, until, topic=topic, business_hours=business_hours)
    return compute(facts, by=by, as_of=as_of or datetime.now(UTC))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}_{key}" if prefix else key, inner, out)
    else:
        out[prefix] = value


def metrics_table(
    source: Any,
    since: Moment | None = None,
    until: Moment | None = None,
    by: By | None = None,
    *,
    as_of: datetime | None = None,
    topic: str = DEFAULT_TOPIC,
    business_hours: Mapping[str, BusinessHours] | None = None,
) -> pa.Table:
    """:func:`metrics` flattened: one row per group (one row ``all`` without ``by``)."""
    import pyarrow as pa

    result = metrics(
        source, since, until, by, as_of=as_of, topic=topic, business_hours=business_hours
    )
    groups = result.get("groups") if by is not None else {"all": result}
    rows = []
    for name, figures in (groups or {}).items():
        row: dict[str, Any] = {"group": name}
        _flatten("", {k: v for k, v in figures.items() if k not in ("groups", "period")}, row)
        rows.append(row)
    if not rows:
        return pa.table({"group": pa.array([], pa.string())})
    return pa.Table.from_pylist(rows)


def weekly(source: Any, since: Moment | None = None, until: Moment | None = None,
           **kwargs: Any) -> pa.Table:  # fmt: skip
    """:func:`metrics_table` by ISO week (``2026-W48``), in week order."""
    return metrics_table(source, since, until, "week", **kwargs)


def monthly(source: Any, since: Moment | None = None, until: Moment | None = None,
            **kwargs: Any) -> pa.Table:  # fmt: skip
    """:func:`metrics_table` by month (``2026-11``), in month order."""
    return metrics_table(source, since, until, "month", **kwargs)


def reply_time_distribution(
    source: Any,
    since: Moment | None = None,
    until: Moment | None = None,
    *,
    kind: str | None = None,
    topic: str = DEFAULT_TOPIC,
    business_hours: Mapping[str, BusinessHours] | None = None,
) -> pa.Table:
    """One row per wait for a reply that started in the period (``kind``: first or next,
    default both); ``hours`` is null for a wait never answered."""
    import pyarrow as pa

    facts = read(source, since, until, topic=topic, business_hours=business_hours)
    rows = [
        {
            "customer_id": w.customer_id,
            "case_id": w.case_id,
            "kind": w.kind,
            "started_at": w.started_at.astimezone(UTC),
            "replied_at": None if w.replied_at is None else w.replied_at.astimezone(UTC),
            "hours": None if w.seconds is None else w.seconds / 3600,
            "business_hours": w.business_hours,
            "channel": w.channel,
            "team": w.team,
            "product": w.product,
            "week": week_of(w.started_at),
        }
        for w in facts.waits
        if facts.since <= w.started_at < facts.until and (kind is None or w.kind == kind)
    ]
    return pa.Table.from_pylist(rows, schema=_WAIT_SCHEMA())


def promise_outcomes(
    source: Any,
    since: Moment | None = None,
    until: Moment | None = None,
    *,
    as_of: datetime | None = None,
    topic: str = DEFAULT_TOPIC,
) -> pa.Table:
    """One row per promise made in the period, with its outcome at ``as_of`` (now)."""
    import pyarrow as pa

    facts = read(source, since, until, topic=topic)
    at = as_of or datetime.now(UTC)
    rows = [
        {
            "customer_id": p.customer_id,
            "promise_id": p.promise_id,
            "kind": p.kind,
            "implied": p.implied,
            "made_at": p.made_at.astimezone(UTC),
            "due_by": p.due_by.astimezone(UTC),
            "fulfilled_at": None if p.fulfilled_at is None else p.fulfilled_at.astimezone(UTC),
            "withdrawn_at": None if p.withdrawn_at is None else p.withdrawn_at.astimezone(UTC),
            "cancelled_at": None if p.cancelled_at is None else p.cancelled_at.astimezone(UTC),
            "status": p.status(at),
            "case_id": p.case_id,
            "channel": p.channel,
            "team": p.team,
            "product": p.product,
            "week": week_of(p.made_at),
        }
        for p in facts.promises
        if facts.since <= p.made_at < facts.until
    ]
    return pa.Table.from_pylist(rows, schema=_PROMISE_SCHEMA())


def case_table(
    source: Any,
    since: Moment | None = None,
    until: Moment | None = None,
    *,
    topic: str = DEFAULT_TOPIC,
) -> pa.Table:
    """One row per case opened in the period: ``customer_id``, ``case_id``, ``kind``,
    ``opened_at``, ``channel``, ``team``, ``product``, ``contacts``, ``first_reply_at``,
    ``resolved``, ``reopened``, ``week``."""
    import pyarrow as pa

    facts = read(source, since, until, topic=topic)
    rows = [
        {
            "customer_id": k.customer_id,
            "case_id": k.case_id,
            "kind": k.kind,
            "opened_at": k.opened_at.astimezone(UTC),
            "channel": k.channel,
            "team": k.team,
            "product": k.product,
            "contacts": k.contacts,
            "first_reply_at": None
            if k.first_reply_at is None
            else k.first_reply_at.astimezone(UTC),
            "resolved": k.resolved,
            "reopened": k.reopened,
            "week": week_of(k.opened_at),
        }
        for k in facts.cases
        if facts.since <= k.opened_at < facts.until
    ]
    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [
            ("customer_id", pa.string()),
            ("case_id", pa.string()),
            ("kind", pa.string()),
            ("opened_at", ts),
            ("channel", pa.string()),
            ("team", pa.string()),
            ("product", pa.string()),
            ("contacts", pa.int64()),
            ("first_reply_at", ts),
            ("resolved", pa.bool_()),
            ("reopened", pa.bool_()),
            ("week", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _WAIT_SCHEMA() -> pa.Schema:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("customer_id", pa.string()),
            ("case_id", pa.string()),
            ("kind", pa.string()),
            ("started_at", ts),
            ("replied_at", ts),
            ("hours", pa.float64()),
            ("business_hours", pa.bool_()),
            ("channel", pa.string()),
            ("team", pa.string()),
            ("product", pa.string()),
            ("week", pa.string()),
        ]
    )


def _PROMISE_SCHEMA() -> pa.Schema:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("customer_id", pa.string()),
            ("promise_id", pa.string()),
            ("kind", pa.string()),
            ("implied", pa.bool_()),
            ("made_at", ts),
            ("due_by", ts),
            ("fulfilled_at", ts),
            ("withdrawn_at", ts),
            ("cancelled_at", ts),
            ("status", pa.string()),
            ("case_id", pa.string()),
            ("channel", pa.string()),
            ("team", pa.string()),
            ("product", pa.string()),
            ("week", pa.string()),
        ]
    )
