"""The agents' query service: :func:`create_app`, the one entry point. It wires the routers
(``journey.service.routers``), the console, the error handlers (``errors.py``), the request
metrics and the lifespan that opens and closes the running :class:`Service`; the routes
themselves and what they share (``deps.py``) live elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI

from consumers.log import Log
from domain.rules import ServiceRules
from journey.pipeline import system_clock
from journey.service.errors import install_error_handlers
from journey.service.guard import Guard
from journey.service.metrics import RequestMetrics, ServiceMetrics
from journey.service.routers import (
    audit,
    customers,
    defects,
    events,
    health,
    identities,
    live,
    service_levels,
)
from journey.service.routers.docs import register_docs
from journey.service.runtime import Service, ServiceOptions
from journey.settings import Settings

__all__ = ["create_app"]


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
    running: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = Service(settings, opts, rules=the_rules, clock=clock, log=log)
        await svc.start()
        running["svc"] = svc
        app.state.service = svc
        try:
            yield
        finally:
            await svc.close()
            running.pop("svc", None)

    def metrics() -> ServiceMetrics | None:
        svc = running.get("svc")
        return svc.metrics if svc is not None else None

    app = FastAPI(
        title="journey — agents' query service",
        version="1",
        summary="Customer views, service levels and defect outreach, fresh to the last event "
        "or saying how far behind they are.",
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by routers.docs
        redoc_url=None,
    )
    register_docs(app)
    app.add_middleware(
        Guard,
        allowed_hosts=settings.hosts,
        keys=lambda: svc.keys if (svc := running.get("svc")) is not None else None,
    )
    app.add_middleware(RequestMetrics, metrics=metrics)
    install_error_handlers(app)
    for router in (customers, service_levels, defects, events, health, audit, identities):
        app.include_router(router.router)
    if console:
        from journey.service.console import register_console

        register_console(app, lambda: running["svc"])
    app.include_router(live.router)
    return app


_DESCRIPTION = """
Agents' view of every customer, fresh to the last event — or saying how far behind it is.

**Freshness.** Every answer carries `as_of` (the positions the view had folded), `lag`
(events and seconds behind) and `fresh`. Pass the token `POST /events` (or any emitter)
returned as `?after=` or `X-Journey-Position` to read your own writes. Without a token the
service reads the log's high-water mark at request time and waits until the view has caught
up. Waits are bounded (`--max-wait-ms`, default 2000); at the bound the answer is
**503 with the lag** (`Retry-After: 1`), or — only with `stale=true` — 200 with
`fresh: false`.

**Keys and roles.** Every request but `/healthz` (and `/metrics` from loopback) carries
`Authorization: Bearer <key>` (`journey keys create --role agent|service|analyst|admin`):
401 without a valid key, 403 when its role may not do what was asked. `service` emits,
`agent` reads customers, lists and the console, `analyst` reads metrics and exports, `admin`
may do everything (erasure, the audit trail). Every read of a customer is recorded on the
audit topic (`GET /audit`). Requests that change state take only `application/json`
(or `application/x-ndjson`).

The agent console is at [/](/).
"""
