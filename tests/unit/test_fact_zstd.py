"""A touchpoint's fact is stored zstd-compressed against a prepared dictionary, its customer's
id as one marker byte (schema 12), where schema 11 deflated it against a 2 KB dictionary set
up again for every fact: every fact reads back byte for byte, whatever bytes it holds, in
fewer bytes than deflate stored it, and a store of 11 is refused instead of misread."""

from __future__ import annotations

import sqlite3
import threading
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.workload import Shape, iter_touchpoints
from domain.envelope import Touchpoint, encode
from journey.stories import all_touchpoints
from projections import facts
from projections.integrity import OutdatedStore
from projections.store import JourneyStore


def _deflated(raw: bytes, customer_id: str) -> bytes:
    """A fact as schema 11 stored it: its body deflated against the words and the id."""
    c = zlib.compressobj(
        6, zlib.DEFLATED, -15, 5, zlib.Z_DEFAULT_STRATEGY, facts._FACT_WORDS + customer_id.encode()
    )
    return c.compress(facts._body(raw)) + c.flush()


def _inflated(stored: bytes, tp: Touchpoint) -> bytes:
    """A schema 11 row's fact, whole again from its columns, as schema 11 read it."""
    d = zlib.decompressobj(-15, facts._FACT_WORDS + tp.customer_id.encode())
    body = d.decompress(stored) + d.flush()
    if not body[:1].isdigit():
        return body
    digits = len(body) - len(body.lstrip(b"0123456789"))
    return (
        facts._head_before(str(tp.event_id), tp.type)
        + body[:digits]
        + facts._head_after(tp.customer_id, facts.at_micros(tp.occurred_at))
        + body[digits:]
    )


def _back(stored: bytes, tp: Touchpoint) -> bytes:
    return facts.unpack(
        stored,
        event_id=tp.event_id.bytes,
        type=tp.type,
        customer_id=tp.customer_id,
        at=facts.at_micros(tp.occurred_at),
    )


def _stories() -> list[Touchpoint]:
    return all_touchpoints(datetime(2026, 1, 1, tzinfo=UTC))


def test_every_storys_fact_reads_back_as_deflate_gave_it_back() -> None:
    stories = _stories()
    assert len({t.type for t in stories}) > 30
    for tp in stories:
        raw = encode(tp)
        stored = facts.pack(raw, customer_id=tp.customer_id)
        assert _back(stored, tp) == raw, raw
        # Both ways: what the new row gives back is what the old row gave back.
        assert _inflated(_deflated(raw, tp.customer_id), tp) == _back(stored, tp)


@pytest.mark.parametrize(
    ("body", "customer_id"),
    [
        (b"", "c"),
        (b"{}", ""),
        (b'{"a":"\x01"}', "c"),  # the marker itself: stored unmarked
        (b'{"a":"c\x01c"}', "c"),
        (b"\x01", ""),
        (b'{"a":"x\x01y"}', "x\x01y"),  # the marker in the customer's id
        (b"\xff\xfe" + bytes(range(256)), "\x02"),  # not UTF-8, every byte
        (b'{"a":"' + b"k-1 " * 9000 + b'"}', "k-1"),  # past zstd's 16 KB window
        (b'{"a":"cc"}', "c"),  # the id twice in a row
        (b'{"a":"ccc"}', "cc"),  # overlapping
    ],
)
def test_any_bytes_read_back(body: bytes, customer_id: str) -> None:
    stored = facts.pack(body, customer_id=customer_id)
    again = facts.unpack(
        stored, event_id=uuid.uuid4().bytes, type="X", customer_id=customer_id, at=0
    )
    assert again == body


def test_a_marked_fact_never_starts_with_the_unmarked_byte() -> None:
    for tp in _stories():
        assert facts.pack(encode(tp), customer_id=tp.customer_id)[:1] != facts._UNMARKED
    assert facts.pack(b'{"a":"\x01"}', customer_id="c")[:1] == facts._UNMARKED


def test_facts_are_stored_in_fewer_bytes_than_deflate_stored_them() -> None:
    # The seed stories (every kind of case; their facts were a small part of what the
    # dictionary was made from) and a bench-shaped workload of a seed, a prefix and a
    # source the dictionary was not made from.
    stories = [(encode(t), t.customer_id) for t in _stories()]
    synthetic = [
        (encode(t), t.customer_id)
        for t in iter_touchpoints(Shape.for_events(2000), 5, prefix="shop", source="web")
    ]
    for pairs, at_most in ((stories, 0.99), (synthetic, 0.8)):
        before = sum(len(_deflated(r, c)) for r, c in pairs)
        after = sum(len(facts.pack(r, customer_id=c)) for r, c in pairs)
        assert after <= at_most * before, (after, before)


def test_threads_pack_and_unpack_at_once() -> None:
    # zstd's contexts are not thread safe: each thread has its own.
    stories = _stories()
    failures: list[str] = []

    def work() -> None:
        for _ in range(20):
            for tp in stories:
                raw = encode(tp)
                if _back(facts.pack(raw, customer_id=tp.customer_id), tp) != raw:
                    failures.append(str(tp.event_id))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_a_store_of_schema_11_is_refused_not_misread(tmp_path: Path) -> None:
    # Its facts are deflated: read as zstd frames they would be garbage or errors.
    path = tmp_path / "views.db"
    JourneyStore(str(path)).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE journey_store_meta SET value = '11' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(OutdatedStore, match="journey rebuild all"):
        JourneyStore(str(path))
