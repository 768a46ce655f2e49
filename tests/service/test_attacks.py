"""An attacker's review of issue 12 items 1-3 (keys and roles, the browser's door, the audit
of reads): each attempt to get around them, as a test. test_access.py has the attacks the
issue names; these are the ones around its edges — every route, path and Host tricks, content
types, redirects, secrets in logs, revoked keys on open streams, error answers, bodies."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from fastapi.routing import APIRoute
from starlette.routing import Mount
from structlog.testing import capture_logs

from journey.security.audit import read_audit
from journey.service.guard import SESSION_COOKIE
from projections.location import StoreUnreachable
from tests.service.helpers import Running, envelope, inquiry

JSON = {"content-type": "application/json"}
JOURNEY = str(Path(sys.executable).with_name("journey"))
PUBLIC = {"/healthz", "/console/sign-in", "/favicon.ico", "/metrics"}  # metrics: loopback


def _sample(path: str) -> str:
    return (
        path.replace("{key}", "cust-sven")
        .replace("{case_id}", "k-none")
        .replace("{defect_id}", "d-none")
        .replace("{name}", "identities")
        .replace("{path:path}", "console.css")
    )


def _every_route(svc: Running) -> list[tuple[str, str]]:
    """(method, path) of everything the app serves: its routes and what it mounts."""
    found = []
    for route in svc.server.app.routes:
        if isinstance(route, APIRoute) or hasattr(route, "methods"):
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                found.append((method, _sample(route.path)))  # type: ignore[attr-defined]
        elif isinstance(route, Mount):
            found.append(("GET", f"{route.path}/x"))
        elif hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                for method in sorted(context.methods or {"GET"}):
                    found.append((method, _sample(context.path)))
    return found


def _raw(svc: Running, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (httpx would normalise the target) and read the answer."""
    url = urlsplit(svc.server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1])
    return status, answer


# ---------------------------------------------------------------------- who may ask


def test_every_route_and_method_refuses_anonymous_callers(svc: Running) -> None:
    routes = _every_route(svc)
    assert ("POST", "/events") in routes and ("GET", "/static/x") in routes
    anonymous = svc.anonymous
    for method, path in routes:
        bare = path.split("?")[0]
        if bare in PUBLIC or bare.startswith("/static/"):
            continue
        for verb in {method, "HEAD", "OPTIONS"}:
            answer = anonymous.request(verb, path, headers=JSON)
            assert answer.status_code == 401, (verb, path, answer.status_code)
            assert b"Sven" not in answer.content


def test_path_tricks_reach_nothing_without_a_key(svc: Running) -> None:
    host = urlsplit(svc.server.url).netloc.encode()
    for target in (
        b"/customers/cust-sven/",
        b"//customers/cust-sven",
        b"/customers%2Fcust-sven",
        b"/customers/cust-sven%2Fevents",
        b"/healthz/../customers/cust-sven",
        b"/static/../customers/cust-sven",
        b"/static/%2e%2e/customers/cust-sven",
        b"/static/..%2F..%2Fcustomers/cust-sven",
        b"/static/%2e%2e/%2e%2e/views.db",
        b"/favicon.ico/../customers/cust-sven",
        b"/console/sign-in/../../customers/cust-sven",
        b"/HEALTHZ",
        b"/docs",
        b"/openapi.json",
        b"/redoc",
        b"/static-docs/swagger-ui.css",
    ):
        status, answer = _raw(
            svc, b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        )
        assert status in (401, 404), (target, status)
        assert b"Sven" not in answer and b"cust-sven" not in answer.split(b"\r\n\r\n", 1)[1]


# ---------------------------------------------------------------------- Host


