# Seeded pseudo-randomness picks test data and kill moments, nothing secret:
# ruff: noqa: S311
"""Exactly-once effect on both logs: a crash, a duplicate or a re-delivery never loses or
doubles a fact in the views.

* a real ``journey run`` process is SIGKILLed at random moments in the middle of its batches
  (a chaos delay slows every fold), restarted, and finally stopped with SIGTERM; its store
  must equal a clean, uninterrupted run's store, customer by customer;
* the same touchpoint emitted twice (same event_id, another offset) counts once;
* a batch already recorded in the store (store commit done, group commit lost) is
  re-delivered by seeking back, by a stale group offset and by a new group: nothing is
  applied twice.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from consumers.log import Log, Message, OutgoingMessage, TopicPartition
from consumers.runner import Runner
from domain import catalogue as c
from domain.envelope import Touchpoint, decode, encode, new_touchpoint
from domain.rules import ServiceRules
from journey.emitter import Emitter
from journey.stories import all_touchpoints
from journey.synthetic import generate_touchpoints
from projections.customer_view import build_customer_view
from projections.keys import CustomerKeys
from projections.service_levels import build_service_levels
from projections.store import JourneyStore

JOURNEY = Path(sys.executable).with_name("journey")
RULES = ServiceRules()
DERIVED_TYPES = frozenset({"PromiseBroken", "ReplyOverdue"})


# ---------------------------------------------------------------------- generated traffic


# ---------------------------------------------------------------------- helpers


def read_topic(log: Log, topic: str, timeout_s: float = 60) -> list[Message]:
    """Every message on ``topic`` (a throw-away group), in (partition, offset) order."""
    want = sum(log.high_watermarks(topic).values())
    consumer = log.consumer(f"read-{uuid.uuid4().hex[:8]}", [topic])
    got: dict[tuple[int, int], Message] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            for msg in consumer.poll(0.2, 2000):
                got[(msg.partition, msg.offset)] = msg
    finally:
        consumer.close()
    assert len(got) == want, f"read {len(got)} of {want} messages of {topic}"
    return [got[k] for k in sorted(got)]


def all_views(store: JourneyStore, now: datetime) -> dict[str, dict[str, Any]]:
    """Every customer's full view (all timeline entries on one page), as plain data."""
    out = {}
    for (cid,) in store.query("SELECT customer_id FROM customers ORDER BY customer_id"):
        view = build_customer_view(
            store, str(cid), rules=RULES, now=now, page_size=100_000, limit=100_000
        )
        assert view is not None
        out[str(cid)] = view.model_dump(mode="json")
    return out


def touchpoint_counts(store: JourneyStore) -> dict[str, int]:
    return {
        str(cid): int(n) for cid, n in store.query("SELECT customer_id, touchpoints FROM customers")
    }


def caught_up(store: JourneyStore, log: Log, topic: str) -> bool:
    positions = store.positions()
    return all(
        positions.get(TopicPartition(topic, p), -1) >= hwm - 1
        for p, hwm in log.high_watermarks(topic).items()
    )


def progress(store: JourneyStore, topic: str) -> int:
    """Messages of ``topic`` the store has recorded (sum of next offsets)."""
    return sum(off + 1 for tp, off in store.positions().items() if tp.topic == topic)


def emit(
    log: Log, topic: str, touchpoints: list[Touchpoint], store: Path, batch: int = 500
) -> None:
    """Emit, sealing personal fields with the keys beside ``store``."""
    keys = CustomerKeys(store)
    try:
        emitter = Emitter(log, topic=topic, source="test", keys=keys)
        for start in range(0, len(touchpoints), batch):
            emitter.emit_touchpoints(touchpoints[start : start + batch])
    finally:
        keys.close()


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    """Per-event info lines (thousands here) only slow the tests down: warnings and up.
    (Modules that import this fixture get it too.)"""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.configure(**old)


# ---------------------------------------------------------------------- a. kill mid-batch


class JourneyProcess:
    """``journey run`` as a child process, on the log and store under test."""

    def __init__(self, broker: str, topic: str, store: Path, workdir: Path) -> None:
        self.argv = [
            str(JOURNEY),
            "--broker",
            broker,
            "--topic",
            topic,
            "--store",
            f"sqlite:///{store}",
            "--log-format",
            "json",
            "--log-level",
            "warning",
            "run",
        ]
        self.env = {**os.environ, "JOURNEY_CHAOS_FOLD_DELAY_MS": "2"}
        self.workdir = workdir
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        err = (self.workdir / f"run{self.runs}.err").open("wb")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.workdir, env=self.env, stdout=err, stderr=err
        )
        err.close()
        return self.proc

    def output(self) -> str:
        return (self.workdir / f"run{self.runs}.err").read_text(errors="replace")[-4000:]

    def stop(self, sig: signal.Signals, timeout_s: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout_s)

    def kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.mark.timeout(240)
