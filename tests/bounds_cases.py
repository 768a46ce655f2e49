"""Envelopes that break one bound each (domain.bounds), as JSON text a foreign producer
could send. Shared by the tests of every door: decode, `journey emit`, POST /events and
the consumer (dead letters), so all doors are held to the same list."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.bounds import MAX_ENVELOPE_BYTES

MiB = MAX_ENVELOPE_BYTES


def recent() -> datetime:
    """A moment every door accepts: an hour ago by the wall clock."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def inquiry(customer_id: str = "cust-bounds", at: datetime | None = None) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "InquiryReceived",
        "schema_version": 1,
        "customer_id": customer_id,
        "occurred_at": (at or recent()).isoformat().replace("+00:00", "Z"),
        "source": "helpdesk",
        "data": {"case_id": f"k-{uuid.uuid4().hex[:8]}", "channel": "email", "subject": "hi"},
    }


def promise(customer_id: str = "cust-bounds", due_by: str | None = None) -> dict[str, Any]:
    at = recent()
    return {
        **inquiry(customer_id, at),
        "type": "PromiseMade",
        "data": {
            "promise_id": f"p-{uuid.uuid4().hex[:8]}",
            "what": "call back",
            "due_by": due_by or (at + timedelta(hours=4)).isoformat(),
            "made_by": "agent-1",
        },
    }


def deep(levels: int) -> str:
    """An envelope whose JSON nests ``levels`` containers in all (the envelope is level 1)."""
    env = inquiry()
    marker = '"@@deep@@"'
    env["data"]["subject"] = "@@deep@@"
    inner = levels - 2  # the envelope and data are two levels
    return json.dumps(env).replace(marker, "[" * inner + "]" * inner)


def sized(size: int, customer_id: str = "cust-bounds") -> str:
    """A valid-looking SignupRequested whose envelope is exactly ``size`` bytes as the
    engine encodes it (compact, as on the log): many form fields of 10,000 characters."""
    env = inquiry(customer_id)
    env["type"] = "SignupRequested"
    env["data"] = {"case_id": "k-big", "channel": "web_form", "form": "become-a-customer"}
    env["data"]["products"] = []  # the encoder writes the default: write it here too
    env["data"]["fields"] = {}
    base = len(_compact(env))
    fields: dict[str, str] = {}
    # each field adds `"fNNNN":"<value>",` = len(value) + 10 bytes (the first one 9)
    remaining = size - base
    n = 0
    while remaining > 0:
        key = f"f{n:04d}"
        overhead = len(key) + 5 + (1 if fields else 0)
        value_len = min(10_000, remaining - overhead)
        fields[key] = "x" * max(value_len, 0)
        remaining -= overhead + len(fields[key])
        n += 1
    env["data"]["fields"] = fields
    text = _compact(env)
    assert len(text.encode()) == size, (len(text), size)
    return text


def _compact(env: dict[str, Any]) -> str:
    return json.dumps(env, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Case:
    text: str  # one envelope, JSON on one line
    reason: str
    field: str | None
    says: str  # the error message contains this


def cases() -> dict[str, Case]:
    """Fresh envelopes (new event ids, times relative to the wall clock) per call."""
    now = datetime.now(UTC)
    return {
        "occurred_at in 9999": Case(
            json.dumps(inquiry() | {"occurred_at": "9999-12-31T23:59:59Z"}),
            "out_of_range",
            "occurred_at",
            "out of range",
        ),
        "occurred_at two days ahead": Case(
            json.dumps(inquiry(at=now + timedelta(days=2))),
            "out_of_range",
            "occurred_at",
            "out of range",
        ),
        "occurred_at before 1970": Case(
            json.dumps(inquiry() | {"occurred_at": "1969-12-31T23:59:59Z"}),
            "out_of_range",
            "occurred_at",
            "1970-01-01",
        ),
        "due_by in 9999": Case(
            json.dumps(promise(due_by="9999-12-31T23:59:59Z")),
            "out_of_range",
            "data.due_by",
            "1900-2200",
        ),
        "year 1800 in data": Case(
            json.dumps(promise(due_by="1800-01-01T00:00:00Z")),
            "out_of_range",
            "data.due_by",
            "1900-2200",
        ),
        "33 levels": Case(deep(33), "too_deep", None, "32 levels"),
        "2,000 levels": Case(deep(2_000), "too_deep", None, "32 levels"),
        "5,000 levels": Case(deep(5_000), "too_deep", None, "32 levels"),
        "1 MiB + 1": Case(sized(MiB + 1), "too_large", None, "1 MiB"),
        '"1" for schema_version': Case(
            json.dumps(inquiry() | {"schema_version": "1"}),
            "invalid_envelope",
            "schema_version",
            "integer",
        ),
        "true for a number": Case(
            json.dumps(
                inquiry() | {"type": "SatisfactionRated", "data": {"score": True, "case_id": "k-1"}}
            ),
            "invalid_data",
            "data.score",
            "integer",
        ),
        '"5" for a number': Case(
            json.dumps(
                inquiry() | {"type": "SatisfactionRated", "data": {"score": "5", "case_id": "k"}}
            ),
            "invalid_data",
            "data.score",
            "integer",
        ),
        "1 for a string": Case(
            json.dumps(inquiry() | {"source": 1}), "invalid_envelope", "source", "string"
        ),
        "NaN": Case(
            json.dumps(inquiry() | {"type": "SatisfactionRated", "data": {"score": float("nan")}}),
            "not_json",
            None,
            "NaN",
        ),
    }
