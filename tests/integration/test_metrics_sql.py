"""The cross-check: every figure of `journey metrics`, computed again with plain SQL in DuckDB
over an export of the same log (journey.analytics.export), must be equal — on the seed
stories and on a synthetic year of 100,000 touchpoints, overall and per week, month,
channel, team and product, with business hours for two teams (one with holidays).

The SQL below is written from docs/metrics.md, not from the Python fold: the two share only
the definitions (and the export's columns)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from consumers.embedded_log import EmbeddedLog
from consumers.log import OutgoingMessage
from domain.business_hours import BusinessHours
from domain.envelope import Touchpoint, encode
from journey import analytics
from journey.analytics.export import export
from journey.stories import all_touchpoints
from journey.synthetic import generate_touchpoints, service_journey

TOPIC = "journey.touchpoints"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

CALENDARS = {
    "Support SE": BusinessHours(
        time_zone="Europe/Stockholm",
        hours={d: ["08:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        holidays=["2025-06-20", "2025-12-24", "2025-12-25", "2026-12-24", "2026-12-25"],
    ),
    "Support NO": BusinessHours(
        time_zone="Europe/Oslo",
        hours={
            **{d: ["08:00-11:30", "12:00-16:00"] for d in ("mon", "tue", "wed", "thu")},
            "fri": ["08:00-15:00"],
            "sat": ["10:00-14:00"],
        },
        holidays=["2025-05-17"],
    ),
    "Elshop service": BusinessHours(
        time_zone="Europe/Stockholm",
        hours={d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    ),
}

RANK_SQL = """CASE
  WHEN type IN ('IdentityLinked','OrderPlaced','InquiryReceived','ComplaintFiled',
                'SignupRequested','PublicReviewPosted','PromiseMade',
                'KnownDefectRegistered') THEN 0
  WHEN type = 'OrderShipped' THEN 1
  WHEN type IN ('Delivered','CaseResolved','PromiseKept','PromiseWithdrawn','PromiseBroken',
                'ReplyOverdue','ReviewAnswered','SatisfactionRated') THEN 3
  WHEN type = 'CaseReopened' THEN 4
  WHEN type = 'ErasureRequested' THEN 5
  ELSE 2 END"""

# The items every metric is made of, one view each (docs/metrics.md, "Definitions").
SETUP = f"""
SET TimeZone = 'UTC';
CREATE TEMP TABLE t AS
  SELECT *, strftime(occurred_at, '%Y-%m-%d %H:%M:%S.%f') || '|' || ({RANK_SQL}) || '|'
            || event_id AS k
  FROM touchpoints;
CREATE TEMP TABLE contacts AS
  SELECT customer_id, case_id, k, occurred_at, type, channel, team,
         json_extract_string(data, '$.product') AS product
  FROM t WHERE type IN ('InquiryReceived', 'ComplaintFiled', 'SignupRequested');
CREATE TEMP TABLE cases AS
  WITH c AS (
    SELECT customer_id, case_id, min(k) AS first_k, first(occurred_at ORDER BY k) AS opened_at,
           first(channel ORDER BY k) AS channel, first(team ORDER BY k) AS intake_team,
           first(product ORDER BY k) AS product, count(*) AS contacts
    FROM contacts GROUP BY ALL),
  r AS (
    SELECT customer_id, case_id, min(occurred_at) AS first_reply_at,
           first(team ORDER BY k) AS reply_team
    FROM t WHERE type = 'ReplySent' GROUP BY ALL),
  s AS (
    SELECT customer_id, case_id,
           last(type ORDER BY k) = 'CaseResolved' AS resolved,
           bool_or(type = 'CaseResolved') AS ever_resolved,
           bool_or(type = 'CaseReopened') AS has_reopen,
           min(k) FILTER (WHERE type = 'CaseResolved') AS first_resolution,
           max(k) FILTER (WHERE type IN ('InquiryReceived','ComplaintFiled','SignupRequested'))
             AS last_contact
    FROM t WHERE type IN ('InquiryReceived','ComplaintFiled','SignupRequested',
                          'CaseResolved','CaseReopened')
    GROUP BY ALL)
  SELECT c.*, coalesce(c.intake_team, r.reply_team) AS team, r.first_reply_at,
         s.resolved, s.ever_resolved,
         s.ever_resolved AND (s.has_reopen OR s.last_contact > s.first_resolution) AS reopened
  FROM c LEFT JOIN r USING (customer_id, case_id) JOIN s USING (customer_id, case_id);
