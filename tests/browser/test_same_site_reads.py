"""An attacker's page on another port of the agent's machine is *same-site* to the console, so
the SameSite=Strict session cookie goes with every request it makes to the service: an
``<img>``, a ``<script>``, an ``<iframe>``, a no-cors ``fetch`` or an ``EventSource``. It cannot
read the answers (no CORS, nosniff, frame-ancestors), but each of them was a read of a
customer, audited in the agent's name: a page could fill the audit trail with reads the agent
never made (or make a live stream run in the background). In a real Chromium.

Before: every one of these requests was answered 200 and left an audit record for the agent's
key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journey.security.audit import read_audit
from tests.browser.pages import page_server, stories_console
from tests.browser.test_console import CHROMIUM, CHROMIUM_ARGS
from tests.service.helpers import Running

pytestmark = pytest.mark.browser

READS = 5  # the requests the page below makes with the agent's cookie


def _page(target: str) -> bytes:
    customer = f"{target}/console/customers/cust-sven"
    return f"""<!doctype html><html><body>
<img src="{customer}">
<script src="{target}/customers/cust-erik"></script>
<iframe src="{target}/console/customers/cust-lina"></iframe>
<pre id="done"></pre>
<script>
fetch("{target}/customers/cust-mari", {{mode: "no-cors", credentials: "include"}})
  .catch(() => undefined);
const source = new EventSource("{target}/customers/cust-anders/events",
  {{withCredentials: true}});
source.onerror = () => source.close();
document.getElementById("done").textContent = "sent";
</script></body></html>""".encode()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Running]:
    with stories_console(tmp_path) as running:
        yield running


@pytest.fixture
def attacker(console: Running) -> Iterator[str]:
    with page_server(_page(console.server.url)) as url:
        yield url


def _answered(console: Running) -> float:
    """Requests answered so far, whatever their route and status."""
    total = 0.0
    for metric in console.service.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "journey_http_requests_total":
                total += sample.value
    return total


def test_a_same_site_page_cannot_read_customers_in_the_agents_name(
    console: Running, attacker: str
) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import expect, sync_playwright

    cookie: Any = console.session_cookie("agent")
    key_name = console.service.keys.session(cookie["value"])
    assert key_name is not None
    before = _answered(console)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context()
            context.add_cookies([cookie])
            page = context.new_page()
            page.goto(attacker)
            expect(page.locator("#done")).to_have_text("sent", timeout=30_000)
            # Every request reached the service (answered, one way or the other).
            deadline = time.monotonic() + 30
            while _answered(console) - before < READS and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _answered(console) - before >= READS
            # The agent's own console, opened as a person does, still works.
            own = context.new_page()
            own.goto(f"{console.server.url}/console/customers/cust-per")
            expect(own.get_by_role("heading", level=1)).to_contain_text("Per")
        finally:
            chromium.close()
    records = read_audit(console.log, console.service.settings.audit_topic, key=key_name.name)
    assert {r.customer_id for r in records} == {"cust-per"}, [
        (r.customer_id, r.route) for r in records
    ]
