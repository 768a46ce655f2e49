"""The report as HTML (journey/report): one self-contained file, accessible, hostile names inert.

These use a hand-made input; tests/integration/test_report.py checks the figures of the
seed stories end to end.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from journey.report import Distribution, ReportInput, render_report, render_sections

HOSTILE = '<script>alert("team")</script><img src="https://evil.example/x.png">'


def metrics(customers: int, *, p50: float = 2.5) -> dict[str, Any]:
    return {
        "customers": customers,
        "promises": {
            "made": 9,
            "kept": 5,
            "kept_late": 1,
            "broken": 2,
            "cancelled": 1,
            "open": 0,
        },
        "first_reply_hours": {"p50": p50, "p90": 30.375, "p99": 70.0, "n": 11},
        "unanswered_share": 0.125,
        "contacts_per_resolved_case": 2.75,
        "reviews": {"n": 3, "low_scores": 1, "answer_hours": {"p50": 4.5, "p90": 20.0}},
        "cases": {"opened": 12, "answered": 11, "resolved": 7},
    }


def report_input() -> ReportInput:
    return ReportInput(
        since=datetime(2026, 11, 2, tzinfo=UTC),
        until=datetime(2026, 12, 1, tzinfo=UTC),
        overall=metrics(42),
        weeks=[("2026-W45", metrics(10)), ("2026-W46", metrics(20, p50=7.75))],
        teams=[("Returns", metrics(12)), (HOSTILE, metrics(3))],
        channels=[("email", metrics(30)), (HOSTILE, metrics(1))],
        distributions=[Distribution("Time to first reply", [0.5, 1.5, 3.0, 30.0, 200.0])],
        source="embedded://journey.db",
    )


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)


def parsed(html: str) -> Elements:
    elements = Elements()
    elements.feed(html)
    return elements


def test_the_report_is_one_self_contained_file() -> None:
    html = render_report(report_input(), generated_at=datetime(2026, 12, 1, 9, tzinfo=UTC))
    page = parsed(html)
    tags = [tag for tag, _ in page.tags]
    assert "script" not in tags
    assert "link" not in tags  # the stylesheet is inline
    assert page.style.strip()  # ... and here
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            # Only links within the page: #fragment (and SVG's url(#pattern) fills).
            assert value is None or value.startswith("#"), (tag, name, value)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "style" not in attrs or tag == "style", (tag, attrs)
    assert not re.search(r"@import|url\((?!#)", page.style)
    assert tags.count("svg") >= 8  # weekly volume, reply times, promises, histogram, groups
    assert 'fill="url(#' in html  # textures are defined in the same file


def test_every_chart_has_its_numbers_in_a_table_beside_it() -> None:
    html = render_report(report_input(), generated_at=datetime(2026, 12, 1, 9, tzinfo=UTC))
    figures = re.findall(r'<figure class="figure".*?</figure>', html, flags=re.DOTALL)
    assert len(figures) >= 8
    for figure in figures:
        assert "<svg" in figure
        assert "<table>" in figure
        assert 'role="img"' in figure
    text = " ".join(parsed(html).text)
    for number in ("42", "2.5", "30.4", "12.5 %", "2.75", "7.75"):  # 30.375 h reads 30.4
        assert number in text, number


def test_hostile_team_and_channel_names_are_text() -> None:
    html = render_sections(report_input())
    assert "<script>" not in html
    assert 'evil.example/x.png">' not in html
    assert "&lt;script&gt;" in html
    page = parsed(html)
    assert not [t for t, _ in page.tags if t in {"script", "img"}]
    assert any("<script>alert" in chunk for chunk in page.text)  # shown, as it was named


def test_an_empty_period_still_renders_and_says_so() -> None:
    empty = ReportInput(
        since=datetime(2026, 11, 2, tzinfo=UTC),
        until=datetime(2026, 11, 9, tzinfo=UTC),
        overall={"customers": 0, "promises": {}, "first_reply_hours": {"n": 0}},
    )
    html = render_report(empty, generated_at=datetime(2026, 12, 1, tzinfo=UTC))
    assert "No data in this period" in html
