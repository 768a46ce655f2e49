"""From the metrics of a period to figures (a chart beside a table of its numbers) and HTML.

The input is :class:`ReportInput`: the dict ``journey metrics --json`` prints for the whole
period, the same dict per week, team and channel, and the reply times behind the
distributions. Nothing here computes a metric; it picks, formats and draws.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from journey.charts import (
    Series,
    bar_chart,
    format_number,
    histogram,
    line_chart,
    stacked_bar_chart,
)

__all__ = [
    "REPLY_BANDS",
    "Distribution",
    "Figure",
    "ReportInput",
    "Table",
    "render_report",
    "render_sections",
    "report_css",
]

_HERE = Path(__file__).parent
Metrics = Mapping[str, Any]
"""One period's (or group's) metrics: the dict ``journey metrics --json`` prints."""

# Waiting-time bands, in hours: how people speak of a wait ("within the hour", "next day",
# "over a week"), so the bars are bands, not equal widths.
REPLY_BANDS = (0.0, 1.0, 2.0, 4.0, 8.0, 24.0, 48.0, 72.0, 168.0, math.inf)
MAX_GROUPS = 60  # teams or channels charted (the table lists them all)

# One look per meaning, the same in every chart.
KEPT, KEPT_LATE, BROKEN = 0, 3, 1
P50, P90 = 0, 1


@dataclass(frozen=True)
class Distribution:
    """Waiting times behind a distribution chart, in hours (e.g. every first reply)."""

    name: str
    hours: Sequence[float]
    unanswered: int = 0
    """Waits that never got a reply: no time to draw, a row in the table."""


@dataclass(frozen=True)
class ReportInput:
    """What a report shows. Groups are (label, metrics) pairs in the order to show them."""

    since: datetime
    until: datetime
    overall: Metrics
    weeks: Sequence[tuple[str, Metrics]] = ()
    teams: Sequence[tuple[str, Metrics]] = ()
    channels: Sequence[tuple[str, Metrics]] = ()
    distributions: Sequence[Distribution] = ()
    source: str = ""
    """Where the numbers were read (shown in the footer)."""
    touchpoints: int = 0
    """How many touchpoints were read to make them."""


@dataclass(frozen=True)
class Table:
    head: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    id: str
    heading: str
    svg: Markup
    table: Table
    note: str = ""


@dataclass
class Section:
    id: str
    heading: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    table: Table | None = None


def _trusted(html: str) -> Markup:
    """HTML we made ourselves and that escaped every text it holds: the charts
    (journey.charts), our autoescaped templates, our stylesheet."""
    return Markup(html)  # noqa: S704 - see above: no caller passes text it did not escape


# ---------------------------------------------------------------------- reading the dict


def _at(metrics: Metrics, *path: str) -> Any:
    value: Any = metrics
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _number(metrics: Metrics, *path: str) -> float | None:
    value = _at(metrics, *path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _share(value: float | None) -> str:
    return "—" if value is None else f"{format_number(value * 100)} %"


# ---------------------------------------------------------------------- figures


_ISO_WEEK = re.compile(r"(\d{4})-(W\d{2})")


def _week_axis(labels: Sequence[str]) -> tuple[list[str], str]:
    """Short week names under a chart ("W48"), the years in the axis title: "2026-W48"
    nine times side by side does not fit."""
    found = [_ISO_WEEK.fullmatch(label) for label in labels]
    if not labels or not all(found):
        return list(labels), "week"
    years = sorted({m.group(1) for m in found if m})
    span = years[0] if len(years) == 1 else f"{years[0]}–{years[-1]}"
    return [m.group(2) for m in found if m], f"ISO week of {span}"


def _weekly(data: ReportInput) -> Section:
    section = Section("weeks", "Week by week")
    labels = [label for label, _ in data.weeks]
    axis_labels, axis_title = _week_axis(labels)
    rows = [m for _, m in data.weeks]
    # The first measure of volume the metrics have: contacts, else cases opened, else people.
    volumes = [
        (("contacts",), "Contacts from customers", "contacts"),
        (("cases", "opened"), "Cases opened", "cases opened"),
        (("customers",), "Customers in touch", "customers"),
    ]
    path, heading, unit = next(
        (v for v in volumes if any(_number(m, *v[0]) is not None for m in rows)), volumes[-1]
    )
    counts = [_number(m, *path) for m in rows]
    section.figures.append(
        Figure(
            "weekly-volume",
            f"{heading} per week",
            _trusted(
                bar_chart(
                    chart_id="weekly-volume",
                    title=f"{heading} per week",
                    labels=axis_labels,
                    values=counts,
                    x_label=axis_title,
                    y_label=unit,
                )
            ),
            Table(
                ["Week", unit.capitalize(), "Customers"],
                [
                    [label, format_number(n), format_number(_number(m, "customers"))]
                    for label, n, m in zip(labels, counts, rows, strict=True)
                ],
            ),
        )
    )
    p50 = [_number(m, "first_reply_hours", "p50") for m in rows]
    p90 = [_number(m, "first_reply_hours", "p90") for m in rows]
    section.figures.append(
        Figure(
            "weekly-first-reply",
            "Time to first reply",
            _trusted(
                line_chart(
                    chart_id="weekly-first-reply",
                    title="Time to first reply per week, median (p50) and p90, in hours",
                    labels=axis_labels,
                    series=[
                        Series("median (p50)", p50, style=P50),
                        Series("p90: 9 in 10 within", p90, style=P90),
                    ],
                    x_label=axis_title,
                    y_label="hours to first reply",
                )
            ),
            Table(
                ["Week", "p50 h", "p90 h", "Replies"],
                [
                    [
                        label,
                        format_number(a),
                        format_number(b),
                        format_number(_number(m, "first_reply_hours", "n")),
                    ]
                    for label, a, b, m in zip(labels, p50, p90, rows, strict=True)
                ],
            ),
            note="Automatic acknowledgements are not replies.",
        )
    )
    section.figures.append(
        _promises_figure("weekly-promises", "week", data.weeks, axis=(axis_labels, axis_title))
    )
    return section


def _promise_series(groups: Sequence[tuple[str, Metrics]]) -> list[Series]:
    rows = [m for _, m in groups]
    return [
        Series("kept", [_number(m, "promises", "kept") for m in rows], style=KEPT),
        Series("kept late", [_number(m, "promises", "kept_late") for m in rows], style=KEPT_LATE),
        Series("broken", [_number(m, "promises", "broken") for m in rows], style=BROKEN),
    ]


_PROMISE_KEYS = ("made", "kept", "kept_late", "broken", "cancelled", "open")


def _promises_figure(
    chart_id: str,
    by: str,
    groups: Sequence[tuple[str, Metrics]],
    *,
    horizontal: bool = False,
    axis: tuple[Sequence[str], str] | None = None,
) -> Figure:
    shown = list(groups[:MAX_GROUPS])
    labels, title = axis or ([label for label, _ in shown], by)
    return Figure(
        chart_id,
        f"Promises kept against broken, by {by}",
        _trusted(
            stacked_bar_chart(
                chart_id=chart_id,
                title=f"Promises kept, kept late and broken, by {by}",
                labels=labels,
                series=_promise_series(shown),
                x_label=title,
                y_label="promises made, by outcome",
                horizontal=horizontal,
            )
        ),
        Table(
            [by.capitalize(), "Made", "Kept", "Kept late", "Broken", "Cancelled", "Open"],
            [
                [label, *(format_number(_number(m, "promises", k)) for k in _PROMISE_KEYS)]
                for label, m in groups
            ],
        ),
        note=f"Each promise counts where it was made (its {by}), with its outcome as at "
        "the moment the figures were read.",
    )


def _bands(hours: Sequence[float]) -> list[int]:
    counts = [0] * (len(REPLY_BANDS) - 1)
    for value in hours:
        if not math.isfinite(value) or value < 0:
            continue
        for i in range(len(counts)):
            if value < REPLY_BANDS[i + 1]:
                counts[i] += 1
                break
    return counts


def _distributions(data: ReportInput) -> Section:
    section = Section(
        "replies",
        "How long customers wait for a reply",
        "Each bar counts the replies that came within that band of hours after the customer wrote.",
    )
    for index, dist in enumerate(data.distributions):
        counts = _bands(dist.hours)
        chart_id = f"reply-dist-{index}"
        labels = [
            f"{format_number(lo)}+ h"
            if math.isinf(hi)
            else f"{format_number(lo)}–{format_number(hi)} h"
            for lo, hi in itertools.pairwise(REPLY_BANDS)
        ]
        total = sum(counts)
        section.figures.append(
            Figure(
                chart_id,
                dist.name,
                _trusted(
                    histogram(
                        chart_id=chart_id,
                        title=f"{dist.name}: replies per band of hours",
                        edges=REPLY_BANDS,
                        counts=counts,
                        x_label="hours waited",
                        y_label="replies",
                    )
                ),
                Table(
                    ["Waited", "Replies", "Share"],
                    [
                        [label, format_number(count), _share(count / total if total else None)]
                        for label, count in zip(labels, counts, strict=True)
                    ]
                    + [["Never answered", format_number(dist.unanswered), "—"]],
                ),
                note=f"{format_number(dist.unanswered)} never answered (not drawn)."
                if dist.unanswered
                else "",
            )
        )
    return section


_GROUP_HEAD = [
    "Customers",
    "First reply p50 h",
    "p90 h",
    "p99 h",
    "Replies",
    "Never answered",
    "Contacts per resolved case",
    "Promises made",
    "Kept",
    "Kept late",
    "Broken",
    "Reviews",
    "Scores 1–2",
]


def _group_row(label: str, m: Metrics) -> list[str]:
    return [
        label,
        format_number(_number(m, "customers")),
        format_number(_number(m, "first_reply_hours", "p50")),
        format_number(_number(m, "first_reply_hours", "p90")),
        format_number(_number(m, "first_reply_hours", "p99")),
        format_number(_number(m, "first_reply_hours", "n")),
        _share(_number(m, "unanswered_share")),
        format_number(_number(m, "contacts_per_resolved_case")),
        format_number(_number(m, "promises", "made")),
        format_number(_number(m, "promises", "kept")),
        format_number(_number(m, "promises", "kept_late")),
        format_number(_number(m, "promises", "broken")),
        format_number(_number(m, "reviews", "n")),
        format_number(_number(m, "reviews", "low_scores")),
    ]


def _per_group(key: str, by: str, heading: str, groups: Sequence[tuple[str, Metrics]]) -> Section:
    section = Section(key, heading)
    shown = list(groups[:MAX_GROUPS])
    labels = [label for label, _ in shown]
    section.figures.append(
        Figure(
            f"{key}-first-reply",
            f"Time to first reply, by {by}",
            _trusted(
                bar_chart(
                    chart_id=f"{key}-first-reply",
                    title=f"Median time to first reply in hours, by {by}",
                    labels=labels,
                    values=[_number(m, "first_reply_hours", "p50") for _, m in shown],
                    x_label=by,
                    y_label="median hours to first reply",
                    horizontal=True,
                    integer=False,
                )
            ),
            Table(
                [by.capitalize(), "p50 h", "p90 h", "Replies", "Never answered"],
                [
                    [
                        label,
                        format_number(_number(m, "first_reply_hours", "p50")),
                        format_number(_number(m, "first_reply_hours", "p90")),
                        format_number(_number(m, "first_reply_hours", "n")),
                        _share(_number(m, "unanswered_share")),
                    ]
                    for label, m in groups
                ],
            ),
        )
    )
    section.figures.append(_promises_figure(f"{key}-promises", by, groups, horizontal=True))
    section.table = Table(
        [by.capitalize(), *_GROUP_HEAD],
        [_group_row(label, m) for label, m in groups],
        caption=f"Every metric, by {by}",
    )
    return section


def _key_figures(m: Metrics) -> list[tuple[str, str, str]]:
    """(what, value, detail) for the period at a glance."""
    promises = ", ".join(
        f"{format_number(_number(m, 'promises', k))} {k.replace('_', ' ')}"
        for k in _PROMISE_KEYS[1:]
    )
    return [
        ("Customers in touch", format_number(_number(m, "customers")), ""),
        (
            "First reply, median",
            f"{format_number(_number(m, 'first_reply_hours', 'p50'))} h",
            f"p90 {format_number(_number(m, 'first_reply_hours', 'p90'))} h, "
            f"p99 {format_number(_number(m, 'first_reply_hours', 'p99'))} h, "
            f"{format_number(_number(m, 'first_reply_hours', 'n'))} replies",
        ),
        (
            "Never answered",
            _share(_number(m, "unanswered_share")),
            "of the cases opened have had no real reply",
        ),
        (
            "Contacts per resolved case",
            format_number(_number(m, "contacts_per_resolved_case")),
            "customer effort: fewer is better",
        ),
        ("Promises made", format_number(_number(m, "promises", "made")), promises),
        (
            "Public reviews",
            format_number(_number(m, "reviews", "n")),
            f"{format_number(_number(m, 'reviews', 'low_scores'))} scored 1–2; answered in "
            f"{format_number(_number(m, 'reviews', 'answer_hours', 'p50'))} h (median), "
            f"{format_number(_number(m, 'reviews', 'answer_hours', 'p90'))} h (p90)"
            if _number(m, "reviews", "answer_hours", "p50") is not None
            else f"{format_number(_number(m, 'reviews', 'low_scores'))} scored 1–2; "
            "none answered yet",
        ),
    ]


def sections(data: ReportInput) -> list[Section]:
    out = [_weekly(data)]
    if data.distributions:
        out.append(_distributions(data))
    if data.teams:
        out.append(_per_group("teams", "team", "By team", data.teams))
    if data.channels:
        out.append(_per_group("channels", "channel", "By channel", data.channels))
    return out


# ---------------------------------------------------------------------- HTML


@cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["day"] = lambda at: at.strftime("%Y-%m-%d")
    # The last day a period [since, until) includes: until itself when it is midnight is not.
    env.filters["last_day"] = lambda at: (at - timedelta(microseconds=1)).strftime("%Y-%m-%d")
    return env


def report_css() -> str:
    """The report's stylesheet: inlined into the file, linked by the console."""
    return (_HERE / "report.css").read_text(encoding="utf-8")


def _context(data: ReportInput) -> dict[str, Any]:
    return {
        "data": data,
        "key_figures": _key_figures(data.overall),
        "sections": sections(data),
    }


def render_sections(data: ReportInput) -> Markup:
    """The figures and tables, for a page that has its own head and navigation."""
    return _trusted(_env().get_template("_sections.html").render(**_context(data)))


def render_report(data: ReportInput, *, generated_at: datetime) -> str:
    """One self-contained HTML document: styles inline, charts inline, no script, no link."""
    return (
        _env()
        .get_template("report.html")
        .render(
            css=_trusted(report_css()),
            generated_at=generated_at,
            body=render_sections(data),
            **_context(data),
        )
    )
