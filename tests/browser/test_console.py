"""The agent console end to end in a real headless Chromium (Debian's `chromium`, driven by
Playwright for Python through its executable path; no browser is downloaded).

One test per thing an agent relies on (issue 9 item 6): live updates without a reload;
freshness in words; colour only where action is needed; one row per customer; every "…and N
more" a link to the whole list, paged; human labels; times in the agent's time zone;
keyboard search through what customers said; verbatim, inert, folded texts; /docs and /redoc
offline; any text through the live stream. Screenshots go to artifacts/.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journey.service import ServiceOptions
from journey.service.freshness import tokens_of
from tests.service.helpers import (
    Running,
    embedded_settings,
    envelope,
    inquiry,
    play_stories,
    running_service,
)

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("JOURNEY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set JOURNEY_CHROMIUM)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Running]:
    directory = play_stories(tmp_path / "stories")
    options = ServiceOptions(max_wait_ms=1000, sample_interval_s=0.25, live_interval_s=0.25)
    with running_service(embedded_settings(directory), options) as running:
        yield running


class SignedIn:
    """Chromium with an agent signed in to ``console``: every page and context it makes
    carries the console's session cookie (as the sign-in page leaves it)."""

    def __init__(self, chromium: Any, console: Running) -> None:
        self.chromium = chromium
        self.cookie = console.session_cookie("agent")

    def new_context(self, **options: Any) -> Any:
        context = self.chromium.new_context(**options)
        context.add_cookies([self.cookie])
        return context

    def new_page(self, **options: Any) -> Any:
        return self.new_context(**options).new_page()


@pytest.fixture
def browser(chromium: Any, console: Running) -> SignedIn:
    return SignedIn(chromium, console)


