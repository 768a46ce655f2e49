"""A customer's view, timeline and cases — by customer id or any identity (e-mail, phone,
order, serial, name) — and search. Each customer read also looks back in time: ``as_of``
(event time) or ``known_at`` (log time), see projections/travel.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar, get_args

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import TypeAdapter

from domain.bounds import MAX_MOMENT_CHARS, InvalidMoment, parse_moment
from journey.security.keys import Principal
from journey.service.deps import (
    AfterQuery,
    AgentDep,
    PositionHeader,
    ServiceDep,
    SettledAll,
    StaleQuery,
    answer,
    audit,
    require_fresh,
)
from journey.service.errors import CUSTOMER_ERRORS, READ_ERRORS, ChooseOne, ServiceError
from journey.service.freshness import Freshness
from journey.service.models import Answer, CaseDetail, SearchResults
from journey.service.queries import case_detail, search_customers
from journey.service.runtime import NotFresh, Service
from projections.customer_view import (
    LIST_LIMIT,
    LIST_NAMES,
    BadCursor,
    CasePage,
    CustomerView,
    ItemPage,
    Lookup,
    TimelinePage,
    build_customer_view,
    customer_cases,
    customer_list,
    customer_timeline,
    lookup_customer,
)
from projections.store import JourneyStore
from projections.travel import Cut, TooLargeToTravel

__all__ = ["router"]

router = APIRouter()

_view: TypeAdapter[CustomerView] = TypeAdapter(CustomerView)
_timeline: TypeAdapter[TimelinePage] = TypeAdapter(TimelinePage)
_case: TypeAdapter[CaseDetail] = TypeAdapter(CaseDetail)
_search: TypeAdapter[SearchResults] = TypeAdapter(SearchResults)
_cases: TypeAdapter[CasePage] = TypeAdapter(CasePage)
_items: TypeAdapter[ItemPage] = TypeAdapter(ItemPage)
_lookup: TypeAdapter[Lookup] = TypeAdapter(Lookup)

CursorQuery = Annotated[
    str | None,
    Query(max_length=2000, description="The `next` (or `<list>_next`) of an earlier answer"),
]
LimitQuery = Annotated[int, Query(ge=1, le=200, description="How many items")]
AsOfQuery = Annotated[
    str | None,
    Query(
        max_length=MAX_MOMENT_CHARS,
        description="Look back: the customer as of this event time (ISO 8601 with a zone): "
        "every touchpoint that happened by then, late reports included; deadlines judged then",
    ),
]
KnownAtQuery = Annotated[
    str | None,
    Query(
        max_length=MAX_MOMENT_CHARS,
        description="Look back: what the engine knew at this log time (ISO 8601 with a zone): "
        "every touchpoint the log had received by then; deadlines judged then",
    ),
]
ListName = Literal[
    "open_cases",
    "closed_cases",
    "promises",
    "submissions",
    "shipments",
    "reviews",
    "identities",
    "products",
    "orders",
    "anomalies",
]
# The path enum names every list of the view.
assert set(get_args(ListName)) == set(LIST_NAMES)

T = TypeVar("T")


def _cut(service: Service, as_of: str | None, known_at: str | None) -> Cut | None:
    """The moment to look back to, if one was asked for (422 naming the parameter if it is
    no usable time)."""
    if as_of is not None and known_at is not None:
        raise ServiceError(
            422,
            "invalid_request",
            "give as_of (event time) or known_at (log time), not both",
            field="known_at",
        )
    for name, text in (("as_of", as_of), ("known_at", known_at)):
        if text is not None:
            try:
                at = parse_moment(text, now=service.clock(), name=name)
            except InvalidMoment as exc:
                raise ServiceError(422, "invalid_request", str(exc), field=name) from exc
            return Cut("as_of" if name == "as_of" else "known_at", at)
    return None


async def _paged(
    service: Service, key: str, read: Callable[[JourneyStore], T | None], cut: Cut | None = None
) -> T:
    try:
        result = await service.read(read)
    except BadCursor as exc:
        raise ServiceError(400, "bad_cursor", str(exc), field="cursor") from exc
    except TooLargeToTravel as exc:
        raise ServiceError(422, "too_large", str(exc), key=key) from exc
    if result is None and cut is not None:
        raise ServiceError(
            404, "unknown_customer", f"{key!r} had no touchpoint {cut.describe()}", key=key
        )
    if result is None:  # erased between resolving and reading: gone
        raise ServiceError(404, "unknown_customer", f"no customer {key!r}", key=key)
    return result


async def _settled_customer(
    service: Service,
    key: str,
    after: str | None,
    header: str | None,
    stale: bool,
    *,
    request: Request,
    who: Principal,
    action: str,
) -> tuple[str, Freshness]:
    """The customer ``key`` names once the view is fresh enough to say (resolved after the
    wait: see :meth:`Service.settle_customer`); 404 when there is none, 503 when the view
    is behind and may not have folded them yet. Audited before anything of the customer is
    read: whoever gets past here reads them."""
    cid, freshness = await service.settle_customer(key, service.tokens(after, header))
    if cid is None and freshness.fresh:
        found = await service.read(lambda s: lookup_customer(s, key))
        if found.candidates:
            # The candidates' ids and names are read too: audited as a search is.
            ids = list(dict.fromkeys(m.customer_id for m in found.candidates))
            await audit(request, service, who, ids, action=action, lookup="search")
            choices = answer(freshness, found, _lookup)
            choices.status_code = 300
            raise ChooseOne(choices)
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
    require_fresh(freshness, stale, f"the position of customer {cid!r}")
    await audit(
        request,
        service,
        who,
        [cid],
        action=action,
        lookup="id" if cid == key else "identity",
        merged=True,
    )
    return cid, freshness


async def _read_view(
    service: Service, key: str, cid: str, page: int, page_size: int, *, cut: Cut | None = None
) -> CustomerView:
    return await _paged(
        service,
        key,
        lambda s: build_customer_view(
            s,
            cid,
            rules=service.rules,
            now=service.clock(),
            page=page,
            page_size=page_size,
            cut=cut,
        ),
        cut,
    )


@router.get(
    "/customers/{key}",
    response_model=Answer[CustomerView],
    responses=CUSTOMER_ERRORS,
    tags=["customers"],
    summary="A customer's view, by customer id or any identity",
)
async def get_customer(
    *,
    service: ServiceDep,
    who: AgentDep,
    request: Request,
    key: Annotated[str, Path(description="Customer id, e-mail, phone, order or serial")],
    after: AfterQuery = None,
    x_journey_position: PositionHeader = None,
    stale: StaleQuery = False,
    page: Annotated[int, Query(ge=1, description="Timeline page")] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000, description="Timeline page size")] = 50,
    as_of: AsOfQuery = None,
    known_at: KnownAtQuery = None,
) -> Response:
    cut = _cut(service, as_of, known_at)
    cid, freshness = await _settled_customer(
        service, key, after, x_journey_position, stale, request=request, who=who, action="view"
    )
    view = await _read_view(service, key, cid, page, page_size, cut=cut)
    return answer(freshness, view, _view)


@router.get(
    "/customers/{key}/timeline",
    response_model=Answer[TimelinePage],
    responses=CUSTOMER_ERRORS,
    tags=["customers"],
    summary="One page of a customer's timeline, newest first",
)
async def get_timeline(
    *,
    service: ServiceDep,
    who: AgentDep,
    request: Request,
    key: str,
    after: AfterQuery = None,
    x_journey_position: PositionHeader = None,
    stale: StaleQuery = False,
    cursor: CursorQuery = None,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="Entries per page")] = None,
    page: Annotated[
        int | None, Query(ge=1, deprecated=True, description="Use `cursor` (the `next` value)")
    ] = None,
    page_size: Annotated[int | None, Query(ge=1, le=1000, deprecated=True)] = None,
    as_of: AsOfQuery = None,
    known_at: KnownAtQuery = None,
) -> Response:
    cut = _cut(service, as_of, known_at)
    cid, freshness = await _settled_customer(
        service, key, after, x_journey_position, stale, request=request, who=who, action="timeline"
    )
    size = limit or page_size or LIST_LIMIT
    timeline = await _paged(
        service,
        key,
        lambda s: customer_timeline(
            s, cid, page=None if cursor else page, page_size=size, cursor=cursor, cut=cut
        ),
        cut,
    )
    return answer(freshness, timeline, _timeline)


@router.get(
    "/customers/{key}/cases",
    response_model=Answer[CasePage],
    responses=CUSTOMER_ERRORS,
    tags=["customers"],
    summary="A customer's open (or closed) cases, newest first, by cursor",
)
async def get_cases(
    *,
    service: ServiceDep,
    who: AgentDep,
    request: Request,
    key: str,
    after: AfterQuery = None,
    x_journey_position: PositionHeader = None,
    stale: StaleQuery = False,
    status: Literal["open", "closed"] = "open",
    cursor: CursorQuery = None,
    limit: LimitQuery = LIST_LIMIT,
    as_of: AsOfQuery = None,
    known_at: KnownAtQuery = None,
) -> Response:
    cut = _cut(service, as_of, known_at)
    cid, freshness = await _settled_customer(
        service, key, after, x_journey_position, stale, request=request, who=who, action="cases"
    )
    page = await _paged(
        service,
        key,
        lambda s: customer_cases(
            s,
            cid,
            status,
            rules=service.rules,
            now=service.clock(),
            cursor=cursor,
            limit=limit,
            cut=cut,
        ),
        cut,
    )
    return answer(freshness, page, _cases)


@router.get(
    "/customers/{key}/lists/{name}",
    response_model=Answer[ItemPage],
    responses=CUSTOMER_ERRORS,
    tags=["customers"],
    summary="The rest of any list of a customer's view, by cursor (`<list>_next`)",
)
async def get_list(
    *,
    service: ServiceDep,
    who: AgentDep,
    request: Request,
    key: str,
    name: ListName,
    after: AfterQuery = None,
    x_journey_position: PositionHeader = None,
    stale: StaleQuery = False,
    cursor: CursorQuery = None,
    limit: LimitQuery = LIST_LIMIT,
    as_of: AsOfQuery = None,
    known_at: KnownAtQuery = None,
) -> Response:
    cut = _cut(service, as_of, known_at)
    cid, freshness = await _settled_customer(
        service, key, after, x_journey_position, stale, request=request, who=who, action="list"
    )
    page = await _paged(
        service,
        key,
        lambda s: customer_list(
            s,
            cid,
            name,
            rules=service.rules,
            now=service.clock(),
            cursor=cursor,
            limit=limit,
            cut=cut,
        ),
        cut,
    )
    return answer(freshness, page, _items)


@router.get(
    "/customers/{key}/cases/{case_id}",
    response_model=Answer[CaseDetail],
    responses=CUSTOMER_ERRORS,
    tags=["customers"],
    summary="One case: owner, deadline, handoffs, what was submitted, its timeline",
)
async def get_case(
    *,
    service: ServiceDep,
    who: AgentDep,
    request: Request,
    key: str,
    case_id: str,
    after: AfterQuery = None,
    x_journey_position: PositionHeader = None,
    stale: StaleQuery = False,
    as_of: AsOfQuery = None,
    known_at: KnownAtQuery = None,
) -> Response:
    cut = _cut(service, as_of, known_at)
    cid, freshness = await _settled_customer(
        service, key, after, x_journey_position, stale, request=request, who=who, action="case"
    )
    try:
        detail = await service.read(
            lambda s: case_detail(
                s, cid, case_id, rules=service.rules, now=service.clock(), cut=cut
            )
        )
    except TooLargeToTravel as exc:
        raise ServiceError(422, "too_large", str(exc), key=key) from exc
    if detail is None:
        raise ServiceError(
            404,
            "unknown_case",
            f"customer {cid!r} has no case {case_id!r}"
            + ("" if cut is None else f" {cut.describe()}"),
            key=case_id,
        )
    return answer(freshness, detail, _case)


@router.get(
    "/search",
    response_model=Answer[SearchResults],
    responses=READ_ERRORS,
    tags=["customers"],
    summary="Find customers by name, e-mail, phone, serial, order or id prefix",
)
async def search(
    *,
    service: ServiceDep,
    who: AgentDep,
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Prefix to look for")],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    freshness: SettledAll,
) -> Response:
    hits = await service.read(lambda s: search_customers(s, q, limit))
    # A hit shows the person's identities, some of them from customers merged with them.
    await audit(
        request,
        service,
        who,
        [h.customer_id for h in hits],
        action="search",
        lookup="search",
        merged=True,
    )
    return answer(freshness, SearchResults(query=q, hits=hits), _search)
