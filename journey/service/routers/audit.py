"""``GET /audit``: who read which customer, when (admin only). Reads the audit topic of the
log (journey/security/audit.py) up to its head as it is at request time."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from journey.security.audit import MAX_AUDIT_LIMIT, AuditRecord, read_audit
from journey.service.deps import AdminDep, ServiceDep
from journey.service.errors import ServiceError
from journey.service.models import ErrorOut

__all__ = ["AuditAnswer", "router"]

router = APIRouter()


class AuditAnswer(BaseModel):
    count: int
    records: list[AuditRecord]


@router.get(
    "/audit",
    response_model=AuditAnswer,
    responses={
        401: {"model": ErrorOut, "description": "No valid key"},
        403: {"model": ErrorOut, "description": "Not an admin key"},
        422: {"model": ErrorOut, "description": "Invalid parameter: names it"},
    },
    tags=["operations"],
    summary="The audit trail: every read of a customer — who (key), which customer, when, how",
)
async def get_audit(
    *,
    service: ServiceDep,
    who: AdminDep,
    customer: Annotated[
        str | None, Query(max_length=200, description="Only reads of this customer id")
    ] = None,
    key: Annotated[
        str | None, Query(max_length=100, description="Only reads with this key (name or id)")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Only reads at or after this time (RFC 3339)")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_AUDIT_LIMIT, description="At most this many (the newest)")
    ] = 1000,
) -> Response:
    if since is not None and since.tzinfo is None:
        raise ServiceError(
            422, "invalid_request", "since: give a time zone (e.g. Z or +01:00)", field="since"
        )
    records = await anyio.to_thread.run_sync(
        functools.partial(
            read_audit,
            service.log,
            service.settings.audit_topic,
            customer=customer,
            key=key,
            since=since,
            limit=limit,
        )
    )
    body = AuditAnswer(count=len(records), records=records)
    return Response(body.model_dump_json(), media_type="application/json")
