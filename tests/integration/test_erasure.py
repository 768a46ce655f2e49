"""Forgetting that works (crypto-shredding), on every store: a customer's name and phone,
planted where a customer puts them (a form, a message, an identity), are shown while the
customer is known and readable nowhere after ``ErasureRequested`` — not in the log's bytes,
not in the store's file and write-ahead log (SQLite) or its tables (PostgreSQL), not in the
search index, not in the logs — while another customer's data stays, also after a rebuild.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from consumers.embedded_log import EmbeddedLog
from consumers.intake import intake_topic
from consumers.log import Log, Message, OutgoingMessage
from consumers.rebuild import rebuild
from domain import catalogue as c
from domain.envelope import Touchpoint, decode, encode, new_touchpoint
from domain.personal import ERASED
from journey.analytics.export import export
from journey.pipeline import ManualClock, Pipeline
from projections.customer_view import build_customer_view
from projections.keys import CustomerKeys, keys_file
from projections.location import is_postgres
from projections.store import JourneyStore, active_store

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
# Unique, so that finding them anywhere can only mean this test's customer.
NAME = "Gudrun Zyxwvutsrud"
PHONE = "+47 99 18 27 36"
ADDRESS = "Qwertzgata 77, 0123 Oslo"
KEPT = "Kjellfrid Keepsakesen"
SECRETS = [NAME.encode(), PHONE.encode(), ADDRESS.encode(), b"Zyxwvutsrud", b"Qwertzgata"]


def _at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def _tp(data: c.TouchpointData, cid: str, minutes: int) -> Touchpoint:
    return new_touchpoint(data, customer_id=cid, occurred_at=_at(minutes), source="test")


def planted(cid: str, name: str, phone: str, address: str = ADDRESS) -> list[Touchpoint]:
    return [
        _tp(
            c.SignupRequested(
                case_id=f"{cid}-s",
                form="become-a-customer",
                products=["mortgage"],
                fields={"name": name, "phone": phone, "address": address},
            ),
            cid,
            0,
        ),
        _tp(c.IdentityLinked(kind="email", value=f"{cid}@example.com", verified=True), cid, 1),
        _tp(
            c.InquiryReceived(
                case_id=f"{cid}-k", channel="sms", body=f"This is {name}, call me on {phone}"
            ),
            cid,
            2,
        ),
        _tp(
            c.PromiseMade(
                promise_id=f"{cid}-p",
                what=f"call {name} back",
                kind="callback",
                due_by=_at(600),
                made_by="ola",
                made_to=name,
            ),
            cid,
            3,
        ),
        _tp(
            c.OrderPlaced(
                order_id=f"{cid}-o",
                lines=[
                    c.OrderLine(sku="tv", name="TV", unit_price=c.Money(amount=1, currency="NOK"))
                ],
                total=c.Money(amount=1, currency="NOK"),
                delivery_address=address,
            ),
            cid,
            4,
        ),
    ]


def kept_customer(cid: str) -> list[Touchpoint]:
    return planted(cid, KEPT, "+47 11 22 33 44", "Kept Street 1")


def raw_records(log: Log, topic: str) -> list[Message]:
    """Every record of ``topic`` as stored, read from the beginning outside any group."""
    total = sum(log.high_watermarks(topic).values())
    consumer = log.consumer(None, [topic])
    try:
        consumer.seek_to_beginning()
        out: list[Message] = []
        for _ in range(200):
            out += consumer.poll(0.2, 1000)
            if len(out) >= total:
                break
        assert len(out) == total
        return out
    finally:
        consumer.close()


def intake_left(log: Log, topic: str) -> list[Message]:
    """What can still be read of the intake from its beginning."""
    consumer = log.consumer(None, [topic])
    try:
        consumer.seek_to_beginning()
        out: list[Message] = []
        for _ in range(10):
            out += consumer.poll(0.2, 1000)
        return out
    finally:
        consumer.close()


def found_in(blob: bytes) -> list[bytes]:
    return [s for s in SECRETS if s in blob]


def file_bytes(path: Path) -> bytes:
    """A SQLite file and its write-ahead log and journal, as bytes on disk."""
    out = b""
    for suffix in ("", "-wal", "-journal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            out += candidate.read_bytes()
    return out


def table_contents(url: str) -> bytes:
    """Every row of every table of the store's schema (and of public), as text."""
    import psycopg

    from projections.location import schema_of, with_schema

    schema = schema_of(url) or "public"
    out = []
    with psycopg.connect(with_schema(url, None), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema IN (%s, 'public') AND table_type = 'BASE TABLE'",
            (schema,),
        ).fetchall()
        for owner, table in tables:
            for (row,) in conn.execute(f'SELECT t::text FROM "{owner}"."{table}" t'):
                out.append(str(row))
    return "\n".join(out).encode()


