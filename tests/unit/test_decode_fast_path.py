"""``decode`` validates a current-version envelope once, straight from its bytes
(pydantic-core's JSON parser), and gives exactly what the object path (``json.loads``,
then ``parse_envelope``) gives: the same Touchpoint for what both accept, the same error
for what they refuse; the bounds before any parser (size, nesting) still come first
(issue 10, intake side)."""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import envelope
from domain.bounds import MAX_DEPTH, Bounds
from domain.catalogue import CATALOGUE, CURRENT, TouchpointData
from domain.envelope import Touchpoint, decode, encode, encode_sealed
from domain.errors import InvalidEvent
from domain.personal import KeyLookup, new_key
from journey.schema import example_envelope
from journey.stories import all_touchpoints
from journey.synthetic import generate_touchpoints
from tests import bounds_cases
from tests.unit.test_emit_parsing import CASES

NOW = datetime(2026, 12, 1, tzinfo=UTC)  # after every example envelope
BOUNDS = Bounds(now=NOW)


@contextmanager
def _object_path_only() -> Iterator[None]:
    """``decode`` as it was: every envelope through ``json.loads`` and the dicts."""
    with mock.patch.object(envelope, "_decode_current", lambda _raw, _bounds: None):
        yield


def _outcome(raw: bytes, bounds: Bounds | None, keys: KeyLookup | None) -> tuple[Any, ...]:
    try:
        tp = decode(raw, bounds, keys)
    except InvalidEvent as exc:
        return ("refused", type(exc).__name__, exc.reason, exc.message, exc.field)
    assert type(tp) is Touchpoint
    try:
        encoded: object = encode(tp)
    except ValueError as exc:  # e.g. a lone surrogate ``json.loads`` let through
        encoded = type(exc).__name__
    return (
        "accepted",
        tp,
        repr(tp),
        tp.model_dump(),
        tp.__pydantic_fields_set__,
        tp.data.__pydantic_fields_set__,
        encoded,
    )


def _same_both_ways(
    raw: bytes, bounds: Bounds | None = BOUNDS, keys: KeyLookup | None = None
) -> tuple[Any, ...]:
    fast = _outcome(raw, bounds, keys)
    with _object_path_only():
        assert fast == _outcome(raw, bounds, keys), raw[:300]
    return fast


def _current_examples() -> list[bytes]:
    return [
        json.dumps(example_envelope(t, v)).encode()
        for (t, v) in sorted(CATALOGUE)
        if CURRENT[t] == v
    ]


# --------------------------------------------------------------------------- accepted


def test_stories_and_generated_touchpoints_take_the_one_call_path_and_decode_the_same() -> None:
    tps = list(all_touchpoints(NOW)) + generate_touchpoints(
        2_000, 40, seed=15, start=NOW - timedelta(days=300)
    )
    for tp in tps:
        raw = encode(tp)
        assert envelope._decode_current(raw, None) is not None, raw  # not vacuous
        assert _same_both_ways(raw, None)[1] == tp
        # spaced out as json.dumps writes it, and with its keys in another order
        spaced = json.dumps(json.loads(raw)).encode()
        reordered = json.dumps(dict(reversed(json.loads(raw).items()))).encode()
        assert _same_both_ways(spaced, None)[1] == tp
        assert _same_both_ways(reordered, None)[1] == tp


def test_every_type_and_version_decodes_the_same_both_ways() -> None:
    for type_name, version in sorted(CATALOGUE):
        raw = json.dumps(example_envelope(type_name, version)).encode()
        assert _same_both_ways(raw)[0] == "accepted", (type_name, version)


def test_the_touchpoint_made_in_place_is_an_ordinary_one() -> None:
    raw = _current_examples()[0]
    fast = envelope._decode_current(raw, None)
    with _object_path_only():
        slow = decode(raw)
    assert type(fast) is Touchpoint and fast == slow and hash(fast) == hash(slow)
    assert pickle.loads(pickle.dumps(fast)) == slow  # noqa: S301 (our own bytes)
    assert fast.model_copy(update={"source": "x"}) == slow.model_copy(update={"source": "x"})
    with pytest.raises(Exception, match="frozen"):
        fast.source = "changed"  # type: ignore[misc]
    # what the in-place change relies on: nothing of Touchpoint's own to set up
    assert not Touchpoint.__private_attributes__
    assert Touchpoint.__pydantic_post_init__ is None
    wire = envelope._wire(fast.type.encode())
    assert wire is not None
    assert list(wire.envelope.model_fields) == list(Touchpoint.model_fields)