def test_search_open_a_customer_and_see_an_event_arrive_live(
    browser: Any, console: Running
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(console.server.url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Find a customer")

    # Search by name, open the customer.
    page.get_by_label("Find a customer").fill("sven")
    page.get_by_role("button", name="Search").click()
    # The search result (the work lists on the same page name him too, for his SMS).
    page.get_by_role("listitem").get_by_role("link", name="Sven Berg").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sven Berg")
    expect(page.locator("#live-state")).to_have_text("Live")
    expect(page.locator("#freshness .fresh-state")).to_have_text("Up to date")
    page.evaluate("window.__sameDocument = true")

    # A backend emits; the page shows it without reloading.
    subject = f"Browser test {uuid.uuid4().hex[:6]}: has the new monitor shipped?"
    env = envelope("cust-sven", subject) | {"source": "helpdesk"}
    started = time.monotonic()
    response = console.http.post("/events", json=env)
    assert response.status_code == 201, response.text
    new_entry = page.locator(f'[data-event-id="{env["event_id"]}"]')
    expect(new_entry).to_contain_text(subject, timeout=10_000)
    seen_after = time.monotonic() - started
    expect(new_entry).to_have_class("new")
    expect(page.locator("table.cases")).to_contain_text(env["data"]["case_id"])
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert int(page.locator("#view").get_attribute("data-updates") or 0) >= 1
    print(f"\nemit → visible in the browser: {seen_after * 1000:.0f} ms")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

    assert not errors, errors
    page.close()


def test_freshness_is_said_in_words(browser: Any, console: Running) -> None:
    """No raw offsets on screen: "Up to date", or "Stale: the engine stopped 12 s ago; 1 new
    event not shown yet" (red); the positions are the detail, on hover and behind a toggle."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(console.server.url + "/console/customers/cust-sven")
    expect(page.locator("#live-state")).to_have_text("Live")
    state = page.locator("#freshness .fresh-state")
    expect(state).to_have_text("Up to date")
    expect(state).to_have_attribute("title", re.compile(r"^Shows the log up to journey\."))
    expect(page.locator("#freshness")).not_to_contain_text(
        "journey.touchpoints:", use_inner_text=True
    )

    # The runner stalls: the bar says so, plainly; on resuming the view catches up.
    assert console.service.thread is not None
    console.service.thread.pause()
    late = envelope("cust-sven", "Sent while the runner is stalled")
    assert console.http.post("/events", json=late).status_code == 201
    expect(state).to_have_text(
        re.compile(r"^Stale: the engine stopped (just now|\d+ s ago); 1 new event not shown yet$"),
        timeout=10_000,
    )
    expect(state).to_have_attribute("data-state", "stale")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-stale.png"))
    console.service.thread.resume()
    expect(page.locator(f'[data-event-id="{late["event_id"]}"]')).to_be_visible(timeout=10_000)
    expect(state).to_have_text("Up to date")
    page.close()


def test_search_by_phone_goes_straight_to_the_customer(browser: Any, console: Running) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(console.server.url + "/")
    page.get_by_label("Find a customer").fill("+46701234567")  # Sven's verified phone
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sven Berg")
    # Erik's e-mail was only typed into forms: a claim lists him as a hit to open.
    page.get_by_label("Find a customer").fill("erik.haugen@example.no")
    page.keyboard.press("Enter")
    page.locator("#hits > li", has_text="Erik Haugen").get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Erik Haugen")
    expect(page.get_by_role("heading", name="What they submitted")).to_be_visible()
    expect(page.locator(".verbatim").first).to_contain_text("floating rate")
    expect(page.locator(".flags")).to_contain_text("Unanswered for")
    page.close()


def test_what_the_customer_wrote_shows_verbatim_folded_and_inert(
    browser: Any, console: Running
) -> None:
    """Issue 9 item 1: the body of an inquiry with a subject reaches the open page live, as
    text (a <script> in it never runs), long texts folded behind "show all"."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(console.server.url + "/console/customers/cust-sven")
    expect(page.locator("#live-state")).to_have_text("Live")
    body = (
        '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">\n'
        + "The monitor flickers when it warms up. " * 20
        + "LAST-WORDS"
    )
    env = envelope("cust-sven", "Flicker again", body=body)
    assert console.http.post("/events", json=env).status_code == 201
    entry = page.locator(f'[data-event-id="{env["event_id"]}"]')
    expect(entry).to_contain_text("<script>window.__xss = 1</script>", timeout=10_000)
    folded = entry.locator("details.said")
    expect(folded.locator(".said-full")).to_be_hidden()
    folded.locator("summary").click()
    expect(folded.locator(".said-full")).to_contain_text("LAST-WORDS")
    expect(page.locator(".conversation").filter(has_text="Flicker again")).to_contain_text(
        "The monitor flickers"
    )
    assert page.evaluate("window.__xss") is None
    assert not errors, errors
    page.close()


def _offline(page: Any, base: str) -> list[str]:
    """Every request that leaves the service is refused (as on a network without internet)
    and listed."""
    outside: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(base):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return outside


@pytest.mark.parametrize(
    ("path", "shows"),
    [("/docs", "/customers/{key}/timeline"), ("/redoc", "/customers/{key}/timeline")],
)
def test_api_docs_work_offline(browser: Any, console: Running, path: str, shows: str) -> None:
    """Swagger UI and ReDoc come from the service itself (they were blank offline: their
    scripts came from a CDN)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside = _offline(page, console.server.url)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(console.server.url + path)
    expect(page.get_by_text(shows).first).to_be_visible(timeout=15_000)
    assert outside == [], f"{path} reached outside the service: {outside}"
    # The one refusal expected: ReDoc's footer logo, kept from the CDN by the page's CSP.
    assert all("logo-mini.svg" in e for e in errors), errors
    page.close()


# Colours an agent reads as "act now": the palette's red and amber, resolved by the browser.
_ACTION_COLOURS = """() => {
  const probe = document.createElement("span");
  document.body.appendChild(probe);
  const rgb = (css) => { probe.style.color = css; return getComputedStyle(probe).color; };
  const red = new Set(["#b00020", "#fdecee"].map(rgb));
  const amber = new Set(["#ffd24d", "#fff8e1", "#e0a800", "#b37400"].map(rgb));
  probe.remove();
  const found = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!el.getClientRects().length) continue;
    const s = getComputedStyle(el);
    const colours = [s.backgroundColor, s.color, ...(s.boxShadow.match(/rgba?\\([^)]*\\)/g) || [])];
    const kind = colours.some((c) => red.has(c)) ? "red"
      : colours.some((c) => amber.has(c)) ? "amber" : null;
    if (kind) found.push({kind, text: (el.closest("tr, li, .fresh-state") || el).innerText.trim()});
  }
  return found;
}"""


def test_colour_only_where_action_is_needed(browser: Any, console: Running) -> None:
    """Red for what was missed, amber for what is due soon, nothing else coloured (the
    console was red all over: an unanswered contact due tomorrow had a red badge)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # Sven: his first reply is due in a day; nothing is late, nothing is due soon.
    page.goto(console.server.url + "/console/customers/cust-sven")
    page.locator("#live-state").filter(has_text="Live").wait_for()
    assert page.evaluate(_ACTION_COLOURS) == []
    # Erik: the bank missed its target; every red thing on his page says it was missed.
    page.goto(console.server.url + "/console/customers/cust-erik")
    coloured = page.evaluate(_ACTION_COLOURS)
    red = [c["text"] for c in coloured if c["kind"] == "red"]
    assert red, "a missed target must stand out"
    assert all(re.search(r"[Mm]issed|[Bb]roken|[Oo]verdue", t) for t in red), red
    # The home page: only the rows of missed items are red; due-later rows are neutral.
    page.goto(console.server.url + "/")
    for c in page.evaluate(_ACTION_COLOURS):
        assert c["kind"] != "red" or "Missed" in c["text"], c
    due_later = page.locator("#w-due-soon ~ table tr", has_text="Sven Berg")
    assert "state-ok" in (due_later.get_attribute("class") or "")
    page.close()


