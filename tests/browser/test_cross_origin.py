"""Issue 12, item 2, in a real Chromium: a page from another origin — here another port of the
same machine, which is *same-site*, so the console's SameSite=Strict session cookie is still
sent — can neither emit nor erase, whether it posts a form, a text/plain fetch or a JSON
fetch with credentials. The agent is an admin signed in through the address `make demo`
prints (the key in the fragment), the worst case.

Before: the form and the text/plain fetch were accepted (201) and erased the customer."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from journey.service.guard import SESSION_COOKIE
from tests.browser.pages import page_server, stories_console
from tests.browser.test_console import CHROMIUM, CHROMIUM_ARGS
from tests.service.helpers import TOPIC, Running

pytestmark = pytest.mark.browser


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Running]:
    with stories_console(tmp_path) as running:
        yield running


def _attack_page(target: str) -> bytes:
    erase = {
        "event_id": str(uuid.uuid4()),
        "type": "ErasureRequested",
        "schema_version": 1,
        "customer_id": "cust-sven",
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "attacker",
        "data": {},
    }
    text = json.dumps(erase)
    # enctype=text/plain sends "name=value": the classic way to forge a JSON body.
    name, value = text[:-1] + ', "pad": "', '"}'
    page = f"""<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" action="{target}/events" method="post" enctype="text/plain" target="sink1">
<input type="hidden" name='{name}' value='{value}'></form>
<form id="urlenc" action="{target}/events" method="post" target="sink2">
<input type="hidden" name="body" value='{text}'></form>
<pre id="done"></pre>
<script>
(async () => {{
  const results = {{}};
  document.getElementById("plain").submit();
  document.getElementById("urlenc").submit();
  try {{
    await fetch("{target}/events", {{method: "POST", mode: "no-cors", credentials: "include",
      headers: {{"Content-Type": "text/plain"}}, body: {json.dumps(text)}}});
    results.text_plain = "sent (opaque)";
  }} catch (e) {{ results.text_plain = "blocked " + e; }}
  try {{
    const r = await fetch("{target}/events", {{method: "POST", credentials: "include",
      headers: {{"Content-Type": "application/json"}}, body: {json.dumps(text)}}});
    results.json = "answered " + r.status;
  }} catch (e) {{ results.json = "blocked " + e; }}
  document.getElementById("done").textContent = JSON.stringify(results);
}})();
</script></body></html>"""
    return page.encode()


@pytest.fixture
def attacker(console: Running) -> Iterator[str]:
    """A second local HTTP server, on another port: the other origin."""
    with page_server(_attack_page(console.server.url)) as url:
        yield url


def _refused(console: Running, status: int) -> float:
    sample = console.service.metrics.registry.get_sample_value(
        "journey_http_requests_total", {"route": "(unmatched)", "status": str(status)}
    )
    return sample or 0.0


def test_a_page_from_another_origin_can_neither_emit_nor_erase(
    console: Running, attacker: str
) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import expect, sync_playwright

    def refused() -> float:
        return _refused(console, 415) + _refused(console, 403)

    admin_key = console.new_key("admin", "ops-admin")
    before = console.log.high_watermarks(TOPIC)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context()
            page = context.new_page()
            # Signing in as `make demo` prints it: the key in the fragment, gone at once.
            page.goto(f"{console.server.url}/console/sign-in#key={admin_key}")
            page.wait_for_url(f"{console.server.url}/")
            expect(page.locator(".who")).to_contain_text("ops-admin")
            cookies = {c["name"]: c for c in context.cookies()}
            assert (
                cookies[SESSION_COOKIE]["httpOnly"]
                and cookies[SESSION_COOKIE]["sameSite"] == "Strict"
            )
            assert admin_key not in page.url and admin_key not in json.dumps(context.cookies())

            page.goto(attacker)
            expect(page.locator("#done")).not_to_be_empty(timeout=30_000)
            results = json.loads(page.locator("#done").text_content() or "{}")
            # The JSON fetch needs a CORS preflight, which is never granted: not sent.
            assert results["json"].startswith("blocked"), results
            # The two forms and the text/plain fetch did reach the service, with the
            # session cookie (not a 401), and were refused: made by another page (403
            # cross_site: the forms post into frames, the fetch is no-cors), else for their
            # content type (415). Wait for all three.
            deadline = time.monotonic() + 30
            while refused() < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert refused() == 3
            assert _refused(console, 401) >= 1  # the JSON fetch's preflight
        finally:
            chromium.close()
    assert console.log.high_watermarks(TOPIC) == before, "nothing emitted, nothing erased"
    view = console.http.get("/customers/cust-sven")
    assert view.status_code == 200 and view.json()["data"]["name"] == "Sven Berg"
