"""Screenshots of the agent console's main screens for the README (docs/img/), taken in the
system Chromium (headless, through Playwright) over the seed stories: ``make screenshots``.

Needs the dev extras (Playwright) and Chromium at /usr/bin/chromium (or JOURNEY_CHROMIUM).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from journey.service import ServiceOptions  # noqa: E402
from journey.service.freshness import tokens_of  # noqa: E402
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
]
BUSY = "cust-lina"  # given 60 more open cases before her whole list is taken


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
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([running.session_cookie("agent")])  # signed in, as an agent
            page = context.new_page()
            for name, url, _ in SCREENS:
                page.goto(running.server.url + url)
                if url.startswith("/console/customers/") and "/lists/" not in url:
                    page.locator("#live-state", has_text="Live").wait_for()
                page.screenshot(path=str(OUT / name), full_page=True)
                print(f"{OUT / name}")
            cases = [inquiry(BUSY, f"Question {i} about the TV", f"tv-q-{i}") for i in range(60)]
            token = tokens_of(running.emitter.emit_touchpoints(cases))
            running.http.get(f"/customers/{BUSY}", params={"after": token})
            page.goto(running.server.url + f"/console/customers/{BUSY}/lists/open_cases")
            page.screenshot(path=str(OUT / "console-list.png"))
            print(f"{OUT / 'console-list.png'}")
            browser.close()


if __name__ == "__main__":
    main()