def test_one_row_per_customer_on_the_work_lists(browser: Any, console: Running) -> None:
    """Mari has two broken promises: one row names her once and lists both (she was listed
    twice)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(console.server.url + "/")
    missed = page.get_by_role("table", name="Missed targets and broken promises")
    rows = missed.locator("tbody tr", has_text="Mari Dahl")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("WEB-5521")
    expect(rows).to_contain_text("PN-70012")
    expect(rows).to_contain_text("2 items")
    names = missed.locator("tbody th").all_inner_texts()
    assert len(names) == len(set(names)), names
    page.close()


def _new_contacts(console: Running, count: int, *, customer: str | None = None) -> list[str]:
    """``count`` unanswered inquiries: from new customers, or all from ``customer``; waits
    until the service has folded them."""
    stamp = uuid.uuid4().hex[:6]
    touchpoints = [
        inquiry(customer or f"cust-{stamp}-{i:02d}", f"Question {i}", f"k-{stamp}-{i:02d}")
        for i in range(count)
    ]
    token = tokens_of(console.emitter.emit_touchpoints(touchpoints))
    response = console.http.get("/service-levels/counts", params={"after": token})
    assert response.status_code == 200, response.text
    return [t.customer_id if customer is None else t.data.case_id for t in touchpoints]  # type: ignore[attr-defined]


def test_and_n_more_on_a_work_list_links_to_the_whole_list_paged(
    browser: Any, console: Running
) -> None:
    from playwright.sync_api import expect

    new = _new_contacts(console, 55)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(console.server.url + "/")
    table = page.get_by_role("table", name="Still without a real answer")
    expect(table.locator("tbody tr")).to_have_count(10)
    page.get_by_role("link", name=re.compile(r"…and 48 more customers")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("58 customers")
    seen = page.locator("table.work tbody th").all_inner_texts()
    assert len(seen) == 50
    with page.expect_navigation():
        page.get_by_role("link", name="Next →").click()
    seen += page.locator("table.work tbody th").all_inner_texts()
    expect(page.get_by_text("page 2 of 2")).to_be_visible()
    assert len(seen) == len(set(seen)) == 58
    assert set(new) <= {s.split("\n")[0] for s in seen}
    page.close()


def test_and_n_more_on_a_customer_links_to_the_whole_list_paged(
    browser: Any, console: Running
) -> None:
    from playwright.sync_api import expect

    cases = _new_contacts(console, 55, customer="cust-lina")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(console.server.url + "/console/customers/cust-lina")
    total = page.evaluate(
        "() => Number(document.querySelector('#h-cases').textContent.match(/\\((\\d+)\\)/)[1])"
    )
    assert total >= 55
    expect(page.locator("table.cases tbody tr")).to_have_count(50)
    page.get_by_role("link", name=f"…and {total - 50} more: all {total} open cases").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Open cases")
    seen = page.locator("table.cases tbody tr td:first-child code").all_inner_texts()
    assert len(seen) == 50
    # Wait for the next page to load before reading it (a click returns before navigation).
    with page.expect_navigation():
        page.get_by_role("link", name="Next page →").click()
    seen += page.locator("table.cases tbody tr td:first-child code").all_inner_texts()
    assert len(seen) == len(set(seen)) == total
    assert set(cases) <= set(seen)
    page.close()


# Text an agent reads (not ids in <code>, not what customers wrote, not form values).
_READ_TEXT = """() => {
  const skip = "code, .said, .said-full, details.said, input, datalist, script, style, "
    + ".fresh-more, .foot";
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const el = walk.currentNode.parentElement;
    if (el.closest(skip) || !el.getClientRects().length) continue;
    out.push(walk.currentNode.textContent);
  }
  return out.join(" ");
}"""


def test_labels_are_words_not_identifiers(browser: Any, console: Running) -> None:
    """``serial_number``, ``web_form``, ``InquiryReceived`` are said as words."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    for url in ("/", "/console/customers/cust-sven", "/console/customers/cust-erik"):
        page.goto(console.server.url + url)
        text = page.evaluate(_READ_TEXT)
        assert not re.findall(r"\b[a-z]+_[a-z_]+\b", text), (url, text)
        assert not re.findall(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)+\b", text), (url, text)
    page.close()


