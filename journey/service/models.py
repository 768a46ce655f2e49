"""What the query service answers: every model here is in the published OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from journey.service.freshness import Freshness
from projections.customer_view import CaseOut, SubmissionOut, TimelineOut
from projections.service_levels import ServiceItem

__all__ = [
    "Answer",
    "CaseDetail",
    "EmitResult",
    "EmittedPosition",
    "ErrorBody",
    "ErrorOut",
    "Health",
    "NotFreshOut",
    "SearchHit",
    "SearchResults",
    "ServiceCounts",
    "ServiceList",
]

T = TypeVar("T")


class Answer(Freshness, Generic[T]):
    """An answer and its freshness (``as_of``, ``lag``, ``fresh``)."""

    data: T


class ErrorBody(BaseModel):
    status: int
    code: str = Field(
        description="unknown_customer, unknown_case, unknown_defect, bad_token, invalid_body, "
        "invalid_request, not_fresh, log_unavailable, not_found, internal"
    )
    message: str = Field(description="What was wrong and what to do")
    field: str | None = Field(None, description="The offending field, as a dotted path")
    line: int | None = Field(
        None, description="For batches: the 1-based line (JSON lines) or array item"
    )
    key: str | None = Field(None, description="The key that was not found")


class ErrorOut(BaseModel):
    error: ErrorBody


class NotFreshOut(Freshness):
    """503: the view did not reach the request's positions within the bound."""

    error: ErrorBody


class CaseDetail(BaseModel):
    customer_id: str
    case: CaseOut
    submission: SubmissionOut | None = Field(
        description="What the customer submitted to open the case, verbatim (web forms)"
    )
    timeline: list[TimelineOut] = Field(description="Every touchpoint of the case, newest first")


class SearchHit(BaseModel):
    customer_id: str
    name: str | None
    email: str | None
    phone: str | None
    matched: str = Field(
        description="What matched: name, email, phone, serial, customer_id, ...,"
        " or said (words they wrote or were told; matched_value is the passage)"
    )
    matched_value: str
    touchpoints: int
    last_seen: datetime | None


class SearchResults(BaseModel):
    query: str
    hits: list[SearchHit]


class ServiceList(BaseModel):
    name: Literal["unanswered", "due-soon", "breached"] = Field(description="Which list")
    team: str | None
    channel: str | None
    due_within_hours: float
    count: int = Field(description="How many items the whole list holds")
    items: list[ServiceItem] = Field(description="One page of them (``limit``), in order")
    next: str | None = Field(
        None, description="Cursor to the next page (pass it as ?cursor=), null on the last"
    )
    by_team: dict[str, dict[str, int]] = Field(description="Counts of open items per team")
    by_channel: dict[str, dict[str, int]] = Field(description="Counts of open items per channel")


class ServiceCounts(BaseModel):
    team: str | None
    channel: str | None
    unanswered: int
    due_soon: int
    breached: int
    by_team: dict[str, dict[str, int]]
    by_channel: dict[str, dict[str, int]]


class EmittedPosition(BaseModel):
    topic: str
    partition: int
    offset: int
    event_id: str
    customer_id: str


class EmitResult(BaseModel):
    count: int
    positions: list[EmittedPosition] = Field(description="In input order")
    tokens: list[str] = Field(description="One position token per touchpoint, in input order")
    token: str = Field(
        description="The highest position per partition, comma-separated: pass it as ?after= "
        "or X-Journey-Position to read your writes"
    )


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    runner: Literal["running", "paused", "stopped", "disabled"]
    runner_errors: int = Field(description="Failures of the pipeline since the start")
    last_error: str | None = Field(
        description="Why the pipeline is stopped at its last committed position, or why the "
        "store cannot be used (with the remedy); null while all is well"
    )
    failure_kind: str | None = Field(
        default=None,
        description="store_full, store_locked, store_io, store_corrupt, log_unavailable or "
        "error; null while all is well",
    )
    failing_since: datetime | None = Field(default=None, description="When the failure began")
    log: str
    topic: str
    store: str
    lag_events: int
    lag_seconds: float
