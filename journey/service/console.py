"""The agent console: server-rendered HTML (Jinja2, autoescaped) and a little JavaScript.

``/`` searches (name, e-mail, phone, serial, order, id) and lists the work that waits;
``/console/customers/{key}`` shows one customer's view and keeps it live over SSE
(``/customers/{id}/events?format=html`` pushes the re-rendered fragment). Freshness is on
screen at all times: the console shows a view that could not catch up in time — it is all an
agent has — but marks it STALE with the lag, never as fresh.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from journey.render import human_duration
from journey.service.freshness import Freshness
from journey.service.queries import search_customers
from journey.service.runtime import Service
from projections.customer_view import CustomerView, DeadlineOut, build_customer_view
from projections.service_levels import build_service_levels

__all__ = ["register_console", "render_freshness", "render_view"]

_HERE = Path(__file__).parent


def _when(at: datetime | None) -> str:
    if at is None:
        return "—"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _deadline_text(d: DeadlineOut | None) -> str:
    if d is None:
        return "—"
    label = d.kind.replace("_", " ")
    if d.state == "breached":
        return f"{label} was due {_when(d.due_at)}, {human_duration(-d.remaining_seconds)} ago"
    prefix = "Soon — " if d.state == "warning" else ""
    return f"{prefix}{label}: due in {human_duration(d.remaining_seconds)} ({_when(d.due_at)})"


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


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["duration"] = human_duration
    env.filters["deadline"] = _deadline_text
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.filters["text_start"] = _text_start
    env.tests["folded"] = _folds
    return env


_ENV = _env()


def render_view(view: CustomerView, *, page: int = 1) -> str:
    """The customer view fragment (what SSE pushes and the page embeds)."""
    return _ENV.get_template("_view.html").render(view=view, page=page)


def render_freshness(freshness: Freshness) -> str:
    return _ENV.get_template("_freshness.html").render(f=freshness)


def register_console(app: FastAPI, svc: Callable[[], Service]) -> None:
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(
        q: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        service = svc()
        freshness = await service.settle(None, service.all_partitions())
        query = (q or "").strip()
        hits = await service.read(lambda s: search_customers(s, query)) if query else []
        if query:
            exact = [
                h
                for h in hits
                if h.customer_id == query or h.matched_value.lower() == query.lower()
            ]
            if len({h.customer_id for h in exact}) == 1:
                target = quote(exact[0].customer_id, safe="")
                return RedirectResponse(f"/console/customers/{target}", status_code=303)
        levels = await service.read(
            lambda s: build_service_levels(s, rules=service.rules, now=service.clock())
        )
        html = _ENV.get_template("index.html").render(
            q=query,
            hits=hits,
            levels=levels,
            freshness_html=render_freshness(freshness),
            title="Find a customer" if not query else f"Search: {query}",
        )
        return HTMLResponse(html)

    @app.get("/console/customers/{key}", response_class=HTMLResponse, include_in_schema=False)
    async def customer_page(
        key: str,
        page: Annotated[int, Query(ge=1)] = 1,
    ) -> Response:
        service = svc()
        cid, freshness = await service.settle_customer(key, None)
        view = None
        if cid is not None:
            found = cid
            view = await service.read(
                lambda s: build_customer_view(
                    s, found, rules=service.rules, now=service.clock(), page=page
                )
            )
        if view is None:
            html = _ENV.get_template("missing.html").render(
                key=key,
                freshness=freshness,
                freshness_html=render_freshness(freshness),
                title="No such customer",
                q=key,
            )
            return HTMLResponse(html, status_code=404 if freshness.fresh else 503)
        html = _ENV.get_template("customer.html").render(
            view=view,
            page=page,
            view_html=render_view(view, page=page),
            freshness_html=render_freshness(freshness),
            live_url=f"/customers/{quote(view.customer_id, safe='')}/events?format=html"
            f"&page={page}",
            title=view.name or view.customer_id,
            q="",
        )
        return HTMLResponse(html)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon(_: Request) -> Response:
        return Response(status_code=204)
