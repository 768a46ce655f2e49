"""Old versions are upcast on read, never rewritten; the current version round-trips."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from domain.catalogue import CATALOGUE, CURRENT, ComplaintFiled
from domain.envelope import Touchpoint, decode, encode
from domain.errors import InvalidEvent
from domain.upcasting import UPCASTERS, upcast
from journey.schema import example_envelope

EVENT_ID = "6b1d7a4e-2c3f-4f5a-8b9c-0d1e2f3a4b5c"


def complaint_v1(**data: Any) -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "type": "ComplaintFiled",
        "schema_version": 1,
        "customer_id": "cust-4711",
        "occurred_at": "2026-12-19T21:04:00+01:00",
        "source": "helpdesk",
        "correlation_id": "mail-thread-88231",
        "data": {
            "case_id": "case-1042",
            "channel": "email",
            "product": "UltraSharp 27 monitor",
            **data,
        },
    }


def test_v1_complaint_decodes_as_v2_with_the_serial_as_given() -> None:
    tp = decode(json.dumps(complaint_v1(serial_number="CN-0FX2K3-74216", description="black")))
    assert tp.schema_version == 2
    assert isinstance(tp.data, ComplaintFiled)
    assert tp.data.serial_number_as_given == "CN-0FX2K3-74216"
    assert tp.data.description == "black"
    assert tp.data.warranty_claim is False
    assert tp.data.purchase_place is None
    assert tp.data.purchase_date is None
    # the envelope is carried over untouched
    assert tp.event_id == uuid.UUID(EVENT_ID)
    assert tp.customer_id == "cust-4711"
    assert tp.correlation_id == "mail-thread-88231"
    assert tp.occurred_at.isoformat() == "2026-12-19T21:04:00+01:00"


def test_v1_complaint_without_serial_has_none_as_given() -> None:
    tp = decode(json.dumps(complaint_v1()))
    assert isinstance(tp.data, ComplaintFiled)
    assert tp.data.serial_number_as_given is None


def test_upcast_v1_equals_the_v2_it_stands_for() -> None:
    v1 = decode(json.dumps(complaint_v1(serial_number="SN-1")))
    v2_env = complaint_v1(serial_number_as_given="SN-1")
    v2_env["schema_version"] = 2
    assert v1 == decode(json.dumps(v2_env))


def test_re_encoding_an_upcast_touchpoint_writes_the_current_version() -> None:
    tp = decode(json.dumps(complaint_v1(serial_number="SN-1")))
    wire = json.loads(encode(tp))
    assert wire["schema_version"] == 2
    assert wire["data"]["serial_number_as_given"] == "SN-1"
    assert "serial_number" not in wire["data"]
    assert decode(encode(tp)) == tp


def test_v1_validates_against_v1_before_upcasting() -> None:
    # v2 names are unknown to v1: mixing versions is an error, not a silent upcast
    with pytest.raises(InvalidEvent) as info:
        decode(json.dumps(complaint_v1(serial_number_as_given="SN-1")))
    assert info.value.reason == "invalid_data"
    assert info.value.field == "data.serial_number_as_given"
    assert "ComplaintFiled v1" in info.value.message


def test_v2_body_with_the_v1_name_is_rejected() -> None:
    env = complaint_v1(serial_number="SN-1")
    env["schema_version"] = 2
    with pytest.raises(InvalidEvent) as info:
        decode(json.dumps(env))
    assert info.value.reason == "invalid_data"
    assert info.value.field == "data.serial_number"


def test_an_unknown_version_is_refused_with_the_known_ones() -> None:
    env = complaint_v1()
    env["schema_version"] = 3
    with pytest.raises(InvalidEvent) as info:
        decode(json.dumps(env))
    assert info.value.reason == "unknown_version"
    assert info.value.field == "schema_version"
    assert "known: 1, 2" in info.value.message


def test_upcast_does_not_change_its_input() -> None:
    body = {"case_id": "c", "channel": "email", "product": "p", "serial_number": "SN"}
    before = dict(body)
    lifted = upcast("ComplaintFiled", 1, body, 2)
    assert body == before
    assert lifted["serial_number_as_given"] == "SN"


def test_upcast_to_the_same_version_is_identity() -> None:
    body = {"case_id": "c"}
    assert upcast("ComplaintFiled", 2, body, 2) == body


def test_every_retired_version_has_an_upcaster_chain_to_current() -> None:
    for type_name, version in CATALOGUE:
        for step in range(version, CURRENT[type_name]):
            assert (type_name, step) in UPCASTERS, f"{type_name} v{step} has no upcaster"


@pytest.mark.parametrize(("type_name", "version"), sorted(CATALOGUE))
def test_every_old_version_example_upcasts_to_a_valid_current_body(
    type_name: str, version: int
) -> None:
    tp = decode(json.dumps(example_envelope(type_name, version)))
    assert tp.schema_version == CURRENT[type_name]
    assert isinstance(tp.data, CATALOGUE[(type_name, CURRENT[type_name])])


FULL_V2 = {
    "event_id": "0f5c2b8e-4a7d-4c1b-9e3a-6d2f1b7c8a90",
    "type": "ComplaintFiled",
    "schema_version": 2,
    "customer_id": "cust-4711",
    "occurred_at": "2026-12-19T21:04:00+01:00",
    "source": "helpdesk",
    "correlation_id": "mail-thread-88231",
    "causation_id": "9d0e8f1a-0000-4000-8000-000000000001",
    "data": {
        "case_id": "case-1042",
        "channel": "email",
        "product": "UltraSharp 27 monitor",
        "serial_number_as_given": "CN-0FX2K3-74216",
        "description": "Svart skärm, fem dagar före jul",
        "warranty_claim": True,
        "purchase_place": "Webhallen, Stockholm",
        "purchase_date": "2024-03-02",
        "order_id": "ord-77120",
    },
}


def test_v2_round_trips_through_encode_and_decode_unchanged() -> None:
    tp = decode(json.dumps(FULL_V2))
    again = decode(encode(tp))
    assert again == tp
    assert encode(again) == encode(tp)
    assert json.loads(encode(tp)) == FULL_V2


def test_fractional_seconds_and_offsets_survive_the_round_trip() -> None:
    env = {**FULL_V2, "occurred_at": "2026-12-19T21:04:00.250-05:30"}
    tp = decode(json.dumps(env))
    assert tp.occurred_at.isoformat() == "2026-12-19T21:04:00.250000-05:30"
    assert decode(encode(tp)) == tp


@pytest.mark.parametrize("type_name", sorted(CURRENT))
def test_every_current_type_round_trips(type_name: str) -> None:
    tp: Touchpoint = decode(json.dumps(example_envelope(type_name, CURRENT[type_name])))
    assert decode(encode(tp)) == tp
