"""Bounds at the edge (issue 8, item 2): size, nesting, date ranges, strict JSON types and
``occurred_at`` against now, the same in ``decode`` (the consumer), ``parse_batch`` (emit and
POST /events) and ``journey emit``; and no date arithmetic that can overflow."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from domain.bounds import MAX_DEPTH, Bounds, after_hours, exceeds_depth, shifted
from domain.envelope import decode, encode
from domain.errors import InvalidEvent
from domain.journey import Case, Promise
from domain.rules import ServiceRules, case_deadline, promise_deadline
from journey.emitter import BatchError, parse_batch
from journey.schema import example_envelope, schema_file_name
from tests.bounds_cases import MiB, cases, deep, inquiry, promise, recent, sized

CASES = cases()


def _now() -> Bounds:
    return Bounds(now=datetime.now(UTC))


# --------------------------------------------------------------------------- decode


@pytest.mark.parametrize("name", sorted(CASES))
def test_decode_refuses_each_bound_with_its_reason_and_field(name: str) -> None:
    case = CASES[name]
    with pytest.raises(InvalidEvent) as info:
        decode(case.text.encode(), _now())
    assert (info.value.reason, info.value.field) == (case.reason, case.field), info.value.message
    assert case.says in info.value.message


@pytest.mark.parametrize("name", sorted(CASES))
def test_parse_batch_refuses_each_bound_naming_line_and_field(name: str) -> None:
    case = CASES[name]
    good = json.dumps(inquiry())
    with pytest.raises(BatchError) as info:
        parse_batch(f"{good}\n{case.text}\n{good}\n", "batch.jsonl")
    assert info.value.line == 2
    assert (info.value.error.reason, info.value.error.field) == (case.reason, case.field)
    assert str(info.value).startswith("batch.jsonl:2: ")


def test_a_deep_value_in_an_array_or_a_pretty_printed_document_is_refused() -> None:
    deep_env = json.loads(deep(30))  # fine alone ...
    for text in (
        json.dumps([inquiry(), json.loads(deep(33))]),  # ... but not one level more
        "[\n" + "[" * 5000 + "]" * 5000 + "\n]",
        deep(2_000).replace(", ", ",\n"),  # one pretty-printed envelope
    ):
        with pytest.raises(BatchError) as info:
            parse_batch(text)
        assert info.value.error.reason == "too_deep", text[:80]
    with pytest.raises(BatchError) as fine:  # within the bound: the schema speaks
        parse_batch(json.dumps([deep_env]))
    assert fine.value.error.reason == "invalid_data"


def test_the_edges_of_each_bound_are_inside() -> None:
    now = recent() + timedelta(hours=1)
    bounds = Bounds(now=now)
    at = {"occurred_at": (now + timedelta(days=1)).isoformat()}
    assert decode(json.dumps(inquiry() | at), bounds).occurred_at == now + timedelta(days=1)
    late = {"occurred_at": (now + timedelta(days=1, seconds=1)).isoformat()}
    with pytest.raises(InvalidEvent, match="out of range"):
        decode(json.dumps(inquiry() | late), bounds)
    # configurable: a producer whose clock runs up to three days ahead
    assert decode(json.dumps(inquiry() | late), Bounds(now, max_future=timedelta(days=3)))
    first = {"occurred_at": "1970-01-01T00:00:00Z"}
    assert decode(json.dumps(inquiry() | first), bounds).occurred_at.year == 1970
    for due in ("1900-01-01T00:00:00Z", "2200-12-31T23:59:59Z"):
        assert decode(json.dumps(promise(due_by=due)), bounds)
    # 32 levels is not too deep (the schema refuses a list for a subject, not the scanner)
    with pytest.raises(InvalidEvent) as info:
        decode(deep(MAX_DEPTH), bounds)
    assert info.value.reason == "invalid_data"
    assert decode(sized(MiB), _now())  # exactly 1 MiB on the wire


def test_json_text_still_carries_times_dates_ids_and_amounts() -> None:
    """Strict types, but the types JSON has no literal for parse from their JSON form."""
    complaint = example_envelope("ComplaintFiled", 2)
    complaint["data"] |= {"purchase_date": "2024-02-29", "warranty_claim": True}
    tp = decode(json.dumps(complaint), _now())
    assert str(tp.event_id) == complaint["event_id"]
    refund = example_envelope("RefundIssued", 1)
    for amount in (499, 499.5, "499.50"):
        refund["data"]["amount"] = {"amount": amount, "currency": "SEK"}
        assert decode(json.dumps(refund), _now())
    for wrong, field in (
        ({"purchase_date": 20240229}, "data.purchase_date"),
        ({"purchase_date": "1899-12-31"}, "data.purchase_date"),
        ({"warranty_claim": "true"}, "data.warranty_claim"),
        ({"warranty_claim": 1}, "data.warranty_claim"),
        ({"product": 42}, "data.product"),
    ):
        env = {**complaint, "data": complaint["data"] | wrong}
        with pytest.raises(InvalidEvent) as info:
            decode(json.dumps(env), _now())
        assert info.value.field == field, wrong
    refund["data"]["amount"] = {"amount": True, "currency": "SEK"}
    with pytest.raises(InvalidEvent) as info:
        decode(json.dumps(refund), _now())
    assert info.value.field == "data.amount.amount"


def test_decoded_touchpoints_round_trip_through_the_strict_models() -> None:
    tp = decode(json.dumps(promise()), _now())
    assert decode(encode(tp), _now()) == tp


@pytest.mark.parametrize(
    "name",
    [
        "occurred_at in 9999",
        "occurred_at before 1970",
        "due_by in 9999",
        "year 1800 in data",
        '"1" for schema_version',
        "1 for a string",
    ],
)
def test_the_exported_json_schema_refuses_the_same(name: str) -> None:
    """A producer validating against docs/schema is held to the same static bounds."""
    env = json.loads(CASES[name].text)
    path = Path(__file__).parents[2] / "docs" / "schema" / schema_file_name(env["type"], 1)
    schema = json.loads(path.read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert not validator.is_valid(env)
    fine = json.loads(json.dumps(promise()))
    assert Draft202012Validator(
        json.loads((path.parent / schema_file_name("PromiseMade", 1)).read_text()),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    ).is_valid(fine)


# --------------------------------------------------------------------------- the scanner


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\né☃'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(value=_json, limit=st.integers(min_value=0, max_value=6))
def test_the_depth_scanner_agrees_with_a_recursive_count(value: Any, limit: int) -> None:
    expected = _depth(value) > limit
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert exceeds_depth(text, limit) is expected
        assert exceeds_depth(text.encode(), limit) is expected


def test_the_depth_scanner_is_linear_on_hostile_text() -> None:
    # unterminated strings full of escaped quotes would make a backtracking scanner
    # quadratic; 1 MiB of it must finish at once (no timing asserted: it just returns)
    hostile = "[" * 40 + '"' + '\\"' * (MiB // 2)
    assert exceeds_depth(hostile, MAX_DEPTH) is True
    assert exceeds_depth('"' + '\\"[' * (MiB // 3), MAX_DEPTH) is False


# --------------------------------------------------------------------------- property


def _mutations() -> st.SearchStrategy[bytes]:
    base = promise()
    keys = [*base.keys(), *(f"data.{k}" for k in base["data"])]
    hostile = st.one_of(
        _json,
        st.sampled_from(
            [
                "9999-12-31T23:59:59Z",
                "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59-14:00",
                "1", True, 1e308, -1, 10**30, "", "\x00", "NaN",
                "2026-02-30T00:00:00Z", "2026-11-23", "\ud800",
            ]
        ),
    )  # fmt: skip

    def mutate(key: str, value: Any) -> bytes:
        env = json.loads(json.dumps(base))
        if key.startswith("data."):
            env["data"][key[5:]] = value
        else:
            env[key] = value
        return json.dumps(env).encode(errors="surrogatepass")

    return st.builds(mutate, st.sampled_from(keys), hostile)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.text(max_size=200).map(str.encode),
        _json.map(lambda v: json.dumps(v).encode()),
        st.integers(min_value=1, max_value=6000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(min_value=1, max_value=6000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.integers(min_value=1, max_value=6000).map(lambda n: b"[" * n),
        _mutations(),
    )
)
def test_decode_returns_a_touchpoint_or_raises_invalid_event(raw: bytes | str) -> None:
    with contextlib.suppress(InvalidEvent):
        decode(raw, _now())


def test_the_python_emitter_keeps_the_same_bounds(tmp_path: Path) -> None:
    from consumers.embedded_log import EmbeddedLog
    from domain import catalogue as c
    from journey.emitter import Emitter
    from projections.keys import CustomerKeys

    log = EmbeddedLog(str(tmp_path / "log.db"))
    keys = CustomerKeys(tmp_path / "views.db")
    try:
        emitter = Emitter(log, topic="t", source="test", keys=keys)
        data = c.CaseResolved(case_id="k-1", resolution="done")
        for at in (datetime.now(UTC) + timedelta(days=2), datetime(9999, 1, 1, tzinfo=UTC)):
            with pytest.raises(InvalidEvent) as info:
                emitter.emit(data, customer_id="c-1", occurred_at=at)
            assert (info.value.reason, info.value.field) == ("out_of_range", "occurred_at")
        with pytest.raises(InvalidEvent) as big:
            emitter.emit(
                c.CaseResolved(case_id="k-1", resolution="x" * 10_000),
                customer_id="c-1",
                occurred_at=recent(),
                correlation_id="y" * MiB,
            )
        assert big.value.reason == "too_large"
        assert sum(log.high_watermarks("t").values()) == 0
        assert emitter.emit(data, customer_id="c-1", occurred_at=recent()).offset == 0
    finally:
        keys.close()
        log.close()


# --------------------------------------------------------------------------- arithmetic


def test_date_arithmetic_saturates_instead_of_overflowing() -> None:
    at = datetime(9999, 12, 31, 23, tzinfo=UTC)
    assert shifted(at, timedelta(hours=2)) == datetime.max.replace(tzinfo=UTC)
    assert shifted(datetime(1, 1, 1, 1, tzinfo=UTC), -timedelta(days=1)).year == 1
    assert shifted(at, timedelta(hours=-2)) == at - timedelta(hours=2)
    assert after_hours(at, 1e300) == datetime.max.replace(tzinfo=UTC)


def test_a_deadline_past_the_end_of_time_saturates() -> None:
    """A case opened on 9999-12-31 (a store folded before the bounds) and a promise made
    then: reading their deadlines used to raise OverflowError (a 500 on every view)."""
    end = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
    case = Case("k-1", "inquiry", "email", end, reply_owed_since=end)
    deadline = case_deadline(case, ServiceRules())
    assert deadline is not None and deadline.due_at == datetime.max.replace(tzinfo=UTC)
    assert deadline.state(datetime.now(UTC)) == "ok"
    made = Promise("p-1", "call", "callback", end + timedelta(minutes=20), "a", end)
    assert promise_deadline(made, ServiceRules()) is not None


@pytest.mark.parametrize("hours", [1e12, float("inf"), float("nan"), -1, 24 * 365 * 11])
def test_a_service_rule_of_absurd_hours_is_refused_when_loaded(hours: float) -> None:
    with pytest.raises(ValidationError):
        ServiceRules.model_validate({"first_reply_hours": {"default": hours}})
    with pytest.raises(ValidationError):
        ServiceRules.model_validate({"next_reply_hours": {"email": hours}})


# --------------------------------------------------------------------------- journey emit

JOURNEY = Path(sys.executable).with_name("journey")
CLI_CASES = [
    "occurred_at in 9999",
    "due_by in 9999",
    "year 1800 in data",
    "2,000 levels",
    "5,000 levels",
    "1 MiB + 1",
    '"1" for schema_version',
    "true for a number",
]


@pytest.mark.parametrize("name", CLI_CASES)
def test_journey_emit_exits_2_with_one_line_naming_the_bound(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    batch = tmp_path / "batch.jsonl"
    good = json.dumps(inquiry())
    batch.write_text(f"{good}\n{case.text}\n", encoding="utf-8")
    db = tmp_path / "log.db"
    done = subprocess.run(
        [str(JOURNEY), "--broker", f"embedded:///{db}", "emit", "--file", str(batch)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"{batch}:2:" in lines[0]
    assert case.says in lines[0]
    if case.field:
        assert case.field in lines[0]
    assert done.stdout == ""  # nothing emitted


def test_journey_emit_takes_the_allowed_skew_from_settings(tmp_path: Path) -> None:
    ahead = json.dumps(inquiry(at=recent() + timedelta(days=3)))
    command = [str(JOURNEY), "--broker", f"embedded:///{tmp_path / 'log.db'}", "emit", ahead]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "occurred_at" in refused.stderr
    env = {**os.environ, "JOURNEY_MAX_FUTURE": "P4D"}
    taken = subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert taken.returncode == 0, taken.stderr
    assert json.loads(taken.stdout)["offset"] == 0


def test_the_settings_refuse_an_absurd_skew() -> None:
    from journey.settings import Settings

    with pytest.raises(ValueError, match="max_future"):
        Settings(max_future=timedelta(days=10_000))


@settings(max_examples=400, deadline=None)
@given(
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2190, 1, 1), timezones=st.just(UTC)
    ),
    days=st.integers(min_value=-6, max_value=6),
    seconds=st.integers(min_value=-86_399, max_value=86_399),
    offset_min=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_the_future_bound_is_decided_as_the_instants_compare_whatever_the_offsets(
    now: datetime, days: int, seconds: int, offset_min: int
) -> None:
    """occurred_at is checked against now + the skew without asking for zone offsets when
    its own date is days before: near the bound, in any offset, the outcome is exactly
    `occurred_at > latest`, as the emit path and POST /events see it."""
    from datetime import timezone

    from domain.envelope import _check_occurred

    bounds = Bounds(now=now)
    zone = timezone(timedelta(minutes=offset_min))
    at = (bounds.latest + timedelta(days=days, seconds=seconds)).astimezone(zone)
    refused = True
    try:
        _check_occurred(at, bounds)
        refused = False
    except InvalidEvent as exc:
        assert exc.reason == "out_of_range" and exc.field == "occurred_at"
    assert refused == (at > bounds.latest)
