"""Personal fields: which they are, how they are sealed on the wire, and how they open — or
read "(erased)" once the customer's key is gone."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from domain import catalogue as c
from domain.envelope import decode, encode, encode_sealed, new_touchpoint
from domain.personal import (
    ERASED,
    UNOPENED,
    is_sealed,
    new_key,
    open_bytes,
    personal_fields,
    seal_bytes,
)
from journey.schema import touchpoint_schema

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)
NAME = "Ingrid Planted-Nordmann"
PHONE = "+47 912 34 567"

# Free text that is not the customer's: the company's defect notice, the warranty terms.
NOT_PERSONAL_TEXT = {
    ("KnownDefectRegistered", "description"),
    ("KnownDefectRegistered", "remedy"),
}


def test_every_free_text_field_of_a_touchpoint_is_personal_unless_named_otherwise() -> None:
    missing = []
    for (type_name, version), model in c.CATALOGUE.items():
        marked = set(personal_fields(model))
        for name, info in model.model_fields.items():
            # Text (domain.catalogue) is the free-text type: up to 10,000 characters
            free_text = "max_length=10000" in repr(info)
            if free_text and name not in marked and (type_name, name) not in NOT_PERSONAL_TEXT:
                missing.append(f"{type_name} v{version}.{name}")
    assert missing == [], "free text not marked PERSONAL (or named in NOT_PERSONAL_TEXT)"


def test_names_phones_addresses_and_form_fields_are_personal() -> None:
    assert personal_fields(c.SignupRequested) == ("fields",)
    assert personal_fields(c.IdentityLinked) == ("value",)
    assert personal_fields(c.OrderPlaced) == ("delivery_address",)
    assert set(personal_fields(c.PromiseMade)) == {"what", "made_to"}
    assert set(personal_fields(c.InquiryReceived)) == {"subject", "body"}


def signup(cid: str = "c-1") -> Any:
    return new_touchpoint(
        c.SignupRequested(
            case_id="s-1",
            form="become-a-customer",
            products=["mortgage"],
            fields={"name": NAME, "phone": PHONE, "loan": "fixed-rate"},
        ),
        customer_id=cid,
        occurred_at=AT,
        source="test",
    )


def test_a_sealed_envelope_holds_no_personal_value_and_opens_with_the_key() -> None:
    tp = signup()
    key = new_key("c-1")
    raw = encode_sealed(tp, key)
    assert NAME.encode() not in raw and PHONE.encode() not in raw
    assert b"become-a-customer" in raw  # what is not personal stays readable
    wire = json.loads(raw)
    assert set(wire["data"]["fields"]) == {"name", "phone", "loan"}  # names stay, values sealed
    assert all(is_sealed(v) for v in wire["data"]["fields"].values())
    opened = decode(raw, keys=lambda cid, kid: key.key if kid == key.kid else None)
    assert opened == tp


def test_without_its_key_a_sealed_value_reads_erased_and_the_touchpoint_still_folds() -> None:
    raw = encode_sealed(signup(), new_key("c-1"))
    gone = decode(raw, keys=lambda cid, kid: None)
    assert isinstance(gone.data, c.SignupRequested)
    assert gone.data.fields == {"name": ERASED, "phone": ERASED, "loan": ERASED}
    assert gone.data.form == "become-a-customer"
    untold = decode(raw)  # a reader given no keys at all
    assert isinstance(untold.data, c.SignupRequested)
    assert set(untold.data.fields.values()) == {UNOPENED}


def test_a_sealed_value_is_bound_to_its_event_and_field() -> None:
    key = new_key("c-1")
    lookup = {key.kid: key.key}
    one = json.loads(encode_sealed(signup(), key))
    other = json.loads(encode_sealed(signup(), key))
    # moved into another event: does not authenticate
    one["data"]["fields"]["name"] = other["data"]["fields"]["name"]
    # moved to another field of the same event: does not authenticate either
    one["data"]["fields"]["loan"] = one["data"]["fields"]["phone"]
    moved = decode(json.dumps(one), keys=lambda cid, kid: lookup.get(kid))
    assert isinstance(moved.data, c.SignupRequested)
    assert moved.data.fields["name"] == ERASED
    assert moved.data.fields["loan"] == ERASED
    assert moved.data.fields["phone"] == PHONE


def test_the_published_schema_accepts_the_sealed_wire_and_the_plain_one() -> None:
    tp = new_touchpoint(
        c.InquiryReceived(case_id="k", channel="sms", body=f"call {NAME} on {PHONE}"),
        customer_id="c-1",
        occurred_at=AT,
        source="test",
        event_id=uuid.uuid4(),
    )
    schema = touchpoint_schema("InquiryReceived", 1)
    jsonschema.validate(json.loads(encode(tp)), schema)
    jsonschema.validate(json.loads(encode_sealed(tp, new_key("c-1"))), schema)
    bad = json.loads(encode_sealed(tp, new_key("c-1")))
    bad["data"]["body"]["extra"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_a_touchpoint_without_personal_values_is_the_same_bytes_sealed_or_not() -> None:
    tp = new_touchpoint(
        c.AutoAcknowledgementSent(case_id="k", channel="email"),
        customer_id="c-1",
        occurred_at=AT,
        source="test",
    )
    assert encode_sealed(tp, None) == encode(tp)


def test_a_whole_payload_seals_and_opens_only_with_its_key_and_label() -> None:
    key = new_key("c-1")
    sealed = seal_bytes(b"not json " + NAME.encode(), key, "dlq|t|0|5")
    assert NAME.encode() not in sealed
    assert open_bytes(sealed, key.key, "dlq|t|0|5") == b"not json " + NAME.encode()
    assert open_bytes(sealed, key.key, "dlq|t|0|6") is None
    assert open_bytes(sealed, new_key("c-1").key, "dlq|t|0|5") is None


def test_a_key_never_shows_in_its_repr(tmp_path: Path) -> None:
    key = new_key("c-1")
    assert key.key.hex() not in repr(key) and str(key.key) not in repr(key)


def test_carrying_personal_values_is_read_the_same_from_the_body_and_from_its_json() -> None:
    """The emitter asks the validated body (no dump); sealing asks its JSON: both must agree,
    for every type, for empty and missing personal values, and for a form whose fields
    happen to look like a sealed value."""
    from domain.catalogue import CATALOGUE, CURRENT
    from domain.envelope import parse_envelope
    from domain.personal import carries_personal_values, has_personal_values
    from journey.schema import example_envelope

    bodies: list[c.TouchpointData] = []
    for type_name, version in sorted(CATALOGUE):
        if CURRENT[type_name] == version:
            bodies.append(parse_envelope(example_envelope(type_name, version)).data)
    signup = parse_envelope(example_envelope("SignupRequested", CURRENT["SignupRequested"]))
    lookalike = {"enc": "v1", "kid": "k", "iv": "x", "ct": "y"}
    bodies += [
        signup.data.model_copy(update={"fields": {}}),
        signup.data.model_copy(update={"fields": lookalike}),
        signup.data.model_copy(update={"fields": {**lookalike, "more": "text"}}),
    ]
    answers = set()
    for body in bodies:
        model = type(body)
        answer = carries_personal_values(body)
        assert answer == has_personal_values(body.model_dump(mode="json"), model), body
        answers.add(answer)
        tp = signup.model_copy(update={"data": body, "type": body.type_name})
        if not answer:  # a key to seal with and nothing to seal: the plain bytes
            assert encode_sealed(tp, new_key(tp.customer_id)) == encode(tp)
    assert answers == {True, False}
