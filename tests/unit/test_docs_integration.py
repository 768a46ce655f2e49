"""The integrator's guide in docs/events.md is true: every message it shows is a line of
docs/examples/integration.jsonl, every line decodes, and folded they give the view the
guide promises (promises kept or cancelled, the two answer times, the claim's steps)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from consumers.embedded_log import EmbeddedLog
from domain.envelope import Touchpoint, decode
from journey.pipeline import ManualClock, Pipeline

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "integration.jsonl"
PERSON = "olist:8d50f5eadf50201ccdcedfb9e2ac8455"
ORDER = "e481f51cbdc54678b7cc49136f2d6af7"
CANCELLED = "1b15974a0141d54e36626dca3fdc731a"


def guide() -> str:
    text = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    start = text.index("## Integrator's guide")
    return text[start : text.index("<!-- BEGIN GENERATED -->", start)]


def lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]


def touchpoints() -> list[Touchpoint]:
    return [decode(json.dumps(line)) for line in lines()]


def test_every_message_the_guide_shows_is_in_the_example_file() -> None:
    shown = [
        json.loads(block)
        for block in re.findall(r"^```json\n(.*?)^```", guide(), flags=re.M | re.S)
    ]
    assert len(shown) >= 5
    for message in shown:
        assert message in lines(), message["type"]


def test_the_example_file_uses_the_new_catalogue() -> None:
    types = {tp.type for tp in touchpoints()}
    assert {
        "OrderCancelled",
        "PaymentApproved",
        "FeedbackRequested",
        "ClaimDecided",
        "ProofOfPurchaseReceived",
        "PickupCompleted",
        "PickupFailed",
        "KnownDefectRegistered",
    } <= types


def test_every_example_passes_its_published_json_schema() -> None:
    """What a producer in another language checks before producing: the exported schema."""
    for line in lines():
        name = f"{line['type']}.v{line['schema_version']}.schema.json"
        schema = json.loads((ROOT / "docs" / "schema" / name).read_text(encoding="utf-8"))
        checker = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [e.message for e in checker.iter_errors(line)]
        assert errors == [], (name, errors)
    # and the schema refuses what the engine refuses: a time with the date, an odd zone
    schema = json.loads((ROOT / "docs" / "schema" / "OrderPlaced.v1.schema.json").read_text())
    checker = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    (placed,) = [x for x in lines() if x["type"] == "OrderPlaced" and "lines" in x["data"]]
    for field, bad in (
        ("promised_delivery_date", "2018-10-18T00:00:00Z"),
        ("time_zone", "../etc/localtime"),
    ):
        wrong = {**placed, "data": {**placed["data"], field: bad}}
        assert list(checker.iter_errors(wrong)), field


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    clock = ManualClock(datetime(2026, 12, 1, tzinfo=UTC))
    running = Pipeline(log, tmp_path / "views.db", topic="shop", clock=clock)
    try:
        running.emit(touchpoints())
        running.catch_up()
        yield running
    finally:
        running.close()
        log.close()


def test_folded_the_examples_say_what_the_guide_says(pipeline: Pipeline) -> None:
    person = pipeline.customer(PERSON)
    assert person is not None
    # the order-scoped id finds the person
    assert pipeline.customer("olist-order-customer:9ef432eb6251297304e76186b10a928d") is not None
    promises = {p.promise_id: p.status for p in person.promises}
    assert promises == {
        f"delivery:{ORDER}": "kept",
        f"handoff:{ORDER}:3504c0cb71d7fa48d967e0e4c94d59d9": "kept",
        f"delivery:{CANCELLED}": "cancelled",
    }
    assert person.orders[CANCELLED].endswith("cancelled: order_status = canceled")
    assert "shipping 8.72 BRL" in person.orders[ORDER]
    assert "paid: credit_card, 38.71 BRL" in person.orders[ORDER]
    (review,) = person.reviews
    assert (
        review.customer_answer_seconds
        == timedelta(hours=27, minutes=43, seconds=48).total_seconds()
    )
    assert review.our_answer_seconds == timedelta(hours=5, minutes=26, seconds=12).total_seconds()
    assert (review.rating, review.order_id) == (4, ORDER)
    assert person.anomalies == []

    claim = pipeline.customer("cust-4711")
    assert claim is not None
    (case,) = claim.open_cases
    assert (case.claim_decision, case.claim_reason) == ("approved", "Within the 3-year warranty")
    assert [s.split(" ", 1)[1] for s in case.steps] == [
        "proof of purchase (order confirmation) received for order ord-77120",
        "claim approved: Within the 3-year warranty",
        "pickup of UltraSharp 27 monitor booked for 2026-11-25T10:00+01:00",
        "pickup of UltraSharp 27 monitor failed: Nobody home",
        "UltraSharp 27 monitor collected",
        "replacement UltraSharp 27 monitor shipped",
    ]
    (shipment,) = claim.shipments
    assert (shipment.shipment_id, shipment.case_id, shipment.carrier) == (
        "rs-2001",
        "case-2001",
        None,
    )
    assert shipment.delivered_at is not None
    assert claim.anomalies == []

    (defect,) = pipeline.defects()
    assert (defect.defect_id, defect.product, defect.batch) == (
        "paint-2026-09",
        "Hagesett Oslo",
        "2026-09",
    )


def test_the_documented_id_of_a_rescheduled_delivery_is_the_one_it_gets() -> None:
    # Before, the guide said "occurred_at as sent": a message sent with Z got +00:00.
    from domain.journey import Journey

    sent = {
        "event_id": "3f1f1c1e-7d1b-4f7e-9a57-3b1d6c1f0a01",
        "type": "DeliveryRescheduled",
        "schema_version": 1,
        "customer_id": "cust-1",
        "occurred_at": "2026-11-20T09:30:00Z",
        "source": "carrier",
        "data": {"shipment_id": "s-1", "deliver_by": "2026-11-21T16:00:00Z"},
    }
    journey = Journey("cust-1")
    journey.apply(decode(json.dumps(sent)))
    [pid] = journey.promises
    events_md = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    assert pid == "reschedule:s-1:2026-11-20T09:30:00+00:00"
    assert f"`{pid}`" in events_md
