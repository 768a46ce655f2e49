"""POST /events keeps the bounds of every door (issue 8, item 2): 422 naming the field for
a date out of range, a nesting too deep or a wrong JSON type; 413 for what can never fit;
never a 500 or 503. A message outside the bounds that reaches the log another way is
dead-lettered, and the views around it keep answering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumers.dead_letters import HEADER_REASON
from consumers.log import OutgoingMessage
from journey.service.routers.events import MAX_BODY_BYTES
from tests.bounds_cases import MiB, cases, inquiry, promise, sized
from tests.integration.test_exactly_once import read_topic
from tests.service.helpers import TOPIC, Running, event_ids

CASES = cases()
JSON = "application/json"


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:2000]
    body: dict[str, Any] = response.json()["error"]
    assert body["status"] == status and body["code"] == code, body
    return body


@pytest.mark.parametrize("name", sorted(CASES))
def test_post_refuses_each_bound_with_4xx_naming_the_field(svc: Running, name: str) -> None:
    case = CASES[name]
    before = svc.log.high_watermarks(TOPIC)
    good = json.dumps(inquiry())
    response = svc.http.post(
        "/events",
        content=f"{good}\n{case.text}\n",
        headers={"content-type": "application/x-ndjson"},
    )
    if case.reason == "too_large":
        error = _error(response, 413, "too_large")
    else:
        error = _error(response, 422, "invalid_body")
    assert error["line"] == 2, error
    assert error.get("field") == case.field, error
    assert case.says in error["message"]
    assert svc.log.high_watermarks(TOPIC) == before, "a refused batch must produce nothing"


def test_a_body_over_the_limit_is_413_before_it_is_read(svc: Running) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    response = svc.http.post("/events", content=body, headers={"content-type": "application/json"})
    error = _error(response, 413, "too_large")
    assert "split the batch" in error["message"]


def test_a_deep_array_body_is_422_not_500(svc: Running) -> None:
    for body in ("[" * 5000 + "]" * 5000, json.dumps([inquiry()])[:-1] + "," + "[" * 2000):
        posted = svc.http.post("/events", content=body, headers={"content-type": JSON})
        error = _error(posted, 422, "invalid_body")
        assert "32 levels" in error["message"] or "not JSON" in error["message"]


def test_a_message_out_of_bounds_on_the_log_is_dead_lettered_and_the_views_answer(
    svc: Running,
) -> None:
    """Produced straight to the log (a foreign producer): a touchpoint dated 9999, a promise
    due in 9999, and one nested 5,000 deep, between good touchpoints of the same customer."""
    cid = "cust-year-9999"
    first, last = inquiry(cid), promise(cid)
    poison = [
        json.dumps(inquiry(cid) | {"occurred_at": "9999-12-31T23:59:59Z"}),
        json.dumps(promise(cid, due_by="9999-12-31T23:59:59Z")),
        CASES["5,000 levels"].text.replace('"cust-bounds"', json.dumps(cid)),
    ]
    values = [json.dumps(first), *poison, json.dumps(last)]
    positions = svc.log.produce(
        TOPIC, [OutgoingMessage(key=cid.encode(), value=v.encode()) for v in values]
    )
    token = positions[-1].token()
    response = svc.get(f"/customers/{cid}", params={"after": token})
    assert response.status_code == 200, response.text
    assert event_ids(response.json()) == {first["event_id"], last["event_id"]}
    for url in (
        "/service-levels",
        "/service-levels/due-soon",
        "/service-levels/breached",
        "/service-levels/counts",
    ):
        assert svc.get(url, params={"after": token}).status_code == 200, url
    console = svc.get(f"/console/customers/{cid}")
    assert console.status_code == 200, console.text[:500]
    letters = [m for m in read_topic(svc.log, f"{TOPIC}.dlq") if m.key == cid.encode()]
    reasons = sorted(str(m.header(HEADER_REASON), "utf-8") for m in letters)
    assert reasons == ["out_of_range", "out_of_range", "too_deep"]


def test_an_envelope_that_sealing_takes_over_1_mib_is_413_naming_the_line(svc: Running) -> None:
    """Under 1 MiB as sent, over it once its personal fields are encrypted: it can never
    fit on the log, so 413 (a client must not retry it), never a 500; nothing produced."""
    before = svc.log.high_watermarks(TOPIC)
    text = sized(MiB - 2048)  # SignupRequested: its form fields are personal
    response = svc.http.post(
        "/events",
        content=f"{json.dumps(inquiry())}\n{text}\n",
        headers={"content-type": "application/x-ndjson"},
    )
    error = _error(response, 413, "too_large")
    assert error["line"] == 2, error
    assert "encrypted" in error["message"]
    assert svc.log.high_watermarks(TOPIC) == before, "a refused batch must produce nothing"