def test_sealed_values_open_the_same_both_ways() -> None:
    tps = generate_touchpoints(1_500, 30, seed=16, start=NOW - timedelta(days=300))
    keys = {tp.customer_id: new_key(tp.customer_id) for tp in tps}
    by_kid = {k.kid: k.key for k in keys.values()}

    def lookup(_customer: str, kid: str) -> bytes | None:
        return by_kid.get(kid)

    sealed = 0
    for tp in tps:
        raw = encode_sealed(tp, keys[tp.customer_id])
        sealed += raw != encode(tp)
        for given_keys in (lookup, None, lambda _c, _k: None):
            _same_both_ways(raw, None, given_keys)
        assert decode(raw, None, lookup) == tp
    assert sealed > 100


def test_a_form_of_one_sealed_looking_value_opens_the_same_both_ways() -> None:
    env = example_envelope("SignupRequested", CURRENT["SignupRequested"])
    for enc in ('"enc"', '"\\u0065nc"'):
        env["data"]["fields"] = "@"
        text = json.dumps(env).replace(
            '"@"', "{" + enc + ': "v1", "kid": "k", "iv": "AAAA", "ct": "AAAA"}'
        )
        _same_both_ways(text.encode())


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_bad_event_is_refused_the_same_both_ways(name: str) -> None:
    assert _same_both_ways(CASES[name].text.encode())[0] == "refused"


@pytest.mark.parametrize("name", sorted(bounds_cases.cases()))
def test_each_bound_is_refused_the_same_both_ways(name: str) -> None:
    case = bounds_cases.cases()[name]
    outcome = _same_both_ways(case.text.encode(), Bounds(now=datetime.now(UTC)))
    if case.reason != "too_large" or len(case.text.encode()) > 1024 * 1024:
        assert outcome[0] == "refused" and outcome[2] == case.reason, outcome


def test_unknown_type_names_are_not_remembered() -> None:
    before = len(envelope._KIND)
    for n in range(50):
        env = {**example_envelope("InquiryReceived", 1), "type": f"Unknown{n}"}
        assert _same_both_ways(json.dumps(env).encode())[2] == "unknown_type"
    assert len(envelope._KIND) == before


def test_too_deep_never_reaches_a_parser_or_a_model() -> None:
    deep = bounds_cases.deep(MAX_DEPTH + 1).encode()
    with (
        mock.patch.object(envelope, "_wire", side_effect=AssertionError("validated")),
        pytest.raises(InvalidEvent) as caught,
    ):
        decode(deep, BOUNDS)
    assert caught.value.reason == "too_deep"
    just = bounds_cases.deep(MAX_DEPTH).encode()
    assert _same_both_ways(just)[0] == "refused"  # deep enough, but not a valid body


def test_a_current_envelope_is_decoded_once_from_its_bytes() -> None:
    """No ``json.loads`` and no dict validation for the common case (the issue's
    "decode each message once")."""
    raws = [encode(tp) for tp in all_touchpoints(NOW)]
    with (
        mock.patch.object(envelope, "loads", side_effect=AssertionError("json.loads")),
        mock.patch.object(envelope, "parse_envelope", side_effect=AssertionError("dicts")),
    ):
        decoded = [decode(raw, None) for raw in raws]
    with _object_path_only():
        assert decoded == [decode(raw, None) for raw in raws]


def test_what_json_loads_refuses_is_refused_in_a_type_that_takes_floats(
    registry: None,
) -> None:
    class Measured(TouchpointData, type_name="ThrowawayMeasured", version=1):
        """A reading (a float: NaN and Infinity would parse)."""

        reading: float

    env = {**example_envelope("InquiryReceived", 1), "type": "ThrowawayMeasured"}
    for number in ("NaN", "Infinity", "-Infinity", "1e400", "2.5"):
        env["data"] = {"reading": "@"}
        raw = json.dumps(env).replace('"@"', number).encode()
        outcome = _same_both_ways(raw)
        assert (outcome[0], outcome[2:3]) != ("accepted", ()) or number in ("1e400", "2.5")
    assert Measured.type_name == "ThrowawayMeasured"


@pytest.fixture
def registry() -> Iterator[None]:
    catalogue, current = dict(CATALOGUE), dict(CURRENT)
    yield
    CATALOGUE.clear()
    CATALOGUE.update(catalogue)
    CURRENT.clear()
    CURRENT.update(current)


# --------------------------------------------------------------------------- mutations

