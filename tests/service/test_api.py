"""The query service's HTTP API on the embedded log: answers, errors (404/400/422, never a
500 for bad input), emitting over HTTP, OpenAPI, health and metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.log import OutgoingMessage
from tests.service.helpers import TOPIC, Running, envelope, event_ids

FRESHNESS_KEYS = {"as_of", "as_of_token", "lag", "fresh", "basis", "waited_ms"}


def _ok(svc: Running, url: str, **kwargs: Any) -> dict[str, Any]:
    response = svc.get(url, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body.keys() >= FRESHNESS_KEYS, f"{url} carries no freshness: {sorted(body)}"
    return body


# ---------------------------------------------------------------------- answers


def test_customer_by_id_and_by_every_identity(svc: Running) -> None:
    body = _ok(svc, "/customers/cust-sven")
    view = body["data"]
    assert view["customer_id"] == "cust-sven"
    assert view["name"] == "Sven Berg"
    assert body["fresh"] is True and body["basis"] == "head"
    assert body["lag"]["events"] == 0
    assert body["as_of"], "as_of names the partitions the view depends on"
    identities = {(i["kind"], i["value"]) for i in view["identities"]}
    assert ("email", "sven.berg@example.se") in identities
    verified = {(i["kind"], i["value"]) for i in view["identities"] if i["verified"]}
    for kind, value in identities:
        if kind == "name":
            continue
        if (kind, value) not in verified:
            # The serial as he typed it is a claim: the candidates, never a view.
            choices = svc.get(f"/customers/{value}")
            assert choices.status_code == 300, (kind, value, choices.text)
            assert {m["customer_id"] for m in choices.json()["data"]["candidates"]} == {"cust-sven"}
            continue
        other = _ok(svc, f"/customers/{value}")["data"]
        assert other["customer_id"] in {"cust-sven", *view["linked_customer_ids"]}, (kind, value)


def test_every_answer_says_how_fresh_it_is(svc: Running) -> None:
    for url in (
        "/customers/cust-erik",
        "/customers/cust-erik/timeline",
        "/search?q=erik",
        "/service-levels",
        "/service-levels/unanswered",
        "/service-levels/due-soon",
        "/service-levels/breached",
        "/service-levels/counts",
        "/defects",
    ):
        response = svc.get(url)
        body = _ok(svc, url)
        assert response.headers["x-journey-fresh"] == "true"
        assert body["fresh"] is True
        assert body["lag"] == {"events": 0, "seconds": 0.0, "partitions": body["lag"]["partitions"]}


def test_what_the_customer_submitted_is_shown_verbatim(svc: Running) -> None:
    view = _ok(svc, "/customers/cust-erik")["data"]
    forms = {s["case_id"]: s for s in view["submissions"]}
    assert set(forms) == {"nordbank-signup-1", "fokus-signup-1"}
    assert forms["nordbank-signup-1"]["answered"] is False, "an auto-ack is not an answer"
    assert forms["fokus-signup-1"]["answered"] is True
    for submission in forms.values():
        assert submission["fields"]["loan_type"] == "floating rate"
        assert submission["fields"]["current_bank"] == "Sparebank 1"
    assert view["flags"]["unanswered_for_seconds"] > 0


def test_timeline_paging(svc: Running) -> None:
    full = _ok(svc, "/customers/cust-lina?page_size=1000")["data"]["timeline"]
    total = full["total"]
    assert total >= 10
    seen: list[str] = []
    page = 1
    while True:
        part = _ok(svc, f"/customers/cust-lina/timeline?page={page}&page_size=3")["data"]
        assert part["total"] == total and part["page"] == page and part["page_size"] == 3
        if not part["entries"]:
            break
        seen += [e["event_id"] for e in part["entries"]]
        page += 1
    assert seen == [e["event_id"] for e in full["entries"]]
    assert page == -(-total // 3) + 1


def test_case_detail(svc: Running) -> None:
    view = _ok(svc, "/customers/cust-sven")["data"]
    case = (view["open_cases"] + view["closed_cases"])[0]
    detail = _ok(svc, f"/customers/cust-sven/cases/{case['case_id']}")["data"]
    assert detail["case"]["case_id"] == case["case_id"]
    assert detail["timeline"], "a case has touchpoints"
    assert all(e["case_id"] == case["case_id"] for e in detail["timeline"])


def test_search_by_name_email_phone_serial(svc: Running) -> None:
    def found(q: str) -> list[str]:
        body = _ok(svc, "/search", params={"q": q})
        assert body["data"]["query"] == q
        return [h["customer_id"] for h in body["data"]["hits"]]

    assert "cust-sven" in found("Sven")
    assert "cust-sven" in found("berg")  # any word of the name
    assert "cust-sven" in found("sven.berg@")
    assert "cust-erik" in found("+47 912")  # as typed, spaces and all
    assert "cust-erik" in found("47912")
    assert "cust-lina" in found("LG55")  # serial prefix
    assert found("zz-nobody-zz") == []
    assert found("%") == [] and found("_") == [], "LIKE wildcards are matched literally"


def test_service_level_lists_filter_by_team_and_channel(svc: Running) -> None:
    everything = _ok(svc, "/service-levels")["data"]
    assert everything["unanswered"], "the stories leave contacts unanswered"
    unanswered = _ok(svc, "/service-levels/unanswered")["data"]
    assert unanswered["name"] == "unanswered"
    assert unanswered["count"] == len(everything["unanswered"]) == len(unanswered["items"])
    breached = _ok(svc, "/service-levels/breached")["data"]
    assert breached["count"] >= 1
    item = unanswered["items"][0]
    by_team = _ok(svc, "/service-levels/unanswered", params={"team": item["team"]})["data"]
    assert by_team["items"] and all(i["team"] == item["team"] for i in by_team["items"])
    by_channel = _ok(svc, "/service-levels/unanswered", params={"channel": item["channel"]})
    assert all(i["channel"] == item["channel"] for i in by_channel["data"]["items"])
    # A team or channel that does not exist is a typo, not an empty list: 422 naming the
    # known ones (an empty answer would tell the agent that nothing waits).
    for path in ("/service-levels", "/service-levels/unanswered", "/service-levels/counts"):
        typo = svc.get(path, params={"team": "no such team"})
        assert typo.status_code == 422, typo.text
        error = typo.json()["error"]
        assert (error["code"], error["field"]) == ("unknown_filter", "team")
        assert repr(item["team"]) in error["message"]
    wrong = svc.get("/service-levels/breached", params={"channel": "pigeon"})
    assert wrong.status_code == 422
    assert wrong.json()["error"]["field"] == "channel"
    assert "email" in wrong.json()["error"]["message"]
    counts = _ok(svc, "/service-levels/counts")["data"]
    assert counts["unanswered"] == unanswered["count"]
    assert counts["breached"] == breached["count"]
    assert sum(t.get("unanswered", 0) for t in counts["by_team"].values()) == counts["unanswered"]


def test_defect_outreach(svc: Running) -> None:
    defects = _ok(svc, "/defects")["data"]
    assert defects, "the flust.no story registers a known defect"
    first = defects[0]
    assert first["not_reached"] >= 1 and first["reached"] >= 1
    one = _ok(svc, f"/defects/{first['defect_id']}")["data"]
    assert one == first


# ---------------------------------------------------------------------- errors


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["status"] == status and body["code"] == code, body
    assert body["message"]
    return body


def test_unknown_customer_is_404_naming_the_key(svc: Running) -> None:
    for key in ("nobody-at-all", "ghost@example.com", "Ünïcødé ☃"):
        error = _error(svc.get(f"/customers/{key}"), 404, "unknown_customer")
        assert error["key"] == key and key in error["message"]
    _error(svc.get("/customers/nobody/timeline"), 404, "unknown_customer")
    _error(svc.get("/customers/nobody/cases/k-1"), 404, "unknown_customer")
    error = _error(svc.get("/customers/cust-sven/cases/no-such-case"), 404, "unknown_case")
    assert "no-such-case" in error["message"]
    _error(svc.get("/defects/no-such-defect"), 404, "unknown_defect")
    _error(svc.get("/no/such/route"), 404, "not_found")
    _error(svc.get("/customers/nobody/events"), 404, "unknown_customer")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "journey.touchpoints:1",
        "journey.touchpoints:x:1",
        "journey.touchpoints:1:-5",
        "other.topic:0:1",
        "journey.touchpoints:99:0",
        ",",
        "journey.touchpoints:0:1,nonsense",
    ],
)
def test_malformed_token_is_400(svc: Running, token: str) -> None:
    for response in (
        svc.get("/customers/cust-sven", params={"after": token}),
        svc.get("/customers/cust-sven", headers={"X-Journey-Position": token}),
        svc.get("/service-levels", params={"after": token}),
    ):
        _error(response, 400, "bad_token")


def test_token_past_the_end_of_the_log_is_400_quickly(svc: Running) -> None:
    response = svc.get("/customers/cust-sven", params={"after": f"{TOPIC}:0:999999"})
    error = _error(response, 400, "bad_token")
    assert "past the end" in error["message"]
    assert response.elapsed.total_seconds() < 0.9, "told long before the 1 s bound"


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/customers/cust-sven?page=0", "page"),
        ("/customers/cust-sven?page=two", "page"),
        ("/customers/cust-sven?page_size=100000", "page_size"),
        ("/customers/cust-sven?stale=perhaps", "stale"),
        ("/search", "q"),
        ("/search?q=", "q"),
        ("/service-levels?due_within_hours=-1", "due_within_hours"),
        ("/customers/cust-sven/events?format=xml", "format"),
    ],
)
def test_invalid_parameter_is_422_naming_it(svc: Running, url: str, field: str) -> None:
    error = _error(svc.get(url), 422, "invalid_request")
    assert error["field"] == field, error


# ---------------------------------------------------------------------- POST /events


def test_post_one_envelope_then_read_it(svc: Running) -> None:
    env = envelope("cust-sven", "Is my replacement on its way?")
    response = svc.http.post("/events", json=env)
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["count"] == 1
    (pos,) = result["positions"]
    assert pos["event_id"] == env["event_id"] and pos["topic"] == TOPIC
    assert result["tokens"] == [f"{TOPIC}:{pos['partition']}:{pos['offset']}"]
    assert result["token"] == result["tokens"][0] == response.headers["x-journey-position"]
    body = _ok(svc, "/customers/cust-sven", params={"after": result["token"]})
    assert body["basis"] == "token" and body["fresh"] is True
    assert env["event_id"] in event_ids(body)


def test_post_a_json_array_and_json_lines(svc: Running) -> None:
    batch = [envelope(f"cust-bulk-{i}", f"bulk {i}") for i in range(8)]
    response = svc.http.post("/events", json=batch)
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["count"] == 8
    assert [p["event_id"] for p in result["positions"]] == [e["event_id"] for e in batch]
    assert len(result["token"].split(",")) == len({p["partition"] for p in result["positions"]})
    lines = [envelope(f"cust-lines-{i}", f"line {i}") for i in range(5)]
    response = svc.http.post(
        "/events",
        content="\n".join(json.dumps(e) for e in lines) + "\n",
        headers={"content-type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    for env in lines:
        body = _ok(svc, f"/customers/{env['customer_id']}", headers={"X-Journey-Position": token})
        assert env["event_id"] in event_ids(body)


def _hwm(svc: Running) -> dict[int, int]:
    return svc.log.high_watermarks(TOPIC)


@pytest.mark.parametrize(
    ("content", "ctype", "line", "field"),
    [
        pytest.param(
            "\n".join(
                [
                    json.dumps(envelope("c-1", "fine")),
                    json.dumps(envelope("c-2", "fine")),
                    json.dumps(envelope("c-3", "bad") | {"data": {"case_id": "k"}}),
                ]
            ),
            "application/x-ndjson",
            3,
            "data.channel",
            id="third-line-misses-a-field",
        ),
        pytest.param(
            json.dumps([envelope("c-1", "fine"), envelope("c-2", "x") | {"occurred_at": "soon"}]),
            "application/json",
            2,
            "occurred_at",
            id="array-item-bad-time",
        ),
        pytest.param(
            json.dumps(envelope("c-1", "x") | {"type": "NoSuchThing"}),
            "application/json",
            1,
            "type",
            id="unknown-type",
        ),
        pytest.param(
            json.dumps(envelope("c-1", "x") | {"schema_version": 9}),
            "application/json",
            1,
            "schema_version",
            id="unknown-version",
        ),
        pytest.param(
            json.dumps(envelope(" c-1", "x")), "application/json", 1, "customer_id", id="bad-id"
        ),
        pytest.param('{"event_id": ', "application/json", 1, None, id="not-json"),
        pytest.param("", "application/json", 1, None, id="empty"),
        pytest.param("[1, 2]", "application/json", 1, None, id="not-objects"),
    ],
)
def test_invalid_body_is_422_naming_line_and_field_and_emits_nothing(
    svc: Running, content: str, ctype: str, line: int, field: str | None
) -> None:
    before = _hwm(svc)
    response = svc.http.post("/events", content=content, headers={"content-type": ctype})
    error = _error(response, 422, "invalid_body")
    assert error["line"] == line, error
    assert error.get("field") == field, error
    if field:
        assert field in error["message"]
    assert "nothing of this batch was emitted" in error["message"]
    assert _hwm(svc) == before, "a rejected batch must produce nothing"


def test_body_that_is_not_utf8_is_422(svc: Running) -> None:
    response = svc.http.post(
        "/events", content=b"\xff\xfe{", headers={"content-type": "application/json"}
    )
    _error(response, 422, "invalid_body")


# ---------------------------------------------------------------------- OpenAPI


def test_openapi_is_complete(svc: Running) -> None:
    spec = svc.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "delete", "patch"}
    ]
    assert {p for p, _, _ in operations} >= {
        "/customers/{key}",
        "/customers/{key}/timeline",
        "/customers/{key}/cases/{case_id}",
        "/customers/{key}/events",
        "/search",
        "/service-levels",
        "/service-levels/unanswered",
        "/service-levels/due-soon",
        "/service-levels/breached",
        "/service-levels/counts",
        "/defects",
        "/defects/{defect_id}",
        "/events",
        "/customers/{customer_id}/identities",
        "/customers/{customer_id}/identities/unlink",
        "/healthz",
        "/metrics",
    }
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), f"{where} has no summary"
        success = {k: v for k, v in op["responses"].items() if k.startswith("2")}
        assert success, f"{where} documents no success response"
        for status, response in success.items():
            content = response.get("content")
            assert content, f"{where} {status} has no content"
            for media, body in content.items():
                schema = body.get("schema")
                assert schema, f"{where} {status} {media} has no schema"
                if media == "application/json":
                    ref = schema.get("$ref", "")
                    assert ref.startswith("#/components/schemas/"), f"{where}: {schema}"
                    model = schemas[ref.rsplit("/", 1)[1]]
                    # Reads of views answer with their freshness; emitting answers positions.
                    if path not in {"/healthz", "/audit"} and method == "get":
                        assert FRESHNESS_KEYS - {"data"} <= set(model["properties"]), where
                        assert "data" in model["properties"], where
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                assert schema, f"{where} {status} has no schema"
                # Errors are answered as ErrorOut (503 of reads: NotFreshOut; of health: Health),
                # never as FastAPI's default validation error shape.
                assert schema["$ref"].rsplit("/", 1)[1] in {"ErrorOut", "NotFreshOut", "Health"}, (
                    where
                )
    assert "requestBody" in spec["paths"]["/events"]["post"]
    assert set(spec["paths"]["/events"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "application/x-ndjson",
    }
    assert svc.get("/docs").status_code == 200


# ---------------------------------------------------------------------- operations


def test_healthz(svc: Running) -> None:
    body = svc.get("/healthz").json()
    assert body["status"] == "ok" and body["runner"] == "running"
    assert body["lag_events"] == 0 and body["topic"] == TOPIC


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z_]+)(\{.*\})? (\S+)", line)
        assert match, f"not exposition format: {line!r}"
        if match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    raise AssertionError(f"no {name} {labels} in /metrics")


def test_metrics_exposition(svc: Running) -> None:
    for _ in range(3):
        _ok(svc, "/customers/cust-sven")
    # A message that is not a touchpoint: the runner sets it aside as a dead letter.
    (pos,) = svc.log.produce(TOPIC, [OutgoingMessage(key=b"cust-x", value=b"not json")])
    _ok(svc, "/service-levels", params={"after": pos.token()})
    text = svc.get("/metrics").text
    assert svc.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    hwm = svc.log.high_watermarks(TOPIC)
    for p, end in hwm.items():
        labels = {"topic": TOPIC, "partition": str(p)}
        assert _metric(text, "journey_events_folded_total", **labels) == end
        assert _metric(text, "journey_view_lag_events", **labels) == 0
        assert _metric(text, "journey_view_lag_seconds", **labels) == 0
    assert _metric(text, "journey_dead_letters_total") == 1
    assert _metric(text, "journey_runner_dead_letters_total") == 1
    assert _metric(text, "journey_runner_up") == 1
    route = "/customers/{key}"
    assert _metric(text, "journey_query_duration_seconds_count", route=route) >= 3
    assert _metric(text, "journey_query_duration_seconds_bucket", route=route, le="+Inf") >= 3
    assert _metric(text, "journey_http_requests_total", route=route, status="200") >= 3
    assert _metric(text, "journey_freshness_wait_seconds_count", basis="head") >= 3
    assert "# TYPE journey_query_duration_seconds histogram" in text


def test_each_service_has_metrics_of_its_own(make_service: Callable[..., Running]) -> None:
    """Two apps in one process (as in these tests, or two services in one worker) count
    apart: each has its own registry, and both expositions parse as Prometheus text."""
    one, two = make_service(), make_service()
    for _ in range(2):
        _ok(one, "/customers/cust-sven")
    _ok(two, "/customers/cust-sven")
    route = "/customers/{key}"
    counts = []
    for svc in (one, two):
        text = svc.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["journey_pipeline_failing"].type == "gauge"
        assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)
        counts.append(_metric(text, "journey_http_requests_total", route=route, status="200"))
    assert counts == [2, 1]
