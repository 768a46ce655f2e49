"""The projection store's contract, on every store (SQLite and a real PostgreSQL).

What a store must do whatever it runs on: record a batch with its position atomically and
exactly once, tell duplicates from conflicting duplicates, read a customer back from its
snapshot and the touchpoints since exactly as the writer folded it (late facts included),
write only the rows that changed and remove those no longer due, page the timeline, search
what was said, forget on erasure, keep the dead-letter outbox, and refuse a tampered
snapshot without running it.
"""

from __future__ import annotations

import pickle
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from domain.journey import Journey
from domain.positions import TopicPartition
from projections.dead_letters import DeadLetterRow
from projections.facts import at_micros
from projections.store import BatchRejected, JourneyStore

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TP = TopicPartition("contract.touchpoints", 0)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def inquiry(cid: str, case: str, minutes: float, body: str = "hello") -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(case_id=case, channel="email", subject=f"about {case}", body=body),
        customer_id=cid,
        occurred_at=_at(minutes),
        source="test",
    )


def reply(cid: str, case: str, minutes: float) -> Touchpoint:
    return new_touchpoint(
        c.ReplySent(
            case_id=case, channel="email", agent="ola", team="support", country="NO", body="on it"
        ),
        customer_id=cid,
        occurred_at=_at(minutes),
        source="test",
    )


def resolved(cid: str, case: str, minutes: float) -> Touchpoint:
    return new_touchpoint(
        c.CaseResolved(case_id=case, resolution="fixed"),
        customer_id=cid,
        occurred_at=_at(minutes),
        source="test",
    )


class Writer:
    """Feeds a store batch by batch, as the runner does, numbering offsets."""

    def __init__(self, store: JourneyStore, tp: TopicPartition = TP) -> None:
        self.store, self.tp, self.offset = store, tp, -1

    def batch(self, touchpoints: list[Touchpoint], dead: list[DeadLetterRow] = ()) -> int:  # type: ignore[assignment]
        items = []
        for t in touchpoints:
            self.offset += 1
            items.append((self.offset, t))
        for d in dead:
            self.offset = max(self.offset, d.offset)
        return self.store.process(self.tp, items, self.offset, list(dead)).applied


def canonical(j: Journey) -> dict[str, object]:
    import dataclasses

    dump = dataclasses.asdict(j)
    for bookkeeping in ("facts", "timeline", "last_fact", "earlier_facts", "refolded"):
        dump.pop(bookkeeping, None)
    return dump


@pytest.fixture
def store(store_address: Path | str) -> JourneyStore:
    s = JourneyStore(store_address)
    yield s  # type: ignore[misc]
    s.close()


def test_a_batch_and_its_position_are_recorded_once(store: JourneyStore) -> None:
    w = Writer(store)
    batch = [inquiry("cust-a", "k1", 0), reply("cust-a", "k1", 5)]
    assert w.batch(batch) == 2
    assert store.positions() == {TP: 1}
    # The same batch again (a re-delivery after a crash before the group commit).
    again = store.process(TP, [(0, batch[0]), (1, batch[1])], 1)
    assert again.already_processed or again.duplicates == 2
    assert store.query("SELECT count(*) FROM touchpoints") == [(2,)]
    assert store.journey("cust-a") is not None
    assert store.journey("cust-a").touchpoints == 2  # type: ignore[union-attr]


def test_duplicates_are_skipped_and_conflicting_duplicates_rejected(store: JourneyStore) -> None:
    w = Writer(store)
    first = inquiry("cust-a", "k1", 0, body="the first words")
    w.batch([first])
    same = first.model_copy()
    assert store.process(TP, [(1, same)], 1).duplicates == 1
    other = first.model_copy(
        update={"data": c.InquiryReceived(case_id="k1", channel="email", body="changed")}
    )
    with pytest.raises(BatchRejected) as caught:
        store.process(TP, [(2, other)], 2)
    assert [r.reason for r in caught.value.rejections] == ["conflicting_duplicate"]
    assert store.positions() == {TP: 1}  # nothing of the rejected batch recorded
    assert store.conflicts([other]) and not store.conflicts([same])


