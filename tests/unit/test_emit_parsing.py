"""Every way an event can be wrong is reported with its reason, field and line, and a batch
with one bad line produces nothing (through the library and through `journey emit`)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consumers import open_log
from domain.envelope import decode
from domain.errors import InvalidEvent
from journey.emitter import BatchError, parse_batch
from journey.schema import example_envelope

TOPIC = "journey.touchpoints"


def good(**changes: Any) -> dict[str, Any]:
    env = example_envelope("PromiseMade", 1)
    env["event_id"] = "3f8a1c2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
    env.update(changes)
    return env


def good_data(**changes: Any) -> dict[str, Any]:
    env = good()
    env["data"] = {**env["data"], **changes}
    return env


def without(field: str, *, in_data: bool = False) -> dict[str, Any]:
    env = good()
    if in_data:
        env["data"] = {k: v for k, v in env["data"].items() if k != field}
    else:
        del env[field]
    return env


@dataclass(frozen=True)
class Case:
    text: str  # one line of JSON (no newline)
    reason: str
    field: str | None
    says: str  # the message must contain this


def _line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


CASES: dict[str, Case] = {
    "not JSON": Case('{"event_id": ', "not_json", None, "not JSON"),
    "not an object": Case('"PromiseMade"', "invalid_envelope", None, "JSON object"),
    "unknown type": Case(_line(good(type="PromiseForgotten")), "unknown_type", "type", "type"),
    "unknown version": Case(
        _line(good(schema_version=7)), "unknown_version", "schema_version", "schema_version"
    ),
    "missing envelope field": Case(
        _line(without("source")), "invalid_envelope", "source", "source: field required"
    ),
    "missing data field": Case(
        _line(without("due_by", in_data=True)),
        "invalid_data",
        "data.due_by",
        "data.due_by: field required",
    ),
    "wrong type in envelope": Case(
        _line(good(schema_version="one")), "invalid_envelope", "schema_version", "schema_version"
    ),
    "wrong type in data": Case(
        _line(good_data(what=["call", "back"])), "invalid_data", "data.what", "data.what"
    ),
    "data not an object": Case(_line(good(data=[1, 2])), "invalid_envelope", "data", "data"),
    "time without zone in envelope": Case(
        _line(good(occurred_at="2026-11-23T10:15:00")),
        "invalid_envelope",
        "occurred_at",
        "occurred_at: a time needs a zone offset",
    ),
    "time without zone in data": Case(
        _line(good_data(due_by="2026-11-24T16:00:00")),
        "invalid_data",
        "data.due_by",
        "data.due_by: a time needs a zone offset",
    ),
    "time as a Unix number": Case(
        _line(good(occurred_at=1795425300)),
        "invalid_envelope",
        "occurred_at",
        "occurred_at: a time must be an RFC 3339 string",
    ),
    "bad uuid": Case(_line(good(event_id="12345")), "invalid_envelope", "event_id", "event_id"),
    "extra envelope field": Case(
        _line(good(priority="high")), "invalid_envelope", "priority", "priority"
    ),
    "extra data field": Case(
        _line(good_data(priority="high")), "invalid_data", "data.priority", "data.priority"
    ),
    "bad enum value": Case(
        _line(good_data(kind="bribe")), "invalid_data", "data.kind", "data.kind"
    ),
    "empty customer_id": Case(
        _line(good(customer_id="")), "invalid_envelope", "customer_id", "customer_id"
    ),
}


# --------------------------------------------------------------------------- decode


def test_the_good_event_is_good() -> None:
    assert decode(_line(good())).type == "PromiseMade"
    assert len(parse_batch(_line(good()))) == 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_decode_reports_reason_and_field(name: str) -> None:
    case = CASES[name]
    with pytest.raises(InvalidEvent) as info:
        decode(case.text.encode())
    assert info.value.reason == case.reason
    assert info.value.field == case.field
    assert case.says in str(info.value)
    if case.field:
        assert case.field in str(info.value), "the message must name the field"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "not_json"),
        (b"", "not_json"),
        (b"\xff\xfe{}", "not_json"),
        (b"[]", "invalid_envelope"),
        (b"null", "invalid_envelope"),
        (b"{}", "invalid_envelope"),
    ],
)
def test_decode_of_raw_bytes(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(raw)
    assert info.value.reason == reason


def test_unknown_type_lists_known_ones_and_points_to_the_docs() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_line(good(type="PromiseForgotten")))
    assert "'PromiseForgotten'" in info.value.message
    assert "docs/events.md" in info.value.message


def test_nested_field_is_named_with_its_path() -> None:
    env = example_envelope("OrderPlaced", 1)
    # Lines are optional (a shop may send orders without item lines): give it one.
    env["data"]["lines"] = [
        {"sku": "X-1", "name": "X", "unit_price": {"amount": "10.00", "currency": "kronor"}}
    ]
    with pytest.raises(InvalidEvent) as info:
        decode(_line(env))
    assert info.value.field == "data.lines.0.unit_price.currency"


def test_several_errors_are_counted() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(_line(good_data(what=None, made_by=None)))
    assert "(and 1 more)" in info.value.message


# --------------------------------------------------------------------------- parse_batch


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_names_the_line_reason_and_field(name: str) -> None:
    case = CASES[name]
    text = "\n".join([_line(good()), _line(good()), case.text, _line(good())]) + "\n"
    with pytest.raises(BatchError) as info:
        parse_batch(text, "batch.jsonl")
    assert info.value.line == 3
    assert info.value.error.reason == case.reason
    assert info.value.error.field == case.field
    message = str(info.value)
    assert message.startswith("batch.jsonl:3: ")
    assert case.says in message
    assert "nothing of this batch was emitted" in message


def test_blank_lines_are_skipped_but_counted() -> None:
    text = f"\n{_line(good())}\n\n{CASES['bad uuid'].text}\n"
    with pytest.raises(BatchError) as info:
        parse_batch(text)
    assert info.value.line == 4
    assert str(info.value).startswith("line 4: ")


def test_json_lines_array_and_pretty_printed_object_are_accepted() -> None:
    one = good()
    assert len(parse_batch(f"{_line(one)}\n{_line(one)}\n")) == 2
    assert len(parse_batch(json.dumps([one, one, one]))) == 3
    assert len(parse_batch(json.dumps(one, indent=2))) == 1


def test_array_errors_name_the_item() -> None:
    text = json.dumps([good(), good(), good(customer_id=""), good()])
    with pytest.raises(BatchError) as info:
        parse_batch(text)
    assert info.value.line == 3
    assert info.value.error.field == "customer_id"


def test_json_syntax_error_in_a_multi_line_document_names_its_line() -> None:
    text = "\n\n[\n" + json.dumps(good()) + ",\n{oops}\n]\n"
    with pytest.raises(BatchError) as info:
        parse_batch(text)
    assert info.value.line == 5  # leading blank lines count
    assert info.value.error.reason == "not_json"


@pytest.mark.parametrize("text", ["", "   \n\n"])
def test_empty_input_is_an_error(text: str) -> None:
    with pytest.raises(BatchError) as info:
        parse_batch(text)
    assert info.value.error.reason == "not_json"
    assert "no input" in str(info.value)


# --------------------------------------------------------------------------- journey emit

JOURNEY = Path(sys.executable).with_name("journey")


def journey(db: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(JOURNEY), "--broker", f"embedded:///{db}", "--topic", TOPIC, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def customer_events(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        env = good(customer_id=f"cust-{i % 3}")
        env["event_id"] = f"00000000-0000-4000-8000-{i:012d}"
        out.append(env)
    return out


def test_cli_emit_prints_one_position_per_event(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    batch = tmp_path / "batch.jsonl"
    events = customer_events(5)
    batch.write_text("".join(_line(e) + "\n" for e in events), encoding="utf-8")

    result = journey(db, "emit", "--file", str(batch))

    assert result.returncode == 0, result.stderr
    positions = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(positions) == 5
    assert all(set(p) == {"topic", "partition", "offset", "token"} for p in positions)
    assert all(p["token"] == f"{TOPIC}:{p['partition']}:{p['offset']}" for p in positions)
    assert all(p["topic"] == TOPIC for p in positions)
    assert len({(p["partition"], p["offset"]) for p in positions}) == 5
    log = open_log(f"embedded:///{db}")
    try:
        assert sum(log.high_watermarks(TOPIC).values()) == 5
        for env, pos in zip(events, positions, strict=True):
            # key = customer_id decides the partition
            assert log.partition_for(TOPIC, env["customer_id"].encode()) == pos["partition"]
    finally:
        log.close()


def test_cli_emit_reads_one_envelope_as_argument_and_stdin(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    one = journey(db, "emit", _line(good()))
    assert one.returncode == 0, one.stderr
    assert len(one.stdout.splitlines()) == 1
    two = journey(db, "emit", stdin="".join(_line(e) + "\n" for e in customer_events(2)))
    assert two.returncode == 0, two.stderr
    assert len(two.stdout.splitlines()) == 2


def test_cli_emit_with_a_bad_third_line_emits_nothing(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    log = open_log(f"embedded:///{db}")
    try:
        log.ensure_topics([TOPIC], 6)
    finally:
        log.close()
    lines = [_line(e) for e in customer_events(4)]
    lines[2] = CASES["time without zone in data"].text
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = journey(db, "emit", "--file", str(batch))

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{batch}:3:" in result.stderr
    assert "data.due_by" in result.stderr
    assert "zone offset" in result.stderr
    log = open_log(f"embedded:///{db}")
    try:
        assert set(log.high_watermarks(TOPIC).values()) == {0}
    finally:
        log.close()


def test_cli_emit_of_invalid_json_names_the_line(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    result = journey(db, "emit", stdin=_line(good()) + "\n{not json\n")
    assert result.returncode == 2
    assert "stdin:2:" in result.stderr
    assert "not JSON" in result.stderr
    assert not db.exists(), "a rejected batch must not even open the log"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
def test_unicode_line_separators_inside_a_string_are_text_not_line_ends(separator: str) -> None:
    """Raw in a JSON string these are legal; str.splitlines() cut the envelope there."""
    body = f"before{separator}after"
    single = json.dumps(good_data(what=body), ensure_ascii=False)
    lines = single + "\r\n" + json.dumps(good_data(what="second"), ensure_ascii=False) + "\n"
    assert [t.data.what for t in parse_batch(single)] == [body]  # type: ignore[attr-defined]
    assert [t.data.what for t in parse_batch(lines)] == [body, "second"]  # type: ignore[attr-defined]
