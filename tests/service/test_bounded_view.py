"""Bounded answers: one customer with 20,000 open cases still gets a small view, with totals
and cursors that walk the rest (issue 9, item 5: the view was 11 to 13 MB)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from domain import catalogue as c
from domain.envelope import new_touchpoint
from tests.service.helpers import Running

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
OPEN = 20_000


def _settled(svc: Running, url: str, token: str, **params: Any) -> httpx.Response:
    """The answer once the view has folded everything up to ``token`` (503 until then)."""
    deadline = time.monotonic() + 300
    while True:
        response = svc.get(url, params={"after": token, **params})
        if response.status_code != 503 or time.monotonic() > deadline:
            return response


def test_twenty_thousand_open_cases_give_a_bounded_view_with_totals_and_cursors(
    make_service: Callable[..., Running],
) -> None:
    svc = make_service(max_wait_ms=5000)
    touchpoints = [
        new_touchpoint(
            c.InquiryReceived(case_id=f"k-{i:05d}", channel="email", subject=f"question {i}"),
            customer_id="cust-huge",
            occurred_at=T0 + timedelta(seconds=i),
            source="test",
        )
        for i in range(OPEN)
    ]
    token = svc.emitter.emit_touchpoints(touchpoints)[-1].token()

    response = _settled(svc, "/customers/cust-huge", token)
    assert response.status_code == 200, response.text
    assert len(response.content) <= 256 * 1024, f"view is {len(response.content)} bytes"
    view = response.json()["data"]
    assert view["open_cases_total"] == OPEN
    assert len(view["open_cases"]) == 50
    # Newest first: the latest question leads.
    assert view["open_cases"][0]["case_id"] == f"k-{OPEN - 1:05d}"
    assert view["timeline"]["total"] == OPEN and len(view["timeline"]["entries"]) == 50

    # The cursor walks on from where the view stopped, without repeats or gaps.
    page = _settled(
        svc,
        "/customers/cust-huge/cases",
        token,
        status="open",
        cursor=view["open_cases_next"],
        limit=200,
    ).json()["data"]
    assert page["total"] == OPEN
    assert [k["case_id"] for k in page["items"]] == [
        f"k-{i:05d}" for i in range(OPEN - 51, OPEN - 251, -1)
    ]
    assert page["next"] is not None

    # The timeline pages by cursor too, newest first.
    older = _settled(
        svc, "/customers/cust-huge/timeline", token, cursor=view["timeline"]["next"]
    ).json()["data"]
    assert older["entries"][0]["summary"] != view["timeline"]["entries"][-1]["summary"]
    assert older["entries"][0]["at"] < view["timeline"]["entries"][-1]["at"]

    # The generic list endpoint takes the same cursor; another list's cursor is refused.
    same = _settled(
        svc, "/customers/cust-huge/lists/open_cases", token, cursor=view["open_cases_next"]
    ).json()["data"]
    assert same["items"][0]["case_id"] == page["items"][0]["case_id"]
    wrong = _settled(
        svc, "/customers/cust-huge/cases", token, status="closed", cursor=view["open_cases_next"]
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "bad_cursor"

    # The console shows the first 50 and links the whole list (paged), with the count.
    html = svc.get("/console/customers/cust-huge").text
    assert f"Open cases ({OPEN})" in html
    assert f"…and {OPEN - 50} more: all {OPEN} open cases</a>" in html
    assert 'href="/console/customers/cust-huge/lists/open_cases"' in html
    assert len(html) < 1024 * 1024
    whole = svc.get("/console/customers/cust-huge/lists/open_cases")
    assert whole.status_code == 200 and whole.text.count("<tr class=") == 50
    assert 'rel="next">Next page →</a>' in whole.text

    # The work lists are bounded too: the first 50 of each with its total and a cursor, and
    # each list pages on by cursor, in order, without repeats.
    levels = _settled(svc, "/service-levels", token)
    assert levels.status_code == 200, levels.text
    assert len(levels.content) <= 256 * 1024, f"/service-levels is {len(levels.content)} bytes"
    data = levels.json()["data"]
    assert data["unanswered_total"] >= OPEN and len(data["unanswered"]) == 50
    seen = [(i["customer_id"], i["ref"]) for i in data["unanswered"]]
    cursor = data["unanswered_next"]
    for _ in range(3):
        page = _settled(svc, "/service-levels/unanswered", token, cursor=cursor, limit=500)
        body = page.json()["data"]
        assert body["count"] == data["unanswered_total"] and len(body["items"]) == 500
        seen += [(i["customer_id"], i["ref"]) for i in body["items"]]
        cursor = body["next"]
    assert len(seen) == len(set(seen)) == 1550
    started = [i["started_at"] for i in body["items"]]
    assert started == sorted(started)  # oldest first, across pages
    bad = _settled(svc, "/service-levels/unanswered", token, cursor="nonsense")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_cursor"


def test_a_small_customer_sees_everything_and_no_cursor(svc: Running) -> None:
    view = svc.get("/customers/cust-sven").json()["data"]
    for name in ("open_cases", "closed_cases", "promises", "shipments", "identities"):
        assert view[f"{name}_total"] == len(view[name])
        assert view[f"{name}_next"] is None
    assert view["timeline"]["next"] is None or view["timeline"]["total"] > 50


def test_a_made_up_cursor_is_400_saying_what_to_do(svc: Running) -> None:
    for url in ("/customers/cust-sven/cases", "/customers/cust-sven/timeline"):
        response = svc.get(url, params={"cursor": "not-a-cursor"})
        assert response.status_code == 400
        assert "handed out" in response.json()["error"]["message"]
