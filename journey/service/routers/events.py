"""``POST /events``: validate touchpoints as ``journey emit`` does, then produce them to the
log of record; answer each position and a token to read your writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from domain.bounds import Bounds
from domain.envelope import Envelope, Touchpoint
from journey.emitter import BatchError, parse_batch
from journey.security.keys import Principal
from journey.service.deps import ServiceDep, require
from journey.service.errors import ServiceError
from journey.service.freshness import tokens_of
from journey.service.models import EmitResult, EmittedPosition, ErrorOut
from journey.service.runtime import Service

__all__ = ["MAX_BODY_BYTES", "router"]

router = APIRouter()

# A request is a batch of envelopes, each at most 1 MiB (domain.bounds); the body limit
# keeps one request's parse (several times its size in Python objects) small.
MAX_BODY_BYTES = 8 * 1024 * 1024
_TOO_LARGE_BODY = "body larger than 8 MiB: split the batch"
# Touchpoints only an admin key may emit: they destroy what others may read.
_ADMIN_ONLY = frozenset({"ErasureRequested"})


@router.post(
    "/events",
    status_code=201,
    response_model=EmitResult,
    responses={
        413: {
            "model": ErrorOut,
            "description": "Body larger than 8 MiB, or an envelope larger than 1 MiB "
            "(names the line): it can never fit, do not retry",
        },
        422: {
            "model": ErrorOut,
            "description": "An invalid touchpoint: names the line (or array item) and the "
            "field; nothing of the batch was produced",
        },
        409: {
            "model": ErrorOut,
            "description": "An event_id already recorded (or twice in the batch) with other "
            "content: names the id; nothing of the batch was produced",
        },
        401: {"model": ErrorOut, "description": "No valid key"},
        403: {
            "model": ErrorOut,
            "description": "The key's role may not emit (service or admin may), or the batch "
            "holds an ErasureRequested and the key is not admin",
        },
        415: {"model": ErrorOut, "description": "Not application/json or application/x-ndjson"},
        503: {"model": ErrorOut, "description": "The log did not accept the batch"},
    },
    tags=["emitting"],
    summary="Validate touchpoints, then produce them to the log of record",
    description="Same validation as `journey emit`: one JSON envelope, a JSON array of "
    "envelopes, or JSON lines (`application/x-ndjson`) for bulk. Everything is validated "
    "before anything is produced. Returns each position and a token to read your writes.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            Envelope.model_json_schema(),
                            {"type": "array", "items": Envelope.model_json_schema()},
                        ]
                    }
                },
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "One envelope per line"}
                },
            },
        }
    },
)
async def post_events(
    request: Request,
    service: ServiceDep,
    who: Annotated[Principal, Depends(require("service"))],
) -> Response:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ServiceError(413, "too_large", _TOO_LARGE_BODY)
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ServiceError(413, "too_large", _TOO_LARGE_BODY)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServiceError(
            422, "invalid_body", f"the body is not UTF-8 (byte {exc.start})"
        ) from None
    try:
        # now: the later of the wall clock and the service's clock (a test clock may
        # run ahead); a consumer takes the log time of the message
        now = max(datetime.now(UTC), service.clock())
        bounds = Bounds(now=now, max_future=service.settings.max_future)
        touchpoints = parse_batch(text, origin="body", bounds=bounds)
    except BatchError as exc:
        raise _refused(exc) from None
    erasures = [t for t in touchpoints if t.type in _ADMIN_ONLY]
    if erasures and who.role != "admin":
        raise ServiceError(
            403,
            "forbidden",
            f"key {who.name!r} has role {who.role}: only an admin key may send "
            f"{erasures[0].type} (it erases a customer). Nothing of the batch was produced",
            key=str(erasures[0].event_id),
        )
    conflicts = await service.read(lambda store: store.conflicts(touchpoints))
    if conflicts:
        event_id, recorded, sent = conflicts[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ServiceError(
            409,
            "conflicting_duplicate",
            f"event_id {event_id} is already recorded with other content ({recorded}; "
            f"this one is {sent}){more}: a fact cannot change; send a new event_id. "
            "Nothing of the batch was produced",
            field="event_id",
            key=event_id,
        )
    return await emit_and_answer(service, touchpoints)


async def emit_and_answer(service: Service, touchpoints: list[Touchpoint]) -> Response:
    """Produce validated touchpoints and answer 201 with their positions and the read token."""
    try:
        positions = await service.emit(touchpoints)
    except BatchError as exc:  # sealing took an envelope over 1 MiB: nothing was produced
        raise _refused(exc) from None
    service.metrics.emitted.inc(len(positions))
    result = EmitResult(
        count=len(positions),
        positions=[
            EmittedPosition(
                topic=p.topic,
                partition=p.partition,
                offset=p.offset,
                event_id=str(t.event_id),
                customer_id=t.customer_id,
            )
            for p, t in zip(positions, touchpoints, strict=True)
        ],
        tokens=[p.token() for p in positions],
        token=tokens_of(positions),
    )
    return Response(
        result.model_dump_json(),
        status_code=201,
        media_type="application/json",
        headers={"X-Journey-Position": result.token},
    )


def _refused(exc: BatchError) -> ServiceError:
    too_large = exc.error.reason == "too_large"
    return ServiceError(
        413 if too_large else 422,
        "too_large" if too_large else "invalid_body",
        str(exc),
        field=exc.error.field,
        line=exc.line,
    )
