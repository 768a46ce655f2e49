"""Never lose, never invent, never hide: the pipeline under a full disk and poison messages.

* A *transient* failure (here a real full disk: the store on a tmpfs of a few hundred KB)
  stops the pipeline at its last committed position; it retries, says so (health, /healthz
  503 with the reason, answers 503 or fresh:false with the true lag) and, once the disk
  grows, every touchpoint becomes visible: nothing lost, nothing skipped.
* A *poison* message (the fold raises on it, or it reuses an event_id with other content)
  is dead-lettered alone, exactly once, even when its batch is retried after a failure;
  its neighbours in the same batch are folded.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.dead_letters import HEADER_ERROR, HEADER_OFFSET, HEADER_REASON
from consumers.log import Log, OutgoingMessage, TopicPartition
from consumers.runner import Runner
from consumers.supervisor import Supervisor
from domain import catalogue as c
from domain.envelope import Touchpoint, encode, new_touchpoint
from journey.emitter import Emitter
from journey.service import ServiceOptions
from journey.service.freshness import tokens_of
from journey.settings import Settings
from projections.keys import CustomerKeys
from tests.integration.test_exactly_once import (  # the autouse fixture applies here too
    quiet_logs,  # noqa: F401
    read_topic,
)
from tests.service.helpers import running_service

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


# ---------------------------------------------------------------------- a disk that fills up


class SmallDisk:
    """A tmpfs of ``size`` mounted at ``path``; :meth:`grow` makes room, as an operator
    would by freeing space."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True
        )

    def grow(self, size: str = "256m") -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("the disk-full tests mount a tmpfs and need root (CI runs as root)")
        pytest.skip("mounting a tmpfs needs root")
    disk = SmallDisk(tmp_path / "disk", "400k")
    try:
        yield disk
    finally:
        disk.unmount()


def touchpoints(n: int, customers: int) -> list[Touchpoint]:
    out = []
    for i in range(n):
        cid = f"cust-{i % customers}"
        out.append(
            new_touchpoint(
                c.InquiryReceived(
                    case_id=f"{cid}-{i}", channel="email", subject=f"question {i} " + "x" * 200
                ),
                customer_id=cid,
                occurred_at=NOW + timedelta(seconds=i),
                source="test",
            )
        )
    return out