def test_the_store_itself_keeps_an_event_id_once(store: JourneyStore) -> None:
    # The writers check for duplicates first; the store refuses a second row with the same
    # event_id even so (two writers racing on one id sent under two customers' keys).
    Writer(store).batch([inquiry("cust-a", "k1", 0)])
    columns = (
        'at, logged_at, "offset", seq, generation, partition, event_id, content_hash,'
        " customer_id, type, summary, case_id, text, fact"
    )
    with pytest.raises(Exception, match=r"(?i)unique|exclusion|conflict"):
        store.backend.execute(
            [(f"INSERT INTO touchpoints ({columns}) SELECT {columns} FROM touchpoints", ())]
        )
    assert store.query("SELECT count(*) FROM touchpoints") == [(1,)]


def test_an_erased_touchpoint_is_still_told_a_duplicate_from_a_conflict(
    store: JourneyStore,
) -> None:
    # A row's content hash is read from its fact; an erasure empties the fact, so the hash
    # is written to the row first.
    w = Writer(store)
    first = inquiry("cust-a", "k1", 0, body="my words")
    w.batch([first, inquiry("cust-a", "k1", 1, body="more words")])
    assert store.query("SELECT count(*) FROM touchpoints WHERE content_hash IS NULL") == [(2,)]
    erasure = new_touchpoint(
        c.ErasureRequested(reason="gdpr"), customer_id="cust-a", occurred_at=_at(9), source="t"
    )
    w.batch([erasure])
    assert store.query(
        "SELECT count(*) FROM touchpoints WHERE fact IS NULL AND content_hash IS NOT NULL"
    ) == [(2,)]
    position = store.positions()[TP]
    assert store.process(TP, [(position + 1, first.model_copy())], position + 1).duplicates == 1
    other = first.model_copy(
        update={"data": c.InquiryReceived(case_id="k1", channel="email", body="changed")}
    )
    with pytest.raises(BatchRejected) as caught:
        store.process(TP, [(position + 2, other)], position + 2)
    assert [r.reason for r in caught.value.rejections] == ["conflicting_duplicate"]
    # A row never erased: its hash read from its fact.
    second = inquiry("cust-a", "k1", 10, body="after the erasure")
    store.process(TP, [(position + 3, second)], position + 3)
    assert not store.conflicts([second.model_copy()])
    assert store.conflicts([second.model_copy(update={"source": "elsewhere"})])


def test_a_cold_read_is_the_journey_the_writer_folded(store_address: Path | str) -> None:
    """Many batches (so the snapshot is older than the last touchpoints), late facts among
    them (refolds), read back by another handle: snapshot + tail = the writer's journey."""
    writer_store = JourneyStore(store_address)
    w = Writer(writer_store)
    reference = Journey("cust-big")
    minute = 0.0
    for n in range(40):
        batch = []
        for k in range(5):
            case = f"k{n}-{k}"
            minute += 3
            batch += [inquiry("cust-big", case, minute, body=f"message {n}/{k}")]
            if k % 2:
                batch.append(reply("cust-big", case, minute + 1))
        if n % 7 == 3:
            # A carrier-style late report: it happened long before the newest fact.
            batch.append(resolved("cust-big", f"k{n - 2}-0", minute - 50))
        for t in batch:
            reference.apply(t)
        w.batch(batch)
    written = writer_store.journey("cust-big")
    assert written is not None
    snapshot_at = writer_store.query("SELECT touchpoints FROM snapshots")[0][0]
    assert 0 < snapshot_at < written.touchpoints, "the tail must not be empty for this test"
    cold = JourneyStore(store_address)
    try:
        read = cold.journey("cust-big")
        assert read is not None
        assert read.touchpoints == written.touchpoints == len([e for e in reference.timeline])
        assert canonical(read.journey) == canonical(reference)
    finally:
        cold.close()
        writer_store.close()


def test_only_changed_rows_are_written_and_rows_no_longer_due_are_removed(
    store: JourneyStore,
) -> None:
    w = Writer(store)
    w.batch([inquiry("cust-a", "k1", 0), inquiry("cust-a", "k2", 1)])
    assert store.query("SELECT ref FROM clocks ORDER BY ref") == [("k1",), ("k2",)]
    w.batch([reply("cust-a", "k1", 5)])  # k1's reply clock stops: its row goes
    assert store.query("SELECT ref FROM clocks ORDER BY ref") == [("k2",)]
    assert store.query("SELECT touchpoints FROM customers") == [(3,)]


