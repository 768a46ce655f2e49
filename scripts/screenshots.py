"""Screenshots of the agent console's main screens and of the service report for the README
(docs/img/), taken in the system Chromium (headless, through Playwright): ``make screenshots``.

The console runs over the seed stories; the report is `journey report` over 13 weeks of
synthetic traffic (journey/synthetic.py: the stories alone are a handful of cases).

Needs the dev extras (Playwright) and Chromium at /usr/bin/chromium (or JOURNEY_CHROMIUM).
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from consumers.embedded_log import EmbeddedLog  # noqa: E402
from journey.emitter import Emitter  # noqa: E402
from journey.report import render_report  # noqa: E402
from journey.report.gather import gather  # noqa: E402
from journey.service import ServiceOptions  # noqa: E402
from journey.service.freshness import tokens_of  # noqa: E402
from journey.synthetic import generate_touchpoints, service_journey  # noqa: E402
from tests.service.helpers import (  # noqa: E402
    embedded_settings,
    inquiry,
    play_stories,
    running_service,
)

OUT = ROOT / "docs" / "img"
CHROMIUM = os.environ.get("JOURNEY_CHROMIUM", "/usr/bin/chromium")
SCREENS = [
    ("console-home.png", "/", "Work lists: one row per customer, red only for what was missed"),
    ("console-search.png", "/?q=five+days", "Search finds what customers said"),
    ("console-customer.png", "/console/customers/cust-sven", "One customer, live"),
    ("console-metrics.png", "/console/metrics?weeks=26", "Service metrics for a period"),
]
BUSY = "cust-lina"  # given 60 more open cases before her whole list is taken
TOPIC = "journey.touchpoints"


def report_screenshot(browser: Any, directory: Path) -> None:
    """`journey report` over 13 weeks of synthetic traffic; the top of it, as a reader
    first sees it."""
    now = datetime.now(UTC).replace(microsecond=0)
    # 13 whole ISO weeks, up to this week's Monday.
    monday = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=now.weekday())
    since = monday - timedelta(weeks=13)
    log = EmbeddedLog(str(directory / "synthetic.db"))
    try:
        # Customers who mostly talk to customer service, arriving over the 13 weeks.
        touchpoints = generate_touchpoints(
            24_000,
            2_000,
            seed=11,
            start=since,
            journey=service_journey,
            spread_days=13 * 7 - 3,
        )
        emitter = Emitter(log, topic=TOPIC, source="synthetic")
        for i in range(0, len(touchpoints), 5000):
            emitter.emit_touchpoints(touchpoints[i : i + 5000])
        data = gather(log, since, monday, as_of=now, topic=TOPIC)
    finally:
        log.close()
    html = directory / "report.html"
    html.write_text(render_report(data, generated_at=now), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    page.goto(html.as_uri())
    page.screenshot(path=str(OUT / "report.png"))
    print(f"{OUT / 'report.png'}")
    page.close()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stories = play_stories(Path(tmp) / "stories")
        options = ServiceOptions(max_wait_ms=2000)
        with (
            running_service(embedded_settings(stories), options) as running,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            pages = {}
            for role in ("agent", "analyst"):  # the work is an agent's, the metrics an analyst's
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies([running.session_cookie(role)])  # signed in
                pages[role] = context.new_page()
            page = pages["agent"]
            for name, url, _ in SCREENS:
                page = pages["analyst" if "metrics" in url else "agent"]
                page.goto(running.server.url + url)
                if url.startswith("/console/customers/") and "/lists/" not in url:
                    page.locator("#live-state", has_text="Live").wait_for()
                # The metrics page is long: its top (the period, at a glance, a week) says it.
                page.screenshot(path=str(OUT / name), full_page="metrics" not in url)
                print(f"{OUT / name}")
            cases = [inquiry(BUSY, f"Question {i} about the TV", f"tv-q-{i}") for i in range(60)]
            token = tokens_of(running.emitter.emit_touchpoints(cases))
            running.http.get(f"/customers/{BUSY}", params={"after": token})
            page = pages["agent"]
            page.goto(running.server.url + f"/console/customers/{BUSY}/lists/open_cases")
            page.screenshot(path=str(OUT / "console-list.png"))
            print(f"{OUT / 'console-list.png'}")
            report_screenshot(browser, Path(tmp))
            browser.close()


if __name__ == "__main__":
    main()
