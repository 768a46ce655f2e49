"""The published contract (docs/schema/, docs/events.md) matches what the models say now,
and every example in the docs is a valid touchpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from consumers import dead_letters
from domain.catalogue import CATALOGUE, CURRENT
from domain.envelope import decode, encode
from domain.errors import InvalidEvent
from journey.schema import (
    BEGIN_MARKER,
    END_MARKER,
    ENVELOPE_FILE,
    INDEX_FILE,
    SchemaExportError,
    example_envelope,
    export_schemas,
    schema_file_name,
    update_events_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "docs" / "schema"
EVENTS_MD = ROOT / "docs" / "events.md"
FIX = "run `make schema` (journey schema --out docs/schema) and commit the result"


def _json_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```json\n(.*?)^```$", markdown, flags=re.DOTALL | re.MULTILINE)


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


# --------------------------------------------------------------------------- drift


def test_docs_schema_matches_the_models(tmp_path: Path) -> None:
    export_schemas(tmp_path)
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.iterdir()}
    missing = sorted(set(fresh) - set(committed))
    extra = sorted(set(committed) - set(fresh))
    stale = sorted(
        name for name in fresh.keys() & committed.keys() if fresh[name] != committed[name]
    )
    problems = [
        f"{label}: {names}"
        for label, names in (
            ("missing from docs/schema", missing),
            ("in docs/schema but exported by no model", extra),
            ("out of date", stale),
        )
        if names
    ]
    assert not problems, f"docs/schema differs from the models ({'; '.join(problems)}): {FIX}"


def test_events_md_generated_part_matches_the_models() -> None:
    text = EVENTS_MD.read_text(encoding="utf-8")
    assert text == update_events_markdown(text), (
        f"the generated part of docs/events.md is out of date: {FIX}"
    )


def test_export_is_deterministic_and_removes_stale_schemas(tmp_path: Path) -> None:
    (tmp_path / "Retired.v1.schema.json").write_text("{}")
    first = {p.name: p.read_bytes() for p in export_schemas(tmp_path)}
    second = {p.name: p.read_bytes() for p in export_schemas(tmp_path)}
    assert first == second
    assert not (tmp_path / "Retired.v1.schema.json").exists()
    assert all(text.endswith(b"}\n") for text in first.values())


def test_export_writes_one_file_per_type_and_version_plus_envelope_and_index(
    tmp_path: Path,
) -> None:
    names = {p.name for p in export_schemas(tmp_path)}
    expected = {schema_file_name(t, v) for (t, v) in CATALOGUE} | {ENVELOPE_FILE, INDEX_FILE}
    assert names == expected


def test_markers_are_required() -> None:
    with pytest.raises(SchemaExportError, match="BEGIN GENERATED"):
        update_events_markdown("# no markers here\n")
    with pytest.raises(SchemaExportError):
        update_events_markdown(f"{END_MARKER}\n{BEGIN_MARKER}\n")


# --------------------------------------------------------------------------- schema content


def test_index_lists_every_type_its_versions_and_the_current_one() -> None:
    index = json.loads((SCHEMA_DIR / INDEX_FILE).read_text(encoding="utf-8"))
    assert set(index["types"]) == set(CURRENT)
    complaint = index["types"]["ComplaintFiled"]
    assert complaint["current_version"] == 2
    assert [(v["version"], v["current"]) for v in complaint["versions"]] == [
        (1, False),
        (2, True),
    ]
    for entry in index["types"].values():
        for version in entry["versions"]:
            assert (SCHEMA_DIR / version["schema"]).exists()


@pytest.mark.parametrize(("type_name", "version"), sorted(CATALOGUE))
def test_every_schema_is_a_complete_2020_12_envelope(type_name: str, version: int) -> None:
    schema = json.loads((SCHEMA_DIR / schema_file_name(type_name, version)).read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(schema_file_name(type_name, version))
    assert schema["title"] == f"{type_name} v{version}"
    assert schema["description"]
    assert schema["properties"]["type"]["const"] == type_name
    assert schema["properties"]["schema_version"]["const"] == version
    assert schema["additionalProperties"] is False
    assert schema["properties"]["data"]["additionalProperties"] is False


@pytest.mark.parametrize(("type_name", "version"), sorted(CATALOGUE))
def test_every_field_is_described(type_name: str, version: int) -> None:
    schema = json.loads((SCHEMA_DIR / schema_file_name(type_name, version)).read_text())
    objects = [schema, schema["properties"]["data"], *schema.get("$defs", {}).values()]
    undocumented = [
        name
        for obj in objects
        for name, prop in obj["properties"].items()
        if not prop.get("description")
    ]
    assert not undocumented, (
        f"{type_name} v{version}: describe {undocumented} (Field(description=...) in the "
        "model, or the glossary in journey/schema.py)"
    )


def _times(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if node.get("format") == "date-time" else []
        return found + [t for value in node.values() for t in _times(value)]
    if isinstance(node, list):
        return [t for value in node for t in _times(value)]
    return []


def test_times_are_date_time_with_an_offset_and_say_so() -> None:
    schema = json.loads((SCHEMA_DIR / schema_file_name("PromiseMade", 1)).read_text())
    assert len(_times(schema)) == 2  # occurred_at, data.due_by
    assert all(t["type"] == "string" and "pattern" in t for t in _times(schema))
    assert "offset" in schema["properties"]["occurred_at"]["description"]
    assert "offset" in schema["properties"]["data"]["properties"]["due_by"]["description"]


def test_envelope_schema_leaves_data_to_the_type() -> None:
    schema = json.loads((SCHEMA_DIR / ENVELOPE_FILE).read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["data"]["type"] == "object"
    assert schema["required"] == [
        "event_id",
        "type",
        "schema_version",
        "customer_id",
        "occurred_at",
        "source",
        "data",
    ]


# --------------------------------------------------------------------------- schema == pydantic


def _good() -> dict[str, Any]:
    return example_envelope("PromiseMade", 1)


def _with(path: str, value: Any) -> dict[str, Any]:
    env = _good()
    *parents, leaf = path.split(".")
    node = env
    for part in parents:
        node = node[part]
    node[leaf] = value
    return env


BAD_FOR_BOTH = {
    "naive occurred_at": _with("occurred_at", "2026-11-23T10:15:00"),
    "naive data time": _with("data.due_by", "2026-11-24T16:00:00"),
    "unix time": _with("occurred_at", 1795425300),
    "extra envelope field": _with("colour", "blue"),
    "extra data field": _with("data.colour", "blue"),
    "bad uuid": _with("event_id", "not-a-uuid"),
    "null for a required data field": _with("data.what", None),
    "out of range enum": _with("data.kind", "bribe"),
    "customer_id starting with a space": _with("customer_id", " c-1"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOR_BOTH))
def test_the_schema_and_the_decoder_reject_the_same_mistakes(case: str) -> None:
    env = BAD_FOR_BOTH[case]
    assert not _validator(schema_file_name("PromiseMade", 1)).is_valid(env)
    with pytest.raises(InvalidEvent):
        decode(json.dumps(env))


def test_decimal_amounts_as_strings_or_numbers_satisfy_both() -> None:
    env = example_envelope("RefundIssued", 1)
    for amount in ("499.00", 499, 499.5):
        env["data"]["amount"]["amount"] = amount
        assert _validator(schema_file_name("RefundIssued", 1)).is_valid(env)
        decode(json.dumps(env))
    env["data"]["amount"]["amount"] = "-5"
    assert not _validator(schema_file_name("RefundIssued", 1)).is_valid(env)
    with pytest.raises(InvalidEvent):
        decode(json.dumps(env))


# --------------------------------------------------------------------------- docs examples


def test_examples_are_fresh_copies() -> None:
    first = example_envelope("OrderPlaced", 1)
    first["data"]["total"]["currency"] = "XXX"
    form = example_envelope("SignupRequested", 1)
    form["data"]["fields"].clear()
    second = example_envelope("OrderPlaced", 1)
    assert second["data"]["total"]["currency"] == "SEK"
    assert example_envelope("SignupRequested", 1)["data"]["fields"]


def test_events_md_names_the_dead_letter_headers_the_runner_writes() -> None:
    text = EVENTS_MD.read_text(encoding="utf-8")
    headers = [
        value
        for name, value in vars(dead_letters).items()
        if name.startswith("HEADER_") and isinstance(value, str)
    ]
    assert len(headers) >= 6
    undocumented = [h for h in headers if f"`{h}`" not in text]
    assert not undocumented, f"docs/events.md (dead letters) must name {undocumented}"


def test_events_md_documents_every_type() -> None:
    text = EVENTS_MD.read_text(encoding="utf-8")
    for type_name in CURRENT:
        assert f"\n### {type_name}\n" in text, f"docs/events.md has no section for {type_name}"


def _doc_examples() -> list[dict[str, Any]]:
    return [json.loads(block) for block in _json_blocks(EVENTS_MD.read_text(encoding="utf-8"))]


def test_every_json_block_in_events_md_is_a_valid_touchpoint() -> None:
    examples = _doc_examples()
    assert len(examples) > len(CATALOGUE), "expected one example per type and version at least"
    for example in examples:
        try:
            tp = decode(json.dumps(example))
        except InvalidEvent as exc:
            pytest.fail(f"docs/events.md example {example.get('type')} is invalid: {exc}")
        assert tp.type == example["type"]
        assert _validator(schema_file_name(example["type"], example["schema_version"])).is_valid(
            example
        ), f"{example['type']} example fails its JSON Schema"


def test_every_type_and_version_has_an_example_in_events_md() -> None:
    shown = {(e["type"], e["schema_version"]) for e in _doc_examples()}
    assert shown >= set(CATALOGUE)


def test_examples_with_one_event_id_decode_to_the_same_touchpoint() -> None:
    # docs/events.md shows a v1 ComplaintFiled and what it is read as; they must agree
    by_id: dict[str, list[dict[str, Any]]] = {}
    for example in _doc_examples():
        by_id.setdefault(example["event_id"], []).append(example)
    pairs = [group for group in by_id.values() if len(group) > 1]
    assert pairs, "expected the upcasting example (v1 and the v2 it is read as)"
    for group in pairs:
        decoded = [decode(json.dumps(e)) for e in group]
        assert all(tp == decoded[0] for tp in decoded)
        assert all(encode(tp) == encode(decoded[0]) for tp in decoded)