def test_the_timeline_pages_newest_first(store: JourneyStore) -> None:
    w = Writer(store)
    w.batch([inquiry("cust-a", f"k{i}", i) for i in range(7)])
    keys = [("cust-a", 0)]
    assert store.timeline_total(keys) == 7
    first = store.timeline(keys, limit=3)
    assert [e.case_id for e, _ in first] == ["k6", "k5", "k4"]
    last_entry, cid = first[-1]
    rest = store.timeline(
        keys, before=(at_micros(last_entry.at), last_entry.event_id, cid), limit=10
    )
    assert [e.case_id for e, _ in rest] == ["k3", "k2", "k1", "k0"]
    assert [e.case_id for e, _ in store.timeline(keys, case_id="k2")] == ["k2"]


def test_what_was_said_is_found_and_an_erasure_forgets_it(store: JourneyStore) -> None:
    w = Writer(store)
    w.batch(
        [
            inquiry("cust-a", "k1", 0, body="Glidelåsen på Fjellduk-jakka røk"),
            inquiry("cust-b", "k2", 0, body="fjellduk sent the wrong colour"),
        ]
    )
    found = {str(r[0]) for r in store.search_said("FJELLDUK", 10)}
    assert found == {"cust-a", "cust-b"}
    w.batch(
        [
            new_touchpoint(
                c.ErasureRequested(reason="gdpr"),
                customer_id="cust-a",
                occurred_at=_at(9),
                source="t",
            )
        ]
    )
    assert {str(r[0]) for r in store.search_said("fjellduk", 10)} == {"cust-b"}
    rows = store.query(
        "SELECT generation, text, fact FROM touchpoints WHERE customer_id = 'cust-a'"
    )
    for generation, text, fact in rows:
        assert text is None
        assert generation == 1 or fact is None
    journey = store.journey("cust-a")
    assert journey is not None and journey.generation == 1 and journey.journey.erased_at


def test_dead_letters_are_recorded_with_the_batch_and_kept_until_published(
    store: JourneyStore,
) -> None:
    w = Writer(store)
    dead = DeadLetterRow(1, "not_json", "not JSON", key=b"k", value=b"\xff", headers=(("h", b"v"),))
    w.batch([inquiry("cust-a", "k1", 0)], [dead])
    assert store.positions() == {TP: 1}
    pending = store.pending_dead_letters()
    assert [(p.offset, p.value, p.headers) for p in pending] == [(1, b"\xff", (("h", b"v"),))]
    store.mark_dead_letters_published(pending)
    assert store.pending_dead_letters() == []


def test_a_second_writer_behind_the_store_changes_nothing(store_address: Path | str) -> None:
    """A member that lost the partition and does not know yet re-writes offsets the new
    owner recorded: the same messages, so nothing is folded twice and nothing moves back."""
    one, two = JourneyStore(store_address), JourneyStore(store_address)
    try:
        batch = [inquiry("cust-a", "k1", 0), inquiry("cust-a", "k2", 1), reply("cust-a", "k1", 2)]
        Writer(one).batch(batch)
        late = two.process(TP, [(1, batch[1]), (2, batch[2])], 2)
        assert late.already_processed
        overlapping = two.process(TP, [(2, batch[2]), (3, inquiry("cust-a", "k3", 3))], 3)
        assert (overlapping.duplicates, overlapping.applied) == (1, 1)
        assert one.positions() == {TP: 3}
        assert one.query("SELECT count(*) FROM touchpoints") == [(4,)]
        journey = one.journey("cust-a")
        assert journey is not None and journey.touchpoints == 4
    finally:
        one.close()
        two.close()


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("a snapshot ran code",))


def test_a_tampered_snapshot_is_refused_and_the_rows_are_folded_instead(
    store_address: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = JourneyStore(store_address)
    writer = Writer(store)
    for n in range(20):  # enough for a snapshot
        writer.batch([inquiry("cust-a", f"k{n}", 2 * n), reply("cust-a", f"k{n}", 2 * n + 1)])
    assert store.query("SELECT count(*) FROM snapshots") == [(1,)]
    expected = canonical(store.journey("cust-a").journey)  # type: ignore[union-attr]
    evil = zlib.compress(pickle.dumps({"journey": _Payload()}))
    store.backend.execute([("UPDATE snapshots SET state = ?", (evil,))])
    store.close()
    cold = JourneyStore(store_address)
    try:
        read = cold.journey("cust-a")
        assert read is not None and canonical(read.journey) == expected
        assert "a snapshot ran code" not in capsys.readouterr().out
    finally:
        cold.close()
