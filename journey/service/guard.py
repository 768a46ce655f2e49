"""The query service's front door, one ASGI middleware in front of every route (pure ASGI:
live streams pass through unbuffered). In order:

1. **Host allow-list** (``JOURNEY_ALLOWED_HOSTS``, loopback by default): a request naming
   another host is refused (400) — a DNS-rebinding page cannot reach the service by a
   name of its own.
2. **Who is asking**: ``Authorization: Bearer <key>``, else the console's session cookie.
   Nothing is anonymous but ``/healthz``, ``/metrics`` from loopback, the console's static
   files and its sign-in page; anything else without a valid key is 401 (a browser's page
   navigation is sent to the sign-in page instead). What each role may do is decided by the
   routes (``deps.require``).
3. **Browser safety.** A console session (cookie) is used only by the console's own pages
   and by addresses a person opens: a request another page made (``Sec-Fetch-Site`` other
   than same-origin, unless it is a top-level navigation) is refused (403) — an ``<img>`` or
   ``<script>`` on another port of this machine would otherwise read a customer in the
   agent's name. For every request that changes state (any method but GET/HEAD):
   ``Content-Type`` must be ``application/json`` (or ``application/x-ndjson`` for bulk
   events) — the types a web page cannot send to another origin without a CORS preflight,
   which this service never grants — else 415; a request without a bearer key (a browser's)
   must carry an ``Origin`` equal to the service's own, else 403. A page on another port of
   the same machine is *same-site*, so SameSite=Strict alone would still send it the
   session cookie: the Origin check is what refuses it.
4. **Bodies**: over 1 MiB is 413 (``POST /events`` takes batches up to 8 MiB; each envelope
   in it is still at most 1 MiB), counted as the body arrives, not trusted from
   Content-Length alone.
5. **Headers on every answer**: a Content-Security-Policy that runs only this origin's
   script files (no inline script), ``frame-ancestors 'none'``, ``X-Content-Type-Options:
   nosniff``, ``Referrer-Policy: no-referrer``, and ``Cache-Control: no-store`` on what a
   key was needed for (personal data stays out of caches).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.errors import JourneyError
from journey.security.keys import KeyStore, Principal
from journey.service.errors import ServiceError
from journey.service.headers import CSP, security_headers
from projections.location import is_unreachable

__all__ = [
    "CSP",
    "MAX_BODY_BYTES",
    "SESSION_COOKIE",
    "Guard",
    "is_loopback",
    "principal_of",
]

logger = structlog.get_logger(__name__)

SESSION_COOKIE = "journey_session"
MAX_BODY_BYTES = 1024 * 1024
# POST /events: a batch of envelopes (each at most 1 MiB), bounded by the route as before.
_BODY_LIMITS = {"/events": 8 * 1024 * 1024}
_JSON_TYPES = frozenset({"application/json", "application/x-ndjson"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
SIGN_IN = "/console/sign-in"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def principal_of(scope: Scope) -> Principal | None:
    """Who the guard found asking (None on the anonymous routes)."""
    state: dict[str, Any] = scope.get("state") or {}
    who: Principal | None = state.get("principal")
    return who


def _public(path: str, scope: Scope) -> bool:
    if path in ("/healthz", SIGN_IN, "/favicon.ico") or path.startswith("/static/"):
        return True
    client = scope.get("client")
    return path == "/metrics" and is_loopback(client[0] if client else None)


def _host_name(host: str) -> str:
    """The name in a Host header, its port aside; the whole header when it is not
    ``name[:port]`` (so it matches no allowed name)."""
    if host.startswith("["):  # [::1]:8000
        name, _, rest = host[1:].partition("]")
        # "[::1]evil.example" is not ::1: only a port may follow the brackets.
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return host.lower()
        return name.lower()
    name, _, port = host.rpartition(":")
    return (name if name and port.isdigit() else host).lower()


class Guard:
    """See the module's docstring. ``keys`` gives the running service's key store."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: frozenset[str],
        keys: Callable[[], KeyStore | None],
    ) -> None:
        self.app = app
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        method: str = scope["method"]
        authenticated = False

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_security_headers(
                    list(message.get("headers", [])), no_store=authenticated
                )
            await send(message)

        host = headers.get("host", "")
        if "*" not in self.allowed_hosts and _host_name(host) not in self.allowed_hosts:
            await _refuse(
                secured,
                400,
                "bad_host",
                f"host {host[:100]!r} is not served here: use one of "
                f"{', '.join(sorted(self.allowed_hosts))} (JOURNEY_ALLOWED_HOSTS)",
            )
            return

        try:
            who = await self._who(headers)
        except JourneyError as exc:  # the key store did not answer (PostgreSQL down)
            logger.error("keys could not be checked", path=path, error=str(exc))
            # The keys live in the store's database: what is away is the store.
            message = (
                f"keys cannot be checked now ({exc}): retry shortly"
                if not is_unreachable(exc)
                else f"the store's database is unreachable ({exc}): keys cannot be checked "
                "and no view can be shown as fresh; retry in a few seconds"
            )
            await _refuse(secured, 503, "keys_unavailable", message, [(b"retry-after", b"2")])
            return
        public = _public(path, scope)
        if isinstance(who, str):  # a credential was sent and is not valid
            if not public:
                await self._unauthenticated(scope, secured, headers, who, clear=True)
                return
            who = None
        if who is None and not public:
            await self._unauthenticated(
                scope,
                secured,
                headers,
                "no key: send Authorization: Bearer <key> (an admin creates one with "
                "`journey keys create --role agent`)",
                clear=False,
            )
            return
        authenticated = who is not None
        if who is not None and who.via == "session" and _embedded_elsewhere(headers):
            logger.warning(
                "cross-site request with a console session refused",
                path=path,
                site=headers.get("sec-fetch-site"),
                dest=headers.get("sec-fetch-dest"),
                key=who.name,
            )
            await _refuse(
                secured,
                403,
                "cross_site",
                "another site's page may not use the console session: open the console "
                "itself (or send Authorization: Bearer <key>)",
            )
            return

        if method not in _SAFE_METHODS:
            problem = _unsafe_problem(scope, headers)
            if problem is not None:
                status, code, message = problem
                logger.warning(
                    "state-changing request refused",
                    path=path,
                    reason=code,
                    origin=headers.get("origin"),
                    key=who.name if who else None,
                )
                await _refuse(secured, status, code, message)
                return

        limit = _BODY_LIMITS.get(path, MAX_BODY_BYTES)
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            await _refuse(secured, 413, "too_large", _too_large(limit))
            return
        if method not in _SAFE_METHODS:
            # Read the body here, up to the bound: a route's own parsing would turn an
            # error raised while it reads into a 400, and chunked bodies declare no length.
            body = await _read_body(receive, limit)
            if body is None:
                await _refuse(secured, 413, "too_large", _too_large(limit))
                return
            receive = _replay(body, receive)
        scope.setdefault("state", {})["principal"] = who
        await self.app(scope, _counting(receive, limit), secured)

    async def _who(self, headers: Headers) -> Principal | str | None:
        """The principal; a reason (str) when a credential was sent but is not valid; None
        when none was sent."""
        keys = self.keys()
        authorization = headers.get("authorization")
        session = _cookie(headers, SESSION_COOKIE)
        if authorization is None and session is None:
            return None
        if keys is None:  # starting or stopping
            return "the service is not ready to check keys: retry"
        if authorization is not None:
            scheme, _, secret = authorization.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                return "Authorization must be 'Bearer <key>'"
            found = await anyio.to_thread.run_sync(keys.authenticate, secret.strip())
            return found or "unknown or revoked key: ask an admin for a valid one"
        assert session is not None
        found = await anyio.to_thread.run_sync(keys.session, session)
        return found or "the console session ended (signed out, expired or key revoked): sign in"

    async def _unauthenticated(
        self, scope: Scope, send: Send, headers: Headers, message: str, *, clear: bool
    ) -> None:
        path: str = scope["path"]
        if (
            scope["method"] in _SAFE_METHODS
            and "text/html" in headers.get("accept", "")
            and not path.startswith("/static")
        ):
            # A person's browser: to the sign-in page, then back here.
            back = path + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
            extra = [(b"location", f"{SIGN_IN}?next={quote(back, safe='')}".encode())]
            if clear:
                extra.append((b"set-cookie", _clear_cookie(scope)))
            await send({"type": "http.response.start", "status": 303, "headers": extra})
            await send({"type": "http.response.body", "body": b""})
            return
        extra = [(b"www-authenticate", b'Bearer realm="journey"')]
        if clear and _cookie(headers, SESSION_COOKIE) is not None:
            extra.append((b"set-cookie", _clear_cookie(scope)))
        await _refuse(send, 401, "unauthenticated", message, extra)


