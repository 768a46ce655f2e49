"""Error answers: one JSON shape (``ErrorOut``) for every failure, and the handlers that turn
exceptions into it.

* ``ServiceError`` — what a route raises for an answer it decides (404 unknown_customer,
  409 conflicting_duplicate, 413 too_large, 422 invalid_body, ...).
* ``BadToken`` → 400 bad_token; a request FastAPI cannot validate → 422 invalid_request,
  naming the field.
* ``NotFresh`` → 503 not_fresh with the lag (and, when the pipeline is stopped, why).
* The log not answering → 503 log_unavailable; a read that meets a damaged store → 503
  store_corrupt; a store whose database or disk is away → 503 store_unavailable (PostgreSQL
  unreachable: at once, saying that nothing can be shown as fresh); anything else → 500
  internal, logged.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from consumers.log import LogError
from consumers.supervisor import classify_failure
from journey.service.freshness import BadToken
from journey.service.headers import security_headers
from journey.service.models import Answer, ErrorBody, ErrorOut, NotFreshOut
from journey.service.runtime import AuditUnavailable, LogUnavailable, NotFresh, Service
from projections.customer_view import Lookup
from projections.integrity import StoreError
from projections.location import StoreUnreachable, is_unreachable

__all__ = [
    "CUSTOMER_ERRORS",
    "E404",
    "READ_ERRORS",
    "ChooseOne",
    "ServiceError",
    "error_response",
    "install_error_handlers",
]

logger = structlog.get_logger(__name__)

_STORE_AWAY = frozenset({"store_io", "store_full", "store_locked"})


class ServiceError(Exception):
    """An error answer: status, machine-readable code and a message saying what to do."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.body = ErrorBody(
            status=status, code=code, message=message, field=field, line=line, key=key
        )


class ChooseOne(Exception):
    """The key names no one customer for sure (only unverified claims, or verified owners who
    are not one person): 300 Multiple Choices with the candidates, never someone's view."""

    def __init__(self, response: Response) -> None:
        super().__init__("several candidates")
        self.response = response


def error_response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> Response:
    return Response(
        ErrorOut(error=body).model_dump_json(exclude_none=True),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


# How the read routes document their errors in the OpenAPI document.
E400 = {"model": ErrorOut, "description": "Malformed or unusable position token"}
E404 = {"model": ErrorOut, "description": "Unknown customer (or case, defect): names the key"}
E422 = {"model": ErrorOut, "description": "Invalid parameter or body: names the field"}
E503 = {
    "model": NotFreshOut,
    "description": "The view did not reach the requested position (or the log head) within "
    "the bound: the lag, instead of stale data. Retry, or pass stale=true.",
}
E300 = {
    "model": Answer[Lookup],
    "description": "The key is an identity only claimed (a web form, an unverified "
    "IdentityLinked), or held verified by customers who are not one person: the candidates "
    "(`data.candidates`), never anyone's view. Ask by a customer id.",
}
E401 = {"model": ErrorOut, "description": "No valid key: send Authorization: Bearer <key>"}
E403 = {"model": ErrorOut, "description": "The key's role may not read this (agent or admin)"}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    400: E400,
    401: E401,
    403: E403,
    422: E422,
    503: E503,
}
CUSTOMER_ERRORS: dict[int | str, dict[str, Any]] = {**READ_ERRORS, 404: E404, 300: E300}


def _service(request: Request) -> Service | None:
    service: Service | None = getattr(request.app.state, "service", None)
    return service


async def _on_service_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(exc.body.status, exc.body)


async def _on_bad_token(_: Request, exc: Exception) -> Response:
    return error_response(400, ErrorBody(status=400, code="bad_token", message=str(exc)))


async def _on_not_fresh(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotFresh)
    message = str(exc)
    service = _service(request)
    stuck = service.pipeline_problem() if service is not None else None
    if stuck:
        message += f". The pipeline is stopped at its last committed position: {stuck}"
    body = NotFreshOut(
        **exc.freshness.model_dump(),
        error=ErrorBody(status=503, code="not_fresh", message=message),
    )
    return Response(
        body.model_dump_json(),
        status_code=503,
        media_type="application/json",
        headers={
            "Retry-After": "1",
            "X-Journey-Fresh": "false",
            "X-Journey-As-Of": exc.freshness.as_of_token,
        },
    )


async def _on_log_error(_: Request, exc: Exception) -> Response:
    message = f"the log did not answer, so freshness cannot be established: {exc}"
    return error_response(
        503,
        ErrorBody(status=503, code="log_unavailable", message=message),
        {"Retry-After": "2"},
    )


