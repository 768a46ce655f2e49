"""The agent console: server-rendered HTML (Jinja2, autoescaped) and a little JavaScript.

``/`` searches (name, e-mail, phone, serial, order, id, and what the customer said) and lists
the work that waits, one row per customer; ``/console/work/{list}`` is a whole work list,
paged. ``/console/customers/{key}`` shows one customer's view and keeps it live over SSE
(``/customers/{id}/events?format=html`` pushes the re-rendered fragment);
``/console/customers/{key}/lists/{name}`` is the whole of one of its lists, paged by the
view's cursors.

What an agent sees is worded for them: freshness in words ("up to date", "catching up",
"stale: the engine stopped 5 min ago") with the positions on hover; labels, not
snake_case; times in the agent's time zone (the ``console_time_zone`` setting, or the one the
agent picked, kept in a cookie), the zone always named. Colour only where action is needed:
red for what was missed, amber for what is due soon; everything else is neutral.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import anyio.to_thread
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup, escape
from pydantic import BaseModel, Field, TypeAdapter

from domain.bounds import MAX_MOMENT_CHARS, InvalidMoment, parse_moment
from journey.security.keys import SESSION_TTL
from journey.service.deps import AgentDep, audit, require
from journey.service.errors import ServiceError
from journey.service.freshness import Freshness
from journey.service.guard import SESSION_COOKIE, principal_of, session_cookie
from journey.service.metrics_page import (
    DEFAULT_WEEKS,
    MAX_WEEKS,
    PRESETS,
    MetricsBusy,
    MetricsCache,
    metrics_period,
)
from journey.service.queries import search_customers
from journey.service.runtime import Service
from journey.settings import Settings
from projections.customer_view import (
    LIST_LIMIT,
    LIST_NAMES,
    AnomalyOut,
    BadCursor,
    CaseOut,
    CustomerView,
    DeadlineOut,
    IdentityOut,
    ProductOut,
    PromiseOut,
    ReviewOut,
    ShipmentOut,
    SubmissionOut,
    build_customer_view,
    customer_cases,
    customer_list,
    lookup_customer,
)
from projections.service_levels import ServiceItem, build_service_levels
from projections.travel import Cut

__all__ = [
    "ZONE_COOKIE",
    "Engine",
    "engine_of",
    "register_console",
    "render_freshness",
    "render_view",
    "zone_of",
]

_HERE = Path(__file__).parent

ZONE_COOKIE = "journey_tz"
HOME_ROWS = 10  # customers per work list on the home page; the rest is one click away
WORK_PAGE = 50  # customers per page of a whole work list
WORK_LISTS = {
    "breached": ("Missed targets and broken promises", "Nothing missed."),
    "due-soon": ("Due soon", "Nothing due soon."),
    "unanswered": ("Still without a real answer", "Everyone has had an answer."),
}


# ---------------------------------------------------------------------- time zones


@cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(z for z in available_timezones() if "/" in z or z == "UTC"))


def _zone(name: str | None) -> ZoneInfo | None:
    if not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_of(request: Request, settings: Settings) -> ZoneInfo:
    """The zone this agent reads times in: theirs (cookie) if valid, else the setting."""
    return _zone(request.cookies.get(ZONE_COOKIE)) or ZoneInfo(settings.console_time_zone)


def _as_datetime(at: datetime | str | None) -> datetime | None:
    if at is None or isinstance(at, datetime):
        return at
    return datetime.fromisoformat(at)


@pass_context
def _when(ctx: Context, at: datetime | str | None) -> str:
    moment = _as_datetime(at)
    if moment is None:
        return "—"
    return moment.astimezone(ctx["tz"]).strftime("%Y-%m-%d %H:%M %Z")


@pass_context
def _time(ctx: Context, at: datetime | str | None) -> Markup:
    """A <time> in the agent's zone; the instant in UTC on hover."""
    moment = _as_datetime(at)
    if moment is None:
        return Markup("—")
    utc = moment.astimezone(UTC)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M UTC"), _when(ctx, moment)
    )


# ---------------------------------------------------------------------- words


