"""The touchpoint catalogue: complete against the MISSION list, frozen, strict."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from domain.catalogue import (
    CATALOGUE,
    CURRENT,
    ComplaintFiled,
    ComplaintFiledV1,
    PromiseMade,
    TouchpointData,
    current_model,
    model_for,
)
from journey.schema import example_envelope

# MISSION.md, "The touchpoints the engine must know"
MISSION_TYPES = {
    "OrderPlaced",
    "OrderShipped",
    "SignupRequested",
    "IdentityLinked",
    "InquiryReceived",
    "ComplaintFiled",
    "AutoAcknowledgementSent",
    "ReplySent",
    "CaseHandedOff",
    "PromiseMade",
    "PromiseKept",
    "PromiseBroken",
    "SerialNumberCorrected",
    "SerialConfirmationRequested",
    "SerialNumberConfirmed",
    "RepairCompleted",
    "ReplacementShipped",
    "PickupBooked",
    "ReturnReceived",
    "RefundIssued",
    "DeliveryAttempted",
    "DeliveryFailed",
    "DeliveryRescheduled",
    "Delivered",
    "GoodwillGranted",
    "KnownDefectRegistered",
    "ProactiveOutreachSent",
    "CaseResolved",
    "CaseReopened",
    "SatisfactionRated",
    "PublicReviewPosted",
    "ReviewAnswered",
    "ErasureRequested",
}

ALL = sorted(CATALOGUE)


def _example(type_name: str, version: int) -> TouchpointData:
    return CATALOGUE[(type_name, version)].model_validate(
        example_envelope(type_name, version)["data"]
    )


def test_catalogue_covers_the_mission_list() -> None:
    missing = MISSION_TYPES - set(CURRENT)
    assert not missing, f"catalogue lacks {sorted(missing)}"


def test_every_registered_type_has_a_current_version_that_is_its_highest() -> None:
    types = {t for (t, _) in CATALOGUE}
    assert types == set(CURRENT)
    for type_name, current in CURRENT.items():
        assert current == max(v for (t, v) in CATALOGUE if t == type_name)
        assert current_model(type_name) is CATALOGUE[(type_name, current)]


def test_models_know_their_wire_name_and_version() -> None:
    for (type_name, version), model in CATALOGUE.items():
        assert model.type_name == type_name
        assert model.schema_version == version
        assert model.summary, f"{type_name} v{version} needs a docstring"
        assert "  " not in model.summary
    assert model_for("ComplaintFiled", 1) is ComplaintFiledV1
    assert model_for("ComplaintFiled", 2) is ComplaintFiled
    assert model_for("ComplaintFiled", 3) is None
    assert model_for("NoSuchThing", 1) is None
    assert current_model("NoSuchThing") is None


@pytest.fixture
def registry() -> Iterator[None]:
    """Restore the global registry after a test that defines throwaway types."""
    catalogue, current = dict(CATALOGUE), dict(CURRENT)
    yield
    CATALOGUE.clear()
    CATALOGUE.update(catalogue)
    CURRENT.clear()
    CURRENT.update(current)


@pytest.mark.usefixtures("registry")
def test_registering_a_type_twice_is_refused() -> None:
    with pytest.raises(TypeError, match="registered twice"):

        class Again(TouchpointData, type_name="ReplySent", version=1):
            """Duplicate."""

    assert CATALOGUE[("ReplySent", 1)].__name__ == "ReplySent"


@pytest.mark.usefixtures("registry")
def test_a_current_version_below_the_highest_is_refused_and_not_registered() -> None:
    class ThrowawayV2(TouchpointData, type_name="Throwaway", version=2):
        """Version 2."""

    with pytest.raises(TypeError, match="current version must be the highest"):

        class ThrowawayV1(TouchpointData, type_name="Throwaway", version=1):
            """Would make v1 current again."""

    assert CURRENT["Throwaway"] == 2
    assert ("Throwaway", 1) not in CATALOGUE


def test_throwaway_types_do_not_leak() -> None:
    assert "Throwaway" not in CURRENT


@pytest.mark.parametrize(("type_name", "version"), ALL)
def test_models_are_frozen(type_name: str, version: int) -> None:
    body = _example(type_name, version)
    field = next(iter(type(body).model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(body, field, "changed")


@pytest.mark.parametrize(("type_name", "version"), ALL)
def test_extra_fields_are_rejected(type_name: str, version: int) -> None:
    data: dict[str, Any] = example_envelope(type_name, version)["data"]
    with pytest.raises(ValidationError) as info:
        CATALOGUE[(type_name, version)].model_validate({**data, "colour": "blue"})
    assert info.value.errors()[0]["type"] == "extra_forbidden"
    assert info.value.errors()[0]["loc"] == ("colour",)


def test_extra_fields_are_rejected_in_nested_parts_too() -> None:
    data: dict[str, Any] = example_envelope("OrderPlaced", 1)["data"]
    data["total"] = {**data["total"], "vat": "99.80"}
    with pytest.raises(ValidationError) as info:
        CATALOGUE[("OrderPlaced", 1)].model_validate(data)
    assert info.value.errors()[0]["loc"] == ("total", "vat")


def test_times_need_a_zone_and_must_be_text() -> None:
    base = {"promise_id": "p-1", "what": "call back", "made_by": "Erik"}
    ok = PromiseMade.model_validate({**base, "due_by": "2026-11-24T16:00:00+01:00"})
    assert ok.due_by.utcoffset() is not None
    assert PromiseMade(**base, due_by=datetime(2026, 11, 24, 15, tzinfo=UTC)).due_by.tzinfo
    for bad in ("2026-11-24T16:00:00", 1795532400, datetime(2026, 11, 24, 16)):
        with pytest.raises(ValidationError):
            PromiseMade.model_validate({**base, "due_by": bad})


def test_constraints_hold() -> None:
    with pytest.raises(ValidationError):
        CATALOGUE[("SatisfactionRated", 1)].model_validate({"score": 6})
    with pytest.raises(ValidationError):
        CATALOGUE[("RefundIssued", 1)].model_validate(
            {"amount": {"amount": "-1", "currency": "SEK"}}
        )
    with pytest.raises(ValidationError):
        CATALOGUE[("RefundIssued", 1)].model_validate({"amount": {"amount": "1", "currency": "kr"}})
    with pytest.raises(ValidationError):
        CATALOGUE[("OrderPlaced", 1)].model_validate(
            {"order_id": "", "total": {"amount": "0", "currency": "SEK"}}
        )
    with pytest.raises(ValidationError):
        CATALOGUE[("InquiryReceived", 1)].model_validate({"case_id": "", "channel": "email"})


def test_v2_complaint_keeps_the_serial_as_given_apart_from_a_correction() -> None:
    fields = set(ComplaintFiled.model_fields)
    assert "serial_number_as_given" in fields
    assert "serial_number" not in fields
    assert "serial_number" in ComplaintFiledV1.model_fields