CREATE TEMP TABLE items AS
  SELECT t.customer_id, t.case_id, t.k, t.occurred_at,
         CASE t.type WHEN 'ReplySent' THEN 'reply' WHEN 'CaseReopened' THEN 'reopen'
                     ELSE 'contact' END AS what
  FROM t JOIN cases USING (customer_id, case_id)
  WHERE t.type IN ('InquiryReceived','ComplaintFiled','SignupRequested','ReplySent',
                   'CaseReopened');
CREATE TEMP TABLE waits_raw AS
  SELECT customer_id, case_id, 'first' AS kind, opened_at AS started_at,
         first_reply_at AS replied_at, channel, team, product
  FROM cases
  UNION ALL
  SELECT s.customer_id, s.case_id, 'next', s.occurred_at,
         (SELECT min(r.occurred_at) FROM items r
          WHERE r.customer_id = s.customer_id AND r.case_id = s.case_id
            AND r.what = 'reply' AND r.k > s.k),
         c.channel, c.team, c.product
  FROM (SELECT *, lag(what) OVER w AS prev, row_number() OVER w AS rn FROM items
        WINDOW w AS (PARTITION BY customer_id, case_id ORDER BY k)) s
  JOIN cases c USING (customer_id, case_id)
  WHERE s.what <> 'reply' AND s.rn > 1 AND s.prev = 'reply' AND s.k <> c.first_k;
CREATE TEMP TABLE spans AS
  SELECT h.team,
         timezone(h.tz, d.day::TIMESTAMP + h.open_min * INTERVAL 1 MINUTE) AS lo,
         timezone(h.tz, d.day::TIMESTAMP + h.close_min * INTERVAL 1 MINUTE) AS hi
  FROM hours h
  JOIN (SELECT unnest(generate_series(DATE '2000-01-01', DATE '2040-12-31', INTERVAL 1 DAY))::DATE
        AS day) d ON isodow(d.day) = h.dow
  WHERE NOT EXISTS (SELECT 1 FROM holidays x WHERE x.team = h.team AND x.day = d.day);
CREATE TEMP TABLE waits AS
  SELECT w.*,
    CASE WHEN w.replied_at IS NULL THEN NULL
         WHEN w.team IN (SELECT team FROM hours)
           THEN coalesce((SELECT sum(greatest(0, epoch(least(s.hi, w.replied_at))
                                                - epoch(greatest(s.lo, w.started_at))))
                          FROM spans s WHERE s.team = w.team AND s.hi > w.started_at
                            AND s.lo < w.replied_at), 0)
         ELSE greatest(0, epoch(w.replied_at) - epoch(w.started_at)) END AS seconds
  FROM waits_raw w;
CREATE TEMP MACRO end_of_day(day, tz) AS timezone(tz, (day::DATE + 1)::TIMESTAMP);
CREATE TEMP TABLE made AS
  SELECT customer_id, promise_id AS pid, k, occurred_at,
         (data->>'$.due_by')::TIMESTAMPTZ AS due_by, case_id, 'promise' AS kind,
         NULL AS order_id, NULL AS shipment_id, NULL AS seller
  FROM t WHERE type = 'PromiseMade'
  UNION ALL
  SELECT customer_id, 'delivery:' || order_id, k, occurred_at,
         coalesce((data->>'$.promised_delivery_by')::TIMESTAMPTZ,
                  end_of_day(data->>'$.promised_delivery_date', data->>'$.time_zone')),
         NULL, 'delivery', order_id, NULL, NULL
  FROM t WHERE type = 'OrderPlaced' AND (data->>'$.promised_delivery_by' IS NOT NULL
                                         OR data->>'$.promised_delivery_date' IS NOT NULL)
  UNION ALL
  SELECT customer_id, 'handoff:' || order_id || coalesce(':' || seller, ''), min(k),
         first(occurred_at ORDER BY k), min(handoff_by), NULL, 'handoff', order_id, NULL, seller
  FROM (SELECT customer_id, order_id, event_id, k, occurred_at, line->>'$.seller' AS seller,
               (line->>'$.handoff_by')::TIMESTAMPTZ AS handoff_by
        FROM (SELECT *, unnest(CAST(data->'$.lines' AS JSON[])) AS line FROM t
              WHERE type = 'OrderPlaced'))
  WHERE handoff_by IS NOT NULL
  GROUP BY customer_id, order_id, seller, event_id
  UNION ALL
  SELECT customer_id, coalesce(promise_id, 'reschedule:' || event_id), k, occurred_at,
         coalesce((data->>'$.deliver_by')::TIMESTAMPTZ,
                  end_of_day(data->>'$.deliver_on', data->>'$.time_zone')),
         NULL, 'delivery', NULL, data->>'$.shipment_id', NULL
  FROM t WHERE type = 'DeliveryRescheduled'
    AND (data->>'$.deliver_by' IS NOT NULL OR data->>'$.deliver_on' IS NOT NULL);