# Words the data uses as identifiers, as an agent would say them; anything else in
# snake_case or CamelCase is split into words by :func:`_label`.
_LABELS = {
    "email": "e-mail",
    "sms": "SMS",
    "web_form": "web form",
    "first_reply": "first reply",
    "next_reply": "next reply",
    "serial_number": "serial number",
    "order_number": "order number",
    "social_handle": "social media handle",
    "customer_id": "customer id",
    "kept_late": "kept late",
    "said": "what they said",
    "gift_card": "gift card",
    "free_shipping": "free shipping",
}


def _label(value: object) -> str:
    """``serial_number`` → "serial number", ``InquiryReceived`` → "Inquiry received"."""
    text = str(value)
    if text in _LABELS:
        return _LABELS[text]
    if re.fullmatch(r"[A-Z][a-z]+(?:[A-Z][a-z]+)+", text):
        words = re.findall(r"[A-Z][a-z]*", text)
        return " ".join([words[0], *(w.lower() for w in words[1:])])
    return text.replace("_", " ")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _duration(seconds: float) -> str:
    """Seconds as an agent says them: "12 s", "4 min", "2 h 5 min", "3 days 1 h"."""
    whole = abs(int(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    days, rest = divmod(whole, 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    if not days:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{days} day{'' if days == 1 else 's'}" + (f" {hours} h" if hours else "")


@pass_context
def _deadline_text(ctx: Context, d: DeadlineOut | None) -> str:
    if d is None:
        return "—"
    label = _capital(_label(d.kind))
    if d.state == "breached":
        return f"{label} was due {_when(ctx, d.due_at)}: {_duration(-d.remaining_seconds)} ago"
    return f"{label} due in {_duration(d.remaining_seconds)} ({_when(ctx, d.due_at)})"


def _highlight(text: str, query: str) -> Markup:
    """``text`` escaped, with every occurrence of ``query`` (any case) marked."""
    if not query:
        return escape(text)
    parts = re.split(f"({re.escape(query)})", text, flags=re.IGNORECASE)
    return Markup("").join(
        Markup("<mark>{}</mark>").format(p) if i % 2 else escape(p) for i, p in enumerate(parts)
    )


# A text longer than this shows its start; the rest is behind "show all".
FOLD_CHARS = 280
FOLD_LINES = 6


def _folds(text: str | None) -> bool:
    return bool(text) and (len(str(text)) > FOLD_CHARS or str(text).count("\n") >= FOLD_LINES)


def _text_start(text: str, chars: int = 200, lines: int = 4) -> str:
    """The first lines of a long text, cut at a word boundary, marked as cut."""
    start = "\n".join(text.splitlines()[:lines])
    if len(start) > chars:
        start = start[:chars].rsplit(" ", 1)[0] if " " in start[:chars] else start[:chars]
    return start.rstrip() + "…"


# ---------------------------------------------------------------------- freshness


@dataclass(frozen=True)
class Engine:
    """What the console knows of the engine that folds the log."""

    stopped_for_s: float | None = None
    """Seconds since it stopped folding (None: it runs, or runs in another process)."""
    elsewhere: bool = False
    """It runs in another process (``--no-runner``): this one cannot see it stop."""


def engine_of(service: Service) -> Engine:
    return Engine(stopped_for_s=service.engine_stopped_for(), elsewhere=service.thread is None)


@dataclass(frozen=True)
class FreshnessWords:
    state: Literal["fresh", "catching-up", "stale"]
    headline: str
    detail: str


def freshness_words(f: Freshness, engine: Engine) -> FreshnessWords:
    """How fresh the screen is, as a sentence; the positions behind it as detail."""
    token = f.as_of_token or "nothing folded yet"
    detail = f"Shows the log up to {token}."
    if f.waited_ms >= 1:
        detail += f" Waited {f.waited_ms:.0f} ms for the engine."
    if f.lag.events:
        events = f"{f.lag.events} event{'' if f.lag.events == 1 else 's'}"
        detail += f" {events} on the log not shown yet."
    if f.fresh:
        return FreshnessWords("fresh", "Up to date", detail)
    behind = _duration(f.lag.seconds)
    waiting = f"{f.lag.events} new event{'' if f.lag.events == 1 else 's'} not shown yet"
    if engine.stopped_for_s is not None:
        stopped = engine.stopped_for_s
        ago = "just now" if stopped < 1 else f"{_duration(stopped)} ago"
        return FreshnessWords("stale", f"Stale: the engine stopped {ago}; {waiting}", detail)
    if engine.elsewhere and f.lag.seconds >= 60:
        return FreshnessWords(
            "stale", f"Stale: {behind} behind; is the engine (journey run) running?", detail
        )
    return FreshnessWords("catching-up", f"{_capital(behind)} behind, catching up", detail)


# ---------------------------------------------------------------------- work lists


@dataclass
class CustomerWork:
    """One customer's items on a work list: the most urgent first."""

    customer_id: str
    name: str | None
    items: list[ServiceItem] = field(default_factory=list)

    @property
    def first(self) -> ServiceItem:
        return self.items[0]

    @property
    def state(self) -> str:
        states = {i.state for i in self.items}
        return "breached" if "breached" in states else "warning" if "warning" in states else "ok"

    @property
    def waiting_s(self) -> float:
        return max(i.age_seconds for i in self.items)


def by_customer(items: Iterable[ServiceItem]) -> list[CustomerWork]:
    """One row per customer, in the list's order (by their most urgent item)."""
    rows: dict[str, CustomerWork] = {}
    for item in items:
        row = rows.setdefault(item.customer_id, CustomerWork(item.customer_id, item.name))
        row.items.append(item)
        row.name = row.name or item.name
    return list(rows.values())


# ---------------------------------------------------------------------- customer lists

_LIST_ITEM: dict[str, TypeAdapter[Any]] = {
    "promises": TypeAdapter(PromiseOut),
    "submissions": TypeAdapter(SubmissionOut),
    "shipments": TypeAdapter(ShipmentOut),
    "reviews": TypeAdapter(ReviewOut),
    "identities": TypeAdapter(IdentityOut),
    "products": TypeAdapter(ProductOut),
    "anomalies": TypeAdapter(AnomalyOut),
}
LIST_TITLES = {
    "open_cases": "Open cases",
    "closed_cases": "Closed cases",
    "promises": "Promises",
    "submissions": "What they submitted",
    "shipments": "Shipments",
    "reviews": "Public reviews",
    "identities": "Who",
    "products": "Products and repairs",
    "orders": "Orders",
    "anomalies": "Anomalies",
}
assert set(LIST_TITLES) == set(LIST_NAMES)


@dataclass
class ListPage:
    total: int
    items: Sequence[BaseModel | dict[str, Any]]
    next: str | None


def _list_page(
    store: Any, service: Service, cid: str, name: str, cursor: str | None
) -> ListPage | None:
    now = service.clock()
    if name in ("open_cases", "closed_cases"):
        cases = customer_cases(
            store,
            cid,
            "open" if name == "open_cases" else "closed",
            rules=service.rules,
            now=now,
            cursor=cursor,
            limit=LIST_LIMIT,
        )
        if cases is None:
            return None
        items: list[CaseOut] = cases.items
        return ListPage(cases.total, items, cases.next)
    page = customer_list(
        store, cid, name, rules=service.rules, now=now, cursor=cursor, limit=LIST_LIMIT
    )
    if page is None:
        return None
    adapter = _LIST_ITEM.get(name)
    rows = [adapter.validate_python(i) for i in page.items] if adapter else page.items
    return ListPage(page.total, rows, page.next)


# ---------------------------------------------------------------------- rendering


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["time"] = _time
    env.filters["duration"] = _duration
    env.filters["deadline"] = _deadline_text
    env.filters["label"] = _label
    env.filters["capital"] = _capital
    env.filters["highlight"] = _highlight
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.filters["text_start"] = _text_start
    env.tests["folded"] = _folds
    env.filters["order_item"] = lambda pair: {"order_id": pair[0], "what": pair[1]}
    env.globals["LIST_TITLES"] = LIST_TITLES
    env.globals["HOME_ROWS"] = HOME_ROWS
    return env


_ENV = _env()


def render_view(view: CustomerView, *, page: int = 1, zone: ZoneInfo) -> str:
    """The customer view fragment (what SSE pushes and the page embeds)."""
    return _ENV.get_template("_view.html").render(view=view, page=page, tz=zone)


def render_freshness(
    freshness: Freshness,
    engine: Engine,
    *,
    checked_at: datetime | None = None,
    zone: ZoneInfo | None = None,
) -> str:
    """The freshness bar. A page that does not keep itself live says when it was checked
    (``checked_at`` in ``zone``): "Up to date" must not outlive the moment it was true."""
    words = freshness_words(freshness, engine)
    checked = checked_at.astimezone(zone or UTC).strftime("%H:%M:%S") if checked_at else None
    return _ENV.get_template("_freshness.html").render(f=freshness, words=words, checked=checked)


class SignIn(BaseModel):
    key: str = Field(max_length=200)
    next: str = Field(default="/", max_length=2000)


def _local(target: str) -> str:
    """Only a path on this site: never an open redirect."""
    # A browser drops tabs and line ends anywhere in an address ("/\t/evil.example" is
    # "//evil.example" to it) and reads a backslash as a slash: neither may pass.
    controls = any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)
    ok = (
        target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not controls
    )
    return target if ok else "/"


def register_console(app: FastAPI, svc: Callable[[], Service]) -> None:
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        service = svc()
        zone = zone_of(request, service.settings)
        html = _ENV.get_template(template).render(
            signed_in=principal_of(request.scope),
            tz=zone,
            zone_name=str(zone.key),
            zone_names=_zone_names(),
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            request_path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def freshness_html(
        service: Service, freshness: Freshness, request: Request | None = None
    ) -> str:
        if request is None:  # a live page: the stream keeps the bar current
            return render_freshness(freshness, engine_of(service))
        return render_freshness(
            freshness,
            engine_of(service),
            checked_at=datetime.now(UTC),
            zone=zone_of(request, service.settings),
        )

    async def no_such_customer(
        request: Request, service: Service, key: str, freshness: Freshness
    ) -> HTMLResponse:
        """404 when the view is up to date, else 503: it may not have folded them yet; 300
        with the candidates when the key is only claimed (never one of their views)."""
        candidates = (
            (await service.read(lambda s: lookup_customer(s, key))).candidates
            if freshness.fresh
            else []
        )
        return page(
            request,
            "missing.html",
            status=300 if candidates else 404 if freshness.fresh else 503,
            candidates=candidates,
            key=key,
            freshness=freshness,
            freshness_html=freshness_html(service, freshness),
            title="No such customer",
            q=key,
        )

    async def levels(service: Service) -> Any:
        return await service.read(
            lambda s: build_service_levels(s, rules=service.rules, now=service.clock())
        )

    agent = [Depends(require("agent"))]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False, dependencies=agent)
    async def home(
        request: Request,
        who: AgentDep,
        q: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        service = svc()
        freshness = await service.settle(None, service.all_partitions())
        query = (q or "").strip()
        hits = await service.read(lambda s: search_customers(s, query)) if query else []
        await audit(
            request,
            service,
            who,
            [h.customer_id for h in hits],
            action="console.search",
            lookup="search",
            merged=True,
        )
        if query:
            # Straight to the customer only when the query names one for sure (an id or a
            # verified identity): a form's e-mail or phone is a claim, and lists its hits.
            named = (await service.read(lambda s: lookup_customer(s, query))).customer_id
            if named is not None:
                target = quote(named, safe="")
                return RedirectResponse(f"/console/customers/{target}", status_code=303)
        found = await levels(service)
        work = {
            "breached": by_customer(found.breached),
            "due-soon": by_customer(found.due_soon),
            "unanswered": by_customer(found.unanswered),
        }
        await audit(
            request,
            service,
            who,
            [r.customer_id for rows in work.values() for r in rows[:HOME_ROWS]],
            action="console.work",
            lookup="list",
        )
        return page(
            request,
            "index.html",
            q=query,
            hits=hits,
            work=work,
            lists=WORK_LISTS,
            due_within_hours=found.due_within_hours,
            rows=HOME_ROWS,
            freshness_html=freshness_html(service, freshness, request),
            title="Find a customer" if not query else f"Search: {query}",
        )

    @app.get(
        "/console/work/{name}",
        response_class=HTMLResponse,
        include_in_schema=False,
        dependencies=agent,
    )
    async def work_list(
        request: Request,
        who: AgentDep,
        name: Literal["breached", "due-soon", "unanswered"],
        page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> Response:
        service = svc()
        freshness = await service.settle(None, service.all_partitions())
        found = await levels(service)
        rows = by_customer(getattr(found, name.replace("-", "_")))
        pages = max(1, (len(rows) + WORK_PAGE - 1) // WORK_PAGE)
        title, empty = WORK_LISTS[name]
        shown = rows[(page_no - 1) * WORK_PAGE : page_no * WORK_PAGE]
        await audit(
            request,
            service,
            who,
            [r.customer_id for r in shown],
            action="console.work",
            lookup="list",
        )
        return page(
            request,
            "work.html",
            name=name,
            heading=title,
            empty=empty,
            rows=shown,
            total=len(rows),
            items=sum(len(r.items) for r in rows),
            page=page_no,
            pages=pages,
            due_within_hours=found.due_within_hours,
            freshness_html=freshness_html(service, freshness, request),
            title=title,
            q="",
        )

    @app.get("/console/customers/{key}", response_class=HTMLResponse, include_in_schema=False)
    async def customer_page(
        request: Request,
        who: AgentDep,
        key: str,
        *,
        page_no: Annotated[int, Query(alias="page", ge=1)] = 1,
        as_of: Annotated[str | None, Query(max_length=MAX_MOMENT_CHARS)] = None,
        known_at: Annotated[str | None, Query(max_length=MAX_MOMENT_CHARS)] = None,
    ) -> Response:
        service = svc()
        # A view back in time (?as_of= / ?known_at=): a banner says which, and it is not
        # kept live (the live stream shows today).
        cut: Cut | None = None
        for name, text in (("as_of", as_of), ("known_at", known_at)):
            if text is not None and cut is None:
                try:
                    at = parse_moment(text, now=service.clock(), name=name)
                except InvalidMoment as exc:
                    return page(
                        request,
                        "missing.html",
                        status=422,
                        freshness=None,
                        heading="Not a time to look back to",
                        message=str(exc),
                        title="Not a time",
                        q="",
                    )
                cut = Cut("as_of" if name == "as_of" else "known_at", at)
        cid, freshness = await service.settle_customer(key, None)
        view = None
        if cid is not None:
            found = cid
            view = await service.read(
                lambda s: build_customer_view(
                    s, found, rules=service.rules, now=service.clock(), page=page_no, cut=cut
                )
            )
        if view is None:
            return await no_such_customer(request, service, key, freshness)
        await audit(
            request,
            service,
            who,
            [view.customer_id, *view.linked_customer_ids],
            action="console.customer",
            lookup="id" if view.customer_id == key else "identity",
        )
        zone = zone_of(request, service.settings)
        live = f"/customers/{quote(view.customer_id, safe='')}/events?format=html&page={page_no}"
        return page(
            request,
            "customer.html",
            view=view,
            page=page_no,
            view_html=render_view(view, page=page_no, zone=zone),
            freshness_html=freshness_html(service, freshness),
            live_url="" if cut is not None else live,
            title=view.name or view.customer_id,
            q="",
        )

    @app.get(
        "/console/customers/{key}/lists/{name}",
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    async def customer_list_page(
        request: Request,
        reader: AgentDep,
        key: str,
        name: str,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
    ) -> Response:
        service = svc()
        if name not in LIST_TITLES:
            return page(
                request,
                "missing.html",
                status=404,
                freshness=None,
                heading="No such list",
                message=f"A customer's lists are: {', '.join(LIST_TITLES)}.",
                freshness_html="",
                title="No such list",
                q="",
            )
        cid, freshness = await service.settle_customer(key, None)
        found: ListPage | None = None
        view = None
        bad_cursor = False
        if cid is not None:
            who = cid
            try:
                found = await service.read(lambda s: _list_page(s, service, who, name, cursor))
            except BadCursor:
                bad_cursor = True
            view = await service.read(
                lambda s: build_customer_view(s, who, rules=service.rules, now=service.clock())
            )
        if view is None or (found is None and not bad_cursor):
            return await no_such_customer(request, service, key, freshness)
        await audit(
            request,
            service,
            reader,
            [view.customer_id, *view.linked_customer_ids],
            action="console.list",
            lookup="id" if view.customer_id == key else "identity",
        )
        return page(
            request,
            "list.html",
            status=400 if bad_cursor else 200,
            view=view,
            name=name,
            heading=LIST_TITLES[name],
            found=found,
            cursor=cursor,
            freshness_html=freshness_html(service, freshness, request),
            title=f"{LIST_TITLES[name]} · {view.name or view.customer_id}",
            q="",
        )

    @app.get("/console/time-zone", include_in_schema=False, dependencies=agent)
    async def set_time_zone(
        request: Request,
        tz: Annotated[str, Query(max_length=200)],
        back: Annotated[str, Query(max_length=2000)] = "/",
    ) -> Response:
        target = _local(back)
        zone = _zone(tz.strip())
        if zone is None:
            return page(
                request,
                "missing.html",
                status=422,
                freshness=None,
                heading="Unknown time zone",
                message=f"“{tz}” is not a time zone: pick one from the list in the bar "
                "above (an IANA name such as Europe/Oslo).",
                freshness_html="",
                title="Unknown time zone",
                q="",
            )
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            ZONE_COOKIE, str(zone.key), max_age=400 * 86400, samesite="lax", httponly=False
        )
        return response

    metrics_cache = MetricsCache()
    app.state.metrics_cache = metrics_cache  # tests shorten its wait

    analyst = [Depends(require("analyst"))]

    @app.get("/console/report.css", include_in_schema=False, dependencies=analyst)
    async def report_stylesheet() -> Response:
        from journey.report import report_css

        return Response(
            report_css(), media_type="text/css", headers={"Cache-Control": "max-age=300"}
        )

    @app.get(
        "/console/metrics",
        response_class=HTMLResponse,
        include_in_schema=False,
        dependencies=analyst,
    )
    async def metrics_page(
        request: Request,
        since: Annotated[str | None, Query(max_length=40)] = None,
        until: Annotated[str | None, Query(max_length=40)] = None,
        weeks: Annotated[int | None, Query(ge=1, le=MAX_WEEKS)] = None,
    ) -> Response:
        service = svc()
        today = datetime.now(UTC).date()
        period = metrics_period(today, since, until, weeks)
        context: dict[str, Any] = {
            "presets": PRESETS,
            "chosen_weeks": weeks if since is None and until is None else None,
            "freshness_html": "",
            "title": "Service metrics",
            "q": "",
        }
        if isinstance(period, str):
            start = today - timedelta(weeks=DEFAULT_WEEKS) + timedelta(days=1)
            return page(
                request,
                "metrics.html",
                status=422,
                problem=period,
                since_day=since or start.isoformat(),
                until_day=until or today.isoformat(),
                **context,
            )
        first, last = period
        chosen: dict[str, Any] = {
            "since_day": first.date().isoformat(),
            "until_day": (last - timedelta(days=1)).date().isoformat(),
        }
        try:
            found = await metrics_cache.get(service, first, last)
        except MetricsBusy as exc:
            return page(request, "metrics.html", status=503, problem=str(exc), **chosen, **context)
        if found is None:  # still reading: the page reloads itself until it is there
            return page(
                request, "metrics.html", status=202, problem=None, pending=True, **chosen, **context
            )
        zone = zone_of(request, service.settings)
        return page(
            request,
            "metrics.html",
            problem=None,
            sections=found.sections,
            touchpoints=found.touchpoints,
            read_at=found.read_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
            **chosen,
            **context,
        )

    @app.get("/console/sign-in", response_class=HTMLResponse, include_in_schema=False)
    async def sign_in_page(request: Request) -> Response:
        html = _ENV.get_template("signin.html").render(
            title="Sign in", signed_in=principal_of(request.scope)
        )
        return HTMLResponse(html)

    @app.post("/console/sign-in", include_in_schema=False)
    async def sign_in(request: Request, body: SignIn) -> Response:
        service = svc()
        opened = await anyio.to_thread.run_sync(service.keys.open_session, body.key.strip())
        if opened is None:
            raise ServiceError(
                401, "unauthenticated", "unknown or revoked key: ask an admin for a valid one"
            )
        who, session = opened
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:  # one browser, one session: the one it had ends here
            await anyio.to_thread.run_sync(service.keys.close_session, previous)
        response = JSONResponse({"next": _local(body.next), "name": who.name, "role": who.role})
        response.headers["set-cookie"] = session_cookie(
            request.scope, session, max_age=int(SESSION_TTL.total_seconds())
        )
        return response

    @app.post("/console/sign-out", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            await anyio.to_thread.run_sync(svc().keys.close_session, session)
        response = JSONResponse({"next": "/console/sign-in"})
        response.headers["set-cookie"] = session_cookie(request.scope, "", max_age=0)
        return response

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon(_: Request) -> Response:
        return Response(status_code=204)