def test_sigkill_mid_batch_loses_and_doubles_nothing(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    seed = int(os.environ.get("JOURNEY_CHAOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    # In the past, so the keeper of `journey run` records breaches: facts of its own that
    # must come out exactly once across the kills too. JOURNEY_CHAOS_SEED replays a run.
    ours = all_touchpoints(now) + generate_touchpoints(
        3000, 250, seed=seed, start=now - timedelta(days=12)
    )
    emit(log, unique_topic, ours, tmp_path / "views.db")
    emitted = Counter(tp.customer_id for tp in ours)
    total = sum(log.high_watermarks(unique_topic).values())
    assert total == len(ours)

    views_db = tmp_path / "views.db"
    JourneyStore(views_db).close()  # created before the child, so only one process migrates
    watch = JourneyStore(views_db)
    child = JourneyProcess(log.url, unique_topic, views_db, tmp_path)
    kills: list[tuple[int, int]] = []  # (recorded before the run, recorded at the kill)
    try:
        for _ in range(3):
            before = progress(watch, unique_topic)
            proc = child.start()
            deadline = time.monotonic() + 60
            while progress(watch, unique_topic) == before:
                assert proc.poll() is None, f"journey run died: {child.output()}"
                assert time.monotonic() < deadline, f"no progress: {child.output()}"
                time.sleep(0.02)
            # A random moment inside the next batches: each fold sleeps 2 ms, a partition's
            # slice of a 500-message poll takes ~200 ms to fold before it is recorded.
            time.sleep(rng.uniform(0.05, 0.6))
            proc.kill()
            assert proc.wait(timeout=30) == -signal.SIGKILL
            kills.append((before, progress(watch, unique_topic)))

        # The kills interrupted the work: none of them came after everything was recorded.
        assert all(at < total for _, at in kills), (seed, kills, total)
        assert kills[-1][1] > 0, (seed, kills)

        proc = child.start()
        # Caught up, and stable for longer than the keeper's tick (1 s): the breaches it
        # records once a partition is caught up are folded too.
        stable_since, last = time.monotonic(), -1
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"journey run died: {child.output()}"
            assert time.monotonic() < deadline, (
                f"not caught up (seed {seed}, kills {kills}): store at {watch.positions()}, "
                f"log at {log.high_watermarks(unique_topic)}; {child.output()}"
            )
            marks = sum(log.high_watermarks(unique_topic).values())
            if not caught_up(watch, log, unique_topic) or marks != last:
                stable_since, last = time.monotonic(), marks
            elif time.monotonic() - stable_since > 2.5:
                break
            time.sleep(0.1)
        assert child.stop(signal.SIGTERM) == 0, child.output()
    finally:
        child.kill_if_running()

    # What the log holds: ours, plus one fact per passed deadline from the keeper.
    on_log = read_topic(log, unique_topic)
    decoded = [decode(m.value) for m in on_log]
    derived = [tp for tp in decoded if tp.type in DERIVED_TYPES]
    assert len(on_log) == len(ours) + len(derived)
    assert derived, "the keeper recorded no breach: the generated deadlines did not pass"
    # Exactly one fact per deadline, across the kills.
    keys = Counter(
        (tp.customer_id, tp.type, json.dumps(tp.data.model_dump(mode="json"), sort_keys=True))
        for tp in derived
    )
    assert [k for k, n in keys.items() if n > 1] == []
    per_customer = emitted + Counter(tp.customer_id for tp in derived)

    # The reference: one clean, uninterrupted run over the same log, in another store.
    clean = Runner(
        log,
        tmp_path / "clean.db",
        topic=unique_topic,
        dlq_topic=f"{unique_topic}.dlq",
        group=f"clean-{uuid.uuid4().hex[:8]}",
        follow_swaps=False,
        produce_dead_letters=False,
        keys=CustomerKeys(tmp_path / "views.db"),  # the same customers' keys
    )
    try:
        stats = clean.run_until_caught_up(120)
        assert (stats.applied, stats.duplicates, stats.dead_letters) == (len(on_log), 0, 0)
        fixed_now = now + timedelta(hours=1)
        assert touchpoint_counts(watch) == dict(per_customer)
        assert touchpoint_counts(clean.store) == dict(per_customer)
        assert watch.query("SELECT COUNT(*) FROM touchpoints") == [(len(on_log),)]
        killed_views, clean_views = all_views(watch, fixed_now), all_views(clean.store, fixed_now)
        assert set(killed_views) == set(per_customer)
        for cid, view in clean_views.items():
            assert killed_views[cid] == view, f"{cid} differs after the kills (seed {seed})"
            assert view["timeline"]["total"] >= per_customer[cid]
        killed_levels = build_service_levels(watch, rules=RULES, now=fixed_now)
        clean_levels = build_service_levels(clean.store, rules=RULES, now=fixed_now)
        assert killed_levels.model_dump() == clean_levels.model_dump()
        assert killed_levels.breached, "nothing breached: the service-level check is vacuous"
    finally:
        clean.close()
        watch.close()


# ---------------------------------------------------------------------- b. duplicates


def _view(store: JourneyStore, cid: str, now: datetime) -> dict[str, Any]:
    view = build_customer_view(store, cid, rules=RULES, now=now, page_size=1000)
    assert view is not None, cid
    return view.model_dump(mode="json")


def test_a_touchpoint_emitted_twice_counts_once(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    cid = "cust-dup"
    steps: list[c.TouchpointData] = [
        c.IdentityLinked(kind="name", value="Dup Licate"),
        c.ComplaintFiled(
            case_id="k1",
            channel="email",
            product="TV",
            serial_number_as_given="SN1",
            warranty_claim=True,
        ),
        c.AutoAcknowledgementSent(case_id="k1", channel="email"),
        c.ReplySent(case_id="k1", channel="email", agent="a", team="T", country="SE"),
        c.RepairCompleted(case_id="k1", product="TV", serial_number="SN1"),
        c.RepairCompleted(case_id="k1", product="TV", serial_number="SN1"),
        c.InquiryReceived(case_id="k2", channel="phone", subject="where is my TV"),
        c.PromiseMade(
            promise_id="p1",
            case_id="k2",
            what="call back",
            due_by=now + timedelta(days=1),
            made_by="a",
        ),
    ]
    tps = [
        new_touchpoint(d, customer_id=cid, occurred_at=now - timedelta(hours=10 - i), source="t")
        for i, d in enumerate(steps)
    ]
    others = generate_touchpoints(200, 20, seed=7, start=now - timedelta(days=5))
    emitter = Emitter(
        log, topic=unique_topic, source="test", keys=CustomerKeys(tmp_path / "views.db")
    )
    emitter.emit_touchpoints(tps + others)
    # Again: every one of them, at later offsets, some in the same poll batch as the first
    # copy, some in a later one; and re-encoded (another producer's bytes, same event_id).
    emitter.emit_touchpoints(tps[:4])
    reencoded = [
        OutgoingMessage(
            key=tp.customer_id.encode(),
            value=json.dumps(json.loads(encode(tp)), indent=1, sort_keys=True).encode(),
        )
        for tp in tps[3:]
    ]
    log.produce(unique_topic, reencoded)
    emitter.emit_touchpoints(list(reversed(tps)) + others[:50])
    duplicates = 4 + len(tps[3:]) + len(tps) + 50

    runner = Runner(
        log,
        tmp_path / "views.db",
        topic=unique_topic,
        dlq_topic=f"{unique_topic}.dlq",
        group=f"dup-{uuid.uuid4().hex[:8]}",
        batch_size=64,
    )
    try:
        stats = runner.run_until_caught_up(60)
        assert stats.applied == len(tps) + len(others)
        assert stats.duplicates == duplicates
        assert stats.dead_letters == 0
        view = _view(runner.store, cid, now)
        assert view["touchpoints"] == len(tps)
        assert view["contacts"] == 2
        assert view["timeline"]["total"] == len(tps)
        assert sorted(e["event_id"] for e in view["timeline"]["entries"]) == sorted(
            str(tp.event_id) for tp in tps
        )
        (tv,) = view["products"]
        assert (tv["repairs"], tv["complaints"]) == (2, 1)
        (k1,) = [k for k in view["open_cases"] if k["case_id"] == "k1"]
        assert (k1["replies"], k1["auto_acknowledgements"]) == (1, 1)
        assert [p["promise_id"] for p in view["promises"]] == ["p1"]
        assert runner.store.query(
            "SELECT COUNT(*) FROM touchpoints WHERE customer_id = ?", (cid,)
        ) == [(len(tps),)]
        # The same as a store that saw each touchpoint once.
        once = Runner(
            log,
            tmp_path / "once.db",
            topic=unique_topic,
            dlq_topic=f"{unique_topic}.dlq",
            group=f"once-{uuid.uuid4().hex[:8]}",
            follow_swaps=False,
            keys=CustomerKeys(tmp_path / "views.db"),
        )
        try:
            once.run_until_caught_up(60)
            assert all_views(once.store, now) == all_views(runner.store, now)
        finally:
            once.close()
    finally:
        runner.close()


# ---------------------------------------------------------------------- c. re-delivery


def test_a_recorded_batch_delivered_again_is_not_applied_twice(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    first = generate_touchpoints(400, 30, seed=11, start=now - timedelta(days=5))
    emit(log, unique_topic, first, tmp_path / "views.db")
    store_path = tmp_path / "views.db"
    group = f"views-{uuid.uuid4().hex[:8]}"

    def runner(group_id: str) -> Runner:
        return Runner(
            log,
            store_path,
            topic=unique_topic,
            dlq_topic=f"{unique_topic}.dlq",
            group=group_id,
            batch_size=100,
            follow_swaps=False,
        )

    live = runner(group)
    try:
        stats = live.run_until_caught_up(60)
        assert stats.applied == len(first)
        before = all_views(live.store, now)
        positions = live.store.positions()
        assert sum(off + 1 for off in positions.values()) == len(first)

        # 1. The store committed, the group commit was lost: the consumer reads it all again.
        consumer = live.consumer
        with structlog.testing.capture_logs() as logs:
            for tp in consumer.assignment():
                consumer.seek(tp, 0)
            redelivered = 0
            deadline = time.monotonic() + 60
            while redelivered < len(first) and time.monotonic() < deadline:
                redelivered += live.step()
        assert redelivered == len(first)
        assert live.stats.applied == len(first)
        assert live.store.positions() == positions
        skipped = [e for e in logs if e["event"] == "batch already in the store; skipped"]
        assert skipped and all({"topic", "partition", "offset"} <= set(e) for e in skipped)

        # 2. The same batch handed to the store directly: refused as a whole.
        tp0, last = next(iter(sorted(positions.items())))
        ours = [
            t
            for t in first
            if log.partition_for(unique_topic, t.customer_id.encode()) == tp0.partition
        ][:5]
        result = live.store.process(tp0, list(enumerate(ours)), last)
        assert (result.applied, result.already_processed) == (0, True)
        assert all_views(live.store, now) == before

        # 3. A re-delivery overlapping new messages: only the new ones are applied.
        more = generate_touchpoints(120, 30, seed=12, start=now - timedelta(days=1))
        emit(log, unique_topic, more, store_path)
        for tp in consumer.assignment():
            consumer.seek(tp, max(0, positions.get(tp, -1) - 20))
        live.run_until_caught_up(60)
        assert live.stats.applied == len(first) + len(more)
        # The re-read tail of each partition is either refused as a whole (a slice ending
        # at or before the recorded position) or skipped message by message.
        assert live.stats.duplicates <= sum(min(21, off + 1) for off in positions.values())
        after = all_views(live.store, now)
    finally:
        live.close()

    # 4. The group's offset is stale (committed at 0) and a restart reads it: the runner
    #    starts from the store's positions, nothing is even re-read.
    stale = log.consumer(group, [unique_topic])
    try:
        deadline = time.monotonic() + 30
        while not stale.assignment() and time.monotonic() < deadline:
            stale.poll(0.1, 1)
        stale.commit({tp: 0 for tp in stale.assignment()})
    finally:
        stale.close()
    for group_id in (group, f"other-{uuid.uuid4().hex[:8]}"):  # 5. and a brand-new group
        again = runner(group_id)
        try:
            stats = again.run_until_caught_up(60)  # already caught up: returns at once
            partitions = len(log.partitions(unique_topic))
            deadline = time.monotonic() + 30
            while len(again.consumer.assignment()) < partitions:  # joined, started...
                assert time.monotonic() < deadline
                again.step()
            for _ in range(5):  # ... and polling: nothing is delivered again
                again.step()
            assert (stats.applied, stats.duplicates, stats.batches) == (0, 0, 0)
            assert all_views(again.store, now) == after
        finally:
            again.close()
    store = JourneyStore(store_path)
    try:
        assert touchpoint_counts(store) == dict(Counter(t.customer_id for t in first + more))
    finally:
        store.close()
