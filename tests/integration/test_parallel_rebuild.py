"""A rebuild folded by several processes, each reading its own partitions into the one new
store, gives exactly the store a single process gives: every row of every table (the row
ids of the touchpoints aside: they number rows in the order recorded) and every view, on
both logs and both stores, with customers merged across partitions, one of them erased, and
a dead letter. A process killed half way is started again from the store's positions
(nothing lost, nothing doubled); one that fails makes the whole rebuild fail, and nothing
is swapped in.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

import consumers.runner
from bench.write_path import dump_store
from consumers.log import Log, OutgoingMessage
from consumers.rebuild import RebuildFailed, rebuild
from domain import catalogue as c
from domain.envelope import Touchpoint, new_touchpoint
from journey.pipeline import Pipeline
from journey.stories import all_touchpoints
from journey.synthetic import generate_touchpoints
from projections import backends
from projections.backends import Backend
from projections.location import StoreAddress
from projections.store import JourneyStore, active_store
from tests.integration.test_exactly_once import quiet_logs  # noqa: F401  (autouse)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _tp(data: c.TouchpointData, cid: str, minutes: int) -> Touchpoint:
    return new_touchpoint(
        data, customer_id=cid, occurred_at=NOW + timedelta(minutes=minutes), source="test"
    )


def _two_partitions(log: Log, topic: str) -> tuple[str, str]:
    """Two customer ids whose touchpoints land in different partitions."""
    first = "c-web"
    home = log.partition_for(topic, first.encode())
    other = next(
        f"c-phone-{n}"
        for n in range(100)
        if log.partition_for(topic, f"c-phone-{n}".encode()) != home
    )
    return first, other


def _history(log: Log, store: Path | str, topic: str) -> list[str]:
    """Folded live into ``store`` by a pipeline of its own, then closed: stories, generated
    customers, two customers merged across partitions (one erased, which the live run
    cascades to the other on the log) and a poison message. Returns customers whose views
    the dumps compare."""
    pipeline = Pipeline(log, store, topic=topic)
    try:
        return _history_through(pipeline)
    finally:
        pipeline.close()


def _history_through(pipeline: Pipeline) -> list[str]:
    log, topic = pipeline.log, pipeline.topic
    web, phone = _two_partitions(log, topic)
    pipeline.emit(all_touchpoints(NOW))
    pipeline.emit(generate_touchpoints(300, 40, seed=11, start=NOW - timedelta(days=9)))
    pipeline.emit(
        [
            _tp(c.SignupRequested(case_id="s-1", form="f", fields={"name": "Ann Webb"}), web, 0),
            _tp(c.IdentityLinked(kind="customer_id", value=phone, verified=True), web, 1),
            _tp(c.InquiryReceived(case_id="k-1", channel="phone", body="Ann again"), phone, 2),
        ]
    )
    log.produce(topic, [OutgoingMessage(key=b"c-poison", value=b"{not json")])
    pipeline.catch_up()
    pipeline.emit([_tp(c.ErasureRequested(), web, 10)])
    pipeline.catch_up()
    pipeline.catch_up()  # the merged customer's own erasure, derived on the log
    return [web, phone, "cust-sven", "cust-anna", "c-poison"]


def _dump(address: StoreAddress, customers: list[str]) -> dict[str, Any]:
    store = JourneyStore(address)
    try:
        dump = dump_store(store, customers, row_ids=False)
        # The search over what was said (its index is no table of the dump).
        dump["said"] = sorted(map(repr, store.search_said("the", 1000)))
        assert dump["said"], "the search found nothing: the comparison would be vacuous"
        return dump
    finally:
        store.close()


@pytest.fixture
def history(log: Log, store_address: Path | str, unique_topic: str) -> tuple[list[str], int]:
    customers = _history(log, store_address, unique_topic)
    return customers, sum(log.high_watermarks(unique_topic).values())


def test_two_processes_fold_disjoint_partitions_into_the_store_one_process_makes(
    log: Log, store_address: Path | str, unique_topic: str, history: tuple[list[str], int]
) -> None:
    customers, total = history
    dlq = f"{unique_topic}.dlq"
    one, stats1, _ = rebuild(log, store_address, topic=unique_topic, dlq_topic=dlq, processes=1)
    seen: list[int] = []
    two, stats2, _ = rebuild(
        log,
        store_address,
        topic=unique_topic,
        dlq_topic=dlq,
        processes=2,
        progress=lambda done, _total: seen.append(done),
    )
    assert active_store(store_address) == two != one
    # This process and one it forked, each with its own partitions, together all of them
    # (an idle parent held ~30 MiB of the peak for nothing).
    assert len(stats2.shares) == 2 and os.getpid() in stats2.shares
    first, second = (set(parts) for parts in stats2.shares.values())
    assert first and second and not first & second
    assert first | second == set(log.partitions(unique_topic))
    # Dealt by size: neither share holds more than half the messages plus its largest
    # partition (by number, 0, 2, 4 against 1, 3, 5, a share may hold far more).
    sizes = log.high_watermarks(unique_topic)
    for share in (first, second):
        assert sum(sizes[p] for p in share) <= total / 2 + max(sizes[p] for p in share)
    assert list(stats1.shares.values()) == [tuple(log.partitions(unique_topic))]
    # Progress across both processes, up to every message.
    assert seen and seen[-1] == total
    counts = [(s.processed, s.applied, s.duplicates, s.dead_letters) for s in (stats1, stats2)]
    assert counts[0] == counts[1] and counts[0][0] == total and counts[0][3] == 1
    assert stats1.keyless == stats2.keyless > 0  # the erased customers' sealed values
    assert _dump(two, customers) == _dump(one, customers)
    for address in (one, two):
        _search_index_whole(address)


def _search_index_whole(address: StoreAddress) -> None:
    """SQLite's search index holds every text and nothing else, however the rebuild made
    it (one process builds it in one pass at the end; several keep it row by row)."""
    store = JourneyStore(address)
    try:
        if store.backend.kind != "sqlite":
            return
        store.query("INSERT INTO touchpoints_fts (touchpoints_fts) VALUES ('integrity-check')")
        texts = store.query("SELECT count(*) FROM touchpoints WHERE text IS NOT NULL")[0][0]
        assert texts > 0
        assert store.query("SELECT count(*) FROM touchpoints_fts_docsize")[0][0] == texts
        names = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert {"touchpoints_indexed", "touchpoints_reindexed", "touchpoints_unindexed"} <= names
    finally:
        store.close()


def test_a_rebuild_process_killed_half_way_fails_the_rebuild_and_nothing_is_swapped_in(
    embedded_log: Log, tmp_path: Path, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, base = embedded_log, tmp_path / "views.db"
    _history(log, base, unique_topic)
    total = sum(log.high_watermarks(unique_topic).values())
    # Slowed (the forked processes inherit it), so the kill lands while they fold.
    monkeypatch.setattr(consumers.runner, "_FOLD_DELAY_S", 0.002)
    killed: list[int] = []

    def kill_one(done: int, _total: int) -> None:
        if not killed and done >= total // 4:
            victim = multiprocessing.active_children()[0]
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    with pytest.raises(RebuildFailed, match="killed by signal 9"):
        rebuild(
            log, base, topic=unique_topic, dlq_topic=f"{unique_topic}.dlq", processes=2,
            batch_size=40, progress=kill_one,
        )  # fmt: skip
    assert killed
    assert active_store(base) == base  # the store in use stays
    # The half-built store (its hot journal, marker, turns file) is not left on the disk.
    assert sorted(p.name for p in tmp_path.glob("views.db.2*")) == []
    assert multiprocessing.active_children() == []  # the other process was stopped too


def test_a_rebuild_process_that_fails_fails_the_rebuild_and_nothing_is_swapped_in(
    embedded_log: Log, tmp_path: Path, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, base = embedded_log, tmp_path / "views.db"
    pipeline = Pipeline(log, base, topic=unique_topic)
    try:
        pipeline.emit(generate_touchpoints(100, 20, seed=3, start=NOW - timedelta(days=3)))
        pipeline.catch_up()
    finally:
        pipeline.close()

    def record_failing(self: Backend, *args: Any, **kwargs: Any) -> None:
        raise OperationalError("disk I/O error (every write of the rebuild)")

    monkeypatch.setattr(Backend, "record", record_failing)
    with pytest.raises(RebuildFailed, match=r"partitions .*disk I/O error"):
        rebuild(
            log, base, topic=unique_topic, dlq_topic=f"{unique_topic}.dlq", processes=2,
            retry_for_s=0,
        )  # fmt: skip
    assert active_store(base) == base  # the store in use stays
    assert sorted(p.name for p in tmp_path.glob("views.db.2*")) == []


def test_rebuild_processes_write_without_wal_or_search_triggers_and_the_parent_indexes_once(
    embedded_log: Log, tmp_path: Path, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The processes of a rebuild get the single process's savings: a rollback journal
    (no write-ahead log to write every page to twice) and no search triggers (each text
    tokenised into the index row by row); their parent builds the index once after them,
    and the store swapped in is a WAL store whose search answers as one process's does."""
    log, base = embedded_log, tmp_path / "views.db"
    customers = _history(log, base, unique_topic)
    monkeypatch.setattr(consumers.runner, "_FOLD_DELAY_S", 0.002)
    seen: list[tuple[set[str], set[str]]] = []

    def look(done: int, _total: int) -> None:
        if done == 0 or not multiprocessing.active_children():
            return
        # The newest store file (the one-process rebuild's is there too).
        new = max(p for p in tmp_path.glob("views.db.2*") if re.fullmatch(r"[\w.]+\d", p.name))
        files = {p.name[len(new.name) :] for p in tmp_path.glob(f"{new.name}*")}
        # One forked process: this one folds the other share.
        assert len(multiprocessing.active_children()) == 1
        conn = sqlite3.connect(new, timeout=30)
        try:
            triggers = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            }
        finally:
            conn.close()
        seen.append((files, triggers))

    dlq = f"{unique_topic}.dlq"
    one, _, _ = rebuild(log, base, topic=unique_topic, dlq_topic=dlq, processes=1)
    two, _, _ = rebuild(
        log, base, topic=unique_topic, dlq_topic=dlq, processes=2, batch_size=40, progress=look
    )
    assert seen, "the rebuild ended before the test looked at its file"
    for files, triggers in seen:
        assert "-wal" not in files and "-journal" in files, files
        assert not triggers & {"touchpoints_indexed", "touchpoints_reindexed"}, triggers
    assert _dump(two, customers) == _dump(one, customers)
    _search_index_whole(two)
    conn = sqlite3.connect(two)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def _indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()


