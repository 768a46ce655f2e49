"""Storing a fact takes a short cut for the head ``encode`` writes (a plain customer id, UTC
with Z): the cut must strip exactly what the full check (build the head again from the
columns and compare) strips, and keep whole exactly what it keeps whole."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime

import pytest

from projections import facts

_EVENT = "0b6f5a3c-1d2e-4f60-8a9b-0c1d2e3f4a5b"


def _raw(customer_json: str, occurred: str) -> bytes:
    return (
        f'{{"event_id":"{_EVENT}","type":"InquiryReceived","schema_version":1,'
        f'"customer_id":{customer_json},"occurred_at":"{occurred}","source":"t","data":{{}}}}'
    ).encode()


@pytest.mark.parametrize(
    "customer_json",
    ['"cust-a"', '"kunde ø ✓"', '"a\\"b"', '"a\\\\b"', '"a\\u2028b"', '"\u2028"', '""', '"x\ty"'],
)
@pytest.mark.parametrize(
    "occurred",
    [
        "2026-03-02T09:00:00Z",
        "2026-03-02T09:00:00.000120Z",
        "2026-03-02T09:00:00.000000Z",  # the columns give no fraction back: kept whole
        "2026-03-02T09:00:00.5Z",
        "2026-03-02T09:00:00+02:00",
        "2026-03-02T09:00:00+00:00",
        "0999-03-02T09:00:00Z",  # %Y writes 999: kept whole
        "1000-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        "2026-13-02T09:00:00Z",  # no such month
        "2026-02-30T09:00:00Z",
        "2026-03-02T24:00:00Z",
        "2026-03-02T09:00:60Z",
        "9999-12-31T23:59:59.999999Z",
    ],
)
def test_the_short_cut_strips_what_the_full_check_strips(customer_json: str, occurred: str) -> None:
    raw = _raw(customer_json, occurred)
    m = facts._HEAD.match(raw)
    assert m is not None
    full = facts._slow_body(raw, m)
    assert facts._body(raw) == full
    if full != raw:  # stripped: given back byte for byte from the columns
        cid = json.loads(customer_json)
        at = facts.at_micros(datetime.fromisoformat(occurred))
        stored = facts.pack(raw, customer_id=cid)
        back = facts.unpack(
            stored, event_id=uuid.UUID(_EVENT).bytes, type="InquiryReceived", customer_id=cid, at=at
        )
        assert back == raw


def test_a_control_character_the_json_would_escape_is_not_taken_as_plain() -> None:
    assert facts._PLAIN_ID.fullmatch(b'"a\x01b"') is None
    assert re.fullmatch(facts._PLAIN_AT, b"2026-03-02T09:00:00.000000Z") is None


def _reference_body(raw: bytes) -> bytes:
    """What ``_body`` kept before its one-match short cut: the head found by ``_HEAD``, its
    customer id and occurred_at checked apart, anything else by the full check."""
    m = facts._HEAD.match(raw)
    if m is None:
        return raw
    customer_id, occurred = m.group(4, 5)
    if facts._PLAIN_ID.fullmatch(customer_id) and facts._PLAIN_AT.fullmatch(occurred):
        try:
            datetime.fromisoformat(occurred.decode())
        except ValueError:
            return raw
        return raw[m.start(3) : m.end(3)] + raw[m.end() :]
    return facts._slow_body(raw, m)


def _outcome(body: object, raw: bytes) -> object:
    try:
        return body(raw)  # type: ignore[operator]
    except (ValueError, TypeError) as exc:  # bad UTF-8, a time without offset: both raise
        return type(exc)


def test_the_one_match_short_cut_keeps_what_the_checks_apart_kept() -> None:
    """Every head byte replaced, dropped or doubled (and the digits, the id and the time
    spelt otherwise): the one-match head strips exactly what the match then the checks
    of its groups stripped, and keeps whole exactly what they kept."""
    import random

    rng = random.Random(20261202)  # noqa: S311 -- reproducible test cases, not secrets
    seeds = [
        _raw('"cust-a"', "2026-03-02T09:00:00Z"),
        _raw('"cust-a"', "2026-03-02T09:00:00.000120Z"),
        _raw('"a\\"b"', "2026-03-02T09:00:00Z"),
        _raw('"kunde ø"', "2026-02-28T23:59:59.999999Z"),
        _raw('"x"', "2026-02-29T09:00:00Z"),
    ]
    alphabet = b'"\\:,{}0123456789abcdefZT.-+ \x01\xc3\xb8'
    cases = 0
    for seed in seeds:
        assert facts._body(seed) == _reference_body(seed)
        head = seed.index(b',"source"')
        for _ in range(1500):
            raw = bytearray(seed)
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(head)
                action = rng.randrange(3)
                if action == 0:
                    raw[at] = rng.choice(alphabet)
                elif action == 1:
                    del raw[at]
                else:
                    raw.insert(at, raw[at])
            cases += 1
            assert _outcome(facts._body, bytes(raw)) == _outcome(_reference_body, bytes(raw))
    assert cases == 7500
