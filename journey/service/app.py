"""The agents' query service: FastAPI app factory and the JSON API.

Every answer goes through the freshness protocol (see ``freshness.py`` and docs/service.md):
it carries ``as_of``, ``lag`` and ``fresh``; with a position token it waits for that
position, without one for the log's head read at request time. When the bound is hit the
answer is **503 with the lag** — unless the client passed ``stale=true``, which gets 200
with ``fresh: false``: old data is only ever served to a client that asked for it, and it
always says so.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers.log import Log, LogError
from domain.bounds import Bounds
from domain.envelope import Envelope
from domain.rules import ServiceRules
from journey.emitter import BatchError, parse_batch
from journey.pipeline import system_clock
from journey.service.freshness import BadToken, Freshness, tokens_of
from journey.service.metrics import Sample, render
from journey.service.models import (
    Answer,
    CaseDetail,
    EmitResult,
    EmittedPosition,
    ErrorBody,
    ErrorOut,
    Health,
    NotFreshOut,
    SearchResults,
    ServiceCounts,
    ServiceList,
)
from journey.service.queries import case_detail, search_customers
from journey.service.runtime import LogUnavailable, NotFresh, Service, ServiceOptions
from journey.settings import Settings
from projections.customer_view import CustomerView, TimelinePage, build_customer_view
from projections.defect_outreach import DefectOutreach, build_defect_outreach
from projections.service_levels import ServiceLevels, build_service_levels
from projections.store import JourneyStore

__all__ = ["ServiceError", "create_app"]

logger = structlog.get_logger(__name__)

# A request is a batch of envelopes, each at most 1 MiB (domain.bounds); the body limit
# keeps one request's parse (several times its size in Python objects) small.
MAX_BODY_BYTES = 8 * 1024 * 1024
_TOO_LARGE_BODY = "body larger than 8 MiB: split the batch"


class ServiceError(Exception):
    """An error answer: status, machine-readable code and a message saying what to do."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.body = ErrorBody(
            status=status, code=code, message=message, field=field, line=line, key=key
        )


