"""The store's bytes (issue 10: a store of at most 1.5 times the log's bytes).

A touchpoint's fact is stored without the envelope head its row already holds as columns,
and is given back byte for byte from them; an envelope whose head the columns could not
give back exactly is kept whole. The store built from the benchmark workload grows by at
most 1.5 bytes per byte of the log (the log: key + value of every message).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench.workload import Shape, ensure_workload, read_batches
from domain import catalogue as c
from domain.catalogue import CATALOGUE
from domain.envelope import Touchpoint, decode, encode, new_touchpoint
from domain.positions import TopicPartition
from projections.facts import (
    at_micros,
    pack,
    pack_summary,
    type_code,
    type_name,
    unpack,
    unpack_summary,
)
from projections.store import JourneyStore


def _inquiry(customer_id: str, at: datetime) -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(case_id="k1", channel="email", subject="where is it", body="hello"),
        customer_id=customer_id,
        occurred_at=at,
        source="test",
    )


def _back(stored: bytes, tp: Touchpoint, **columns: object) -> bytes:
    values: dict[str, object] = {
        "event_id": tp.event_id.bytes,
        "type": tp.type,
        "customer_id": tp.customer_id,
        "at": at_micros(tp.occurred_at),
    }
    values.update(columns)
    return unpack(stored, **values)  # type: ignore[arg-type]


def test_a_fact_is_stored_without_the_head_its_row_holds_and_given_back_from_it() -> None:
    tp = _inquiry("cust-a", datetime(2026, 3, 2, 9, tzinfo=UTC))
    raw = encode(tp)
    stored = pack(raw, customer_id=tp.customer_id)
    assert _back(stored, tp) == raw
    # The event id, customer and time come from the row's columns, not from the stored bytes.
    other = uuid.uuid4()
    again = _back(stored, tp, event_id=other.bytes, customer_id="cust-b")
    assert str(other).encode() in again and b'"cust-b"' in again
    assert str(tp.event_id).encode() not in again and b'"cust-a"' not in again
    assert decode(again).data == tp.data


def test_an_envelope_whose_head_the_columns_cannot_give_back_is_kept_whole() -> None:
    base = datetime(2026, 3, 2, 9, tzinfo=UTC)
    cases = [
        _inquiry("cust-a", base + timedelta(microseconds=120)),  # fractional seconds
        _inquiry("cust-a", base.astimezone(timezone(timedelta(hours=2)))),  # another offset
        _inquiry('kunde "ø" \\ \u2028 \x01 x', base),  # what JSON escapes
        _inquiry("+4790000000", datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ]
    for tp in cases:
        raw = encode(tp)
        assert _back(pack(raw, customer_id=tp.customer_id), tp) == raw, raw
    # Not an envelope as encode writes it at all: kept as it is.
    odd = b'{"type":"InquiryReceived","event_id":"x"}'
    assert (
        unpack(
            pack(odd, customer_id="c"), event_id=uuid.uuid4().bytes, type="X", customer_id="c", at=0
        )
        == odd
    )


def test_a_fact_and_a_summary_are_deflated_against_their_customers_id() -> None:
    # The ids a body holds mostly repeat its customer's (orders, cases, e-mail addresses):
    # a fact stores the row's customer_id as one marker byte, a summary deflates against it
    # as the last words of its dictionary; the same id gives the bytes back.
    cid = "kunde-0001234"
    tp = new_touchpoint(
        c.InquiryReceived(
            case_id=f"{cid}-c7", channel="email", subject=f"order {cid}-o3", body=f"{cid}@x.no"
        ),
        customer_id=cid,
        occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
        source="test",
    )
    raw = encode(tp)
    stored = pack(raw, customer_id=cid)
    assert len(stored) < len(pack(raw, customer_id="someone-else")) - 10
    assert _back(stored, tp) == raw
    summary = f"Identity linked (unverified claim): email {cid}@example.com"
    packed = pack_summary(summary, cid)
    assert len(packed) <= 20 < len(summary.encode())
    assert unpack_summary(packed, cid) == summary
    assert unpack_summary(pack_summary("", cid), cid) == ""
    assert unpack_summary(pack_summary("Ørsta → Å ✓", "ø"), "ø") == "Ørsta → Å ✓"


def test_every_type_has_its_number_in_the_store() -> None:
    names = sorted({name for name, _ in CATALOGUE})
    assert [type_name(type_code(name)) for name in names] == names
    assert len({type_code(name) for name in names}) == len(names)
    # The numbers are the store's format: schema 9's stay what they were.
    assert type_code("AutoAcknowledgementSent") == 1 and type_code("SignupRequested") == 44
    with pytest.raises(ValueError, match="TYPE_CODES"):
        type_code("NoSuchType")


def _file_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(conn.execute("SELECT sum(pgsize) FROM dbstat").fetchone()[0])
    finally:
        conn.close()


def _fill_8k(store: JourneyStore, tmp_path: Path, measure: Callable[[], int]) -> tuple[int, int]:
    """The bench workload at 8k into ``store`` in batches of 500: (the store's bytes by
    ``measure`` after the first four batches, the log's bytes of the batches after them)."""
    workload = ensure_workload(tmp_path / "cache", Shape.for_events(8000), seed=2026)
    tp = TopicPartition("size.touchpoints", 0)
    offset, grown_from, log_bytes = -1, 0, 0
    for number, batch in enumerate(read_batches(workload.path, 500)):
        items = []
        for line in batch:
            offset += 1
            touchpoint = decode(line)
            items.append((offset, touchpoint))
            if number >= 4:
                log_bytes += len(touchpoint.customer_id.encode()) + len(line)
        store.process(tp, items, offset)
        if number == 3:
            grown_from = measure()
    return grown_from, log_bytes


def test_the_store_grows_by_at_most_one_and_a_half_times_the_logs_bytes(tmp_path: Path) -> None:
    # The benchmark's workload at a smaller size: the same mix of types, a few long histories
    # and many quiet customers. The first part fills the tables' fixed overhead (one page of
    # each table and index); the growth over the rest is what each touchpoint costs.
    path = tmp_path / "views.db"
    store = JourneyStore(path)
    try:
        grown_from, log_bytes = _fill_8k(store, tmp_path, lambda: _file_bytes(path))
    finally:
        store.close()
    grown = _file_bytes(path) - grown_from
    assert log_bytes > 0
    assert grown / log_bytes <= 1.5, f"{grown / log_bytes:.2f}× the log's bytes"


def test_a_compacted_store_is_smaller_and_says_the_same(
    store_address: Path | str, tmp_path: Path
) -> None:
    # What a rebuild does before the swap: the same rows, packed.
    workload = ensure_workload(tmp_path / "cache", Shape.for_events(2000), 7)
    store = JourneyStore(store_address)
    tp = TopicPartition("size.touchpoints", 0)
    offset = -1
    try:
        for batch in read_batches(workload.path, 200):
            items = []
            for line in batch:
                offset += 1
                items.append((offset, decode(line)))
            store.process(tp, items, offset)
        store.backend.purge()  # SQLite: the write-ahead log's pages into the file first
        before = store.size_bytes()
        ids = store.event_ids()
        customers = [workload.heavy_ids[0], workload.medium_ids[0], workload.quiet_id]
        journeys = {cid: store.journey(cid) for cid in customers}
        timelines = {cid: store.timeline([(cid, 0)], limit=1000) for cid in customers}
        store.compact()
        assert store.size_bytes() < before
        assert store.event_ids() == ids and store.position(tp) == offset
        for cid in customers:
            journey = store.journey(cid)
            assert journey is not None and journeys[cid] is not None
            assert journey.journey.timeline == journeys[cid].journey.timeline  # type: ignore[union-attr]
            assert store.timeline([(cid, 0)], limit=1000) == timelines[cid]
    finally:
        store.close()


def _postgres_bytes(url: str) -> int:
    """Every relation of the store's schema (heap, TOAST, indexes, maps): what ``make bench``
    and bench/size_bench.py count."""
    from projections.location import active_store, connect, schema_of

    schema = schema_of(str(active_store(url))) or "public"
    with connect(url) as conn:
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            (schema,),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_a_packed_postgresql_store_grows_by_at_most_1_55_times_the_logs_bytes(
    postgres_store: str, tmp_path: Path
) -> None:
    # As the SQLite test above, on PostgreSQL, packed as a rebuild leaves it (VACUUM FULL):
    # its growth over the first batches, each packed store measured. 1.88 times with schema 8
    # (its rows' 8-byte alignment, indexes 90 % full, the summary, type and content hash as
    # they came), 1.50 with schema 9; the target, 1.5 times, is measured at 100k by
    # bench/size_bench.py (1.49, docs/BENCHMARKS.md "PostgreSQL store size"): here, where a
    # page more or less moves the figure by 0.01, with some room.
    store = JourneyStore(postgres_store)

    def packed_bytes() -> int:
        store.compact()
        return _postgres_bytes(postgres_store)

    try:
        grown_from, log_bytes = _fill_8k(store, tmp_path, packed_bytes)
        store.compact()
        grown = _postgres_bytes(postgres_store) - grown_from
    finally:
        store.close()
    assert log_bytes > 0
    assert grown / log_bytes <= 1.55, f"{grown / log_bytes:.2f}× the log's bytes"
