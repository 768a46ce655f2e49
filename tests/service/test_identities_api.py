"""Issue 12 item 4 over HTTP: a lookup by a claimed identity answers 300 with the
candidates (never a view); an agent confirms a possible match (a verified IdentityLinked with
the agent as source) and undoes a merge (IdentityUnlinked) through JSON endpoints."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from domain import catalogue as c
from domain.envelope import new_touchpoint
from journey.service.freshness import tokens_of
from projections.facts import type_name, unpack
from projections.store import JourneyStore
from tests.service.helpers import Running, inquiry

PIN = "PIN 55102"


def _victim_and_stranger(svc: Running) -> tuple[str, str, str, str]:
    run = uuid.uuid4().hex[:8]
    victim, stranger, phone = f"cust-v-{run}", f"cust-s-{run}", f"+46 70 {run[:3]} {run[3:6]}"
    now = datetime.now(UTC)
    touchpoints = [
        new_touchpoint(
            c.IdentityLinked(kind="phone", value=phone, verified=True),
            customer_id=victim,
            occurred_at=now,
            source="bank-crm",
        ),
        inquiry(victim, "new card", case_id=f"card-{run}"),
        new_touchpoint(
            c.ReplySent(
                case_id=f"card-{run}",
                channel="sms",
                agent="sms",
                team="Cards",
                country="SE",
                body=PIN,
            ),
            customer_id=victim,
            occurred_at=now,
            source="sms",
        ),
        new_touchpoint(
            c.SignupRequested(case_id=f"form-{run}", form="join", fields={"phone": phone}),
            customer_id=stranger,
            occurred_at=now,
            source="web",
        ),
    ]
    token = tokens_of(svc.emitter.emit_touchpoints(touchpoints))
    return victim, stranger, phone, token


def _data(svc: Running, url: str, **params: Any) -> dict[str, Any]:
    response = svc.get(url, params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_a_claimed_identity_answers_300_with_candidates_and_no_view(svc: Running) -> None:
    response = svc.get("/customers/erik.haugen@example.no")
    assert response.status_code == 300, response.text
    body = response.json()
    assert body["fresh"] is True
    assert body["data"]["customer_id"] is None
    assert [(m["customer_id"], m["verified"]) for m in body["data"]["candidates"]] == [
        ("cust-erik", False)
    ]
    assert "submissions" not in response.text and "floating rate" not in response.text
    # Who was shown as a candidate is audited, as a search is.
    from journey.security.audit import read_audit

    settings = svc.service.settings
    records = read_audit(svc.log, settings.audit_topic, customer="cust-erik")
    assert ("search", "/customers/{key}") in {(r.lookup, r.route) for r in records}
    # Every route under the key answers the same way.
    for tail in ("/timeline", "/cases", "/lists/identities"):
        assert svc.get(f"/customers/erik.haugen@example.no{tail}").status_code == 300, tail


def test_the_stranger_sees_a_possible_match_not_the_victims_view(svc: Running) -> None:
    victim, stranger, phone, token = _victim_and_stranger(svc)
    view = _data(svc, f"/customers/{stranger}", after=token)
    assert PIN not in str(view) and view["linked_customer_ids"] == []
    assert [(m["customer_id"], m["kind"], m["verified"]) for m in view["possible_matches"]] == [
        (victim, "phone", True)
    ]
    # The phone leads to its verified owner, however the number is written.
    assert _data(svc, f"/customers/{phone.replace(' ', '')}")["customer_id"] == victim


def test_an_agent_confirms_and_then_undoes_a_merge(svc: Running) -> None:
    victim, stranger, _, token = _victim_and_stranger(svc)
    _data(svc, f"/customers/{stranger}", after=token)
    confirmed = svc.http.post(
        f"/customers/{stranger}/identities",
        json={"kind": "customer_id", "value": victim},
    )
    assert confirmed.status_code == 201, confirmed.text
    merged = _data(svc, f"/customers/{stranger}", after=confirmed.json()["token"])
    assert merged["linked_customer_ids"] == [victim]
    assert merged["possible_matches"] == []
    link = next(e for e in merged["timeline"]["entries"] if e["type"] == "IdentityLinked")
    assert "verified" in link["summary"]
    agent = svc.client("agent", "agent-nina")
    done = agent.post(
        f"/customers/{stranger}/identities", json={"kind": "email", "value": "s@example.org"}
    )
    assert done.status_code == 201, done.text
    # The touchpoint names the agent by the key's name (read back from the store's fact).
    (event_id,) = [p["event_id"] for p in done.json()["positions"]]
    _data(svc, f"/customers/{stranger}", after=done.json()["token"])
    store = JourneyStore(svc.service.settings.store_address())
    try:
        (fact, eid, kind, cid, at) = store.query(
            "SELECT fact, event_id, type, customer_id, at FROM touchpoints WHERE event_id = ?",
            (uuid.UUID(event_id).bytes,),
        )[0]
    finally:
        store.close()
    raw = unpack(fact, event_id=eid, type=type_name(kind), customer_id=cid, at=at)
    assert json.loads(raw)["source"] == "agent:agent-nina"
    # The link is undone from the victim's side: the service withdraws it where it was made.
    undone = svc.http.post(
        f"/customers/{victim}/identities/unlink",
        json={"kind": "customer_id", "value": stranger, "reason": "wrong"},
    )
    assert undone.status_code == 201, undone.text
    assert [p["customer_id"] for p in undone.json()["positions"]] == [stranger]
    after = undone.json()["token"]
    assert _data(svc, f"/customers/{stranger}", after=after)["linked_customer_ids"] == []
    victim_view = _data(svc, f"/customers/{victim}", after=after)
    assert victim_view["linked_customer_ids"] == []
    assert {m["customer_id"] for m in victim_view["possible_matches"]} == {stranger}


def test_the_link_endpoints_take_json_for_a_known_customer_only(svc: Running) -> None:
    body = {"kind": "email", "value": "x@example.org"}
    # Only an agent (or admin) confirms; the key's name is the source, never the body's word.
    for role in ("service", "analyst"):
        refused = svc.client(role).post("/customers/cust-erik/identities", json=body)
        assert refused.status_code == 403, (role, refused.text)
    named = svc.http.post("/customers/cust-erik/identities", json=body | {"agent": "Eve"})
    assert named.status_code == 422, named.text
    unknown = svc.http.post("/customers/nobody-here/identities", json=body)
    assert unknown.status_code == 404, unknown.text
    form = svc.http.post(
        "/customers/cust-erik/identities",
        content="kind=email&value=x%40example.org&agent=Nina",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415, form.text  # the guard: JSON only
    extra = svc.http.post("/customers/cust-erik/identities", json=body | {"verified": False})
    assert extra.status_code == 422, extra.text
    bad_kind = svc.http.post("/customers/cust-erik/identities", json=body | {"kind": "pin"})
    assert bad_kind.status_code == 422, bad_kind.text