def test_host_tricks_are_refused(svc: Running) -> None:
    port = urlsplit(svc.server.url).port
    for host in (
        "evil.example",
        "localhost.",  # a trailing dot is another name to a resolver's search list
        "[::1]evil.example",
        "[::1].evil.example:80",
        "localhost@evil.example",
        "evil.example#localhost",
        "127.0.0.1.nip.io",
        f"localhost:{port}:evil",
        "",
    ):
        answer = svc.http.get("/customers/cust-sven", headers={"Host": host})
        assert answer.status_code == 400, (host, answer.status_code)
    # A proxy's headers name no host of ours: the Host header is what is checked.
    forwarded = svc.http.get(
        "/healthz", headers={"Host": "evil.example", "X-Forwarded-Host": "localhost"}
    )
    assert forwarded.status_code == 400
    for host in (f"LOCALHOST:{port}", "127.0.0.1", f"[::1]:{port}", "[::1]"):
        assert svc.http.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_an_absolute_form_target_does_not_change_the_host_checked(svc: Running) -> None:
    status, _ = _raw(
        svc,
        b"GET http://localhost/healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    assert status == 400


# ---------------------------------------------------------------------- CSRF


@contextmanager
def _signed_in(svc: Running, role: str = "admin") -> Iterator[httpx.Client]:
    """A browser-like client with a console session (cookie, no Authorization)."""
    key = svc.new_key(role)
    with httpx.Client(base_url=svc.server.url, timeout=30) as client:
        signed = client.post(
            "/console/sign-in", json={"key": key}, headers={"Origin": svc.server.url}
        )
        assert signed.status_code == 200, signed.text
        yield client


def test_content_type_variants(svc: Running) -> None:
    with _signed_in(svc) as browser:
        own = {"Origin": svc.server.url}
        body = json.dumps(envelope("cust-ct", "hi"))
        for accepted in ("application/json; charset=utf-8", "Application/JSON", "application/json"):
            answer = browser.post(
                "/events", content=body, headers={**own, "content-type": accepted}
            )
            assert answer.status_code == 201, (accepted, answer.text)
        for refused in (
            "text/plain;application/json",
            "text/plain; x=application/json",
            "application/json-seq",
            "application/jsonp",
            "multipart/form-data; boundary=application/json",
            "application/x-www-form-urlencoded",
            "",
        ):
            body = json.dumps(envelope("cust-ct", "no"))
            answer = browser.post("/events", content=body, headers={**own, "content-type": refused})
            assert answer.status_code == 415, (refused, answer.status_code)


def test_origin_variants_with_a_session_cookie(svc: Running) -> None:
    with _signed_in(svc) as browser:
        body = json.dumps(envelope("cust-origin", "x"))
        url = urlsplit(svc.server.url)
        for origin in (
            "null",
            f"http://localhost:{url.port}",  # same machine, another name: another origin
            f"https://{url.netloc}",
            f"{svc.server.url}/",
            f"{svc.server.url}.evil.example",
            f"http://{url.hostname}:{(url.port or 80) + 1}",
        ):
            answer = browser.post("/events", content=body, headers={**JSON, "Origin": origin})
            assert answer.status_code == 403, (origin, answer.status_code)
        # No Origin: a same-origin Referer does not stand in for it.
        answer = browser.post(
            "/events", content=body, headers={**JSON, "Referer": f"{svc.server.url}/"}
        )
        assert answer.status_code == 403
        # A cookie and a bogus bearer: the bearer is what is checked, and it is refused.
        answer = browser.post(
            "/events", content=body, headers={**JSON, "Authorization": "Bearer jk_nope"}
        )
        assert answer.status_code == 401
        # A cookie and a *valid* bearer of a weaker role: the bearer's role decides.
        agent = svc.new_key("agent")
        answer = browser.post(
            "/events",
            content=body,
            headers={**JSON, "Authorization": f"Bearer {agent}", "Origin": svc.server.url},
        )
        assert answer.status_code == 403


# ---------------------------------------------------------------------- sign-in, sessions


def test_sign_in_never_redirects_to_another_site(svc: Running) -> None:
    key = svc.new_key("agent")
    base = f"{svc.server.url}/console/sign-in"
    for target in (
        "//evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "\t//evil.example",
        " //evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/%09/evil.example",
    ):
        with httpx.Client(base_url=svc.server.url) as browser:
            signed = browser.post(
                "/console/sign-in",
                json={"key": key, "next": target},
                headers={"Origin": svc.server.url},
            )
            assert signed.status_code == 200
            then = signed.json()["next"]
            # As a browser's URL parser reads it: it drops tabs and newlines anywhere.
            resolved = urlsplit(urljoin(base, re.sub(r"[\t\n\r]", "", then).strip()))
            assert (resolved.scheme, resolved.netloc) == ("http", urlsplit(base).netloc), (
                target,
                then,
            )
    with _signed_in(svc, "agent") as browser:
        for back in ("//evil.example", "/\t/evil.example", "https://evil.example"):
            moved = browser.get("/console/time-zone", params={"tz": "UTC", "back": back})
            assert moved.status_code == 303
            location = moved.headers["location"]
            resolved = urlsplit(urljoin(base, re.sub(r"[\t\n\r]", "", location)))
            assert resolved.netloc == urlsplit(base).netloc, (back, location)


def test_a_revoked_keys_console_session_ends_at_once(svc: Running) -> None:
    key = svc.new_key("agent", "revoke-me")
    with httpx.Client(base_url=svc.server.url) as browser:
        signed = browser.post(
            "/console/sign-in", json={"key": key}, headers={"Origin": svc.server.url}
        )
        assert signed.status_code == 200
        assert browser.get("/customers/cust-sven").status_code == 200
        svc.service.keys.revoke("revoke-me")
        assert browser.get("/customers/cust-sven").status_code == 401
        assert browser.get("/console/customers/cust-sven").status_code == 401


def test_a_session_id_chosen_by_someone_else_is_never_adopted(svc: Running) -> None:
    key = svc.new_key("agent")
    with httpx.Client(base_url=svc.server.url) as browser:
        browser.cookies.set(SESSION_COOKIE, "js_" + "A" * 43)
        assert browser.get("/customers/cust-sven").status_code == 401
        signed = browser.post(
            "/console/sign-in", json={"key": key}, headers={"Origin": svc.server.url}
        )
        issued = signed.headers["set-cookie"].split(";")[0].partition("=")[2]
        assert issued != "js_" + "A" * 43 and issued.startswith("js_")


def test_no_key_or_session_in_logs_errors_or_the_audit(svc: Running) -> None:
    key = svc.new_key("agent", "quiet")
    bogus = "jk_" + uuid.uuid4().hex
    with capture_logs() as logs:
        with httpx.Client(base_url=svc.server.url) as browser:
            wrong = browser.post(
                "/console/sign-in", json={"key": bogus}, headers={"Origin": svc.server.url}
            )
            texts = [wrong.text]
            signed = browser.post(
                "/console/sign-in", json={"key": key}, headers={"Origin": svc.server.url}
            )
            session = signed.headers["set-cookie"].split(";")[0].partition("=")[2]
            texts.append(signed.text)
            texts.append(browser.post("/events", content=b"{}", headers=JSON).text)  # no Origin
            texts.append(browser.get("/customers/cust-sven").text)
        texts.append(
            httpx.get(f"{svc.server.url}/audit", headers={"Authorization": f"Bearer {bogus}"}).text
        )
        texts.append(
            httpx.post(
                f"{svc.server.url}/events",
                content=b"{",
                headers={**JSON, "Authorization": f"Bearer {key}"},
            ).text
        )
    logged = json.dumps(logs, default=str)
    trail = json.dumps(
        [r.model_dump(mode="json") for r in read_audit(svc.log, svc.service.settings.audit_topic)]
    )
    for secret in (key, bogus, session):
        for where in (logged, trail, *texts):
            assert secret not in where and secret[3:] not in where


# ---------------------------------------------------------------------- bodies and headers


def test_every_state_changing_route_bounds_its_body(svc: Running) -> None:
    own = {**JSON, "Origin": svc.server.url}
    changing = [(m, p) for m, p in _every_route(svc) if m not in ("GET", "HEAD")]
    assert ("POST", "/events") in changing and ("POST", "/console/sign-out") in changing
    for method, path in changing:
        limit = 8 * 1024 * 1024 if path == "/events" else 1024 * 1024
        declared = svc.http.request(method, path, content=b" " * (limit + 1), headers=own)
        assert declared.status_code == 413, (path, declared.status_code)

        def chunks(total: int = limit + 1) -> Any:
            while total > 0:
                yield b" " * min(65536, total)
                total -= 65536

        streamed = svc.http.request(method, path, content=chunks(), headers=own)
        assert streamed.status_code == 413, (path, streamed.status_code)


def _secured(response: httpx.Response) -> None:
    assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", ""), (
        response.status_code,
        response.headers,
    )
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("referrer-policy") == "no-referrer"


