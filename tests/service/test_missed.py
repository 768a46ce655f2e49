"""Missed stays missed on the agents' lists (API and console), until an agent acknowledges it
with a BreachAcknowledged posted like any touchpoint (issue 9, item 2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.keeper import derived_event_id
from domain import catalogue as c
from domain.envelope import encode, new_touchpoint
from tests.service.helpers import Running


def _data(svc: Running, url: str) -> dict[str, Any]:
    response = svc.get(url)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _promise_refs(svc: Running) -> set[str]:
    return {i["ref"] for i in _data(svc, "/service-levels/breached")["items"]}


def test_a_recorded_broken_promise_is_listed_until_acknowledged(svc: Running) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    pid = f"prm-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    due = now - timedelta(days=2)
    before = _data(svc, "/service-levels/counts")["breached"]
    made = c.PromiseMade(promise_id=pid, what="Deliver the <new> sofa", made_by="agent", due_by=due)
    svc.emitter.emit_touchpoints(
        [
            new_touchpoint(
                made, customer_id=customer, occurred_at=due - timedelta(days=3), source="t"
            ),
            # As the keeper records it (same derived id, so a keeper's copy is the same fact).
            new_touchpoint(
                c.PromiseBroken(promise_id=pid, due_by=due, what=made.what),
                customer_id=customer,
                occurred_at=due,
                source="promise-keeper",
                event_id=derived_event_id("promise", customer, pid, due),
            ),
        ]
    )
    breached = _data(svc, "/service-levels/breached")
    (item,) = [i for i in breached["items"] if i["ref"] == pid]
    assert item["kind"] == "promise" and item["recorded"] is True
    assert datetime.fromisoformat(item["missed_since"]) == due
    assert _data(svc, "/service-levels/counts")["breached"] == before + 1 == breached["count"]
    assert pid in {i["ref"] for i in _data(svc, "/service-levels")["breached"]}
    home = svc.get("/").text
    assert "Deliver the &lt;new&gt; sofa" in home and "on the log" in home
    assert "Nothing missed" not in home

    ack = new_touchpoint(
        c.BreachAcknowledged(kind="promise", ref=pid, due_by=due, agent="Marta K."),
        customer_id=customer,
        occurred_at=now,
        source="helpdesk",
    )
    response = svc.http.post(
        "/events", content=encode(ack), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert pid not in _promise_refs(svc)
    assert _data(svc, "/service-levels/counts")["breached"] == before
    assert "Deliver the &lt;new&gt; sofa" not in svc.get("/").text
    timeline = _data(svc, f"/customers/{customer}")["timeline"]["entries"]
    assert any("acknowledged by Marta K." in e["summary"] for e in timeline)
