"""The agent console's server-rendered pages (the browser test drives them in Chromium:
tests/browser/test_console.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tests.service.helpers import Running, inquiry


class _Outline(HTMLParser):
    """Headings, labelled inputs and the page language: what a screen reader leans on."""

    def __init__(self) -> None:
        super().__init__()
        self.lang: str | None = None
        self.headings: list[int] = []
        self.labels: set[str] = set()
        self.inputs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))
        if tag == "input" and a.get("type") != "hidden":
            self.inputs.append(str(a.get("id")))


def _accessible(html: str) -> _Outline:
    outline = _Outline()
    outline.feed(html)
    assert outline.lang == "en"
    assert outline.headings.count(1) == 1, "one h1 per page"
    for previous, level in zip(outline.headings, outline.headings[1:], strict=False):
        assert level <= previous + 1, f"heading levels skip: {outline.headings}"
    assert all(i in outline.labels for i in outline.inputs), "every input has a label"
    return outline


def test_home_searches_and_lists_the_work(svc: Running) -> None:
    response = svc.get("/")
    assert response.status_code == 200
    html = response.text
    _accessible(html)
    assert "Find a customer" in html
    assert "Still without a real answer" in html and "Missed targets" in html
    assert "Erik Haugen" in html, "the bank that never answered is on the work list"
    assert 'class="badge fresh"' in html


def test_search_results_and_exact_match_redirect(svc: Running) -> None:
    html = svc.get("/", params={"q": "sven"}).text
    _accessible(html)
    assert 'href="/console/customers/cust-sven"' in html
    response = svc.get("/", params={"q": "sven.berg@example.se"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/customers/cust-sven"
    assert "Nobody matches" in svc.get("/", params={"q": "qqq-nobody"}).text


def test_customer_page(svc: Running) -> None:
    response = svc.get("/console/customers/cust-sven")
    assert response.status_code == 200
    html = response.text
    _accessible(html)
    for heading in (
        "Who",
        "What they submitted",
        "Open cases",
        "Promises",
        "Products and repairs",
        "Timeline",
    ):
        assert f">{heading}" in html, heading
    assert "Sven Berg" in html and "CN-0X1Y2Z" in html
    assert 'data-live="/customers/cust-sven/events?format=html&amp;page=1"' in html
    assert "/static/console.js" in html
    assert svc.get("/static/console.js").status_code == 200
    assert svc.get("/static/console.css").status_code == 200


def test_everything_shown_is_escaped(svc: Running) -> None:
    svc.emitter.emit_touchpoints([inquiry("cust-emma", '<img src=x onerror="alert(1)">')])
    html = svc.get("/console/customers/cust-emma").text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert "<img src=x" not in html
    response = svc.get("/console/customers/<img src=x onerror=alert(1)>")
    assert response.status_code == 404
    assert "&lt;img src=x onerror=alert(1)&gt;" in response.text
    assert "<img src=x" not in response.text
