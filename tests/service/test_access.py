"""Issue 12, items 1-3: no one reads or changes what they should not. One test per attack the
issue names — no key, a wrong role, a revoked key, a cross-origin form or text/plain POST, a
foreign Host, a key kept in clear — and the audit trail of every read of a customer.

Before: every request below was answered 200/201 (the service had no keys at all), a
text/plain or form POST from any page was accepted, and any Host was served."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi.routing import APIRoute

from consumers.kafka_log import KafkaLog
from consumers.rebuild import rebuild
from journey.security.audit import AuditTrail, read_audit
from journey.security.keys import KEY_PREFIX, digest, keys_address
from journey.service.guard import SESSION_COOKIE
from projections.location import active_store
from tests.service.helpers import TOPIC, Running, envelope

JOURNEY = str(Path(sys.executable).with_name("journey"))
JSON = {"content-type": "application/json"}

# What a key is needed for, and which role may do it (admin may do everything).
READS = [
    "/customers/cust-sven",
    "/customers/cust-sven/timeline",
    "/customers/cust-sven/cases",
    "/search?q=sven",
    "/service-levels",
    "/service-levels/counts",
    "/defects",
    "/",
    "/console/customers/cust-sven",
    "/console/work/breached",
]
# Routes anyone may call (the guard's public list, and /docs for any valid key).
NO_ROLE = {
    "/healthz",
    "/console/sign-in",
    "/console/sign-out",
    "/favicon.ico",
    "/docs",
    "/redoc",
    "/openapi.json",
}


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert "\n" not in response.text  # one line
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    return body


def _roles(call: Any) -> set[str]:
    found = set()
    role = getattr(call, "required_role", None)
    if role:
        found.add(role)
    return found


def _declared(dependant: Any) -> set[str]:
    roles = _roles(dependant.call)
    for sub in dependant.dependencies:
        roles |= _declared(sub)
    return roles


def _routes(app: Any) -> dict[str, Any]:
    """Every API route's path and dependant, also those of included routers (which this
    FastAPI keeps as route contexts)."""
    found: dict[str, Any] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            found[route.path] = route.dependant
        elif hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                found[context.path] = context.dependant
    return found


def test_every_route_declares_the_role_it_needs(svc: Running) -> None:
    routes = _routes(svc.server.app)
    assert {"/customers/{key}", "/events", "/audit", "/metrics", "/"} <= set(routes)
    undeclared = [p for p, d in routes.items() if p not in NO_ROLE and not _declared(d)]
    assert not undeclared, f"routes without require(role): {undeclared}"


def test_without_a_key_only_healthz_answers(svc: Running) -> None:
    anonymous = svc.anonymous
    assert anonymous.get("/healthz").status_code == 200
    for url in [*READS, "/audit", "/docs", "/openapi.json", "/customers/cust-sven/events"]:
        error = _error(anonymous.get(url), 401, "unauthenticated")
        assert "Authorization: Bearer" in error["message"], url
    posted = anonymous.post("/events", json=envelope("cust-anon", "hello"))
    _error(posted, 401, "unauthenticated")
    assert posted.headers["www-authenticate"].startswith("Bearer")
    # A person's browser is sent to the sign-in page, and back afterwards.
    page = anonymous.get("/console/customers/cust-sven", headers={"accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fcustomers%2Fcust-sven"
    # A made-up key is no key.
    forged = httpx.get(
        f"{svc.server.url}/customers/cust-sven",
        headers={"Authorization": f"Bearer {KEY_PREFIX}{'A' * 43}"},
    )
    _error(forged, 401, "unauthenticated")


def test_metrics_are_anonymous_only_from_loopback(svc: Running) -> None:
    # This client is on loopback; from elsewhere the route needs an analyst key (declared).
    assert svc.anonymous.get("/metrics").status_code == 200
    assert _declared(_routes(svc.server.app)["/metrics"]) == {"analyst"}


def test_each_role_does_only_its_own_work(svc: Running) -> None:
    service, agent, analyst = svc.client("service"), svc.client("agent"), svc.client("analyst")
    for url in READS:
        assert agent.get(url).status_code == 200, url
        body = _error(service.get(url), 403, "forbidden")
        assert "has role service; this needs agent" in body["message"]
        _error(analyst.get(url), 403, "forbidden")
    _error(agent.post("/events", json=envelope("cust-roles", "hi")), 403, "forbidden")
    assert service.post("/events", json=envelope("cust-roles", "hi")).status_code == 201
    for client in (service, agent, analyst):
        _error(client.get("/audit"), 403, "forbidden")
    assert svc.http.get("/audit").status_code == 200  # admin


def test_only_an_admin_may_erase(svc: Running) -> None:
    erase = envelope("cust-sven", "") | {"type": "ErasureRequested", "data": {}}
    before = svc.log.high_watermarks(TOPIC)
    body = _error(svc.client("service").post("/events", json=erase), 403, "forbidden")
    assert "only an admin key may send ErasureRequested" in body["message"]
    assert svc.log.high_watermarks(TOPIC) == before
    assert svc.http.post("/events", json=erase).status_code == 201  # admin


def test_a_revoked_key_is_refused_at_once(svc: Running) -> None:
    client = svc.client("agent", name="leaver")
    assert client.get("/customers/cust-sven").status_code == 200
    revoked = svc.service.keys.revoke("leaver")
    assert revoked.revoked_at is not None
    _error(client.get("/customers/cust-sven"), 401, "unauthenticated")


def test_keys_are_never_stored_in_clear(svc: Running) -> None:
    secret = svc.new_key("agent", "grep-me")
    assert svc.anonymous.get("/healthz").status_code == 200
    store_dir = svc.service.reader.path.parent  # type: ignore[union-attr]
    files = [p for p in store_dir.iterdir() if p.is_file()]
    assert any(p.name.endswith(".keys") for p in files)
    kept = b"".join(p.read_bytes() for p in files)
    assert secret.encode() not in kept  # not in the keys file, its WAL, the store or the log
    assert secret[len(KEY_PREFIX) :].encode() not in kept
    assert digest(secret) in kept  # only its hash


def test_keys_survive_a_rebuild(svc: Running) -> None:
    key = svc.new_key("agent", "survivor")
    base = Path(str(svc.service.settings.store_address()))
    before = active_store(base)
    rebuild(svc.log, base, topic=TOPIC, dlq_topic=f"{TOPIC}.dlq")
    assert active_store(base) != before  # a new store is serving
    assert keys_address(base).exists()  # type: ignore[union-attr]  # beside, not in, the store
    agent = httpx.Client(base_url=svc.server.url, headers={"Authorization": f"Bearer {key}"})
    with agent:
        assert agent.get("/customers/cust-sven").status_code == 200


# ---------------------------------------------------------------------- the browser's door


def _session(svc: Running, role: str) -> httpx.Client:
    """A browser-like client signed in on the console (cookie, no Authorization)."""
    key = svc.new_key(role)
    client = httpx.Client(base_url=svc.server.url)
    signed = client.post("/console/sign-in", json={"key": key}, headers={"Origin": svc.server.url})
    assert signed.status_code == 200, signed.text
    return client


def test_signing_in_sets_an_httponly_strict_cookie_and_signing_out_ends_it(svc: Running) -> None:
    key = svc.new_key("agent", "ada")
    with httpx.Client(base_url=svc.server.url) as browser:
        wrong = browser.post(
            "/console/sign-in", json={"key": KEY_PREFIX + "x"}, headers={"Origin": svc.server.url}
        )
        _error(wrong, 401, "unauthenticated")
        signed = browser.post(
            "/console/sign-in",
            json={"key": key, "next": "//evil.example/"},
            headers={"Origin": svc.server.url},
        )
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=js_")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP here; Secure when served over TLS
        assert key not in cookie  # the session is not the key
        assert signed.json()["next"] == "/"  # never an open redirect
        page = browser.get("/console/customers/cust-sven")
        assert page.status_code == 200 and "ada" in page.text
        out = browser.post("/console/sign-out", json={}, headers={"Origin": svc.server.url})
        assert out.status_code == 200
        browser.cookies.clear()
        browser.cookies.set(SESSION_COOKIE, cookie.split(";")[0].partition("=")[2])
        _error(browser.get("/customers/cust-sven"), 401, "unauthenticated")


def test_a_cross_origin_post_is_refused_whatever_its_content_type(svc: Running) -> None:
    admin = _session(svc, "admin")  # the worst case: an admin signed in on the console
    erase = json.dumps(envelope("cust-sven", "") | {"type": "ErasureRequested", "data": {}})
    before = svc.log.high_watermarks(TOPIC)
    evil = {"Origin": "http://127.0.0.1:9"}  # another port of this machine: same-site
    try:
        # What a page may send anywhere without a CORS preflight:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {**evil, **({"content-type": content_type} if content_type else {})}
            posted = admin.post("/events", content=erase, headers=headers)
            _error(posted, 415, "unsupported_media_type")
        # JSON needs a preflight (never granted); sent anyway, the Origin gives it away.
        _error(admin.post("/events", content=erase, headers={**JSON, **evil}), 403, "cross_origin")
        _error(admin.post("/events", content=erase, headers=JSON), 403, "cross_origin")
        assert svc.log.high_watermarks(TOPIC) == before, "nothing emitted, nothing erased"
        # From the console itself (same Origin), the same session may.
        own = admin.post("/events", content=erase, headers={**JSON, "Origin": svc.server.url})
        assert own.status_code == 201, own.text
    finally:
        admin.close()


def test_a_foreign_host_is_refused(svc: Running) -> None:
    for url in ("/healthz", "/customers/cust-sven"):
        refused = svc.http.get(url, headers={"Host": "evil.example:8000"})
        assert "evil.example" in _error(refused, 400, "bad_host")["message"]
    for host in ("localhost:1234", "127.0.0.1", "[::1]:8000"):
        assert svc.http.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_bodies_over_1_mib_are_413_even_without_a_length(svc: Running) -> None:
    big = b'{"key": "' + b"x" * (1024 * 1024) + b'"}'
    origin = {**JSON, "Origin": svc.server.url}
    declared = svc.http.post("/console/sign-in", content=big, headers=origin)
    _error(declared, 413, "too_large")

    def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 65536

    streamed = svc.http.post("/console/sign-in", content=chunks(), headers=origin)
    _error(streamed, 413, "too_large")


def test_every_answer_carries_the_security_headers_and_no_inline_script(svc: Running) -> None:
    for url in ("/", "/console/customers/cust-sven", "/customers/cust-sven", "/console/sign-in"):
        response = svc.http.get(url)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, url
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        if "html" in response.headers["content-type"]:
            assert not re.search(r"<script(?![^>]*\bsrc=)", response.text), url
            assert not re.search(r"\son[a-z]+\s*=", response.text), url
    assert svc.http.get("/customers/cust-sven").headers["cache-control"] == "no-store"
    docs = svc.http.get("/docs").headers["content-security-policy"]
    assert "frame-ancestors 'none'" in docs


# ---------------------------------------------------------------------- the audit trail


def test_every_read_of_a_customer_is_audited_and_an_admin_can_query_it(svc: Running) -> None:
    agent = svc.client("agent", name="agent-ann")
    assert agent.get("/customers/sven.berg@example.se").status_code == 200
    assert agent.get("/customers/cust-sven/timeline").status_code == 200
    assert agent.get("/console/customers/cust-erik").status_code == 200
    assert agent.get("/search", params={"q": "sven"}).status_code == 200
    found = svc.http.get("/audit", params={"key": "agent-ann"}).json()
    every = [(r["customer_id"], r["action"], r["lookup"], r["route"]) for r in found["records"]]
    # Sven's view shows the customer merged with him (keyed by his phone): read too.
    assert ("+46 70 123 45 67", "view", "identity", "/customers/{key}") in every
    seen = [r for r in every if r[0].startswith("cust-")]
    assert seen[:3] == [
        ("cust-sven", "view", "identity", "/customers/{key}"),
        ("cust-sven", "timeline", "id", "/customers/{key}/timeline"),
        ("cust-erik", "console.customer", "id", "/console/customers/{key}"),
    ]
    assert ("cust-sven", "search", "search", "/search") in seen
    assert {r["key_name"] for r in found["records"]} == {"agent-ann"}
    only_erik = svc.http.get("/audit", params={"customer": "cust-erik"}).json()["records"]
    assert [r["action"] for r in only_erik] == ["console.customer"]
    # The trail holds who and which customer, never the identity looked up by.
    raw = b"".join(m.value or b"" for m in _all(svc, svc.service.settings.audit_topic))
    assert b"sven.berg@example.se" not in raw and b"cust-sven" in raw
    # journey audit reads the same trail.
    settings = svc.service.settings
    done = subprocess.run(
        [
            JOURNEY,
            "--broker",
            settings.broker,
            "--topic",
            TOPIC,
            "audit",
            "--key",
            "agent-ann",
            "--customer",
            "cust-erik",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["customer_id"], r["action"]) for r in lines] == [("cust-erik", "console.customer")]


def _all(svc: Running, topic: str) -> list[Any]:
    from tests.integration.test_exactly_once import read_topic

    return list(read_topic(svc.log, topic))


def test_a_read_that_cannot_be_audited_is_not_answered(svc: Running) -> None:
    # A real Kafka client pointed where no broker listens: the audit append fails.
    unreachable = KafkaLog(["127.0.0.1:9"], timeout_s=1)
    svc.service.audit_trail = AuditTrail(unreachable, f"audit-{uuid.uuid4().hex}", 1)
    agent = svc.client("agent")
    body = _error(agent.get("/customers/cust-sven"), 503, "audit_unavailable")
    assert "not answered" in body["message"]
    assert "Sven" not in agent.get("/console/customers/cust-sven").text
    assert read_audit(svc.log, svc.service.settings.audit_topic, customer="cust-sven") == []


def test_journey_view_leaves_a_record_too(svc: Running) -> None:
    settings = svc.service.settings
    common = [JOURNEY, "--broker", settings.broker, "--topic", TOPIC, "--store", settings.store]
    shown = subprocess.run(
        # (a verified identity: a claimed one names candidates and reads no view)
        [*common, "view", "sven.berg@example.se", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout)["customer_id"] == "cust-sven"
    records = read_audit(svc.log, settings.audit_topic, customer="cust-sven")
    assert [(r.action, r.lookup, r.route) for r in records] == [
        ("cli.view", "identity", "journey view")
    ]
    assert records[0].key_name.startswith("cli:")


def test_journey_export_leaves_one_bulk_record_in_every_customers_trail(
    svc: Running, tmp_path: Path
) -> None:
    settings = svc.service.settings
    common = [JOURNEY, "--broker", settings.broker, "--topic", TOPIC, "--store", settings.store]
    for args in (
        ["--out", str(tmp_path / "all.csv"), "--format", "csv", "--with-personal-data"],
        ["--out", str(tmp_path / "erik.csv"), "--format", "csv", "--customer", "cust-erik"],
    ):
        subprocess.run([*common, "export", *args], capture_output=True, text=True, check=True)
    bulk = ("cli.export", "bulk", "*", "journey export --format csv --with-personal-data")
    sven = read_audit(svc.log, settings.audit_topic, customer="cust-sven")
    assert [(r.action, r.lookup, r.customer_id, r.route) for r in sven] == [bulk]
    erik = read_audit(svc.log, settings.audit_topic, customer="cust-erik")
    assert [(r.action, r.lookup, r.customer_id, r.route) for r in erik] == [
        bulk,
        ("cli.export", "id", "cust-erik", "journey export --format csv"),
    ]
    assert erik[0].key_name.startswith("cli:")