def test_error_answers_carry_the_security_headers(svc: Running) -> None:
    _secured(svc.http.get("/no-such-route"))  # 404
    _secured(svc.http.get("/customers/nobody-at-all"))  # 404 unknown customer
    _secured(svc.anonymous.get("/customers/cust-sven"))  # 401
    _secured(svc.http.get("/healthz", headers={"Host": "evil.example"}))  # 400
    _secured(svc.http.post("/events", content=b"x", headers={"content-type": "text/plain"}))
    _secured(svc.http.post("/events", content=b" " * (9 * 1024 * 1024), headers=JSON))  # 413
    _secured(svc.http.get("/customers/cust-sven", params={"page": "x"}))  # 422

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    svc.service.read = broken  # type: ignore[method-assign]
    crashed = svc.http.get("/defects")
    assert crashed.status_code == 500
    _secured(crashed)


# ---------------------------------------------------------------------- the audit of reads

# Every GET route that may answer with a customer's data, as a URL to call. A new route
# fails the test below until it is given one here (and then it must audit what it shows).
NOT_CUSTOMER_DATA = {
    "/healthz",
    "/metrics",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/favicon.ico",
    "/console/sign-in",
    "/console/time-zone",  # a redirect
    "/audit",  # the trail itself (admin): who read whom, no customer's data
    "/console/report.css",  # a stylesheet
}


