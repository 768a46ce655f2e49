"""Defect outreach: known defects, who owns an affected product, who was reached."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import TypeAdapter

from journey.security.keys import Principal
from journey.service.deps import AgentDep, ServiceDep, SettledAll, answer, audit, require
from journey.service.errors import E404, READ_ERRORS, ServiceError
from journey.service.models import Answer
from journey.service.runtime import Service
from projections.defect_outreach import DefectOutreach, build_defect_outreach

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require("agent"))])

_defects: TypeAdapter[list[DefectOutreach]] = TypeAdapter(list[DefectOutreach])
_defect: TypeAdapter[DefectOutreach] = TypeAdapter(DefectOutreach)


@router.get(
    "/defects",
    response_model=Answer[list[DefectOutreach]],
    responses=READ_ERRORS,
    tags=["defect outreach"],
    summary="Known defects: who owns an affected product, who was reached",
)
async def defects(
    *, service: ServiceDep, freshness: SettledAll, request: Request, who: AgentDep
) -> Response:
    found = await service.read(build_defect_outreach)
    await _audit(request, service, who, found)
    return answer(freshness, found, _defects)


@router.get(
    "/defects/{defect_id}",
    response_model=Answer[DefectOutreach],
    responses={**READ_ERRORS, 404: E404},
    tags=["defect outreach"],
    summary="One known defect and its outreach",
)
async def defect(
    *,
    service: ServiceDep,
    defect_id: str,
    freshness: SettledAll,
    request: Request,
    who: AgentDep,
) -> Response:
    found = await service.read(lambda s: build_defect_outreach(s, defect_id))
    if not found:
        raise ServiceError(404, "unknown_defect", f"no known defect {defect_id!r}", key=defect_id)
    await _audit(request, service, who, found)
    return answer(freshness, found[0], _defect)


async def _audit(
    request: Request, service: Service, who: Principal, found: list[DefectOutreach]
) -> None:
    """Who owns an affected product is shown by name: each of them is a customer read."""
    ids = [a.customer_id for d in found for a in d.affected]
    await audit(request, service, who, ids, action="defects", lookup="list")