def test_rebuild_processes_leave_the_timeline_index_to_the_parent(
    embedded_log: Log, tmp_path: Path, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing reads by customer (no erasure, every customer cached): the processes write
    the touchpoints without the timeline index (each row put in at a random customer's
    place: a fifth of one process's fold and record), and the parent builds it once after
    them; the store is the one a single process makes, and reads by customer use it."""
    log, base = embedded_log, tmp_path / "views.db"
    pipeline = Pipeline(log, base, topic=unique_topic)
    try:
        # In order, and nothing with a deadline (the keeper's facts are dated at theirs,
        # behind their customer's newest: a late fact's refold reads the facts back).
        pipeline.emit(
            [_tp(c.SatisfactionRated(score=1 + n % 5), f"c-{n % 40}", n) for n in range(400)]
        )
        pipeline.catch_up()
    finally:
        pipeline.close()
    monkeypatch.setattr(consumers.runner, "_FOLD_DELAY_S", 0.002)
    seen: list[set[str]] = []

    def look(done: int, _total: int) -> None:
        if done and multiprocessing.active_children():
            new = max(p for p in tmp_path.glob("views.db.2*") if re.fullmatch(r"[\w.]+\d", p.name))
            seen.append(_indexes(new))

    dlq = f"{unique_topic}.dlq"
    one, _, _ = rebuild(log, base, topic=unique_topic, dlq_topic=dlq, processes=1)
    two, _, _ = rebuild(
        log, base, topic=unique_topic, dlq_topic=dlq, processes=2, batch_size=40, progress=look
    )
    assert seen, "the rebuild ended before the test looked at its file"
    assert all("touchpoints_timeline" not in names for names in seen), seen
    assert "touchpoints_timeline" in _indexes(two)
    conn = sqlite3.connect(two)
    try:
        customers = [r[0] for r in conn.execute("SELECT customer_id FROM customers")]
    finally:
        conn.close()
    dumps = []
    for address in (one, two):
        store = JourneyStore(address)
        try:
            dumps.append(dump_store(store, customers, row_ids=False))
        finally:
            store.close()
    assert len(customers) == 40 and dumps[0] == dumps[1]


def test_rebuild_processes_that_read_customers_back_make_the_store_one_process_makes(
    embedded_log: Log, tmp_path: Path, unique_topic: str
) -> None:
    """Caches so small that each process lets its customers go and reads them back (their
    snapshots and tails, by customer): the first to need the timeline index builds it in
    the shared file, in its write turn, and the others keep it; the store is still the one
    a single process makes."""
    log, base = embedded_log, tmp_path / "views.db"
    customers = _history(log, base, unique_topic)
    dlq = f"{unique_topic}.dlq"
    one, _, _ = rebuild(log, base, topic=unique_topic, dlq_topic=dlq, processes=1)
    two, _, _ = rebuild(
        log, base, topic=unique_topic, dlq_topic=dlq, processes=2, batch_size=40,
        cache_size=6, cache_weight=400,
    )  # fmt: skip
    assert _dump(two, customers) == _dump(one, customers)
    _search_index_whole(two)


def test_a_rebuild_process_opens_the_store_when_another_dropped_the_search_triggers_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process of a rebuild makes the tables (and so the search triggers) and drops the
    triggers again; another may have dropped one in between: a DROP that finds nothing is
    no failure (it was one in 1 of ~5 100k rebuilds on two processes)."""
    path = tmp_path / "views.db.20261202T000000000000"
    JourneyStore(path, rebuilding=True).close()
    # A trigger the store makes no more stands in for one another process dropped.
    monkeypatch.setattr(backends, "SEARCH_TRIGGERS", (*backends.SEARCH_TRIGGERS, "gone"))
    store = JourneyStore(path, rebuilding=True, shared_writes=True)
    try:
        names = store.query("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert not {"touchpoints_indexed", "gone"} & {r[0] for r in names}
    finally:
        store.close()