def _customer_routes(svc: Running) -> set[str]:
    paths = set()
    route: Any
    for route in svc.server.app.routes:
        contexts = (
            route.effective_route_contexts()
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for context in contexts:
            if "GET" in (getattr(context, "methods", None) or set()):
                paths.add(context.path)
    return paths - NOT_CUSTOMER_DATA


def _samples(svc: Running) -> dict[str, list[str]]:
    case_id = svc.http.get("/customers/cust-sven/cases").json()["data"]["items"][0]["case_id"]
    defect_id = svc.http.get("/defects").json()["data"][0]["defect_id"]
    return {
        "/customers/{key}": ["/customers/cust-sven", "/customers/sven.berg@example.se"],
        "/customers/{key}/timeline": ["/customers/cust-sven/timeline"],
        "/customers/{key}/cases": ["/customers/cust-sven/cases"],
        "/customers/{key}/cases/{case_id}": [f"/customers/cust-sven/cases/{case_id}"],
        "/customers/{key}/lists/{name}": ["/customers/cust-sven/lists/identities"],
        "/customers/{key}/events": ["/customers/cust-sven/events"],
        "/search": ["/search?q=s"],
        "/service-levels": ["/service-levels"],
        "/service-levels/unanswered": ["/service-levels/unanswered"],
        "/service-levels/due-soon": ["/service-levels/due-soon?due_within_hours=8760"],
        "/service-levels/breached": ["/service-levels/breached"],
        "/service-levels/counts": ["/service-levels/counts"],
        "/defects": ["/defects"],
        "/defects/{defect_id}": [f"/defects/{defect_id}"],
        "/": ["/", "/?q=s"],
        "/console/work/{name}": [
            f"/console/work/{n}" for n in ("breached", "due-soon", "unanswered")
        ],
        "/console/customers/{key}": ["/console/customers/cust-sven"],
        "/console/customers/{key}/lists/{name}": ["/console/customers/cust-sven/lists/identities"],
        "/console/metrics": ["/console/metrics?weeks=52"],
    }


def _read(client: httpx.Client, url: str) -> str:
    if not url.endswith("/events"):
        answer = client.get(url)
        for _ in range(600):  # 202: still computing (the metrics page), bounded
            if answer.status_code != 202:
                break
            time.sleep(0.1)
            answer = client.get(url)
        assert answer.status_code == 200, (url, answer.text[:300])
        return answer.text
    with client.stream("GET", url) as stream:  # the live stream: its first view is enough
        text = ""
        for chunk in stream.iter_text():
            text += chunk
            if re.search(r"event: view\r?\n(data:[^\r\n]*\r?\n)+\r?\n", text):
                return text
            assert len(text) < 10_000_000
    raise AssertionError(f"{url}: the stream ended before its first view")


def test_every_route_that_shows_a_customer_audits_it(svc: Running) -> None:
    samples = _samples(svc)
    routes = _customer_routes(svc)
    assert not routes - set(samples), (
        f"new GET routes {sorted(routes - set(samples))}: give each a sample URL here (or "
        "list it in NOT_CUSTOMER_DATA if it never shows a customer)"
    )
    store = svc.service.reader.get()
    everyone = [str(r[0]) for r in store.query("SELECT customer_id FROM customers", [])]
    assert "cust-sven" in everyone and len(everyone) > 5
    missing = []
    for template in sorted(routes):
        for url in samples[template]:
            name = f"reader-{uuid.uuid4().hex[:8]}"
            client = svc.client("admin", name=name)  # admin: every route lets it in
            text = _read(client, url)
            shown = {c for c in everyone if re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text)}
            audited = {
                r.customer_id
                for r in read_audit(svc.log, svc.service.settings.audit_topic, key=name)
                if r.route == template
            }
            if shown - audited:
                missing.append((url, sorted(shown - audited)))
    assert not missing, f"customers shown without an audit record: {missing}"


