"""The console's metrics page in a real headless Chromium: reached from the navigation, its
charts drawn (visible, sized, named for screen readers), the period chooser working without
script, and no error on the page. A screenshot goes to artifacts/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.browser.test_console import ARTIFACTS, chromium, console  # noqa: F401 (fixtures)
from tests.service.helpers import Running

pytestmark = pytest.mark.browser


def test_the_metrics_page_draws_its_charts(chromium: Any, console: Running) -> None:  # noqa: F811
    from playwright.sync_api import expect

    # An admin: the work lists are an agent's, the metrics an analyst's (admin may both).
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([console.session_cookie("admin")])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(console.server.url + "/")
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Metrics").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Service metrics")
    expect(page.get_by_role("heading", name="The period at a glance")).to_be_visible()

    charts = page.locator("svg.chart")
    assert charts.count() >= 8
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100, box
        # A named image: its <title> is what a screen reader announces.
        assert chart.get_attribute("role") == "img"
        assert chart.locator("title").first.text_content()
    # The weekly bars and the promise bars are drawn, not just their frames.
    assert page.locator("#weekly-volume rect[fill^='url(#weekly-volume-fill']").count() > 0
    assert page.locator("#weekly-promises rect[fill^='url(#weekly-promises-fill']").count() > 0
    assert page.locator("#weekly-first-reply polyline, #weekly-first-reply circle").count() > 0
    # The stylesheet reached it: a chart sits beside its table on a wide screen.
    figure = page.locator("#f-weekly-volume")
    chart_box = figure.locator("svg.chart").bounding_box()
    table_box = figure.locator("table").bounding_box()
    assert chart_box and table_box and table_box["x"] > chart_box["x"] + chart_box["width"] - 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-metrics.png"), full_page=True)

    # The period chooser is a plain form: two days and a button.
    today = datetime.now(UTC).date()
    first = today - timedelta(days=20)
    page.get_by_label("From (UTC day)").fill(str(first))
    page.get_by_label("To (UTC day, included)").fill(str(today))
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"{first} to {today}")
    assert f"since={first}" in page.url

    page.get_by_role("link", name="52 weeks").click()
    expect(page.get_by_role("link", name="52 weeks")).to_have_attribute("aria-current", "page")
    assert not errors, errors
    context.close()


def test_an_agent_is_not_shown_the_metrics_an_analyst_is(
    chromium: Any,  # noqa: F811
    console: Running,  # noqa: F811
) -> None:
    for role, shown, status in (("agent", False, 403), ("analyst", True, 200)):
        context = chromium.new_context()
        context.add_cookies([console.session_cookie(role)])
        page = context.new_page()
        response = page.goto(console.server.url + "/console/metrics?weeks=4")
        assert response is not None and response.status == status, role
        if shown:
            assert page.locator("svg.chart").count() >= 8
            nav = page.get_by_role("navigation", name="Console")
            assert nav.get_by_role("link", name="Metrics").count() == 1
            assert nav.get_by_role("link", name="Work").count() == 0  # not theirs to open
        else:
            page.goto(console.server.url + "/")
            nav = page.get_by_role("navigation", name="Console")
            assert nav.get_by_role("link", name="Work").count() == 1
            assert nav.get_by_role("link", name="Metrics").count() == 0
        context.close()
