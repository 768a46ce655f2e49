"""The envelope: the one wire format every touchpoint travels in (ARCHITECTURE decision 1).

``Envelope`` is what is on the wire (``data`` is plain JSON). ``Touchpoint`` is what the
engine works with after decoding: the same fields, with ``data`` parsed into the current
version of its catalogue model (old versions upcast on the way).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from domain.catalogue import CATALOGUE, CURRENT, Instant, TouchpointData, current_model
from domain.errors import InvalidEvent, UnknownEventType
from domain.upcasting import upcast

__all__ = [
    "Envelope",
    "Touchpoint",
    "decode",
    "encode",
    "new_touchpoint",
    "parse_envelope",
    "validation_message",
]

# 1-200 characters, no leading or trailing whitespace ("c-1" and "c-1 " would be two people)
_ID_PATTERN = r"^\S(.{0,198}\S)?$"


class _EnvelopeFields(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(description="Unique id of this fact; the de-duplication key")
    type: str = Field(min_length=1, description="Touchpoint type, e.g. ComplaintFiled")
    schema_version: int = Field(ge=1, description="Version of the type's data schema")
    customer_id: str = Field(
        pattern=_ID_PATTERN,
        description="Whose touchpoint; also the Kafka message key "
        "(1-200 chars, no leading or trailing whitespace)",
    )
    occurred_at: Instant = Field(description="When it happened, RFC 3339 with a time zone offset")
    source: str = Field(min_length=1, description="Emitting system, e.g. helpdesk, webshop")
    correlation_id: str | None = Field(
        default=None, description="Groups touchpoints of one conversation or flow"
    )
    causation_id: str | None = Field(
        default=None, description="event_id of the touchpoint that caused this one"
    )


class Envelope(_EnvelopeFields):
    """A touchpoint on the wire. ``data`` is validated separately against its type."""

    data: dict[str, Any] = Field(description="Type-specific body, see docs/events.md")


class Touchpoint(_EnvelopeFields):
    """A decoded touchpoint: ``data`` is the current-version model of its type."""

    data: SerializeAsAny[TouchpointData]

    def to_envelope(self) -> Envelope:
        return Envelope(
            **self.model_dump(exclude={"data"}),
            data=self.data.model_dump(mode="json", exclude_none=True),
        )

    @property
    def occurred(self) -> datetime:
        return self.occurred_at


def validation_message(error: ValidationError, prefix: str = "") -> tuple[str, str]:
    """(dotted field, human message) of the first error, e.g. ('data.due_by', '...')."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(root)"
    msg = first["msg"]
    if first["type"] == "timezone_aware":
        msg = "a time needs a zone offset, e.g. 2026-11-23T10:00:00+01:00"
    elif first["type"] == "missing":
        msg = "field required"
    extra = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return field, f"{field}: {msg}{extra}"


def parse_envelope(obj: Any) -> Touchpoint:
    """Validate a JSON-like object as an envelope and its data; upcast to current."""
    try:
        env = Envelope.model_validate(obj)
    except ValidationError as exc:
        field, msg = validation_message(exc)
        raise InvalidEvent("invalid_envelope", msg, field) from None
    target = CURRENT.get(env.type)
    if target is None:
        raise UnknownEventType(env.type, sorted(CURRENT))
    model = CATALOGUE.get((env.type, env.schema_version))
    if model is None:
        known = sorted(v for (t, v) in CATALOGUE if t == env.type)
        raise InvalidEvent(
            "unknown_version",
            f"schema_version: {env.type} has no version {env.schema_version} "
            f"(known: {', '.join(map(str, known))})",
            "schema_version",
        )
    try:
        body = model.model_validate(env.data)
        if env.schema_version != target:
            lifted = upcast(env.type, env.schema_version, body.model_dump(mode="json"), target)
            current = current_model(env.type)
            assert current is not None
            body = current.model_validate(lifted)
    except ValidationError as exc:
        field, msg = validation_message(exc, "data.")
        raise InvalidEvent(
            "invalid_data", f"{env.type} v{env.schema_version} {msg}", field
        ) from None
    fields = env.model_dump(exclude={"data", "schema_version"})
    return Touchpoint(**fields, schema_version=target, data=body)


def decode(raw: bytes | str | None) -> Touchpoint:
    """Bytes from the log -> Touchpoint, or InvalidEvent saying what was wrong."""
    if raw is None:
        raise InvalidEvent("not_json", "empty message (no value)")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent("not_json", f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidEvent("invalid_envelope", "an envelope must be a JSON object")
    return parse_envelope(obj)


def encode(touchpoint: Touchpoint) -> bytes:
    """Touchpoint -> compact JSON bytes of its envelope (what goes on the log)."""
    return touchpoint.to_envelope().model_dump_json(exclude_none=True).encode()


def new_touchpoint(
    data: TouchpointData,
    *,
    customer_id: str,
    occurred_at: datetime,
    source: str,
    event_id: uuid.UUID | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Touchpoint:
    """Build a touchpoint for the current version of ``data``'s type (validated)."""
    if CURRENT.get(data.type_name) != data.schema_version:
        raise InvalidEvent(
            "unknown_version",
            f"{data.type_name} v{data.schema_version} is not the current version; "
            "emit the current one",
            "schema_version",
        )
    try:
        return Touchpoint(
            event_id=event_id or uuid.uuid4(),
            type=data.type_name,
            schema_version=data.schema_version,
            customer_id=customer_id,
            occurred_at=occurred_at,
            source=source,
            correlation_id=correlation_id,
            causation_id=causation_id,
            data=data,
        )
    except ValidationError as exc:
        field, msg = validation_message(exc)
        raise InvalidEvent("invalid_envelope", msg, field) from None