def test_an_open_live_stream_ends_when_its_key_is_revoked(svc: Running) -> None:
    key = svc.new_key("agent", "streamer")
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=svc.server.url, timeout=httpx.Timeout(30, read=60)) as client,
        client.stream("GET", "/customers/cust-sven/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_text()
        text = ""
        while "event: view" not in text:
            text += next(chunks)
        svc.service.keys.revoke("streamer")
        secret = f"after-revocation-{uuid.uuid4().hex}"
        svc.emitter.emit_touchpoints([inquiry("cust-sven", secret)])
        rest = ""
        for chunk in chunks:  # until the stream ends, or pushes what was emitted after
            rest += chunk
            if secret in rest:
                break
    assert secret not in rest, "a revoked key's stream went on pushing the customer's view"


def test_a_console_session_serves_only_the_consoles_own_pages(svc: Running) -> None:
    """What a browser says of a request made by another page (tests/browser has the real
    thing): the session cookie is not honoured for it, and nothing is audited."""
    with _signed_in(svc, "agent") as browser:
        name = svc.service.keys.session(browser.cookies[SESSION_COOKIE])
        assert name is not None
        for site, mode, dest in (
            ("same-site", "no-cors", "image"),
            ("same-site", "no-cors", "script"),
            ("same-site", "navigate", "iframe"),
            ("same-site", "cors", "empty"),
            ("cross-site", "no-cors", "empty"),
        ):
            fetched = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}
            answer = browser.get("/customers/cust-sven", headers=fetched)
            assert answer.status_code == 403, (site, mode, dest, answer.status_code)
            assert answer.json()["error"]["code"] == "cross_site"
        trail = svc.service.settings.audit_topic
        assert read_audit(svc.log, trail, key=name.name) == []
        # A person opening the address (typed, a bookmark, a link on a same-site page) and
        # the console's own requests are served.
        for site, mode, dest in (
            ("none", "navigate", "document"),
            ("same-site", "navigate", "document"),
            ("same-origin", "cors", "empty"),
        ):
            fetched = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}
            assert browser.get("/console/customers/cust-sven", headers=fetched).status_code == 200
    # A bearer key is no ambient credential: the headers do not matter to it.
    same_site = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"}
    assert svc.http.get("/customers/cust-sven", headers=same_site).status_code == 200


def test_a_key_store_that_does_not_answer_is_a_503_not_a_crash(svc: Running) -> None:
    def unreachable(*_: Any) -> Any:
        raise StoreUnreachable("the key store postgresql://journey@db/journey did not answer")

    svc.service.keys.authenticate = unreachable  # type: ignore[method-assign,assignment]
    answer = svc.http.get("/customers/cust-sven")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "keys_unavailable"
    assert answer.headers["retry-after"]
    _secured(answer)
    assert b"Sven" not in answer.content