def store_bytes(address: Path | str) -> bytes:
    active = active_store(address)
    if is_postgres(active):
        assert isinstance(active, str)
        return table_contents(active)
    assert isinstance(active, Path)
    return file_bytes(active)


@pytest.fixture
def pipeline(log: Log, store_address: Path | str, unique_topic: str) -> Iterator[Pipeline]:
    clock = ManualClock(NOW + timedelta(minutes=30))
    pipe = Pipeline(
        log, store_address, topic=unique_topic, clock=clock, group=unique_topic, relay_intake=True
    )
    try:
        yield pipe
    finally:
        pipe.close()


def log_bytes(log: Log, topics: list[str]) -> bytes:
    """What the log keeps on disk for ``topics``: the embedded log's file (and its WAL), or
    the broker's segment files when the broker's data directory is readable from here
    (JOURNEY_TEST_KAFKA_DATA, e.g. .cache/kafka/data); the raw records are read anyway."""
    if isinstance(log, EmbeddedLog):
        return file_bytes(Path(log.path))
    data = os.environ.get("JOURNEY_TEST_KAFKA_DATA")
    if not data or not Path(data).is_dir():
        return b""
    out = b""
    for topic in topics:
        for directory in Path(data).glob(f"{topic}-*"):
            for segment in directory.glob("*.log"):
                out += segment.read_bytes()
    return out


def view_text(pipe: Pipeline, cid: str) -> str:
    view = build_customer_view(pipe.store, cid, rules=pipe.rules, now=pipe.clock())
    assert view is not None
    return view.model_dump_json()


def test_erasure_leaves_no_personal_data_in_the_log_the_store_or_the_logs(
    pipeline: Pipeline, store_address: Path | str, tmp_path: Path
) -> None:
    topic = pipeline.topic
    gone, kept = "c-gone", "c-kept"
    with capture_logs() as logs:
        pipeline.emit([*planted(gone, NAME, PHONE), *kept_customer(kept)])
        # Producers that cannot encrypt go through the intake: one plain touchpoint, and
        # one that fails its schema (the name in an unknown field) — a dead letter, which
        # must not keep the name in the clear either.
        plain = planted(gone, NAME, PHONE)[2].model_copy(update={"event_id": uuid.uuid4()})
        bad = json.loads(encode(planted(gone, NAME, PHONE)[2]))
        bad["data"]["full_name"] = NAME
        pipeline.log.produce(
            intake_topic(topic),
            [
                OutgoingMessage(key=gone.encode(), value=encode(plain)),
                OutgoingMessage(key=gone.encode(), value=json.dumps(bad).encode()),
            ],
        )
        assert pipeline.intake is not None
        assert pipeline.intake.run_until_empty() == 2
        pipeline.catch_up()
        assert intake_left(pipeline.log, intake_topic(topic)) == []  # relayed, then deleted
        (letter,) = raw_records(pipeline.log, f"{topic}.dlq")
        assert letter.header("journey-dlq-sealed") == b"whole"
        # The log of record never held them in the clear; the view shows them.
        assert (
            found_in(b"".join(m.value or b"" for m in raw_records(pipeline.log, pipeline.topic)))
            == []
        )
        before = view_text(pipeline, gone)
        assert NAME in before and PHONE in before and ADDRESS in before
        assert pipeline.store.search_said("Zyxwvuts", 10)

        erasure = _tp(c.ErasureRequested(channel="email", reason=f"{NAME} asked"), gone, 10)
        pipeline.emit([erasure])
        pipeline.catch_up()

    after = view_text(pipeline, gone)
    assert found_in(after.encode()) == []
    view = build_customer_view(pipeline.store, gone, rules=pipeline.rules, now=pipeline.clock())
    assert view is not None and view.erased_at == erasure.occurred_at
    # Another customer keeps everything.
    assert KEPT in view_text(pipeline, kept)

    # The key is gone: the log's records of the customer open to "(erased)" only.
    keys = CustomerKeys(store_address)
    try:
        ring = keys.for_reading([gone, kept])
        assert {cid for cid, _ in ring.keys} == {kept}
        records = raw_records(pipeline.log, pipeline.topic)
        for msg in records:
            tp = decode(msg.value, keys=ring.lookup)
            if tp.customer_id == gone and isinstance(tp.data, c.SignupRequested):
                assert set(tp.data.fields.values()) == {ERASED}
        assert found_in(b"".join(m.value or b"" for m in records)) == []
        # An export made now, even one that opens personal fields with the key table.
        out = tmp_path / "after-erasure.csv"
        export(pipeline.log, out, format="csv", topic=topic, keys=keys)
        assert KEPT.encode() in out.read_bytes()  # (the export does open what it can)
        assert found_in(out.read_bytes()) == []
    finally:
        keys.close()

    # The log's own files, the DLQ, the store (file + WAL, or every table), the search index.
    on_disk = log_bytes(pipeline.log, [topic, f"{topic}.dlq"])
    assert found_in(on_disk) == []
    assert not on_disk or gone.encode() in on_disk  # (the files read do hold the records)
    (letter,) = raw_records(pipeline.log, f"{topic}.dlq")
    assert found_in(letter.value or b"") == []
    assert found_in(store_bytes(store_address)) == []
    assert pipeline.store.search_said("Zyxwvuts", 10) == []
    assert pipeline.store.search_said("Keepsakes", 10)
    # What the engine logged while it folded and erased.
    assert found_in(repr(logs).encode()) == []


