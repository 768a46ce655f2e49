"""The agents' work lists: unanswered contacts, deadlines due soon, breaches — and their
counts by team and channel."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import TypeAdapter

from journey.service.deps import LevelsReadDep, answer
from journey.service.errors import READ_ERRORS
from journey.service.models import Answer, ServiceCounts, ServiceList
from projections.service_levels import ServiceLevels

__all__ = ["router"]

router = APIRouter()

_levels: TypeAdapter[ServiceLevels] = TypeAdapter(ServiceLevels)
_list: TypeAdapter[ServiceList] = TypeAdapter(ServiceList)
_counts: TypeAdapter[ServiceCounts] = TypeAdapter(ServiceCounts)


@router.get(
    "/service-levels",
    response_model=Answer[ServiceLevels],
    responses=READ_ERRORS,
    tags=["service levels"],
    summary="Unanswered, due soon, breached, and counts by team and channel",
)
async def service_levels(read: LevelsReadDep) -> Response:
    return answer(read.freshness, read.levels, _levels)


def _one_list(name: str, attr: str, summary: str) -> None:
    async def one_list(read: LevelsReadDep) -> Response:
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