def _zone_text(moment: str, zone: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(moment).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def test_times_are_in_the_agents_time_zone(browser: Any, console: Running) -> None:
    """Europe/Oslo by default, named on screen; one click for the computer's own zone, which
    the live updates keep (times were UTC for Nordic agents)."""
    from playwright.sync_api import expect

    context = browser.new_context(
        timezone_id="America/New_York", viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.goto(console.server.url + "/console/customers/cust-sven")
    expect(page.get_by_label("Times in")).to_have_value("Europe/Oslo")
    first = page.locator("ol.timeline time").first
    moment = first.get_attribute("datetime") or ""
    expect(first).to_have_text(_zone_text(moment, "Europe/Oslo"))

    page.get_by_role("button", name="Use this computer's zone (America/New_York)").click()
    expect(page.get_by_label("Times in")).to_have_value("America/New_York")
    expect(page.locator("ol.timeline time").first).to_have_text(
        _zone_text(moment, "America/New_York")
    )
    expect(page.locator("#live-state")).to_have_text("Live")
    env = envelope("cust-sven", "What time is it there?")
    assert console.http.post("/events", json=env).status_code == 201
    arrived = page.locator(f'[data-event-id="{env["event_id"]}"] time')
    expect(arrived).to_have_text(re.compile(r" E[SD]T$"), timeout=10_000)
    context.close()


def test_keyboard_search_through_what_customers_said(browser: Any, console: Running) -> None:
    """ "/" focuses the search box, Enter searches (also the words customers wrote), the
    arrow keys walk the results, Enter opens one."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(console.server.url + "/")
    page.locator("main").click()  # focus is anywhere but in the box
    page.keyboard.press("/")
    expect(page.get_by_label("Find a customer")).to_be_focused()
    page.keyboard.type("five days before")
    # Each Enter loads a page whose keyboard script is deferred: wait until it has run
    # (the content shows before it does; a key pressed earlier reaches no handler).
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.keyboard.press("Enter")
    hit = page.locator("#hits > li", has_text="Sven Berg")
    expect(hit).to_contain_text("What they said: “Screen went black, five days before")
    expect(hit.locator("mark")).to_have_text("five days before")
    page.keyboard.press("/")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#hits > li > a").first).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(page.get_by_label("Find a customer")).to_be_focused()
    page.keyboard.press("ArrowDown")
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sven Berg")
    # "/" typed into the search box is just a character.
    page.keyboard.press("/")
    page.keyboard.type("a/b")
    expect(page.get_by_label("Find a customer")).to_have_value("a/b")
    page.close()


def test_line_separators_reach_the_browser_intact(browser: Any, console: Running) -> None:
    """U+2028, U+2029 and U+0085 in what a customer wrote arrive through the live stream as
    they were written: in the console, and in the JSON stream an EventSource reads."""
    from playwright.sync_api import expect

    text = "one\u2028two\u2029three\u0085four"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(console.server.url + "/console/customers/cust-lina")
    expect(page.locator("#live-state")).to_have_text("Live")
    page.evaluate(
        """() => {
          window.__said = [];
          const s = new EventSource("/customers/cust-lina/events");
          s.addEventListener("view", (e) => {
            for (const t of JSON.parse(e.data).data.timeline.entries) window.__said.push(t.text);
          });
        }"""
    )
    env = envelope("cust-lina", "Separators", body=text)
    assert console.http.post("/events", json=env).status_code == 201
    said = page.locator(f'[data-event-id="{env["event_id"]}"] .said')
    expect(said).to_have_count(1, timeout=10_000)
    assert said.evaluate("el => el.textContent") == text
    page.wait_for_function("t => window.__said.includes(t)", arg=text, timeout=10_000)
    page.close()


def test_an_agent_confirms_a_possible_match_and_the_view_merges_live(
    browser: Any, console: Running
) -> None:
    """Issue 12 item 4: a form that typed Sven's e-mail is only a possible match; the agent
    names themself and confirms; the page (live) then shows the two as one customer."""
    from datetime import UTC, datetime

    from playwright.sync_api import expect

    from domain import catalogue as c
    from domain.envelope import new_touchpoint

    cid = f"cust-web-{uuid.uuid4().hex[:6]}"
    claim = new_touchpoint(
        c.SignupRequested(
            case_id=f"{cid}-form",
            form="join",
            fields={"name": "Sven B.", "email": "sven.berg@example.se"},
        ),
        customer_id=cid,
        occurred_at=datetime.now(UTC),
        source="web",
    )
    token = tokens_of(console.emitter.emit_touchpoints([claim]))
    assert console.get(f"/customers/{cid}", params={"after": token}).status_code == 200
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{console.server.url}/console/customers/{cid}")
    expect(page.locator("#live-state")).to_have_text("Live")
    expect(page.get_by_role("heading", name="Possible matches to confirm (1)")).to_be_visible()
    # (the live view may re-render without the match before the status line shows)
    page.get_by_role("button", name="Same person: merge").click()
    expect(page.locator("header.who")).to_contain_text("also known as cust-sven", timeout=15_000)
    expect(page.get_by_role("heading", name="Possible matches to confirm (1)")).to_have_count(0)
    assert not errors, errors
    page.close()
    view = console.get(f"/customers/{cid}").json()["data"]
    # Sven, and through him the text keyed by his verified phone.
    assert view["linked_customer_ids"] == ["cust-sven", "+46 70 123 45 67"]
    linked = next(e for e in view["timeline"]["entries"] if e["type"] == "IdentityLinked")
    assert linked["summary"] == "Identity linked (verified): customer_id cust-sven"
