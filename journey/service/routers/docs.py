"""The API's own documentation, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), working
offline: their scripts and styles are served by this app from the fastapi-offline package
(FastAPI's defaults load them from a CDN, so the pages were blank without internet). A
Content-Security-Policy keeps both pages on this origin: ReDoc's footer asks a CDN for its
logo, which the browser now refuses before it leaves the machine (ReDoc then leaves it out).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "register_docs"]

ASSETS_URL = "/static-docs"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"
_ONLY_HERE = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; font-src 'self' data:"
)


def register_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc (the app must be created with ``docs_url=None`` and
    ``redoc_url=None``, so FastAPI's CDN pages are not registered)."""
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS), name="static-docs")
    router = APIRouter(include_in_schema=False)
    openapi_url = app.openapi_url or "/openapi.json"

    @router.get("/docs")
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        page.headers["Content-Security-Policy"] = _ONLY_HERE
        return page

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} — ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = _ONLY_HERE
        return page

    app.include_router(router)
