"""Operations: ``/healthz`` (liveness and the runner's state) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response

from journey.service.deps import ServiceDep, require
from journey.service.guard import is_loopback
from journey.service.metrics import CONTENT_TYPE
from journey.service.models import Health
from projections.location import describe

__all__ = ["router"]

router = APIRouter()

_analyst = require("analyst")


async def metrics_reader(request: Request) -> None:
    """/metrics: anyone on this machine (a Prometheus scraping loopback), else an analyst
    key (or admin)."""
    client = request.client
    if not is_loopback(client.host if client else None):
        await _analyst(request)


metrics_reader.required_role = "analyst"  # type: ignore[attr-defined]  # see deps.require


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Degraded: the runner is failing"}},
    tags=["operations"],
    summary="Liveness and the runner's state",
)
async def healthz(service: ServiceDep) -> Response:
    try:
        events, seconds, _ = await service.read(lambda _: service.current_lag())
    except Exception as exc:
        if not service.integrity.saw(exc):
            raise
        events, seconds = -1, -1.0
    state = service.runner_state()
    thread = service.thread
    health = thread.health if thread is not None else None
    stuck = service.pipeline_problem()
    failing = stuck is not None or (thread is not None and state == "stopped")
    body = Health(
        status="degraded" if failing else "ok",
        runner=state,
        runner_errors=health.failures_total if health else 0,
        last_error=stuck,
        failure_kind=(
            "store_corrupt"
            if service.integrity.problem
            else (health.kind if health and health.failing else None)
        ),
        failing_since=health.since if health and health.failing else None,
        log=service.log.url,
        topic=service.topic,
        store=describe(service.reader.path),
        lag_events=events,
        lag_seconds=round(seconds, 3),
    )
    return Response(
        body.model_dump_json(),
        status_code=503 if failing else 200,
        media_type="application/json",
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format 0.0.4",
        }
    },
    tags=["operations"],
    summary="Prometheus metrics: events folded, lag per partition, dead letters, latency",
    description="Anonymous from loopback; from elsewhere an analyst (or admin) key.",
    dependencies=[Depends(metrics_reader)],
)
async def metrics(service: ServiceDep) -> Response:
    await service.sample_heads()
    # The scrape reads the store: on a worker thread, as every read.
    text = await service.read(lambda _: service.metrics.exposition())
    return Response(text, media_type=CONTENT_TYPE)
