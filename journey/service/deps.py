"""What the routes share: the running :class:`Service`, the freshness parameters every read
takes (``after``, ``X-Journey-Position``, ``stale``), the waits as FastAPI dependencies, and
how a read is answered (``Answer[T]`` with its freshness headers).

Every answer goes through the freshness protocol (see ``freshness.py`` and docs/service.md):
with a position token it waits for that position, without one for the log's head read at
request time. When the bound is hit the answer is **503 with the lag** — unless the client
passed ``stale=true``, which gets 200 with ``fresh: false``: old data is only ever served to
a client that asked for it, and it always says so.

**Who may ask** (issue 12): every route but ``/healthz`` (and ``/metrics`` from loopback)
declares the role it needs with ``require``: ``Depends(require("agent"))`` in its
parameters or ``dependencies=[Depends(require("analyst"))]`` on the route or router. Roles
are ``service`` (POST /events), ``agent`` (views, lists, search, the console), ``analyst``
(metrics, exports) and ``admin`` (erasure, rebuild, keys, the audit trail); an admin key may
do everything. The guard (``guard.py``) already refused a request without a valid key
(401); ``require`` answers 403 to a valid key of another role. A test
(tests/service/test_access.py) fails for any route that declares no role.

**Every read of a customer is audited**: a route that answers with a customer's data calls
:func:`audit` (or :meth:`Service.audit`) before it answers — for one customer, with the
customers merged with them (their view shows those too); for a list, every customer on the
page answered. See journey/security/audit.py; tests/service/test_attacks.py fails for a GET
route that shows a customer without a record.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter

from journey.security.audit import Lookup
from journey.security.keys import ROLES, Principal, Role
from journey.service.errors import ServiceError
from journey.service.freshness import Freshness
from journey.service.guard import principal_of
from journey.service.runtime import NotFresh, Service
from projections.customer_view import related_customers
from projections.service_levels import ServiceLevels, build_service_levels, unknown_filter

__all__ = [
    "AdminDep",
    "AfterQuery",
    "AgentDep",
    "ChannelQuery",
    "HorizonQuery",
    "LevelsRead",
    "LevelsReadDep",
    "PositionHeader",
    "ServiceDep",
    "SettledAll",
    "StaleQuery",
    "TeamQuery",
    "answer",
    "audit",
    "get_service",
    "require",
    "require_fresh",
]


def get_service(request: Request) -> Service:
    """The running service (the app's lifespan created it)."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def require(role: Role) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A dependency that lets in ``role`` (and admin) and returns who is asking; 403 for any
    other role. Each call makes a new function marked with the role (see the tests)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def allowed(request: Request) -> Principal:
        who = principal_of(request.scope)
        if who is None:  # the guard lets nobody without a key this far but public routes
            raise ServiceError(401, "unauthenticated", "no key: send Authorization: Bearer")
        if who.role not in (role, "admin"):
            raise ServiceError(
                403,
                "forbidden",
                f"key {who.name!r} has role {who.role}; this needs {role} (or admin): ask an "
                "admin for a key with that role",
            )
        return who

    allowed.required_role = role  # type: ignore[attr-defined]  # read by the route test
    return allowed


AgentDep = Annotated[Principal, Depends(require("agent"))]
"""An agent (or admin) is asking: the parameter every customer read takes."""
AdminDep = Annotated[Principal, Depends(require("admin"))]


async def audit(
    request: Request,
    service: Service,
    who: Principal,
    customer_ids: Sequence[str],
    *,
    action: str,
    lookup: Lookup = "id",
    merged: bool = False,
) -> list[str]:
    """Record that ``who`` read ``customer_ids`` (before answering; see
    journey/security/audit.py); with ``merged``, the customers merged with them too (a
    view shows theirs). The route template, never the concrete path (it may hold an
    e-mail), says where. Returns the customer ids recorded."""
    ids = list(customer_ids)
    if merged and ids:
        ids = await service.read(
            lambda store: [m for c in customer_ids for m in [c, *related_customers(store, c)]]
        )
    route = request.scope.get("route")
    template = str(getattr(route, "path", request.url.path))
    await service.audit(who, ids, action=action, route=template, lookup=lookup)
    return ids


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
TeamQuery = Annotated[str | None, Query(description="Only items owned by this team")]
ChannelQuery = Annotated[str | None, Query(description="Only items of this channel")]
HorizonQuery = Annotated[float, Query(gt=0, le=24 * 365, description="Horizon of 'due soon'")]


def answer(
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


def require_fresh(freshness: Freshness, stale: bool, what: str) -> None:
    """503 (``NotFresh``) unless the view reached what was asked, or stale data was."""
    if freshness.fresh or stale:
        return
    raise NotFresh(
        freshness,
        f"the view did not reach {what} within the bound: {freshness.lag.events} event(s), "
        f"{freshness.lag.seconds:g} s behind. Retry, or pass stale=true to get the view as it "
        "is, marked fresh:false",
    )


async def settled_all(
    service: ServiceDep,
    after: AfterQuery = None,
    x_journey_position: PositionHeader = None,
    stale: StaleQuery = False,
) -> Freshness:
    """The freshness wait of answers that span every partition."""
    tokens = service.tokens(after, x_journey_position)
    freshness = await service.settle(tokens, service.all_partitions())
    require_fresh(freshness, stale, "the head of the log")
    return freshness


SettledAll = Annotated[Freshness, Depends(settled_all)]


@dataclass(frozen=True)
class LevelsRead:
    """What every service-level endpoint reads: the lists after the wait."""

    freshness: Freshness
    team: str | None
    channel: str | None
    due_within_hours: float
    levels: ServiceLevels


async def read_levels(
    service: ServiceDep,
    freshness: SettledAll,
    team: TeamQuery = None,
    channel: ChannelQuery = None,
    due_within_hours: HorizonQuery = 24,
) -> LevelsRead:
    problem = await service.read(lambda store: unknown_filter(store, team, channel))
    if problem:
        field, why = problem
        raise ServiceError(422, "unknown_filter", why, field=field)
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


LevelsReadDep = Annotated[LevelsRead, Depends(read_levels)]
