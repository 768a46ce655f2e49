"""The agent console's server-rendered pages (the browser test drives them in Chromium:
tests/browser/test_console.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from journey.service.console import Engine, freshness_words
from journey.service.freshness import Freshness, Lag, PositionOut
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
    assert 'data-state="fresh">Up to date<' in html
    # a page that does not keep itself live says when it was up to date
    assert re.search(r'<span class="muted checked">at \d\d:\d\d:\d\d · <a href="">reload', html)
    assert 'class="muted checked"' not in svc.get("/console/customers/cust-sven").text


def test_search_results_and_exact_match_redirect(svc: Running) -> None:
    html = svc.get("/", params={"q": "sven"}).text
    _accessible(html)
    assert 'href="/console/customers/cust-sven"' in html
    response = svc.get("/", params={"q": "sven.berg@example.se"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/customers/cust-sven"
    assert "Nobody matches" in svc.get("/", params={"q": "qqq-nobody"}).text
    # An e-mail only typed into a form is a claim: its hits are listed, no redirect.
    claimed = svc.get("/", params={"q": "erik.haugen@example.no"}, follow_redirects=False)
    assert claimed.status_code == 200
    assert 'href="/console/customers/cust-erik"' in claimed.text


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


def _freshness(*, fresh: bool, events: int, seconds: float) -> Freshness:
    position = PositionOut(topic="t", partition=0, offset=41)
    return Freshness(
        as_of=[position],
        as_of_token=f"{position.topic}:{position.partition}:{position.offset}",
        lag=Lag(events=events, seconds=seconds, partitions=[]),
        fresh=fresh,
        basis="head",
        waited_ms=3.0,
    )


def test_freshness_in_words() -> None:
    """What the bar says, for each state the engine can be in (no raw offsets in the words;
    they are the detail)."""
    up = freshness_words(_freshness(fresh=True, events=0, seconds=0), Engine())
    assert (up.state, up.headline) == ("fresh", "Up to date")
    assert "t:0:41" in up.detail and "t:0:41" not in up.headline
    behind = freshness_words(_freshness(fresh=False, events=40, seconds=125), Engine())
    assert (behind.state, behind.headline) == ("catching-up", "2 min behind, catching up")
    stopped = freshness_words(
        _freshness(fresh=False, events=1, seconds=301), Engine(stopped_for_s=300)
    )
    assert stopped.state == "stale"
    assert stopped.headline == "Stale: the engine stopped 5 min ago; 1 new event not shown yet"
    assert (
        freshness_words(
            _freshness(fresh=False, events=2, seconds=0.4), Engine(stopped_for_s=0.4)
        ).headline
        == "Stale: the engine stopped just now; 2 new events not shown yet"
    )
    elsewhere = freshness_words(
        _freshness(fresh=False, events=3, seconds=7200), Engine(elsewhere=True)
    )
    assert elsewhere.state == "stale" and elsewhere.headline.startswith("Stale: 2 h behind")


def test_a_work_list_and_a_customer_list_are_pages(svc: Running) -> None:
    html = svc.get("/console/work/unanswered").text
    _accessible(html)
    assert "Erik Haugen" in html
    assert svc.get("/console/work/nonsense").status_code == 422
    listed = svc.get("/console/customers/cust-sven/lists/identities")
    assert listed.status_code == 200
    _accessible(listed.text)
    assert "sven.berg@example.se" in listed.text
    nonsense = svc.get("/console/customers/cust-sven/lists/nonsense")
    assert nonsense.status_code == 404 and "No such list" in nonsense.text
    bad = svc.get("/console/customers/cust-sven/lists/promises", params={"cursor": "x"})
    assert bad.status_code == 400 and "no longer valid" in bad.text


def test_the_time_zone_is_a_cookie_and_never_an_open_redirect(svc: Running) -> None:
    chosen = svc.get(
        "/console/time-zone",
        params={"tz": "Asia/Tokyo", "back": "/console/customers/cust-sven"},
        follow_redirects=False,
    )
    assert chosen.status_code == 303
    assert chosen.headers["location"] == "/console/customers/cust-sven"
    assert chosen.headers["set-cookie"].startswith('journey_tz="Asia/Tokyo";')
    elsewhere = svc.get(
        "/console/time-zone",
        params={"tz": "UTC", "back": "//evil.example/"},
        follow_redirects=False,
    )
    assert elsewhere.headers["location"] == "/"
    unknown = svc.get("/console/time-zone", params={"tz": "Mars/Olympus"}, follow_redirects=False)
    assert unknown.status_code == 422 and "set-cookie" not in unknown.headers
    assert "“Mars/Olympus” is not a time zone" in unknown.text
    page = svc.get("/console/customers/cust-sven", headers={"Cookie": "journey_tz=Asia/Tokyo"}).text
    assert 'value="Asia/Tokyo"' in page and " JST</time>" in page
    svc.http.cookies.clear()  # the client kept the cookies set above
    default = svc.get("/console/customers/cust-sven").text
    assert 'value="Europe/Oslo"' in default
    assert re.search(r" CES?T</time>", default)


def test_a_marketplace_customer_shows_cancelled_promises_reviews_and_unknown_carriers(
    svc: Running,
) -> None:
    html = svc.get("/console/customers/cust-bia").text
    _accessible(html)
    assert ">Cancelled<" in html  # the order cancelled before its day
    assert "(implied by handoff)" in html  # the seller's hand-off deadline
    assert "<strong>Arrived, but late</strong>" in html  # the review's title
    assert "order MK-501" in html and "invited " in html
    assert "<td>—</td>" in html  # a shipment whose carrier the marketplace did not name
    assert "cancelled: Out of stock at the seller" in html


def test_a_possible_match_is_shown_to_confirm_and_a_claimed_key_lists_candidates(
    svc: Running,
) -> None:
    """Issue 12 item 4: the customer page shows unverified claims as possible matches with a
    button to confirm; a console address by a claimed identity lists the candidates (300)
    instead of showing anyone's page."""
    import uuid
    from datetime import UTC, datetime

    from domain import catalogue as c
    from domain.envelope import new_touchpoint
    from journey.service.freshness import tokens_of

    cid = f"cust-claim-{uuid.uuid4().hex[:6]}"
    claim = new_touchpoint(
        c.SignupRequested(
            case_id=f"{cid}-form", form="join", fields={"email": "sven.berg@example.se"}
        ),
        customer_id=cid,
        occurred_at=datetime.now(UTC),
        source="web",
    )
    token = tokens_of(svc.emitter.emit_touchpoints([claim]))
    svc.get(f"/customers/{cid}", params={"after": token})
    html = svc.get(f"/console/customers/{cid}").text
    _accessible(html)
    assert "Possible matches to confirm (1)" in html
    assert 'data-confirm-match data-customer="' + cid + '" data-other="cust-sven"' in html
    assert "claimed, not verified" in html
    # Sven's own page shows the stranger's claim on his e-mail, and merges nothing.
    sven = svc.get("/console/customers/cust-sven").text
    assert f'data-other="{cid}"' in sven
    choices = svc.get("/console/customers/erik.haugen@example.no")
    assert choices.status_code == 300
    assert 'href="/console/customers/cust-erik"' in choices.text
    assert "floating rate" not in choices.text