CREATE TEMP TABLE delivered AS
  SELECT customer_id, data->>'$.shipment_id' AS shipment_id, min(occurred_at) AS at
  FROM t WHERE type = 'Delivered' GROUP BY ALL;
CREATE TEMP TABLE shipped AS
  SELECT customer_id, data->>'$.shipment_id' AS shipment_id,
         last(order_id ORDER BY k) AS order_id
  FROM t WHERE type = 'OrderShipped' GROUP BY ALL;
CREATE TEMP TABLE order_delivered AS
  SELECT s.customer_id, s.order_id, min(d.at) AS at
  FROM shipped s JOIN delivered d USING (customer_id, shipment_id) GROUP BY ALL;
CREATE TEMP TABLE handed_over AS
  SELECT customer_id, order_id, data->>'$.seller' AS seller, min(occurred_at) AS at
  FROM t WHERE type = 'OrderShipped' GROUP BY ALL;
CREATE TEMP TABLE order_cancelled AS
  SELECT customer_id, order_id, min(occurred_at) AS at
  FROM t WHERE type = 'OrderCancelled' GROUP BY ALL;
CREATE TEMP TABLE promises AS
  SELECT m.customer_id, m.pid, m.made_at, m.due_by, m.case_id,
         least(kept.at, CASE WHEN m.kind = 'delivery' THEN od.at END, sd.at,
               (SELECT min(h.at) FROM handed_over h
                WHERE m.kind = 'handoff' AND h.customer_id = m.customer_id
                  AND h.order_id = m.order_id
                  AND (h.seller IS NULL OR h.seller = m.seller))) AS fulfilled_at,
         wd.at AS withdrawn_at,
         least(oc.at, (SELECT min(x.at) FROM shipped s JOIN order_cancelled x
                       USING (customer_id, order_id)
                       WHERE s.customer_id = m.customer_id AND s.shipment_id = m.shipment_id))
           AS cancelled_at,
         c.channel, c.team, c.product
  FROM (SELECT customer_id, pid, first(occurred_at ORDER BY k) AS made_at,
               first(due_by ORDER BY k) AS due_by, first(case_id ORDER BY k) AS case_id,
               first(kind ORDER BY k) AS kind, first(order_id ORDER BY k) AS order_id,
               first(shipment_id ORDER BY k) AS shipment_id,
               first(seller ORDER BY k) AS seller
        FROM made GROUP BY ALL) m
  LEFT JOIN (SELECT customer_id, promise_id AS pid, min(occurred_at) AS at FROM t
             WHERE type = 'PromiseKept' GROUP BY ALL) kept USING (customer_id, pid)
  LEFT JOIN (SELECT customer_id, promise_id AS pid, min(occurred_at) AS at FROM t
             WHERE type = 'PromiseWithdrawn' GROUP BY ALL) wd USING (customer_id, pid)
  LEFT JOIN order_delivered od
         ON od.customer_id = m.customer_id AND od.order_id = m.order_id
  LEFT JOIN delivered sd ON sd.customer_id = m.customer_id AND sd.shipment_id = m.shipment_id
  LEFT JOIN order_cancelled oc ON oc.customer_id = m.customer_id AND oc.order_id = m.order_id
  LEFT JOIN cases c ON c.customer_id = m.customer_id AND c.case_id = m.case_id;
CREATE TEMP TABLE reviews AS
  SELECT p.*, a.at AS answered_at
  FROM (SELECT customer_id, data->>'$.review_id' AS review_id,
               first(occurred_at ORDER BY k) AS posted_at,
               first((data->>'$.score')::INTEGER ORDER BY k) AS rating
        FROM t WHERE type = 'PublicReviewPosted' GROUP BY ALL) p
  LEFT JOIN (SELECT customer_id, data->>'$.review_id' AS review_id, min(occurred_at) AS at
             FROM t WHERE type = 'ReviewAnswered' GROUP BY ALL) a
  USING (customer_id, review_id);
