"""Blue-green rebuild on both logs: replay the log into a fresh store, then swap.

The rebuilt store answers exactly as the live one did; queries keep working while it is
built; the live runner follows the swap and carries on in the new store; the promise keeper
records no deadline a second time; and ``journey rebuild`` does the same from the shell.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

import consumers.runner
from consumers.log import Log
from consumers.rebuild import rebuild
from domain import catalogue as c
from domain.envelope import decode, new_touchpoint
from domain.rules import ServiceRules
from journey.pipeline import ManualClock, Pipeline
from journey.stories import all_touchpoints
from journey.synthetic import generate_touchpoints
from projections.backends import Backend
from projections.keys import keys_file
from projections.service_levels import build_service_levels
from projections.store import JourneyStore, active_store_path
from tests.integration.test_exactly_once import (  # the autouse fixture applies here too
    all_views,
    quiet_logs,  # noqa: F401
    read_topic,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RULES = ServiceRules()
DERIVED = ("PromiseBroken", "ReplyOverdue")
JOURNEY = Path(sys.executable).with_name("journey")


def derived_facts(log: Log, topic: str) -> Counter[tuple[str, str, str]]:
    """(type, customer, deadline fact) of every PromiseBroken/ReplyOverdue on the log."""
    out: Counter[tuple[str, str, str]] = Counter()
    for msg in read_topic(log, topic):
        tp = decode(msg.value)
        if tp.type in DERIVED:
            out[(tp.type, tp.customer_id, tp.data.model_dump_json())] += 1
    return out


def levels(store: JourneyStore, now: datetime) -> dict[str, Any]:
    return build_service_levels(store, rules=RULES, now=now).model_dump(mode="json")


@pytest.fixture
def played(log: Log, tmp_path: Path, unique_topic: str) -> Iterator[Pipeline]:
    """The stories played in time (the keeper recording deadlines as they pass), plus
    generated customers whose deadlines the keeper records at the end."""
    stories = all_touchpoints(NOW)
    clock = ManualClock(stories[0].occurred_at)
    pipeline = Pipeline(log, tmp_path / "views.db", topic=unique_topic, clock=clock)
    try:
        pipeline.emit(generate_touchpoints(1200, 120, seed=5, start=NOW - timedelta(days=9)))
        pipeline.play(stories, clock, NOW)
        yield pipeline
    finally:
        pipeline.close()


def test_rebuild_reproduces_the_views_swaps_and_the_live_runner_follows(
    played: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, log, topic = played, played.log, played.topic
    base = tmp_path / "views.db"
    facts = derived_facts(log, topic)
    assert facts, "no deadline passed: the keeper check below would be vacuous"
    assert max(facts.values()) == 1, "a deadline recorded twice before any rebuild"
    assert any(t == "PromiseBroken" for t, _, _ in facts)
    assert any(t == "ReplyOverdue" for t, _, _ in facts)
    live_views, live_levels = all_views(pipeline.store, NOW), levels(pipeline.store, NOW)
    sven = pipeline.customer("cust-sven")
    assert sven is not None and sven.linked_customer_ids  # the view merges two ids
    total = sum(log.high_watermarks(topic).values())

    # Rebuild in a thread, slowed (2 ms a fold) so the queries below run while it works.
    monkeypatch.setattr(consumers.runner, "_FOLD_DELAY_S", 0.002)
    seen: list[int] = []  # events recorded, at each batch of the rebuild
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["out"] = rebuild(
                log, base, topic=topic, dlq_topic=f"{topic}.dlq", batch_size=200,
                progress=lambda done, _total: seen.append(done),
            )  # fmt: skip
        except BaseException as exc:  # handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=work, name="rebuild")
    thread.start()
    queries_meanwhile = 0
    while thread.is_alive():
        # Not swapped before it is complete (the thread may still be on its way out after
        # the swap: then every event was recorded).
        assert active_store_path(base) == base or (seen and seen[-1] == total)
        view = pipeline.customer("cust-sven")
        assert view is not None and view.model_dump() == sven.model_dump()
        assert levels(pipeline.store, NOW) == live_levels
        if seen and seen[-1] < total:  # the rebuild is under way, not finished
            queries_meanwhile += 1
    thread.join()
    assert "error" not in result, result.get("error")
    monkeypatch.setattr(consumers.runner, "_FOLD_DELAY_S", 0.0)
    new_file, stats, seconds = result["out"]
    assert queries_meanwhile >= 5, "the queries did not overlap the rebuild"
    assert len(seen) >= 2 and seen[-1] == total

    # The pointer names the new file; the old one is untouched.
    assert active_store_path(base) == new_file != base
    assert (base.parent / (base.name + ".current")).read_text().strip() == new_file.name
    assert (stats.processed, stats.applied, stats.dead_letters) == (total, total, 0)
    assert seconds > 0

    # Same answers, customer by customer, at the same `now`.
    rebuilt = JourneyStore(new_file)
    try:
        assert all_views(rebuilt, NOW) == live_views
        assert levels(rebuilt, NOW) == live_levels
        assert rebuilt.positions() == pipeline.store.positions()
    finally:
        rebuilt.close()

    # The live runner switches to the new store at its next step and carries on there.
    assert pipeline.store.path == base
    after = new_touchpoint(
        c.InquiryReceived(case_id="after-1", channel="chat", subject="after the swap"),
        customer_id="cust-after",
        occurred_at=NOW,
        source="test",
    )
    (pos,) = pipeline.emit([after])
    pipeline.runner.step()
    assert pipeline.store.path == new_file
    pipeline.runner.run_until_caught_up(60)
    assert pipeline.store.wait_for(pos.topic_partition, pos.offset, 0)
    view = pipeline.customer("cust-after")
    assert view is not None and view.touchpoints == 1
    old = JourneyStore(base)
    try:
        assert old.journey("cust-after") is None  # the old store got nothing more
    finally:
        old.close()

    # The keeper, now reading the rebuilt store, records no deadline a second time ...
    pipeline.catch_up()
    assert derived_facts(log, topic) == facts
    # ... and a deadline that passes later is recorded exactly once.
    pipeline.clock.set(NOW + timedelta(hours=2))  # type: ignore[attr-defined]
    pipeline.catch_up()
    pipeline.catch_up()
    later = derived_facts(log, topic)
    assert max(later.values()) == 1
    new_facts = later - facts
    assert ("ReplyOverdue", "cust-after") in {(t, cid) for t, cid, _ in new_facts}
    for _, _, data in new_facts:
        assert NOW < datetime.fromisoformat(json.loads(data)["due_by"]) <= NOW + timedelta(hours=2)


def _cli(broker: str, topic: str, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(JOURNEY), "--broker", broker, "--topic", topic, "--store", f"sqlite:///{store}",
         "--log-level", "warning", *args],
        capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False,
    )  # fmt: skip


def test_journey_rebuild_from_the_shell(log: Log, tmp_path: Path, unique_topic: str) -> None:
    tps = all_touchpoints(NOW) + generate_touchpoints(300, 30, seed=9, start=NOW - timedelta(5))
    pipeline = Pipeline(log, tmp_path / "reference.db", topic=unique_topic)
    try:
        pipeline.emit(tps)
        pipeline.runner.run_until_caught_up(60)
        reference = all_views(pipeline.store, NOW)
    finally:
        pipeline.close()
    base = tmp_path / "views.db"
    # The customers' keys go with the store (the log cannot rebuild them).
    shutil.copy(keys_file(tmp_path / "reference.db"), keys_file(base))

    done = _cli(log.url, unique_topic, base, "rebuild", "all")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["events"] == len(tps) == report["applied"]
    assert (report["duplicates"], report["dead_letters"]) == (0, 0)
    assert report["events_per_second"] > 0 and report["seconds"] > 0
    assert Path(report["store"]) == active_store_path(base) != base
    rebuilt = JourneyStore(Path(report["store"]))
    try:
        assert all_views(rebuilt, NOW) == reference
    finally:
        rebuilt.close()

    wrong = _cli(log.url, unique_topic, base, "rebuild", "customer-views")
    assert wrong.returncode == 2
    assert "unknown projection 'customer-views'" in wrong.stderr
    assert "customer-view" in wrong.stderr  # it names the right ones
    assert active_store_path(base) == Path(report["store"])  # and changed nothing


def test_rebuild_of_an_empty_topic_gives_an_empty_store(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    log.ensure_topics([unique_topic, f"{unique_topic}.dlq"], 6)
    base = tmp_path / "views.db"
    new_file, stats, _ = rebuild(log, base, topic=unique_topic, dlq_topic=f"{unique_topic}.dlq")
    assert stats.processed == 0
    assert active_store_path(base) == new_file
    store = JourneyStore(new_file)
    try:
        assert store.query("SELECT COUNT(*) FROM customers") == [(0,)]
    finally:
        store.close()


def test_a_rebuild_whose_write_fails_reads_that_batch_again(
    log: Log, tmp_path: Path, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose transaction fails is read again from the store's position and counted
    once: the rebuilt store is the one a rebuild without the failure makes."""
    pipeline = Pipeline(log, tmp_path / "live" / "views.db", topic=unique_topic)
    try:
        pipeline.emit(generate_touchpoints(400, 40, seed=7, start=NOW - timedelta(days=9)))
    finally:
        pipeline.close()
    total = sum(log.high_watermarks(unique_topic).values())

    def rebuilt(name: str) -> tuple[dict[str, Any], int]:
        shutil.copytree(tmp_path / "live", tmp_path / name)  # the keys, beside the base
        new_file, stats, _ = rebuild(
            log,
            tmp_path / name / "views.db",
            topic=unique_topic,
            dlq_topic=f"{unique_topic}.dlq",
            batch_size=60,
        )
        store = JourneyStore(new_file)
        try:
            return all_views(store, NOW), stats.processed
        finally:
            store.close()

    expected, processed = rebuilt("clean")
    assert processed == total

    record, calls = Backend.record, [0]

    def record_failing_once(self: Backend, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OperationalError("disk I/O error (the third batch's write)")
        record(self, *args, **kwargs)

    monkeypatch.setattr(Backend, "record", record_failing_once)
    views, processed = rebuilt("failing")
    assert calls[0] > 3
    assert processed == total  # the failed batch counted once, when it was recorded
    assert views == expected