def test_keys_survive_a_rebuild_and_an_erased_customer_stays_erased(
    pipeline: Pipeline, store_address: Path | str
) -> None:
    gone, kept = "c-gone", "c-kept"
    pipeline.emit([*planted(gone, NAME, PHONE), *kept_customer(kept)])
    pipeline.emit([_tp(c.ErasureRequested(), gone, 10)])
    pipeline.catch_up()
    topic = pipeline.topic
    new, stats, _ = rebuild(pipeline.log, store_address, topic=topic, dlq_topic=f"{topic}.dlq")
    assert stats.dead_letters == 0
    assert stats.keyless > 0  # the erased customer's values, counted (a report says so)
    pipeline.runner.run_until_caught_up(60)
    assert pipeline.store.address == new
    assert KEPT in view_text(pipeline, kept)  # opened with the key kept beside the stores
    rebuilt = view_text(pipeline, gone)
    assert found_in(rebuilt.encode()) == []
    assert found_in(store_bytes(store_address)) == []
    if isinstance(store_address, Path):
        assert keys_file(store_address).exists()
        assert not keys_file(Path(str(new))).exists()  # never beside a rebuilt store


def test_erasing_a_merged_customer_erases_every_identity_of_theirs(
    pipeline: Pipeline, store_address: Path | str
) -> None:
    web, phone = "c-web", "c-phone"
    pipeline.emit(
        [
            *planted(web, NAME, PHONE),
            _tp(c.IdentityLinked(kind="customer_id", value=phone, verified=True), web, 5),
            _tp(
                c.InquiryReceived(case_id="ph-1", channel="phone", body=f"{NAME} again, {PHONE}"),
                phone,
                6,
            ),
        ]
    )
    pipeline.catch_up()
    assert NAME in view_text(pipeline, phone)
    pipeline.emit([_tp(c.ErasureRequested(), web, 10)])
    pipeline.catch_up()
    pipeline.catch_up()  # the merged customer's own erasure, derived on the log
    for cid in (web, phone):
        assert found_in(view_text(pipeline, cid).encode()) == [], cid
    keys = CustomerKeys(store_address)
    try:
        assert keys.for_reading([web, phone]).keys == {}
    finally:
        keys.close()
    assert found_in(store_bytes(store_address)) == []
    derived = [
        decode(m.value)
        for m in raw_records(pipeline.log, pipeline.topic)
        if m.key == phone.encode() and b"ErasureRequested" in (m.value or b"")
    ]
    assert len(derived) == 1 and derived[0].source == "erasure"


def test_a_store_opened_alone_needs_no_keys(tmp_path: Path) -> None:
    store = JourneyStore(tmp_path / "v.db")
    store.close()
    assert not keys_file(tmp_path / "v.db").exists()


def test_a_merged_customers_derived_erasure_goes_to_the_partition_its_touchpoints_are_in(
    pipeline: Pipeline,
) -> None:
    # The merged customer's touchpoints are in another partition than its key hashes to (a
    # producer with its own partitioner): its derived erasure must be folded in order with
    # them, by the worker that holds them — so it goes there too.
    web, phone = "c-web", "c-phone"
    log, topic = pipeline.log, pipeline.topic
    pipeline.emit(
        [
            *planted(web, NAME, PHONE),
            _tp(c.IdentityLinked(kind="customer_id", value=phone, verified=True), web, 5),
        ]
    )
    placed = (log.partition_for(topic, phone.encode()) + 1) % len(log.partitions(topic))
    inquiry = _tp(c.InquiryReceived(case_id="ph-1", channel="phone", body="again"), phone, 6)
    messages = pipeline.emitter.messages([inquiry])
    log.produce(topic, [replace(m, partition=placed) for m in messages])
    pipeline.catch_up()
    pipeline.emit([_tp(c.ErasureRequested(), web, 10)])
    pipeline.catch_up()
    pipeline.catch_up()  # the merged customer's own erasure, derived on the log
    derived = [
        m.partition
        for m in raw_records(log, topic)
        if m.key == phone.encode() and b"ErasureRequested" in (m.value or b"")
    ]
    assert derived == [placed]
    assert pipeline.store.query(
        "SELECT partition, erased_at IS NOT NULL FROM customers WHERE customer_id = ?", (phone,)
    ) == [(placed, 1)]