def test_signing_in_again_ends_the_session_the_browser_had(svc: Running) -> None:
    """Signing in replaces the browser's session: the one it had ends (a shared browser's
    previous agent, or one planted by a page on another port — cookies ignore ports)."""
    planted = svc.service.keys.open_session(svc.new_key("agent", "planted"))
    assert planted is not None
    key = svc.new_key("agent", "own")
    with httpx.Client(base_url=svc.server.url) as browser:
        browser.cookies.set(SESSION_COOKIE, planted[1])
        signed = browser.post(
            "/console/sign-in", json={"key": key}, headers={"Origin": svc.server.url}
        )
        assert signed.status_code == 200
    assert svc.service.keys.session(planted[1]) is None


def test_an_open_live_stream_ends_when_its_console_session_signs_out(svc: Running) -> None:
    with _signed_in(svc, "agent") as browser:
        session = browser.cookies[SESSION_COOKIE]
        own = {"Origin": svc.server.url}
        with browser.stream("GET", "/customers/cust-sven/events") as response:
            assert response.status_code == 200
            chunks = response.iter_text()
            text = ""
            while "event: view" not in text:
                text += next(chunks)
            with httpx.Client(base_url=svc.server.url, cookies={SESSION_COOKIE: session}) as tab:
                assert tab.post("/console/sign-out", json={}, headers=own).status_code == 200
            secret = f"after-sign-out-{uuid.uuid4().hex}"
            svc.emitter.emit_touchpoints([inquiry("cust-sven", secret)])
            rest = ""
            for chunk in chunks:
                rest += chunk
                if secret in rest:
                    break
    assert secret not in rest, "a signed-out session's stream went on pushing the view"


def test_a_session_is_no_bearer_key_and_a_key_no_session(svc: Running) -> None:
    key = svc.new_key("agent")
    opened = svc.service.keys.open_session(key)
    assert opened is not None
    session = opened[1]
    as_bearer = svc.anonymous.get(
        "/customers/cust-sven", headers={"Authorization": f"Bearer {session}"}
    )
    assert as_bearer.status_code == 401
    with httpx.Client(base_url=svc.server.url, cookies={SESSION_COOKIE: key}) as browser:
        assert browser.get("/customers/cust-sven").status_code == 401
    for value in (f"Basic {key}", f"Token {key}", f"Bearer\t{key}", key, f"Bearer {key}x"):
        odd = svc.anonymous.get("/customers/cust-sven", headers={"Authorization": value})
        assert odd.status_code == 401, value[:8]


def test_journey_service_levels_leaves_a_record_per_customer_listed(svc: Running) -> None:
    settings = svc.service.settings
    done = subprocess.run(
        [
            JOURNEY,
            "--broker",
            settings.broker,
            "--topic",
            settings.topic,
            "--store",
            settings.store,
            "service-levels",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    listed = json.loads(done.stdout)
    shown = {i["customer_id"] for n in ("unanswered", "due_soon", "breached") for i in listed[n]}
    assert shown
    records = read_audit(svc.log, settings.audit_topic)
    audited = {r.customer_id for r in records if r.route == "journey service-levels"}
    assert audited == shown
    assert all(
        r.key_name.startswith("cli:") for r in records if r.route == "journey service-levels"
    )


def test_journey_view_records_the_customers_merged_into_the_view(svc: Running) -> None:
    settings = svc.service.settings
    subprocess.run(
        [
            JOURNEY,
            "--broker",
            settings.broker,
            "--topic",
            settings.topic,
            "--store",
            settings.store,
            "view",
            "cust-sven",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    merged = svc.http.get("/customers/cust-sven").json()["data"]["linked_customer_ids"]
    assert merged
    records = read_audit(svc.log, settings.audit_topic)
    audited = {r.customer_id for r in records if r.route == "journey view"}
    assert audited == {"cust-sven", *merged}
