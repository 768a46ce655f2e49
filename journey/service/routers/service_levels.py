"""The agents' work lists: unanswered contacts, deadlines due soon, breaches — and their
counts by team and channel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import TypeAdapter

from journey.service.deps import AgentDep, LevelsReadDep, ServiceDep, answer, audit, require
from journey.service.errors import READ_ERRORS, ServiceError
from journey.service.models import Answer, ServiceCounts, ServiceList
from projections.customer_view import BadCursor, decode_cursor, encode_cursor
from projections.service_levels import ServiceItem, ServiceLevels, page_items

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require("agent"))])

_levels: TypeAdapter[ServiceLevels] = TypeAdapter(ServiceLevels)
_list: TypeAdapter[ServiceList] = TypeAdapter(ServiceList)
_counts: TypeAdapter[ServiceCounts] = TypeAdapter(ServiceCounts)


# Each work list: its attribute on ServiceLevels and the time it is ordered by.
_LISTS = {"unanswered": "started_at", "due_soon": "due_at", "breached": "due_at"}
LIST_LIMIT = 50


def _page(
    attr: str, items: list[ServiceItem], cursor: str | None, limit: int
) -> tuple[list[ServiceItem], str | None]:
    try:
        after = decode_cursor(attr, cursor) if cursor is not None else None
    except BadCursor as exc:
        raise ServiceError(400, "bad_cursor", str(exc), field="cursor") from exc
    page, last = page_items(items, by=_LISTS[attr], after=after, limit=limit)
    return page, encode_cursor(attr, last) if last is not None else None


@router.get(
    "/service-levels",
    response_model=Answer[ServiceLevels],
    responses=READ_ERRORS,
    tags=["service levels"],
    summary="Unanswered, due soon, breached (the first 50 of each, with totals and cursors), "
    "and counts by team and channel",
)
async def service_levels(
    read: LevelsReadDep, request: Request, service: ServiceDep, who: AgentDep
) -> Response:
    bounded: dict[str, object] = {}
    shown: list[str] = []
    for attr in _LISTS:
        items = getattr(read.levels, attr)
        page, nxt = _page(attr, items, None, LIST_LIMIT)
        bounded |= {attr: page, f"{attr}_total": len(items), f"{attr}_next": nxt}
        shown += [i.customer_id for i in page]
    await audit(request, service, who, shown, action="service_levels", lookup="list")
    return answer(read.freshness, read.levels.model_copy(update=bounded), _levels)


def _one_list(name: str, attr: str, summary: str) -> None:
    async def one_list(
        *,
        read: LevelsReadDep,
        request: Request,
        service: ServiceDep,
        who: AgentDep,
        cursor: Annotated[
            str | None, Query(max_length=500, description="The `next` of the previous page")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="Items per page")] = 100,
    ) -> Response:
        items = getattr(read.levels, attr)
        page, nxt = _page(attr, items, cursor, limit)
        await audit(
            request,
            service,
            who,
            [i.customer_id for i in page],
            action="service_levels",
            lookup="list",
        )
        result = ServiceList(
            name=name,
            team=read.team,
            channel=read.channel,
            due_within_hours=read.due_within_hours,
            count=len(items),
            items=page,
            next=nxt,
            by_team=read.levels.by_team,
            by_channel=read.levels.by_channel,
        )
        return answer(read.freshness, result, _list)

    router.get(
        f"/service-levels/{name}",
        response_model=Answer[ServiceList],
        responses=READ_ERRORS,
        tags=["service levels"],
        summary=summary,
        name=f"service_levels_{attr}",
    )(one_list)


_one_list("unanswered", "unanswered", "Contacts without a real answer, oldest first")
_one_list("due-soon", "due_soon", "Deadlines due within the horizon, soonest first")
_one_list("breached", "breached", "Missed reply targets and broken promises")


@router.get(
    "/service-levels/counts",
    response_model=Answer[ServiceCounts],
    responses=READ_ERRORS,
    tags=["service levels"],
    summary="How many are unanswered, due soon, breached; by team and channel",
)
async def service_counts(read: LevelsReadDep) -> Response:
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
    return answer(read.freshness, counts, _counts)