def turn_until(supervisor: Supervisor, done: Callable[[], bool], *, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not reached in {timeout_s} s: {supervisor.health}"
        wait = supervisor.turn()
        if wait:
            time.sleep(min(wait, 0.05))


def processed_offsets(runner: Runner) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for part, offset in runner.store.query(
        'SELECT partition, "offset" FROM touchpoints ORDER BY partition, "offset"'
    ):
        out.setdefault(int(part), []).append(int(offset))
    return out


def test_a_full_disk_stops_the_runner_at_its_last_position_and_loses_nothing(
    log: Log, unique_topic: str, small_disk: SmallDisk
) -> None:
    log.ensure_topics([unique_topic, f"{unique_topic}.dlq"], 3)
    sent = touchpoints(1500, 40)
    keys = CustomerKeys(small_disk.path / "views.db")
    Emitter(log, topic=unique_topic, source="test", keys=keys).emit_touchpoints(sent)
    keys.close()
    runner = Runner(
        log,
        small_disk.path / "views.db",
        topic=unique_topic,
        dlq_topic=f"{unique_topic}.dlq",
        group=f"g-{uuid.uuid4().hex[:8]}",
        follow_swaps=False,
        batch_size=200,
    )
    supervisor = Supervisor(runner, None, backoff_max_s=0.05, progress_interval_s=3600)
    try:
        turn_until(supervisor, lambda: supervisor.health.failing)
        assert supervisor.health.kind == "store_full", supervisor.health
        # Stuck, and saying so: after any attempt, health is ok only when a batch was really
        # recorded (a smaller one may still fit) — never on an empty poll after the seek.
        for _ in range(30):
            before = runner.store.positions()
            supervisor.turn()
            if not supervisor.health.failing:
                assert runner.store.positions() != before, "ok on a full disk, no progress"
        assert supervisor.health.failing
        assert sum(runner.lag().values()) > 0
        # Whatever was recorded is a gap-free prefix of each partition.
        for part, offsets in processed_offsets(runner).items():
            assert offsets == list(range(len(offsets))), f"a gap in partition {part}"

        small_disk.grow()
        turn_until(supervisor, lambda: all(v == 0 for v in runner.lag().values()))
        turn_until(supervisor, lambda: not supervisor.health.failing)
        folded = runner.store.event_ids()
        assert folded == {str(t.event_id) for t in sent}
        assert runner.store.query("SELECT COUNT(*) FROM dead_letters") == [(0,)]
        assert supervisor.health.failures_total >= 1
    finally:
        runner.close()


def test_serve_says_so_while_the_disk_is_full_and_shows_everything_after(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    settings = Settings(
        broker=f"embedded://{tmp_path / 'log.db'}",
        store=f"sqlite:///{small_disk.path / 'views.db'}",
        topic="journey.touchpoints",
    )
    options = ServiceOptions(max_wait_ms=500, group="views-full", keeper_interval_s=3600)
    sent = touchpoints(1500, 40)
    with running_service(settings, options) as svc:
        positions = svc.emitter.emit_touchpoints(sent)
        deadline = time.monotonic() + 120
        while True:
            health = svc.get("/healthz")
            if health.status_code == 503:
                break
            assert time.monotonic() < deadline, "the full disk never showed on /healthz"
            time.sleep(0.05)
        body = health.json()
        assert body["failure_kind"] == "store_full", body
        assert "full" in body["last_error"]
        # Every sample while the disk is full says so (the old loop went back to "ok" on
        # the first empty poll).
        for _ in range(12):
            assert svc.get("/healthz").status_code == 503
            time.sleep(0.05)
        metrics = svc.get("/metrics").text
        assert 'journey_pipeline_failing{kind="store_full"} 1' in metrics
        # A read that needs what is not folded: 503 with the reason, or honestly stale.
        last = sent[-1].customer_id
        token = positions[-1].token()
        answer = svc.get(f"/customers/{last}", params={"after": token})
        assert answer.status_code == 503
        assert "full" in answer.json()["error"]["message"]
        stale = svc.get(f"/customers/{last}", params={"after": token, "stale": "true"})
        if stale.status_code == 200:  # the customer may not be folded at all yet: 404
            assert stale.json()["fresh"] is False
            assert stale.json()["lag"]["events"] > 0

        small_disk.grow()
        deadline = time.monotonic() + 120
        while svc.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, svc.get("/healthz").json()
            time.sleep(0.1)
        answer = svc.get(f"/customers/{last}", params={"after": token})
        assert answer.status_code == 200, answer.text
        assert answer.json()["fresh"] is True
        everything = svc.get("/search", params={"q": "cust", "after": tokens_of(positions)})
        assert everything.status_code == 200, everything.text
        store = svc.service.reader.get()
        assert store.query("SELECT COUNT(*) FROM touchpoints") == [(len(sent),)]
        assert store.query("SELECT COUNT(*) FROM dead_letters") == [(0,)]


# ---------------------------------------------------------------------- poison, alone


@pytest.fixture
def fold_raises_on_poison(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold raises on an inquiry whose subject is "poison" — standing in for a bug of
    ours that one message triggers (the real fold raises on no valid touchpoint)."""
    import domain.journey as fold

    original = fold.Journey.apply

    def apply(self: fold.Journey, touchpoint: Touchpoint, raw: bytes | None = None) -> str:
        data = touchpoint.data
        if isinstance(data, c.InquiryReceived) and data.subject == "poison":
            raise ValueError("the fold cannot take this one")
        return original(self, touchpoint, raw)

    monkeypatch.setattr(fold.Journey, "apply", apply)


@pytest.mark.usefixtures("fold_raises_on_poison")
def test_a_touchpoint_the_fold_raises_on_is_dead_lettered_alone_and_once(
    log: Log, unique_topic: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The fold raising is a property of the message (here: a bug triggered by one
    subject); its neighbours in the same batch and partition are folded, and the dead letter
    reaches the DLQ once although the first attempt at the batch also failed transiently."""
    log.ensure_topics([unique_topic, f"{unique_topic}.dlq"], 1)
    good = touchpoints(20, 3)
    poison = new_touchpoint(
        c.InquiryReceived(case_id="p-1", channel="email", subject="poison"),
        customer_id="cust-1",
        occurred_at=NOW,
        source="test",
    )
    batch = [*good[:10], poison, *good[10:]]
    keys = CustomerKeys(tmp_path / "views.db")
    Emitter(log, topic=unique_topic, source="test", keys=keys).emit_touchpoints(batch)
    keys.close()
    runner = Runner(
        log,
        tmp_path / "views.db",
        topic=unique_topic,
        dlq_topic=f"{unique_topic}.dlq",
        group=f"g-{uuid.uuid4().hex[:8]}",
        follow_swaps=False,
    )
    # The first attempt at the DLQ fails as a broker outage would: the batch stays recorded
    # (the dead letter is in the store's outbox) and the next step publishes it, once.
    real_produce = log.produce
    failures = {"left": 1}

    def flaky_produce(topic: str, messages: list[OutgoingMessage]) -> object:
        if topic.endswith(".dlq") and failures["left"]:
            failures["left"] -= 1
            from consumers.log import LogUnavailable

            raise LogUnavailable("broker away (injected)")
        return real_produce(topic, messages)

    monkeypatch.setattr(log, "produce", flaky_produce)
    supervisor = Supervisor(runner, None, backoff_max_s=0.01, progress_interval_s=3600)
    try:
        turn_until(supervisor, lambda: all(v == 0 for v in runner.lag().values()))
        turn_until(supervisor, lambda: not runner.store.pending_dead_letters())
        for _ in range(5):
            supervisor.turn()
        assert supervisor.health.failures_total == 1  # the injected DLQ outage
        assert runner.stats.applied == len(good)
        rows = runner.store.query('SELECT "offset", reason FROM dead_letters')
        assert rows == [(10, "fold_failed")]
        dlq = read_topic(log, f"{unique_topic}.dlq")
        assert len(dlq) == 1, "the dead letter must reach the DLQ exactly once"
        assert dlq[0].header(HEADER_REASON) == b"fold_failed"
        assert dlq[0].header(HEADER_OFFSET) == b"10"
        assert json.loads(dlq[0].value or b"{}")["event_id"] == str(poison.event_id)
    finally:
        runner.close()


def test_a_conflicting_duplicate_goes_to_the_dlq_naming_both_hashes_and_the_first_stays(
    log: Log, unique_topic: str, tmp_path: Path
) -> None:
    log.ensure_topics([unique_topic, f"{unique_topic}.dlq"], 1)
    first = new_touchpoint(
        c.InquiryReceived(case_id="k-1", channel="email", subject="where is my order?"),
        customer_id="cust-1",
        occurred_at=NOW,
        source="test",
    )
    same_again = first.model_copy()
    other = first.model_copy(
        update={"data": c.InquiryReceived(case_id="k-1", channel="email", subject="refund me")}
    )
    later = touchpoints(3, 1)
    messages = [OutgoingMessage(key=b"cust-1", value=encode(t)) for t in (first, same_again, other)]
    # The conflict in a later batch too: once recorded, a changed copy is still refused.
    log.produce(unique_topic, messages[:1])
    runner = Runner(
        log,
        tmp_path / "views.db",
        topic=unique_topic,
        dlq_topic=f"{unique_topic}.dlq",
        group=f"g-{uuid.uuid4().hex[:8]}",
        follow_swaps=False,
    )
    try:
        runner.run_until_caught_up(60)
        log.produce(unique_topic, messages[1:])
        keys = CustomerKeys(tmp_path / "views.db")
        Emitter(log, topic=unique_topic, source="test", keys=keys).emit_touchpoints(
            [t.model_copy(update={"customer_id": "cust-1"}) for t in later]
        )
        keys.close()
        runner.run_until_caught_up(60)
        runner.publish_dead_letters()
        assert (runner.stats.applied, runner.stats.duplicates) == (4, 1)
        dlq = read_topic(log, f"{unique_topic}.dlq")
        assert [m.header(HEADER_REASON) for m in dlq] == [b"conflicting_duplicate"]
        error = (dlq[0].header(HEADER_ERROR) or b"").decode()
        assert str(first.event_id) in error
        assert error.count("sha256:") == 2
        subjects = runner.store.journey("cust-1")
        assert subjects is not None
        case = subjects.journey.cases["k-1"]
        assert case.subject == "where is my order?"
    finally:
        runner.close()


def test_the_store_refuses_a_conflicting_copy_at_the_edge(tmp_path: Path) -> None:
    from projections.store import JourneyStore

    store = JourneyStore(tmp_path / "views.db")
    try:
        tp = touchpoints(1, 1)[0]
        store.process(TopicPartition("t", 0), [(0, tp)], 0)
        changed = tp.model_copy(
            update={"data": c.InquiryReceived(case_id="z", channel="phone", subject="other")}
        )
        assert store.conflicts([tp]) == []
        [(event_id, recorded, new)] = store.conflicts([changed])
        assert event_id == str(tp.event_id)
        assert recorded != new
        fresh = touchpoints(1, 1)[0].model_copy(update={"event_id": uuid.uuid4()})
        twin = fresh.model_copy(
            update={"data": c.InquiryReceived(case_id="y", channel="phone", subject="twin")}
        )
        assert [e for e, _, _ in store.conflicts([fresh, twin])] == [str(fresh.event_id)]
    finally:
        store.close()


# ---------------------------------------------------------------------- the poison corpus


@pytest.mark.usefixtures("fold_raises_on_poison")
def test_a_poison_corpus_leaves_the_pipeline_alive_and_each_message_dead_lettered_once(
    log: Log, unique_topic: str, tmp_path: Path
) -> None:
    """Non-JSON, 5,000-deep nesting, a date in year 9999, an oversized envelope, a
    conflicting duplicate and a message that makes the fold raise, each between good
    neighbours of the same customer: the supervised loop (as in `journey run`) folds every
    neighbour and dead-letters each poison message once, with its reason — also after a
    restart, which re-reads nothing twice."""
    dlq = f"{unique_topic}.dlq"
    log.ensure_topics([unique_topic, dlq], 2)
    cid = "cust-poison"
    good = [t.model_copy(update={"customer_id": cid}) for t in touchpoints(7, 1)]
    first = good[0]
    valid = json.loads(encode(good[1]))
    far_future = valid | {"event_id": str(uuid.uuid4()), "occurred_at": "9999-12-31T23:59:59Z"}
    conflicting = json.loads(encode(first))
    conflicting["data"]["subject"] = "another story"
    fold_raises = new_touchpoint(
        c.InquiryReceived(case_id="p-1", channel="email", subject="poison"),
        customer_id=cid,
        occurred_at=NOW,
        source="test",
    )
    poison: list[tuple[str, bytes]] = [
        ("not_json", b"\xff{not json"),
        ("too_deep", b'{"a":' * 5000 + b"1" + b"}" * 5000),
        ("out_of_range", json.dumps(far_future).encode()),
        ("conflicting_duplicate", json.dumps(conflicting).encode()),
        ("fold_failed", encode(fold_raises)),
    ]
    if "embedded" in type(log).__name__.lower():
        # Kafka's own limit (message.max.bytes, 1 MiB + 12 by default) refuses such a
        # record before any consumer sees it; the embedded log has no such limit.
        big = json.loads(encode(good[2])) | {"event_id": str(uuid.uuid4())}
        big["data"]["subject"] = "x" * (1024 * 1024)
        poison.append(("too_large", json.dumps(big).encode()))
    messages = [OutgoingMessage(key=cid.encode(), value=encode(first))]
    for n, (_, value) in enumerate(poison):
        messages.append(OutgoingMessage(key=cid.encode(), value=value))
        messages.append(
            OutgoingMessage(key=cid.encode(), value=encode(good[1 + n % (len(good) - 1)]))
        )
    log.produce(unique_topic, messages)

    def supervised() -> tuple[Runner, Supervisor]:
        runner = Runner(
            log, tmp_path / "views.db", topic=unique_topic, dlq_topic=dlq,
            group="poison-views", follow_swaps=False, batch_size=50,
        )  # fmt: skip
        return runner, Supervisor(runner, None, backoff_max_s=0.05, progress_interval_s=3600)

    runner, supervisor = supervised()
    try:
        turn_until(supervisor, lambda: all(v == 0 for v in runner.lag().values()))
        turn_until(supervisor, lambda: not runner.store.pending_dead_letters())
        assert not supervisor.health.failing, supervisor.health
    finally:
        runner.close()
    # A restart reads nothing twice.
    runner, supervisor = supervised()
    try:
        for _ in range(5):
            supervisor.turn()
        assert runner.stats.processed == 0
        letters = read_topic(log, dlq)
        reasons = sorted((m.header(HEADER_REASON) or b"").decode() for m in letters)
        assert reasons == sorted(r for r, _ in poison), "each poison message exactly once"
        folded = runner.store.event_ids()
        # the good neighbours produced (on Kafka one poison fewer, so one neighbour fewer)
        produced = [first] + [good[1 + n % (len(good) - 1)] for n in range(len(poison))]
        assert folded == {str(t.event_id) for t in produced}
        view = runner.store.journey(cid)
        assert view is not None
        assert view.journey.cases[first.data.case_id].subject == first.data.subject  # type: ignore[union-attr]
    finally:
        runner.close()


def test_a_dead_letter_the_dlq_refuses_for_good_becomes_a_stub_and_holds_up_nothing(
    log: Log, unique_topic: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A dead letter the DLQ topic can never take (the broker refuses it: too large) is
    produced as a stub — reason and origin, no value — and the pipeline goes on."""
    from consumers.dead_letters import HEADER_REFUSED, HEADER_VALUE_DROPPED
    from consumers.log import LogError

    dlq = f"{unique_topic}.dlq"
    log.ensure_topics([unique_topic, dlq], 1)
    log.produce(
        unique_topic,
        [
            OutgoingMessage(key=b"cust-1", value=b"\xff refused by the DLQ"),
            OutgoingMessage(key=b"cust-1", value=b"\xff an ordinary dead letter"),
        ],
    )
    keys = CustomerKeys(tmp_path / "views.db")
    Emitter(log, topic=unique_topic, source="test", keys=keys).emit_touchpoints(
        [t.model_copy(update={"customer_id": "cust-1"}) for t in touchpoints(2, 1)]
    )
    keys.close()
    real_produce = log.produce

    def refusing(topic: str, messages: list[OutgoingMessage]) -> object:
        # the dead letter of offset 0 (its value is sealed: the header names it)
        if topic == dlq and any((HEADER_OFFSET, b"0") in m.headers and m.value for m in messages):
            raise LogError("MessageSizeTooLargeError (injected: the broker's limit)")
        return real_produce(topic, messages)

    monkeypatch.setattr(log, "produce", refusing)
    runner = Runner(
        log, tmp_path / "views.db", topic=unique_topic, dlq_topic=dlq,
        group=f"g-{uuid.uuid4().hex[:8]}", follow_swaps=False,
    )  # fmt: skip
    supervisor = Supervisor(runner, None, backoff_max_s=0.01, progress_interval_s=3600)
    try:
        turn_until(supervisor, lambda: all(v == 0 for v in runner.lag().values()))
        turn_until(supervisor, lambda: not runner.store.pending_dead_letters())
        assert not supervisor.health.failing, supervisor.health
        assert runner.stats.applied == 2
        letters = read_topic(log, dlq)
        assert len(letters) == 2
        stubbed = [m for m in letters if m.header(HEADER_REFUSED)]
        assert len(stubbed) == 1
        assert stubbed[0].value == b""
        # the dead letter's value was the original sealed whole: longer than the original
        dropped = int(stubbed[0].header(HEADER_VALUE_DROPPED) or b"0")
        assert dropped > len(b"\xff refused by the DLQ")
        assert stubbed[0].header(HEADER_OFFSET) == b"0"
    finally:
        runner.close()
