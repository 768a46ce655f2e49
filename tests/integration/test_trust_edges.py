"""Edges of "never lose, never invent" found in review, each a test that failed before:

* a valid copy of an event_id is not refused because a poison copy came first;
* a customer whose stored journey cannot be loaded is the store's fault (transient, with the
  remedy), never a dead letter;
* a poison message whose error text says "malformed" is not a damaged store;
* another writer recording part of a batch meanwhile is not "already recorded";
* a blue-green swap neither loses an unpublished dead letter nor produces one twice.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.log import LogUnavailable, OutgoingMessage, TopicPartition
from consumers.runner import Runner
from consumers.supervisor import Supervisor
from domain import catalogue as c
from domain.envelope import Touchpoint, encode, new_touchpoint
from journey.emitter import Emitter
from projections.integrity import StoreCorrupt, StoreError
from projections.keys import CustomerKeys
from projections.store import JourneyStore, swap_store
from tests.integration.test_exactly_once import quiet_logs  # noqa: F401  (autouse)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
TOPIC = "edges"


def inquiry(i: int, cid: str = "cust-1", subject: str | None = None) -> Touchpoint:
    return new_touchpoint(
        c.InquiryReceived(case_id=f"k{i}", channel="email", subject=subject or f"q{i}"),
        customer_id=cid,
        occurred_at=NOW + timedelta(seconds=i),
        source="test",
    )


@pytest.fixture
def elog(tmp_path: Path) -> EmbeddedLog:
    log = EmbeddedLog(str(tmp_path / "log.db"))
    log.ensure_topics([TOPIC, f"{TOPIC}.dlq"], 1)
    return log


def runner(log: EmbeddedLog, path: Path, **kw: object) -> Runner:
    return Runner(log, path, topic=TOPIC, dlq_topic=f"{TOPIC}.dlq", group="g", **kw)  # type: ignore[arg-type]


@pytest.fixture
def fold_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import domain.journey as fold

    original = fold.Journey.apply

    def apply(self: fold.Journey, tp: Touchpoint, raw: bytes | None = None) -> str:
        if isinstance(tp.data, c.InquiryReceived) and (tp.data.subject or "").startswith("poison"):
            raise ValueError(f"malformed subject {tp.data.subject!r}")  # user text in the error
        return original(self, tp, raw)

    monkeypatch.setattr(fold.Journey, "apply", apply)


@pytest.mark.usefixtures("fold_raises")
def test_a_valid_copy_after_a_poison_copy_is_folded(elog: EmbeddedLog, tmp_path: Path) -> None:
    poison = inquiry(0, subject="poison")
    valid = poison.model_copy(update={"data": c.InquiryReceived(case_id="k0", channel="email")})
    elog.produce(TOPIC, [OutgoingMessage(key=b"cust-1", value=encode(t)) for t in (poison, valid)])
    r = runner(elog, tmp_path / "v.db", follow_swaps=False)
    try:
        r.run_until_caught_up(30)
        assert r.store.query('SELECT "offset", reason FROM dead_letters') == [(0, "fold_failed")]
        assert r.store.query("SELECT COUNT(*) FROM touchpoints") == [(1,)]
    finally:
        r.close()


@pytest.mark.usefixtures("fold_raises")
def test_poison_whose_error_says_malformed_is_not_a_damaged_store(
    elog: EmbeddedLog, tmp_path: Path
) -> None:
    Emitter(
        elog, topic=TOPIC, source="test", keys=CustomerKeys(tmp_path / "v.db")
    ).emit_touchpoints([inquiry(0), inquiry(1, subject="poison one"), inquiry(2)])
    r = runner(elog, tmp_path / "v.db", follow_swaps=False)
    sup = Supervisor(r, None, backoff_max_s=0.01, progress_interval_s=3600)
    try:
        for _ in range(10):
            sup.turn()
        assert not sup.health.failing, sup.health
        assert r.store.query("SELECT reason FROM dead_letters") == [("fold_failed",)]
        assert r.stats.applied == 2
    finally:
        r.close()


def test_a_journey_that_cannot_be_loaded_is_the_stores_fault_not_a_dead_letter(
    elog: EmbeddedLog, tmp_path: Path
) -> None:
    emitter = Emitter(elog, topic=TOPIC, source="test", keys=CustomerKeys(tmp_path / "v.db"))
    emitter.emit_touchpoints([inquiry(0)])
    r = runner(elog, tmp_path / "v.db", follow_swaps=False)
    try:
        r.run_until_caught_up(30)
        r.store._live.clear()  # evicted from the writer's cache (or a restart)
        con = sqlite3.connect(tmp_path / "v.db")
        # Its snapshot and its stored facts both damaged: nothing to fold it from.
        con.execute("UPDATE snapshots SET state = substr(state, 1, 10)")
        con.execute("UPDATE touchpoints SET fact = substr(fact, 1, 10)")
        con.commit()
        con.close()
        emitter.emit_touchpoints([inquiry(1), inquiry(2, cid="cust-2")])
        with pytest.raises(StoreCorrupt, match=r"cannot be loaded.*journey rebuild all"):
            r.step()
        assert r.store.query("SELECT COUNT(*) FROM dead_letters") == [(0,)]
        assert r.store.positions() == {TopicPartition(TOPIC, 0): 0}
    finally:
        r.close()


def test_another_writer_recording_part_of_a_batch_is_not_already_recorded(tmp_path: Path) -> None:
    tps = [inquiry(i, cid=f"cust-{i}") for i in range(10)]
    tp = TopicPartition("t", 0)
    zombie, owner = JourneyStore(tmp_path / "v.db"), JourneyStore(tmp_path / "v.db")
    real = owner._batch_state  # what a batch reads before it folds (hashes, customers)

    def racing(*args: Any) -> Any:
        found = real(*args)  # the owner looked: nothing recorded yet
        zombie.process(tp, list(enumerate(tps[:5])), 4)  # the old owner commits meanwhile
        return found

    owner._batch_state = racing  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(StoreError, match="another writer"):
            owner.process(tp, list(enumerate(tps)), 9)
        owner._batch_state = real  # type: ignore[method-assign]
        result = owner.process(tp, list(enumerate(tps)), 9)  # the retry
        assert (result.applied, result.duplicates) == (5, 5)
        assert owner.position(tp) == 9
    finally:
        zombie.close()
        owner.close()


def test_a_swap_neither_loses_nor_doubles_a_dead_letter(
    elog: EmbeddedLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitter = Emitter(elog, topic=TOPIC, source="test", keys=CustomerKeys(tmp_path / "views.db"))
    emitter.emit_touchpoints([inquiry(i) for i in range(5)])  # offsets 0-4
    base = tmp_path / "views.db"
    live = runner(elog, base)

    def rebuilt(name: str) -> Path:
        path = tmp_path / name
        rb = Runner(elog, path, topic=TOPIC, dlq_topic=f"{TOPIC}.dlq", group=None,
                    follow_swaps=False, produce_dead_letters=False)  # fmt: skip
        rb.run_until_caught_up(30)
        rb.close()
        return path

    def dlq() -> int:
        return sum(elog.high_watermarks(f"{TOPIC}.dlq").values())

    try:
        live.run_until_caught_up(30)
        first = rebuilt("views.db.1")  # a rebuild reaches offset 4 ...
        elog.produce(TOPIC, [OutgoingMessage(key=b"cust-1", value=b"not json")])  # 5
        live.step()
        live.step()  # ... the live runner dead-letters offset 5 before the swap
        assert dlq() == 1
        swap_store(base, first)
        for _ in range(3):
            live.step()
        assert dlq() == 1, "re-read on the new store, produced a second time"

        real = elog.produce

        def broker_away(topic: str, messages: list[OutgoingMessage]) -> object:
            if topic.endswith(".dlq"):
                raise LogUnavailable("broker away (injected)")
            return real(topic, messages)

        monkeypatch.setattr(elog, "produce", broker_away)
        real(TOPIC, [OutgoingMessage(key=b"cust-1", value=b"{bad")])  # 6, its DLQ fails
        with pytest.raises(LogUnavailable):
            live.step()
        monkeypatch.setattr(elog, "produce", real)
        swap_store(base, rebuilt("views.db.2"))  # the new store recorded 6 as published
        for _ in range(3):
            live.step()
        assert dlq() == 2, "the unpublished dead letter of the old store was lost"
    finally:
        live.close()