def _error(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> Response:
    return Response(
        ErrorOut(error=body).model_dump_json(exclude_none=True),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


_E400 = {"model": ErrorOut, "description": "Malformed or unusable position token"}
_E404 = {"model": ErrorOut, "description": "Unknown customer (or case, defect): names the key"}
_E422 = {"model": ErrorOut, "description": "Invalid parameter or body: names the field"}
_E503 = {
    "model": NotFreshOut,
    "description": "The view did not reach the requested position (or the log head) within "
    "the bound: the lag, instead of stale data. Retry, or pass stale=true.",
}
READ_ERRORS: dict[int | str, dict[str, Any]] = {400: _E400, 422: _E422, 503: _E503}
CUSTOMER_ERRORS: dict[int | str, dict[str, Any]] = {**READ_ERRORS, 404: _E404}

AfterQuery = Annotated[
    str | None,
    Query(
        description="Position token(s) `topic:partition:offset` (comma-separated) from an "
        "emit: answer once the view has folded them (read-your-writes)",
        examples=["journey.touchpoints:3:41"],
    ),
]
PositionHeader = Annotated[
    str | None,
    Header(
        description="Same as `after`, as a header (comma-separated tokens allowed)",
    ),
]
StaleQuery = Annotated[
    bool,
    Query(
        description="When the view cannot reach the position in time, answer 200 with "
        "`fresh: false` and the lag instead of 503",
    ),
]


@dataclass(frozen=True)
class LevelsRead:
    """What every service-level endpoint reads: the lists after the wait."""

    freshness: Freshness
    team: str | None
    channel: str | None
    due_within_hours: float
    levels: ServiceLevels


TeamQuery = Annotated[str | None, Query(description="Only items owned by this team")]
ChannelQuery = Annotated[str | None, Query(description="Only items of this channel")]
HorizonQuery = Annotated[float, Query(gt=0, le=24 * 365, description="Horizon of 'due soon'")]


def _answer(
    freshness: Freshness, data: BaseModel | list[Any], adapter: TypeAdapter[Any]
) -> Response:
    """``Answer[T]`` as JSON without re-validating ``data`` (it is a validated model)."""
    head = freshness.model_dump_json()
    body = head[:-1] + ',"data":' + adapter.dump_json(data).decode() + "}"
    return Response(
        body,
        media_type="application/json",
        headers={
            "X-Journey-Fresh": "true" if freshness.fresh else "false",
            "X-Journey-As-Of": freshness.as_of_token,
        },
    )


def _require_fresh(freshness: Freshness, stale: bool, what: str) -> None:
    if freshness.fresh or stale:
        return
    raise NotFresh(
        freshness,
        f"the view did not reach {what} within the bound: {freshness.lag.events} event(s), "
        f"{freshness.lag.seconds:g} s behind. Retry, or pass stale=true to get the view as it "
        "is, marked fresh:false",
    )


class _Timing:
    """Pure ASGI middleware: request counts and query latency per route (time to the
    response head, so a live stream counts its set-up, not its lifetime)."""

    def __init__(self, app: ASGIApp, service: Callable[[], Service | None]) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                svc = self.service()
                if svc is not None:
                    route = scope.get("route")
                    path = getattr(route, "path", "(unmatched)")
                    svc.metrics.requests.inc(route=path, status=str(message["status"]))
                    svc.metrics.query_latency.observe(time.perf_counter() - started, route=path)
            await send(message)

        await self.app(scope, receive, timed_send)


def create_app(
    settings: Settings,
    options: ServiceOptions | None = None,
    *,
    rules: ServiceRules | None = None,
    clock: Callable[[], datetime] = system_clock,
    log: Log | None = None,
    console: bool = True,
) -> FastAPI:
    """The ASGI app. Nothing is opened until it starts (its lifespan): then it opens the log
    (unless one is given; a given log is not closed), the store, and with
    ``options.run_pipeline`` runs the pipeline on a background thread."""
    opts = options or ServiceOptions()
    the_rules = rules or ServiceRules()
    holder: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = Service(settings, opts, rules=the_rules, clock=clock, log=log)
        await svc.start()
        holder["svc"] = svc
        app.state.service = svc
        try:
            yield
        finally:
            await svc.close()
            holder.pop("svc", None)

    app = FastAPI(
        title="journey — agents' query service",
        version="1",
        summary="Customer views, service levels and defect outreach, fresh to the last event "
        "or saying how far behind they are.",
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.add_middleware(_Timing, service=lambda: holder.get("svc"))

    def svc() -> Service:
        return holder["svc"]

    # ------------------------------------------------------------------ errors

    @app.exception_handler(ServiceError)
    async def on_service_error(_: Request, exc: ServiceError) -> Response:
        return _error(exc.body.status, exc.body)

    @app.exception_handler(BadToken)
    async def on_bad_token(_: Request, exc: BadToken) -> Response:
        return _error(400, ErrorBody(status=400, code="bad_token", message=str(exc)))

    @app.exception_handler(NotFresh)
    async def on_not_fresh(_: Request, exc: NotFresh) -> Response:
        message = str(exc)
        stuck = svc().pipeline_problem()
        if stuck:
            message += f". The pipeline is stopped at its last committed position: {stuck}"
        body = NotFreshOut(
            **exc.freshness.model_dump(),
            error=ErrorBody(status=503, code="not_fresh", message=message),
        )
        return Response(
            body.model_dump_json(),
            status_code=503,
            media_type="application/json",
            headers={
                "Retry-After": "1",
                "X-Journey-Fresh": "false",
                "X-Journey-As-Of": exc.freshness.as_of_token,
            },
        )

    @app.exception_handler(LogUnavailable)
    @app.exception_handler(LogError)
    async def on_log_error(_: Request, exc: Exception) -> Response:
        message = f"the log did not answer, so freshness cannot be established: {exc}"
        return _error(
            503,
            ErrorBody(status=503, code="log_unavailable", message=message),
            {"Retry-After": "2"},
        )

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header", "body")]
        field = ".".join(loc) or None
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = f"{field or 'request'}: {first.get('msg', 'invalid')}{extra}"
        return _error(
            422, ErrorBody(status=422, code="invalid_request", message=message, field=field)
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else "http_error"
        return _error(
            exc.status_code,
            ErrorBody(status=exc.status_code, code=code, message=str(exc.detail)),
            dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        service = svc()
        if service.integrity.saw(exc):
            problem = service.integrity.problem or str(exc)
            logger.error("the store is damaged", path=request.url.path, error=problem)
            return _error(
                503,
                ErrorBody(status=503, code="store_corrupt", message=problem),
                {"Retry-After": "60"},
            )
        logger.exception("unhandled error", path=request.url.path)
        return _error(
            500,
            ErrorBody(
                status=500,
                code="internal",
                message=f"internal error ({type(exc).__name__}); this is a bug, please report it",
            ),
        )

    # ------------------------------------------------------------------ customers

    view_adapter: TypeAdapter[CustomerView] = TypeAdapter(CustomerView)

    async def _read_view(key: str, cid: str, page: int, page_size: int) -> CustomerView:
        service = svc()
        view = await service.read(
            lambda s: build_customer_view(
                s, cid, rules=service.rules, now=service.clock(), page=page, page_size=page_size
            )
        )
        if view is None:  # erased between resolving and reading: gone
            raise ServiceError(404, "unknown_customer", f"no customer {key!r}", key=key)
        return view

    async def _settled_customer(
        key: str, after: str | None, header: str | None, stale: bool
    ) -> tuple[str | None, Freshness]:
        service = svc()
        cid, freshness = await service.settle_customer(key, service.tokens(after, header))
        if cid is None:
            if not freshness.fresh:
                raise NotFresh(
                    freshness,
                    f"no customer found for {key!r} yet, and the view is "
                    f"{freshness.lag.events} event(s) behind the log: it may not have "
                    "folded them yet. Retry.",
                )
            raise ServiceError(
                404,
                "unknown_customer",
                f"no customer found for {key!r} (tried the customer id and every identity: "
                "e-mail, phone, order number, serial, name)",
                key=key,
            )
        _require_fresh(freshness, stale, f"the position of customer {cid!r}")
        return cid, freshness

    @app.get(
        "/customers/{key}",
        response_model=Answer[CustomerView],
        responses=CUSTOMER_ERRORS,
        tags=["customers"],
        summary="A customer's view, by customer id or any identity",
    )
    async def get_customer(
        *,
        key: Annotated[str, Path(description="Customer id, e-mail, phone, order or serial")],
        after: AfterQuery = None,
        x_journey_position: PositionHeader = None,
        stale: StaleQuery = False,
        page: Annotated[int, Query(ge=1, description="Timeline page")] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000, description="Timeline page size")] = 50,
    ) -> Response:
        cid, freshness = await _settled_customer(key, after, x_journey_position, stale)
        assert cid is not None
        view = await _read_view(key, cid, page, page_size)
        return _answer(freshness, view, view_adapter)

    timeline_adapter: TypeAdapter[TimelinePage] = TypeAdapter(TimelinePage)

    @app.get(
        "/customers/{key}/timeline",
        response_model=Answer[TimelinePage],
        responses=CUSTOMER_ERRORS,
        tags=["customers"],
        summary="One page of a customer's timeline, newest first",
    )
    async def get_timeline(
        *,
        key: str,
        after: AfterQuery = None,
        x_journey_position: PositionHeader = None,
        stale: StaleQuery = False,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> Response:
        cid, freshness = await _settled_customer(key, after, x_journey_position, stale)
        assert cid is not None
        view = await _read_view(key, cid, page, page_size)
        return _answer(freshness, view.timeline, timeline_adapter)

    case_adapter: TypeAdapter[CaseDetail] = TypeAdapter(CaseDetail)

    @app.get(
        "/customers/{key}/cases/{case_id}",
        response_model=Answer[CaseDetail],
        responses=CUSTOMER_ERRORS,
        tags=["customers"],
        summary="One case: owner, deadline, handoffs, what was submitted, its timeline",
    )
    async def get_case(
        *,
        key: str,
        case_id: str,
        after: AfterQuery = None,
        x_journey_position: PositionHeader = None,
        stale: StaleQuery = False,
    ) -> Response:
        cid, freshness = await _settled_customer(key, after, x_journey_position, stale)
        assert cid is not None
        service = svc()
        detail = await service.read(
            lambda s: case_detail(s, cid, case_id, rules=service.rules, now=service.clock())
        )
        if detail is None:
            raise ServiceError(
                404,
                "unknown_case",
                f"customer {cid!r} has no case {case_id!r}",
                key=case_id,
            )
        return _answer(freshness, detail, case_adapter)

    # ------------------------------------------------------------------ lists

    async def _settled_all(
        after: AfterQuery = None,
        x_journey_position: PositionHeader = None,
        stale: StaleQuery = False,
    ) -> Freshness:
        """The freshness wait of answers that span every partition (a FastAPI dependency)."""
        service = svc()
        tokens = service.tokens(after, x_journey_position)
        freshness = await service.settle(tokens, service.all_partitions())
        _require_fresh(freshness, stale, "the head of the log")
        return freshness

    # Dependencies go in defaults, not in Annotated aliases: with postponed annotations
    # FastAPI resolves annotations against the module, and these live in the factory.
    settled_all = Depends(_settled_all)

    search_adapter: TypeAdapter[SearchResults] = TypeAdapter(SearchResults)

    @app.get(
        "/search",
        response_model=Answer[SearchResults],
        responses=READ_ERRORS,
        tags=["customers"],
        summary="Find customers by name, e-mail, phone, serial, order or id prefix",
    )
    async def search(
        *,
        q: Annotated[str, Query(min_length=1, max_length=200, description="Prefix to look for")],
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        freshness: Freshness = settled_all,
    ) -> Response:
        hits = await svc().read(lambda s: search_customers(s, q, limit))
        return _answer(freshness, SearchResults(query=q, hits=hits), search_adapter)

    levels_adapter: TypeAdapter[ServiceLevels] = TypeAdapter(ServiceLevels)

    async def _read_levels(
        freshness: Freshness = settled_all,
        team: TeamQuery = None,
        channel: ChannelQuery = None,
        due_within_hours: HorizonQuery = 24,
    ) -> LevelsRead:
        service = svc()
        levels = await service.read(
            lambda store: build_service_levels(
                store,
                rules=service.rules,
                now=service.clock(),
                due_within_hours=due_within_hours,
                team=team,
                channel=channel,
            )
        )
        return LevelsRead(
            freshness=freshness,
            team=team,
            channel=channel,
            due_within_hours=due_within_hours,
            levels=levels,
        )

    levels_read = Depends(_read_levels)

    @app.get(
        "/service-levels",
        response_model=Answer[ServiceLevels],
        responses=READ_ERRORS,
        tags=["service levels"],
        summary="Unanswered, due soon, breached, and counts by team and channel",
    )
    async def service_levels(read: LevelsRead = levels_read) -> Response:
        return _answer(read.freshness, read.levels, levels_adapter)

    list_adapter: TypeAdapter[ServiceList] = TypeAdapter(ServiceList)

    def _register_list(name: str, attr: str, summary: str) -> None:
        async def one_list(read: LevelsRead = levels_read) -> Response:
            items = getattr(read.levels, attr)
            result = ServiceList(
                name=name,
                team=read.team,
                channel=read.channel,
                due_within_hours=read.due_within_hours,
                count=len(items),
                items=items,
                by_team=read.levels.by_team,
                by_channel=read.levels.by_channel,
            )
            return _answer(read.freshness, result, list_adapter)

        app.get(
            f"/service-levels/{name}",
            response_model=Answer[ServiceList],
            responses=READ_ERRORS,
            tags=["service levels"],
            summary=summary,
            name=f"service_levels_{attr}",
        )(one_list)

    _register_list("unanswered", "unanswered", "Contacts without a real answer, oldest first")
    _register_list("due-soon", "due_soon", "Deadlines due within the horizon, soonest first")
    _register_list("breached", "breached", "Missed reply targets and broken promises")

    counts_adapter: TypeAdapter[ServiceCounts] = TypeAdapter(ServiceCounts)

    @app.get(
        "/service-levels/counts",
        response_model=Answer[ServiceCounts],
        responses=READ_ERRORS,
        tags=["service levels"],
        summary="How many are unanswered, due soon, breached; by team and channel",
    )
    async def service_counts(read: LevelsRead = levels_read) -> Response:
        levels = read.levels
        counts = ServiceCounts(
            team=read.team,
            channel=read.channel,
            unanswered=len(levels.unanswered),
            due_soon=len(levels.due_soon),
            breached=len(levels.breached),
            by_team=levels.by_team,
            by_channel=levels.by_channel,
        )
        return _answer(read.freshness, counts, counts_adapter)

    defects_adapter: TypeAdapter[list[DefectOutreach]] = TypeAdapter(list[DefectOutreach])
    defect_adapter: TypeAdapter[DefectOutreach] = TypeAdapter(DefectOutreach)

    @app.get(
        "/defects",
        response_model=Answer[list[DefectOutreach]],
        responses=READ_ERRORS,
        tags=["defect outreach"],
        summary="Known defects: who owns an affected product, who was reached",
    )
    async def defects(
        *,
        freshness: Freshness = settled_all,
    ) -> Response:
        found = await svc().read(build_defect_outreach)
        return _answer(freshness, found, defects_adapter)

    @app.get(
        "/defects/{defect_id}",
        response_model=Answer[DefectOutreach],
        responses={**READ_ERRORS, 404: _E404},
        tags=["defect outreach"],
        summary="One known defect and its outreach",
    )
    async def defect(
        *,
        defect_id: str,
        freshness: Freshness = settled_all,
    ) -> Response:
        found = await svc().read(lambda s: build_defect_outreach(s, defect_id))
        if not found:
            raise ServiceError(
                404, "unknown_defect", f"no known defect {defect_id!r}", key=defect_id
            )
        return _answer(freshness, found[0], defect_adapter)

    # ------------------------------------------------------------------ emitting

    @app.post(
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
    async def post_events(request: Request) -> Response:
        service = svc()
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
            now = max(datetime.now(UTC), clock())
            bounds = Bounds(now=now, max_future=settings.max_future)
            touchpoints = parse_batch(text, origin="body", bounds=bounds)
        except BatchError as exc:
            too_large = exc.error.reason == "too_large"
            raise ServiceError(
                413 if too_large else 422,
                "too_large" if too_large else "invalid_body",
                str(exc),
                field=exc.error.field,
                line=exc.line,
            ) from None
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
        positions = await service.emit(touchpoints)
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

    # ------------------------------------------------------------------ operations

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Degraded: the runner is failing"}},
        tags=["operations"],
        summary="Liveness and the runner's state",
    )
    async def healthz() -> Response:
        service = svc()
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
            store=str(service.reader.path),
            lag_events=events,
            lag_seconds=round(seconds, 3),
        )
        return Response(
            body.model_dump_json(),
            status_code=503 if failing else 200,
            media_type="application/json",
        )

    @app.get(
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
    )
    async def metrics() -> Response:
        service = svc()
        await service.sample_heads()
        samples = await service.read(lambda s: _scrape(service, s))
        return PlainTextResponse(
            render(service.metrics.instruments(), samples),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    if console:
        from journey.service.console import register_console

        register_console(app, svc)
    from journey.service.live import register_live

    register_live(app, svc)
    return app


def _scrape(service: Service, store: JourneyStore) -> list[Sample]:
    samples: list[Sample] = []
    _, _, rows = service.current_lag()
    for tp, (position, events, seconds) in rows.items():
        labels = (("topic", tp.topic), ("partition", str(tp.partition)))
        samples.append(
            Sample(
                "journey_events_folded_total",
                "counter",
                "Messages of the partition folded into the view (offset + 1; by any runner)",
                position + 1,
                labels,
            )
        )
        hwm = service.heads.high_water_mark(tp)
        if hwm is not None:
            samples.append(
                Sample(
                    "journey_log_high_water_mark",
                    "gauge",
                    "Next offset of the partition, as last sampled",
                    hwm,
                    labels,
                )
            )
        samples.append(
            Sample(
                "journey_view_lag_events",
                "gauge",
                "Messages on the log the view has not folded yet",
                events,
                labels,
            )
        )
        samples.append(
            Sample(
                "journey_view_lag_seconds",
                "gauge",
                "How long the oldest message not yet folded has been on the log",
                round(seconds, 3),
                labels,
            )
        )
    dead = store.query("SELECT COUNT(*) FROM dead_letters")[0][0]
    samples.append(
        Sample(
            "journey_dead_letters_total",
            "counter",
            "Messages set aside to the dead-letter topic (recorded in the view's store)",
            int(dead),
            (("topic", service.settings.dlq_topic),),
        )
    )
    thread = service.thread
    if thread is not None:
        stats = thread.pipeline.runner.stats
        for name, value, text in (
            ("journey_runner_applied_total", stats.applied, "Touchpoints folded by this process"),
            ("journey_runner_duplicates_total", stats.duplicates, "Re-sent touchpoints ignored"),
            ("journey_runner_dead_letters_total", stats.dead_letters, "Dead letters produced"),
            ("journey_runner_errors_total", thread.errors, "Failed pipeline steps (retried)"),
        ):
            samples.append(Sample(name, "counter", text, value))
    samples.append(
        Sample(
            "journey_runner_up",
            "gauge",
            "1 when this process runs the pipeline and it is not failing",
            1 if thread is not None and thread.alive and not thread.failing else 0,
        )
    )
    kinds = ("store_full", "store_locked", "store_io", "store_corrupt", "log_unavailable", "error")
    current = thread.health.kind if thread is not None and thread.failing else None
    if service.integrity.problem:
        current = "store_corrupt"
    for kind in kinds:
        samples.append(
            Sample(
                "journey_pipeline_failing",
                "gauge",
                "1 while the pipeline is stopped at its last committed position by this kind "
                "of failure (retrying), else 0",
                1 if kind == current else 0,
                (("kind", kind),),
            )
        )
    return samples


_DESCRIPTION = """
Agents' view of every customer, fresh to the last event — or saying how far behind it is.

**Freshness.** Every answer carries `as_of` (the positions the view had folded), `lag`
(events and seconds behind) and `fresh`. Pass the token `POST /events` (or any emitter)
returned as `?after=` or `X-Journey-Position` to read your own writes. Without a token the
service reads the log's high-water mark at request time and waits until the view has caught
up. Waits are bounded (`--max-wait-ms`, default 2000); at the bound the answer is
**503 with the lag** (`Retry-After: 1`), or — only with `stale=true` — 200 with
`fresh: false`.

The agent console is at [/](/).
"""