CREATE TEMP TABLE ratings AS
  SELECT r.customer_id, r.occurred_at AS rated_at, (r.data->>'$.score')::INTEGER AS score,
         c.channel, c.team, c.product
  FROM t r LEFT JOIN cases c ON c.customer_id = r.customer_id AND c.case_id = r.case_id
  WHERE r.type = 'SatisfactionRated';
CREATE TEMP TABLE replacements AS
  WITH first_replacement AS (
    SELECT customer_id, data->>'$.product' AS product, min(k) AS k,
           first(occurred_at ORDER BY k) AS shipped_at, first(case_id ORDER BY k) AS case_id
    FROM t WHERE type = 'ReplacementShipped' GROUP BY ALL)
  SELECT f.customer_id, f.shipped_at, c.channel, c.team, f.product,
         (SELECT count(*) FROM t r WHERE r.type = 'RepairCompleted'
            AND r.customer_id = f.customer_id AND r.data->>'$.product' = f.product
            AND r.k < f.k) AS repairs_before
  FROM first_replacement f
  LEFT JOIN cases c ON c.customer_id = f.customer_id AND c.case_id = f.case_id;
CREATE TEMP TABLE surveys AS
  SELECT q.customer_id, q.requested_at, a.at AS answered_at, c.channel, c.team, c.product
  FROM (SELECT customer_id, data->>'$.feedback_id' AS feedback_id,
               first(occurred_at ORDER BY k) AS requested_at,
               first(case_id ORDER BY k) AS case_id
        FROM t WHERE type = 'FeedbackRequested' GROUP BY ALL) q
  LEFT JOIN (SELECT customer_id, data->>'$.feedback_id' AS feedback_id, min(occurred_at) AS at
             FROM t WHERE type IN ('SatisfactionRated', 'PublicReviewPosted')
               AND data->>'$.feedback_id' IS NOT NULL GROUP BY ALL) a
    USING (customer_id, feedback_id)
  LEFT JOIN cases c ON c.customer_id = q.customer_id AND c.case_id = q.case_id;
CREATE TEMP TABLE persons AS
  SELECT customer_id, any_value(resolved_customer_id) AS person FROM t GROUP BY ALL;
"""


def _group(dim: str | None, at: str) -> str:
    """The SQL expression of an item's group: its week or month by ``at``, or an attribute."""
    if dim is None:
        return "'all'"
    if dim == "week":
        return f"isoyear({at}) || '-W' || lpad(week({at})::VARCHAR, 2, '0')"
    if dim == "month":
        return f"strftime({at}, '%Y-%m')"
    return f"coalesce({dim}, '(none)')"


def _r(value: Any) -> Any:
    return None if value is None else round(float(value), 4)


