"""POST /events encrypts personal fields before they reach the log, and an erasure through it
leaves nothing of the customer to find: not in the view (which says erased on …), not in a
search, not in /metrics, not on the log."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from consumers.log import Message
from tests.service.helpers import TOPIC, Running, envelope

NAME = "Solveig Apiforgotten"
PHONE = "+47 48 15 16 23"


def all_records(svc: Running) -> list[Message]:
    consumer = svc.log.consumer(None, [TOPIC])
    try:
        consumer.seek_to_beginning()
        total = sum(svc.log.high_watermarks(TOPIC).values())
        out: list[Message] = []
        for _ in range(100):
            out += consumer.poll(0.1, 1000)
            if len(out) >= total:
                break
        return out
    finally:
        consumer.close()


def post(svc: Running, body: Any) -> str:
    response = svc.http.post("/events", json=body)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def test_post_events_encrypts_and_an_erasure_leaves_nothing_to_find(svc: Running) -> None:
    cid = "cust-apiforgotten"
    with capture_logs() as logs:
        token = post(
            svc,
            [
                envelope(cid, f"{NAME} here", body=f"call me on {PHONE}"),
                {
                    **envelope(cid, "x"),
                    "type": "IdentityLinked",
                    "data": {"kind": "phone", "value": PHONE, "verified": True},
                },
            ],
        )
        view = svc.get(f"/customers/{cid}", params={"after": token})
        assert view.status_code == 200 and NAME in view.text and PHONE in view.text
        assert cid in svc.get("/search", params={"q": PHONE, "after": token}).text
        values = b"".join(m.value or b"" for m in all_records(svc))
        assert NAME.encode() not in values and PHONE.encode() not in values

        erased = post(svc, {**envelope(cid, "x"), "type": "ErasureRequested", "data": {}})
        after = svc.get(f"/customers/{cid}", params={"after": erased})
        assert after.status_code == 200, after.text
        assert after.json()["data"]["erased_at"] is not None
        assert NAME not in after.text and PHONE not in after.text
        page = svc.get(f"/console/customers/{cid}")
        assert "Erased on" in page.text and NAME not in page.text
        search = svc.get("/search", params={"q": PHONE, "after": erased})
        assert cid not in search.text
        assert NAME not in svc.get("/metrics").text
    assert NAME not in repr(logs) and PHONE not in repr(logs)


def test_the_service_relays_the_intake_sealed(svc: Running) -> None:
    """A producer without keys (kcat) writes to the intake; `journey serve` relays it."""
    import json
    import time

    from consumers.log import OutgoingMessage

    cid = "cust-from-kcat"
    env = envelope(cid, f"{NAME} via kcat", body=f"call {PHONE}")
    svc.log.produce(
        f"{TOPIC}.intake", [OutgoingMessage(key=cid.encode(), value=json.dumps(env).encode())]
    )
    deadline = time.monotonic() + 30
    while svc.get(f"/customers/{cid}").status_code != 200:  # bounded: relayed, then folded
        assert time.monotonic() < deadline, "the intake was not relayed"
        time.sleep(0.1)
    assert NAME in svc.get(f"/customers/{cid}").text
    values = b"".join(m.value or b"" for m in all_records(svc))
    assert NAME.encode() not in values and PHONE.encode() not in values