async def _on_audit_unavailable(_: Request, exc: Exception) -> Response:
    return error_response(
        503,
        ErrorBody(status=503, code="audit_unavailable", message=str(exc)),
        {"Retry-After": "2"},
    )


async def _on_invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header", "body")]
    field = ".".join(loc) or None
    extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = f"{field or 'request'}: {first.get('msg', 'invalid')}{extra}"
    return error_response(
        422, ErrorBody(status=422, code="invalid_request", message=message, field=field)
    )


async def _on_http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else "http_error"
    return error_response(
        exc.status_code,
        ErrorBody(status=exc.status_code, code=code, message=str(exc.detail)),
        dict(exc.headers or {}),
    )


async def _on_store_error(request: Request, exc: Exception) -> Response:
    """The store cannot answer (damaged, or refused at open): 503 with the remedy, never a
    500, and the service's health says so too."""
    service = _service(request)
    damaged = service is not None and service.integrity.saw(exc)
    problem = (service.integrity.problem if damaged and service else None) or str(exc)
    logger.error("the store cannot answer", path=request.url.path, error=problem)
    return error_response(
        503,
        ErrorBody(status=503, code="store_corrupt" if damaged else "store_error", message=problem),
        {"Retry-After": "60"},
    )


async def _on_bug(request: Request, exc: Exception) -> Response:
    # Starlette calls this handler from its outermost middleware, outside the guard: the
    # guard's headers (CSP, nosniff, no-store...) are added here.
    secured = security_headers(no_store=True)
    service = _service(request)
    if service is not None and service.integrity.saw(exc):
        problem = service.integrity.problem or str(exc)
        logger.error("the store is damaged", path=request.url.path, error=problem)
        return error_response(
            503,
            ErrorBody(status=503, code="store_corrupt", message=problem),
            {**secured, "Retry-After": "60"},
        )
    if is_unreachable(exc):
        # PostgreSQL away: answered at once while it is (projections.location.Reachability).
        logger.error("the store is unreachable", path=request.url.path, error=str(exc))
        return error_response(
            503,
            ErrorBody(status=503, code="store_unavailable", message=unreachable_message(exc)),
            {**secured, "Retry-After": "2"},
        )
    if classify_failure(exc) in _STORE_AWAY:
        # The database or disk is away (transient): say so and when to retry, as health
        # does, never "a bug".
        logger.error("the store cannot answer for now", path=request.url.path, error=str(exc))
        return error_response(
            503,
            ErrorBody(
                status=503,
                code="store_unavailable",
                message=f"the store cannot answer for now ({type(exc).__name__}: {exc}); "
                "retry in a few seconds",
            ),
            {**secured, "Retry-After": "5"},
        )
    logger.exception("unhandled error", path=request.url.path)
    return error_response(
        500,
        ErrorBody(
            status=500,
            code="internal",
            message=f"internal error ({type(exc).__name__}); this is a bug, please report it",
        ),
        secured,
    )


def unreachable_message(exc: BaseException) -> str:
    """One line for an agent: the store cannot be reached, so nothing can be shown as fresh."""
    found, seen = exc, {id(exc)}
    while not isinstance(found, StoreUnreachable):
        nearer = found.__cause__ if found.__cause__ is not found else found.__context__
        if nearer is None or id(nearer) in seen:
            break
        found = nearer
        seen.add(id(found))
    said = str(found).strip()
    why = (
        said
        if isinstance(found, StoreUnreachable)
        else (f"{type(found).__name__}: {said.splitlines()[0] if said else 'no answer'}")
    )
    return (
        f"the store is unreachable ({why}), so no view can be shown as fresh; "
        "retry in a few seconds"
    )


async def _on_choose_one(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChooseOne)
    return exc.response


def install_error_handlers(app: FastAPI) -> None:
    """Every failure answers as ``ErrorOut`` (``NotFreshOut`` for not_fresh)."""
    app.add_exception_handler(ServiceError, _on_service_error)
    app.add_exception_handler(ChooseOne, _on_choose_one)
    app.add_exception_handler(BadToken, _on_bad_token)
    app.add_exception_handler(NotFresh, _on_not_fresh)
    app.add_exception_handler(AuditUnavailable, _on_audit_unavailable)
    app.add_exception_handler(LogUnavailable, _on_log_error)
    app.add_exception_handler(LogError, _on_log_error)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(StoreError, _on_store_error)
    app.add_exception_handler(Exception, _on_bug)