_RAW_VALUES = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "1" * 4301,
    "1" * 40,
    "-0",
    "1.0",
    "1E2",
    "0.1",
    "499.00",
    "null",
    "true",
    "false",
    "[]",
    "{}",
    '"1"',
    '""',
    '" c-1"',
    '"\\ud800"',
    '"\\u00e9t\\u00e9"',
    '"caf\\u00e9\\/x"',
    '"line\\nbreak"',
    '"tab\tinside"',
    '"\x7f"',
    '"\xc3\xa9"',
    '"\xff"',
    '"\xed\xa0\x80"',
    '"2026-05-31T10:00:00+00:00"',
    '"2026-05-31T10:00:00.000000Z"',
    '"2026-05-31T10:00:00z"',
    '"2026-05-31t10:00:00Z"',
    '"2026-05-31T10:00:00+0100"',
    '"2026-05-31T10:00:00"',
    '"2026-05-31"',
    '"9999-12-31T23:59:59Z"',
    '"1969-12-31T23:59:59Z"',
    '"FEB1C1E2-5B6D-4E7F-8A9B-0C1D2E3F4A5B"',
    '"{feb1c1e2-5b6d-4e7f-8a9b-0c1d2e3f4a5b}"',
    '"feb1c1e25b6d4e7f8a9b0c1d2e3f4a5b"',
    '"urn:uuid:feb1c1e2-5b6d-4e7f-8a9b-0c1d2e3f4a5b"',
    '"PromiseMade"',
    '"InquiryReceived"',
    '"product:sku-1"',
    '{"enc": "v1", "kid": "k", "iv": "AAAA", "ct": "AAAA"}',
    '{"\\u0065nc": "v1", "kid": "k", "iv": "AAAA", "ct": "AAAA"}',
    '{"amount": 1e2, "currency": "SEK"}',
    '{"amount": "499.00", "currency": "SEK"}',
    '[{"sku": "s", "name": "n", "unit_price": {"amount": 1, "currency": "SEK"}}]',
    '{"f1": "x", "f1": "y"}',
    "[" * 40 + "]" * 40,
]
_ENVELOPE_KEYS = [
    "event_id",
    "type",
    "schema_version",
    "customer_id",
    "occurred_at",
    "source",
    "correlation_id",
    "causation_id",
    "data",
    "extra",
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(sorted(CURRENT)))
    env: dict[str, Any] = json.loads(json.dumps(example_envelope(kind, CURRENT[kind])))
    env["event_id"] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    raws: list[str] = []
    fields = sorted(CATALOGUE[(kind, CURRENT[kind])].model_fields)
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(_ENVELOPE_KEYS + [f"data.{f}" for f in fields]))
        marker = f"@@raw{len(raws)}@@"
        raws.append(draw(st.sampled_from(_RAW_VALUES)))
        if where.startswith("data."):
            if isinstance(env.get("data"), dict):
                env["data"][where[5:]] = marker
        else:
            env[where] = marker
    if draw(st.booleans()):
        env.pop(draw(st.sampled_from(_ENVELOPE_KEYS)), None)
    compact = draw(st.booleans())
    text = json.dumps(
        env,
        separators=(",", ":") if compact else (", ", ": "),
        ensure_ascii=draw(st.booleans()),
    )
    for n, value in enumerate(raws):
        text = text.replace(f'"@@raw{n}@@"', value)
    duplicate = draw(st.sampled_from(["", "type", "schema_version", "data", "customer_id"]))
    if duplicate and text.endswith("}"):
        again = json.dumps(example_envelope("InquiryReceived", 1)[duplicate])
        text = text[:-1] + f',"{duplicate}":{again}' + "}"
    raw = text.encode("utf-8", "surrogatepass")
    prefix = draw(st.sampled_from([b"", b" \n", b"\xef\xbb\xbf"]))
    suffix = draw(st.sampled_from([b"", b"\r\n", b" x"]))
    return prefix + raw + suffix


@settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_mutated())
def test_mutated_envelope_bytes_get_the_same_answer_both_ways(raw: bytes) -> None:
    _same_both_ways(raw)
    _same_both_ways(raw, None)


# --------------------------------------------------------------------------- the poll


def test_a_polled_message_is_the_message_the_dataclass_makes() -> None:
    import dataclasses

    from consumers.kafka_log import _message
    from consumers.log import Message

    class Record:  # what kafka-python's poll hands over, field by field
        def __init__(self, headers: Any) -> None:
            self.offset, self.key, self.value, self.timestamp = 7, b"c-1", b"{}", 1_700_000_000_000
            self.headers = headers

    for headers, expected in (
        (None, ()),
        ([], ()),
        ([("journey-type", b"InquiryReceived")], (("journey-type", b"InquiryReceived"),)),
    ):
        made = _message("t", 3, Record(headers))
        plain = Message("t", 3, 7, b"c-1", b"{}", 1_700_000_000_000, expected)
        assert made == plain and hash(made) == hash(plain) and repr(made) == repr(plain)
        assert made.topic_partition == plain.topic_partition
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.offset = 8  # type: ignore[misc]
