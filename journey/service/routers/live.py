"""Live updates: a Server-Sent Events stream per customer.

``GET /customers/{key}/events`` pushes an ``event: view`` whenever the customer's merged
view changed (something of theirs was folded) and an ``event: freshness`` whenever only the
view's freshness changed (the log moved on, or the runner stalls). It is event-driven: the
stream sleeps on the freshness watcher until a partition the customer lives in advances.
``format=json`` (default) sends the whole answer (the same JSON as ``GET /customers/{key}``);
``format=html`` sends the console's rendered fragment.

The wire format is sse-starlette's: it ends a data line at CR and LF only, as the SSE spec
reads them, so text holding U+2028, U+2029 or U+0085 (line ends to ``str.splitlines``, not to
a browser) arrives intact; it also sends the keep-alive comments and ends the stream when the
client goes away or the server shuts down.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import anyio.to_thread
import structlog
from fastapi import APIRouter, Header, Query, Request
from pydantic import TypeAdapter
from sse_starlette import EventSourceResponse, ServerSentEvent

from consumers.log import TopicPartition
from journey.security.keys import Principal
from journey.service.console import Engine, engine_of, render_freshness, render_view, zone_of
from journey.service.deps import AgentDep, ServiceDep, audit
from journey.service.errors import ServiceError
from journey.service.freshness import Freshness
from journey.service.guard import SESSION_COOKIE
from journey.service.models import ErrorOut
from journey.service.runtime import NotFresh, Service
from projections.customer_view import CustomerView, build_customer_view
from projections.store import JourneyStore

__all__ = ["router"]

KEEPALIVE_S = 15.0
RERENDER_S = 60.0  # deadlines move with the clock even when nothing is folded

_view_adapter: TypeAdapter[CustomerView] = TypeAdapter(CustomerView)


def _signature(store: JourneyStore, ids: list[str]) -> tuple[tuple[object, ...], ...]:
    marks = ",".join("?" * len(ids))
    return tuple(
        store.query(
            "SELECT customer_id, generation, touchpoints, last_seen FROM customers"
            f" WHERE customer_id IN ({marks}) ORDER BY customer_id",
            ids,
        )
    )


logger = structlog.get_logger(__name__)

router = APIRouter()
_ROUTE = "/customers/{key}/events"


@router.get(
    _ROUTE,
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-Sent Events: `view` (the whole answer, as "
            "GET /customers/{key}) whenever the view changed, `freshness` when only "
            "its freshness changed, `gone` when the customer was erased",
        },
        400: {"model": ErrorOut, "description": "Malformed position token"},
        404: {"model": ErrorOut, "description": "Unknown customer"},
        422: {"model": ErrorOut, "description": "Invalid parameter: names it"},
        503: {"model": ErrorOut, "description": "The view is behind; cannot tell yet"},
    },
    tags=["customers"],
    summary="Live: the customer's view, pushed whenever it changes",
)
async def customer_events(
    *,
    service: ServiceDep,
    who: AgentDep,
    request: Request,
    key: str,
    format: Annotated[Literal["json", "html"], Query()] = "json",
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
    after: Annotated[str | None, Query()] = None,
    x_journey_position: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    tokens = service.tokens(after, x_journey_position)
    cid, _ = await service.read(lambda s: service.customer_partitions(s, key))
    if cid is None or tokens is not None:
        cid, freshness = await service.settle_customer(key, tokens)
        if cid is None:
            if not freshness.fresh:
                raise NotFresh(freshness, f"no customer {key!r} yet; the view is behind")
            raise ServiceError(404, "unknown_customer", f"no customer found for {key!r}", key=key)
    # One record when the stream opens: what it pushes afterwards is the same read, kept live.
    audited = await audit(
        request,
        service,
        who,
        [cid],
        action="live",
        lookup="id" if cid == key else "identity",
        merged=True,
    )
    stream = _stream(
        service=service,
        request=request,
        customer_id=cid,
        who=who,
        audited=set(audited),
        fmt=format,
        page=page,
        page_size=page_size,
        # the console's fragments: in the time zone of the agent who opened the page
        zone=zone_of(request, service.settings),
    )
    return EventSourceResponse(stream, ping=KEEPALIVE_S, headers={"Cache-Control": "no-cache"})


async def _stream(
    *,
    service: Service,
    request: Request,
    customer_id: str,
    who: Principal,
    audited: set[str],
    fmt: str,
    page: int,
    page_size: int,
    zone: ZoneInfo,
) -> AsyncIterator[ServerSentEvent]:
    loop = asyncio.get_running_loop()
    yield ServerSentEvent(retry=1000)
    last_signature: object = None
    last_fresh: object = None
    last_render = -1e9
    ids = [customer_id]
    while not service.closing.is_set():
        if await request.is_disconnected():
            return
        if not await _still_signed_in(service, request, who):
            logger.info("live stream ended: its key or session ended", key=who.name)
            return
        now = loop.time()
        signature: object = await service.read(functools.partial(_signature, ids=ids))
        if signature != last_signature or now - last_render > RERENDER_S:
            freshness = await service.settle(None, _partitions(service, ids))
            view = await service.read(
                lambda s: build_customer_view(
                    s,
                    customer_id,
                    rules=service.rules,
                    now=service.clock(),
                    page=page,
                    page_size=page_size,
                )
            )
            if view is None:
                yield ServerSentEvent(json.dumps({"customer_id": customer_id}), event="gone")
                return
            # The signature stays the one read BEFORE the view was built: read after, it
            # could include a fold the view missed, and that change would never be pushed.
            linked = [customer_id, *view.linked_customer_ids]
            if linked != ids:  # a link came or went: look again at the new set next round
                ids, signature = linked, None
            if newly := [c for c in linked if c not in audited]:
                # A customer merged in while the stream is open: their data is shown now.
                await service.audit(who, newly, action="live", route=_ROUTE, lookup="id")
                audited.update(newly)
            payload = _view_payload(
                fmt, view, freshness, page=page, zone=zone, engine=engine_of(service)
            )
            yield ServerSentEvent(payload, event="view")
            last_signature, last_render = signature, now
            last_fresh = _fresh_key(freshness)
        else:
            freshness = service.snapshot(_partitions(service, ids))
            if _fresh_key(freshness) != last_fresh:
                yield ServerSentEvent(
                    _freshness_payload(fmt, freshness, engine_of(service)), event="freshness"
                )
                last_fresh = _fresh_key(freshness)
        tps = [TopicPartition(service.topic, p) for p in _partitions(service, ids)]
        before = service.watcher.read()

        def advanced(
            positions: Mapping[TopicPartition, int],
            tps: list[TopicPartition] = tps,
            before: Mapping[TopicPartition, int] = before,
        ) -> bool:
            if service.closing.is_set():
                return True
            return any(positions.get(tp, -1) > before.get(tp, -1) for tp in tps)

        await service.watcher.wait_until(advanced, service.options.live_interval_s)


async def _still_signed_in(service: Service, request: Request, who: Principal) -> bool:
    """The key (or console session) that opened the stream is still valid: a stream stays
    open for hours, and revoking a key or signing out must end what it reads too."""
    if who.via == "session":
        session = request.cookies.get(SESSION_COOKIE, "")
        found = await anyio.to_thread.run_sync(service.keys.session, session)
    else:
        _, _, secret = request.headers.get("authorization", "").partition(" ")
        found = await anyio.to_thread.run_sync(service.keys.authenticate, secret.strip())
    return found is not None and found.key_id == who.key_id


def _partitions(service: Service, ids: list[str]) -> set[int]:
    return {service.partition_of(c) for c in ids}


def _fresh_key(freshness: Freshness) -> tuple[bool, int, int]:
    return freshness.fresh, freshness.lag.events, int(freshness.lag.seconds)


def _view_payload(
    fmt: str,
    view: CustomerView,
    freshness: Freshness,
    *,
    page: int,
    zone: ZoneInfo,
    engine: Engine,
) -> str:
    if fmt == "html":
        return json.dumps(
            {
                "html": render_view(view, page=page, zone=zone),
                "badge": render_freshness(freshness, engine),
                "fresh": freshness.fresh,
                "as_of_token": freshness.as_of_token,
                "touchpoints": view.touchpoints,
            }
        )
    head = freshness.model_dump_json()
    return head[:-1] + ',"data":' + _view_adapter.dump_json(view).decode() + "}"


def _freshness_payload(fmt: str, freshness: Freshness, engine: Engine) -> str:
    if fmt == "html":
        return json.dumps(
            {
                "badge": render_freshness(freshness, engine),
                "fresh": freshness.fresh,
                "as_of_token": freshness.as_of_token,
            }
        )
    return freshness.model_dump_json()