def sql_metrics(
    con: duckdb.DuckDBPyConnection, dim: str | None, since: datetime, until: datetime,
    as_of: datetime,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """{group: figures}, every figure from SQL alone."""
    p = {"since": since, "until": until, "as_of": as_of}
    out: dict[str, dict[str, Any]] = {}

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return con.execute(sql, {k: v for k, v in p.items() if f"${k}" in sql}).fetchall()

    def fig(g: str) -> dict[str, Any]:
        if g not in out:
            out[g] = {
                "customers": 0,
                "promises": dict.fromkeys(
                    ("made", "kept", "kept_late", "broken", "cancelled", "open"), 0
                ),
                "first_reply_hours": {"p50": None, "p90": None, "p99": None, "n": 0},
                "next_reply_hours": {"p50": None, "p90": None, "p99": None, "n": 0},
                "unanswered_share": None,
                "contacts_per_resolved_case": None,
                "reviews": {"n": 0, "low_scores": 0, "answer_hours": {"p50": None, "p90": None}},
                "cases": {"opened": 0, "answered": 0, "resolved": 0},
                "reopen_rate": None,
                "repairs_before_replacement": {"n": 0, "mean": None, "max": None},
                "surveys": {"n": 0, "answered": 0, "answer_hours": {"p50": None, "p90": None}},
                "satisfaction": {"n": 0, "mean": None, "low_scores": 0},
            }
        return out[g]

    inside = "BETWEEN $since AND $until AND {at} < $until"
    g = _group(dim, "opened_at")
    for name, opened, answered, resolved, contacts, ever, reopened in rows(
        f"SELECT {g}, count(*), count(first_reply_at), count(*) FILTER (WHERE resolved),"
        " sum(contacts) FILTER (WHERE resolved), count(*) FILTER (WHERE ever_resolved),"
        " count(*) FILTER (WHERE ever_resolved AND reopened)"
        f" FROM cases WHERE opened_at {inside.format(at='opened_at')} GROUP BY 1"
    ):
        f = fig(name)
        f["cases"] = {"opened": opened, "answered": answered, "resolved": resolved}
        f["unanswered_share"] = _r((opened - answered) / opened)
        f["contacts_per_resolved_case"] = _r(contacts / resolved) if resolved else None
        f["reopen_rate"] = _r(reopened / ever) if ever else None
    g = _group(dim, "started_at")
    for kind in ("first", "next"):
        for name, p50, p90, p99, n in rows(
            f"SELECT {g}, quantile_cont(seconds / 3600, 0.5), quantile_cont(seconds / 3600, 0.9),"
            " quantile_cont(seconds / 3600, 0.99), count(seconds) FROM waits"
            f" WHERE kind = '{kind}' AND started_at {inside.format(at='started_at')}"
            " GROUP BY 1"
        ):
            fig(name)[f"{kind}_reply_hours"] = {
                "p50": _r(p50),
                "p90": _r(p90),
                "p99": _r(p99),
                "n": n,
            }
    g = _group(dim, "made_at")
    status = (
        "CASE WHEN fulfilled_at IS NOT NULL AND fulfilled_at <= due_by THEN 'kept'"
        " WHEN fulfilled_at IS NOT NULL THEN 'kept_late'"
        " WHEN withdrawn_at IS NOT NULL OR cancelled_at IS NOT NULL THEN 'cancelled'"
        " WHEN due_by <= $as_of THEN 'broken' ELSE 'open' END"
    )
    for name, state, n in rows(
        f"SELECT {g}, {status}, count(*) FROM promises"
        f" WHERE made_at {inside.format(at='made_at')} GROUP BY 1, 2"
    ):
        promises = fig(name)["promises"]
        promises[state] = n
        promises["made"] += n
    g = _group(dim if dim in (None, "week", "month") else "NULL", "posted_at")
    # (greatest() skips a null: the CASE keeps unanswered reviews out)
    answer = (
        "CASE WHEN answered_at IS NOT NULL THEN"
        " greatest(0, epoch(answered_at) - epoch(posted_at)) / 3600 END"
    )
    for name, n, low, p50, p90 in rows(
        f"SELECT {g}, count(*), count(*) FILTER (WHERE rating <= 2),"
        f" quantile_cont({answer}, 0.5), quantile_cont({answer}, 0.9)"
        f" FROM reviews WHERE posted_at {inside.format(at='posted_at')} GROUP BY 1"
    ):
        fig(name)["reviews"] = {
            "n": n, "low_scores": low, "answer_hours": {"p50": _r(p50), "p90": _r(p90)}
        }  # fmt: skip
    g = _group(dim, "requested_at")
    waited = (
        "CASE WHEN answered_at IS NOT NULL THEN"
        " greatest(0, epoch(answered_at) - epoch(requested_at)) / 3600 END"
    )
    for name, n, answered, p50, p90 in rows(
        f"SELECT {g}, count(*), count(answered_at), quantile_cont({waited}, 0.5),"
        f" quantile_cont({waited}, 0.9) FROM surveys"
        f" WHERE requested_at {inside.format(at='requested_at')} GROUP BY 1"
    ):
        fig(name)["surveys"] = {
            "n": n, "answered": answered, "answer_hours": {"p50": _r(p50), "p90": _r(p90)}
        }  # fmt: skip
    g = _group(dim, "rated_at")
    for name, n, mean, low in rows(
        f"SELECT {g}, count(*), avg(score), count(*) FILTER (WHERE score <= 2) FROM ratings"
        f" WHERE rated_at {inside.format(at='rated_at')} GROUP BY 1"
    ):
        fig(name)["satisfaction"] = {"n": n, "mean": _r(mean), "low_scores": low}
    g = _group(dim, "shipped_at")
    for name, n, mean, most in rows(
        f"SELECT {g}, count(*), avg(repairs_before), max(repairs_before) FROM replacements"
        f" WHERE shipped_at {inside.format(at='shipped_at')} GROUP BY 1"
    ):
        fig(name)["repairs_before_replacement"] = {"n": n, "mean": _r(mean), "max": most}
    if dim in (None, "week", "month"):
        g = _group(dim, "occurred_at")
        customers = (
            f"SELECT {g}, count(DISTINCT resolved_customer_id) FROM t"
            f" WHERE occurred_at {inside.format(at='occurred_at')} GROUP BY 1"
        )
    else:
        customers = (
            f"SELECT {_group(dim, 'opened_at')}, count(DISTINCT p.person) FROM cases"
            " JOIN persons p USING (customer_id)"
            f" WHERE opened_at {inside.format(at='opened_at')} GROUP BY 1"
        )
    for name, n in rows(customers):
        fig(name)["customers"] = n
    return out


def _load(
    tmp_path: Path, touchpoints: Sequence[Touchpoint]
) -> tuple[EmbeddedLog, duckdb.DuckDBPyConnection]:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    log.ensure_topics([TOPIC], 4)
    messages = [
        OutgoingMessage(
            key=tp.customer_id.encode(),
            value=encode(tp),
            timestamp_ms=int(tp.occurred_at.timestamp() * 1000),
        )
        for tp in touchpoints
    ]
    for i in range(0, len(messages), 5000):
        log.produce(TOPIC, messages[i : i + 5000])
    # a re-sent touchpoint (same event id) counts once on both sides
    log.produce(TOPIC, messages[:3])
    out = tmp_path / "history.duckdb"
    export(log, out, format="duckdb", topic=TOPIC)
    con = duckdb.connect(str(out))
    con.execute(
        "CREATE TEMP TABLE hours (team VARCHAR, tz VARCHAR, dow INTEGER, open_min INTEGER,"
        " close_min INTEGER); CREATE TEMP TABLE holidays (team VARCHAR, day DATE)"
    )
    for team, cal in CALENDARS.items():
        for day, spans in cal.hours.items():
            for span in spans:
                a, b = span.split("-")
                minutes = [int(x[:2]) * 60 + int(x[3:]) for x in (a, b)]
                con.execute(
                    "INSERT INTO hours VALUES (?, ?, ?, ?, ?)",
                    [team, cal.time_zone, WEEKDAYS.index(day) + 1, *minutes],
                )
        for holiday in cal.holidays:
            con.execute("INSERT INTO holidays VALUES (?, ?)", [team, holiday])
    con.execute(SETUP)
    return log, con


def _without_period(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k not in ("period", "groups")}


def _check(
    log: EmbeddedLog, con: duckdb.DuckDBPyConnection, since: datetime, until: datetime,
    as_of: datetime,
) -> dict[str, Any]:  # fmt: skip
    facts = analytics.read(log, since, until, business_hours=CALENDARS)
    overall = analytics.metrics(facts, as_of=as_of)
    assert _without_period(overall) == sql_metrics(con, None, since, until, as_of)["all"]
    for by in analytics.BY:
        grouped = analytics.metrics(facts, by=by, as_of=as_of)
        expected = sql_metrics(con, by, since, until, as_of)
        got = {name: _without_period(f) for name, f in grouped["groups"].items()}
        # a group the SQL finds nothing in is one Python lists only with empty figures
        assert set(expected) <= set(got), by
        for name, figures in got.items():
            assert figures == expected.get(name, figures if _empty(figures) else {}), (by, name)
    return overall


def _empty(f: dict[str, Any]) -> bool:
    return f["cases"]["opened"] == 0 and f["promises"]["made"] == 0 and f["customers"] == 0


def test_stories_agree_with_sql(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    log, con = _load(tmp_path, all_touchpoints(now))
    try:
        overall = _check(log, con, now - timedelta(days=400), now + timedelta(days=30), now)
        assert overall["cases"]["opened"] > 5 and overall["promises"]["made"] > 3
    finally:
        con.close()
        log.close()


def test_a_synthetic_year_agrees_with_sql(tmp_path: Path) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    touchpoints = generate_touchpoints(
        100_000, 3000, seed=11, start=start, journey=service_journey, spread_days=365
    )
    log, con = _load(tmp_path, touchpoints)
    try:
        overall = _check(log, con, start, start + timedelta(days=365), start + timedelta(days=400))
        # the year is really there, with everything the metrics count
        assert con.execute("SELECT count(*) FROM touchpoints").fetchone() == (100_000,)
        assert overall["first_reply_hours"]["n"] > 5000 and overall["next_reply_hours"]["n"] > 1000
        assert all(
            overall["promises"][s] > 100 for s in ("kept", "kept_late", "broken", "cancelled")
        )
        assert overall["reopen_rate"] and overall["repairs_before_replacement"]["n"] > 100
        assert not math.isnan(overall["satisfaction"]["mean"])
        assert overall["surveys"]["answered"] > 100 and overall["reviews"]["answer_hours"]["p50"]
    finally:
        con.close()
        log.close()