def _embedded_elsewhere(headers: Headers) -> bool:
    """A request another page made (an image, script, frame, fetch, EventSource), not the
    console's own page or a person opening an address. The browser says so in its
    ``Sec-Fetch-*`` headers, which a page cannot set. A page on another port of this machine
    is same-site, so the SameSite=Strict cookie goes with such requests: each would read a
    customer in the agent's name (an audit record the agent never caused)."""
    site = headers.get("sec-fetch-site")
    if site is None or site in ("same-origin", "none"):
        return False
    navigation = headers.get("sec-fetch-mode") == "navigate"
    return not (navigation and headers.get("sec-fetch-dest") == "document")


def _unsafe_problem(scope: Scope, headers: Headers) -> tuple[int, str, str] | None:
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _JSON_TYPES:
        return (
            415,
            "unsupported_media_type",
            f"Content-Type {media or '(none)'!r} is not accepted for {scope['method']}: send "
            "application/json (or application/x-ndjson to POST /events)",
        )
    origin = headers.get("origin")
    own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
    if origin is not None and origin != own:
        return 403, "cross_origin", f"Origin {origin[:100]!r} may not change anything here"
    if origin is None and headers.get("authorization") is None:
        # A browser (cookie session) always names the Origin of a POST; without it, or
        # a bearer key, the request cannot be told apart from a forged one.
        return (
            403,
            "cross_origin",
            "a request that changes state needs Authorization: Bearer <key>, or (from the "
            "console) an Origin header naming this service",
        )
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is larger than ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(parts)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then: disconnects, as the server reports them

    return replayed


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ServiceError(413, "too_large", _too_large(limit))
        return message

    return counted


