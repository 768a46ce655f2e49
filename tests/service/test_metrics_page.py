"""The console's metrics page (/console/metrics): linked from every page, the figures of
journey.analytics for the period chosen, charts beside tables, a period chooser that says
what is wrong with a period it cannot show (tests/browser checks it in Chromium)."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta

from journey import analytics
from journey.analytics.export import store_resolver
from journey.charts import format_number
from journey.service.metrics_page import metrics_period
from tests.service.helpers import Running
from tests.service.test_console_html import _accessible
from tests.unit.test_report_html import parsed


def test_every_console_page_links_to_the_metrics(svc: Running) -> None:
    for path in ("/", "/console/work/unanswered", "/console/customers/cust-sven"):
        html = svc.get(path).text
        assert re.search(r'<nav class="nav" aria-label="Console">.*href="/console/metrics"', html)


def test_the_page_shows_the_analytics_figures_for_the_period(svc: Running) -> None:
    today = datetime.now(UTC).date()
    first = today - timedelta(days=90)
    response = svc.get("/console/metrics", params={"since": str(first), "until": str(today)})
    assert response.status_code == 200
    html = response.text
    _accessible(html)
    assert 'aria-current="page">Metrics' in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') >= 8
    assert html.count("<table>") >= 8
    assert "<script>" not in html.replace('<script src="/static/console.js" defer></script>', "")
    assert 'href="/console/report.css"' in html
    # Read as `journey metrics` reads, persons as the store merges them.
    facts = analytics.read(
        svc.service.log,
        first,
        today + timedelta(days=1),
        resolve=store_resolver(svc.service.reader.get()),
    )
    expected = analytics.metrics(facts, as_of=datetime.now(UTC))
    text = " ".join(" ".join(parsed(html).text).split())
    reply = expected["first_reply_hours"]
    assert expected["customers"] > 0 and reply["n"] > 0
    assert f"Customers in touch {format_number(expected['customers'])}" in text
    assert f"First reply, median {format_number(reply['p50'])} h" in text
    assert f"Promises made {format_number(expected['promises']['made'])}" in text
    assert f'value="{first}"' in html and f'value="{today}"' in html  # the chooser shows it


def test_the_stylesheet_of_the_sections_is_served(svc: Running) -> None:
    response = svc.get("/console/report.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert ".figure-body" in response.text


def test_a_period_it_cannot_show_is_said_in_words(svc: Running) -> None:
    cases = {
        ("2026-13-01", "2026-12-01"): "is not a day",
        ("2026-12-01", "2026-11-01"): "must end on or after",
        ("2020-01-01", "2026-11-01"): "at most 106 weeks",
        ("2026-11-01", ""): "Give both days",
    }
    for (since, until), words in cases.items():
        response = svc.get("/console/metrics", params={"since": since, "until": until})
        assert response.status_code == 422, (since, until)
        assert words in response.text
        assert 'role="alert"' in response.text
        assert "<svg" not in response.text
    assert svc.get("/console/metrics", params={"weeks": 0}).status_code == 422


def test_a_long_read_goes_on_while_the_page_says_so_and_reloads_itself(svc: Running) -> None:
    cache = svc.server.app.state.metrics_cache
    cache.wait_s = 0  # every read is "long"
    response = svc.get("/console/metrics", params={"weeks": 52})
    assert response.status_code == 202
    assert '<meta http-equiv="refresh" content="3">' in response.text
    assert 'role="status">Reading the log of record' in response.text
    assert "<svg" not in response.text
    for _ in range(300):  # the read went on without the request: the page gets it
        response = svc.get("/console/metrics", params={"weeks": 52})
        if response.status_code == 200:
            break
        time.sleep(0.1)
    assert response.status_code == 200, response.text
    assert 'http-equiv="refresh"' not in response.text
    assert "The period at a glance" in response.text

    cache.max_pending = 0  # reads are queued only so far; beyond, the page says so
    busy = svc.get("/console/metrics", params={"weeks": 26})
    assert busy.status_code == 503
    assert "periods are being read from the log already" in busy.text


def test_periods_are_whole_utc_days_both_included() -> None:
    today = date(2026, 12, 1)
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert metrics_period(today, None, None, 4) == (midnight - timedelta(weeks=4), midnight)
    assert metrics_period(today, "2026-11-01", "2026-11-30", None) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    one_day = metrics_period(today, "2026-11-05", "2026-11-05", None)
    assert isinstance(one_day, tuple) and one_day[1] - one_day[0] == timedelta(days=1)
