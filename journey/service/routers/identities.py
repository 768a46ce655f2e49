"""An agent confirms a possible match, or undoes a merge: ``POST
/customers/{customer_id}/identities`` produces a verified ``IdentityLinked`` with the agent
as its source; ``POST /customers/{customer_id}/identities/unlink`` an ``IdentityUnlinked``
(on both customers' streams when both made the link). JSON bodies only; an agent's (or
admin's) key, whose name becomes the touchpoint's source."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from domain import catalogue as c
from domain.catalogue import IdentityKind
from domain.envelope import Touchpoint, new_touchpoint
from domain.errors import InvalidEvent
from journey.service.deps import AgentDep, ServiceDep
from journey.service.errors import ServiceError
from journey.service.models import EmitResult, ErrorOut
from journey.service.routers.events import emit_and_answer
from journey.service.runtime import Service
from projections.store import JourneyStore

__all__ = ["router"]

router = APIRouter()

CustomerPath = Annotated[str, Path(max_length=200, description="The customer id (not an identity)")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    kind: IdentityKind = Field(description="customer_id merges the two customers")
    value: str = Field(min_length=1, max_length=200, description="The identifier")


class LinkBody(_Body):
    """A possible match confirmed: the identifier is this customer's."""


class UnlinkBody(_Body):
    """A link undone: the identifier is not this customer's after all."""

    reason: str | None = Field(default=None, max_length=10_000)


_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "No valid key: send Authorization: Bearer <key>"},
    403: {"model": ErrorOut, "description": "The key's role is not agent (or admin)"},
    404: {"model": ErrorOut, "description": "No customer by that id: names the key"},
    422: {"model": ErrorOut, "description": "An invalid body: names the field"},
    503: {"model": ErrorOut, "description": "The log did not accept the touchpoint"},
}


async def _known(service: Service, customer_id: str) -> None:
    rows = await service.read(
        lambda s: s.query("SELECT 1 FROM customers WHERE customer_id = ?", (customer_id,))
    )
    if not rows:
        raise ServiceError(
            404,
            "unknown_customer",
            f"no customer {customer_id!r}: confirm or undo a link on a customer id "
            "(a lookup by an identity answers the candidates' ids)",
            key=customer_id,
        )


def _touchpoint(customer_id: str, data: c.TouchpointData, agent: str) -> Touchpoint:
    try:
        return new_touchpoint(
            data, customer_id=customer_id, occurred_at=datetime.now(UTC), source=f"agent:{agent}"
        )
    except InvalidEvent as exc:
        raise ServiceError(422, "invalid_body", str(exc), field=exc.field) from None


@router.post(
    "/customers/{customer_id}/identities",
    status_code=201,
    response_model=EmitResult,
    responses=_RESPONSES,
    tags=["customers"],
    summary="Confirm a possible match: a verified IdentityLinked with the agent as source",
    description="The identifier (with `kind` customer_id: the other customer) is this "
    "customer's, checked by the agent asking: a verified `IdentityLinked` is produced with "
    "source `agent:<key name>`, and the views merge once it is folded (pass the returned token as "
    "`?after=` to read it).",
)
async def link_identity(
    *, service: ServiceDep, who: AgentDep, customer_id: CustomerPath, body: LinkBody
) -> Response:
    await _known(service, customer_id)
    data = c.IdentityLinked(kind=body.kind, value=body.value, verified=True)
    return await emit_and_answer(service, [_touchpoint(customer_id, data, who.name)])


@router.post(
    "/customers/{customer_id}/identities/unlink",
    status_code=201,
    response_model=EmitResult,
    responses=_RESPONSES,
    tags=["customers"],
    summary="Undo a link or a merge: IdentityUnlinked with the agent as source",
    description="The identifier is not this customer's: an `IdentityUnlinked` is produced. "
    "With `kind` customer_id the merge is undone on both streams that made it (an "
    "`IdentityUnlinked` on the other customer's too, when its stream linked this one).",
)
async def unlink_identity(
    *, service: ServiceDep, who: AgentDep, customer_id: CustomerPath, body: UnlinkBody
) -> Response:
    await _known(service, customer_id)
    agent = who.name
    data = c.IdentityUnlinked(
        kind=body.kind, value=body.value, unlinked_by=agent, reason=body.reason
    )
    touchpoints = [_touchpoint(customer_id, data, agent)]
    if body.kind == "customer_id":
        other = body.value

        def links(s: JourneyStore) -> tuple[bool, bool]:
            query = "SELECT 1 FROM links WHERE customer_id = ? AND other_id = ?"
            return bool(s.query(query, (customer_id, other))), bool(
                s.query(query, (other, customer_id))
            )

        own, back = await service.read(links)
        if back:
            # The other stream made the link: it is withdrawn there (and here only if this
            # stream made it too).
            mirror = c.IdentityUnlinked(
                kind="customer_id", value=customer_id, unlinked_by=agent, reason=body.reason
            )
            touchpoints = [_touchpoint(other, mirror, agent)] + (touchpoints if own else [])
    return await emit_and_answer(service, touchpoints)