def _too_large(limit: int) -> str:
    return f"body larger than {limit // (1024 * 1024)} MiB: split the batch or the request"


def _cookie(headers: Headers, name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed cookie header is no session
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _clear_cookie(scope: Scope) -> bytes:
    return session_cookie(scope, "", max_age=0).encode()


def session_cookie(scope: Scope, value: str, *, max_age: int) -> str:
    """The Set-Cookie value of the console session: HttpOnly, SameSite=Strict, and Secure
    when served over TLS."""
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    return f"{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"


def _with_security_headers(
    headers: list[tuple[bytes, bytes]], *, no_store: bool
) -> list[tuple[bytes, bytes]]:
    names = {name.lower() for name, _ in headers}
    out = []
    for name, value in headers:
        if name.lower() == b"content-security-policy" and b"frame-ancestors" not in value:
            out.append((name, value + b"; frame-ancestors 'none'"))  # the API docs' own
        else:
            out.append((name, value))
    defaults = [(n.encode(), v.encode()) for n, v in security_headers(no_store=no_store).items()]
    out.extend((n, v) for n, v in defaults if n not in names)
    return out


async def _refuse(
    send: Send,
    status: int,
    code: str,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(
        {"error": {"status": status, "code": code, "message": message}}, separators=(",", ":")
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
