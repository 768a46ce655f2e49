"""The intake topic: producers that cannot encrypt send plain envelopes there; the engine
relays each to the log of record with its personal fields sealed, dead-letters what fails
(sealed too), deletes what it relayed, and the topic itself keeps records only briefly."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.embedded_log import EmbeddedLog
from consumers.intake import IntakeRelay, intake_topic
from consumers.log import Log, LogUnavailable, OutgoingMessage
from domain import catalogue as c
from domain.envelope import decode, encode, new_touchpoint
from journey.pipeline import ManualClock, Pipeline
from projections.keys import CustomerKeys
from tests.bounds_cases import MiB, sized
from tests.integration.test_erasure import intake_left, raw_records

NAME = "Torbjørg Intakesen"
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def inquiry(cid: str) -> OutgoingMessage:
    tp = new_touchpoint(
        c.InquiryReceived(case_id="k-1", channel="sms", body=f"This is {NAME}"),
        customer_id=cid,
        occurred_at=NOW,
        source="kcat",
    )
    return OutgoingMessage(
        key=cid.encode(),
        value=encode(tp),
        headers=(("journey-event-id", str(tp.event_id).encode()),),
        timestamp_ms=int(NOW.timestamp() * 1000) + 5,
    )


def test_the_relay_seals_forwards_dead_letters_and_deletes_what_it_relayed(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    store = tmp_path / "views.db"
    pipeline = Pipeline(
        log,
        store,
        topic=unique_topic,
        clock=ManualClock(NOW),
        group=unique_topic,
        relay_intake=True,
    )
    try:
        assert pipeline.intake is not None
        good = inquiry("c-1")
        broken = OutgoingMessage(key=b"c-1", value=b"{not json " + NAME.encode())
        log.produce(intake_topic(unique_topic), [good, broken])
        assert pipeline.intake.run_until_empty() == 2
        (relayed,) = raw_records(log, unique_topic)
        assert NAME.encode() not in (relayed.value or b"")
        assert relayed.key == b"c-1" and relayed.headers == good.headers
        assert relayed.timestamp_ms == good.timestamp_ms  # judged by the producer's time
        assert decode(relayed.value).event_id == decode(good.value).event_id
        (letter,) = raw_records(log, f"{unique_topic}.dlq")
        assert NAME.encode() not in (letter.value or b"")
        assert letter.header("journey-dlq-original-topic") == intake_topic(unique_topic).encode()
        assert letter.header("journey-dlq-reason") == b"not_json"
        assert intake_left(log, intake_topic(unique_topic)) == []
        # Relayed twice (a crash before the commit): folded once.
        log.produce(intake_topic(unique_topic), [good])
        pipeline.intake.run_until_empty()
        pipeline.catch_up()
        view = pipeline.customer("c-1")
        assert view is not None and view.touchpoints == 1
        assert NAME in view.model_dump_json()
    finally:
        pipeline.close()


@pytest.mark.kafka
def test_the_intake_topic_is_created_with_a_short_retention(
    kafka_log: Log, tmp_path: Path, unique_topic: str
) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    keys = CustomerKeys(tmp_path / "views.db")
    relay = IntakeRelay(kafka_log, keys, topic=unique_topic, dlq_topic=f"{unique_topic}.dlq")
    admin = KafkaAdminClient(bootstrap_servers=os.environ["JOURNEY_TEST_KAFKA"])
    try:
        described = admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name)
                for name in (intake_topic(unique_topic), unique_topic)
            ]
        )["topic"]
        intake = {k: v["value"] for k, v in described[intake_topic(unique_topic)].items()}
        assert intake["retention.ms"] == intake["segment.ms"] == "3600000"
        assert described[unique_topic]["retention.ms"]["value"] == "-1"  # the log keeps all
    finally:
        admin.close()
        relay.close()
        keys.close()


def test_a_failed_relay_step_is_read_again_and_loses_nothing(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    """Issue 8's transient rule on the intake: a step that fails (here the keys' disk is
    full, so new customers' keys cannot be made) must not move the relay past its batch.
    Before, the consumer's position stayed past the failed batch, the next step committed
    past it and deleted it from the intake: those touchpoints were never relayed."""
    from tests.integration.test_failures import SmallDisk

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = SmallDisk(tmp_path / "disk", "400k")
    keys = CustomerKeys(disk.path / "views.db")
    relay = IntakeRelay(
        log, keys, topic=unique_topic, dlq_topic=f"{unique_topic}.dlq", batch_size=20
    )
    try:
        filler = disk.path / "filler"
        with pytest.raises(OSError), filler.open("wb") as f:
            while True:  # fill the disk to the last block
                f.write(b"\0" * 4096)
                f.flush()
        log.produce(intake_topic(unique_topic), [inquiry(f"c-{i}") for i in range(60)])
        for _ in range(2):  # still full: the same batch again, not the next one
            deadline = time.monotonic() + 60
            with pytest.raises(Exception, match=r"(?i)full"):
                while time.monotonic() < deadline:  # a first poll on Kafka may be empty
                    relay.step()
        filler.unlink()
        relay.run_until_empty()
        relayed = raw_records(log, unique_topic)
        assert sorted(decode(m.value).customer_id for m in relayed) == sorted(
            f"c-{i}" for i in range(60)
        )
    finally:
        relay.close()
        keys.close()
        disk.unmount()


def test_an_envelope_sealing_takes_over_1_mib_is_dead_lettered_and_holds_up_nothing(
    log: Log, tmp_path: Path, unique_topic: str
) -> None:
    """Under 1 MiB as a plain producer sent it, over it once sealed: it can never be on the
    log of record (a broker refuses it; the engine would dead-letter it), so the relay
    dead-letters it ``too_large`` itself, and the touchpoint behind it is relayed. Before,
    the relay produced it as it was: on Kafka the broker refused it and the relay retried it
    forever, holding up the whole intake until retention deleted it."""
    keys = CustomerKeys(tmp_path / "views.db")
    relay = IntakeRelay(log, keys, topic=unique_topic, dlq_topic=f"{unique_topic}.dlq")
    try:
        big = sized(MiB - 2048, "c-big").encode()  # SignupRequested: form fields are personal
        log.produce(
            intake_topic(unique_topic),
            [OutgoingMessage(key=b"c-big", value=big), inquiry("c-big")],
        )
        relay.run_until_empty(timeout_s=30)
        (relayed,) = raw_records(log, unique_topic)
        assert decode(relayed.value).customer_id == "c-big"
        (letter,) = raw_records(log, f"{unique_topic}.dlq")
        assert letter.header("journey-dlq-reason") == b"too_large"
        assert letter.header("journey-dlq-original-topic") == intake_topic(unique_topic).encode()
        assert b"encrypted" in (letter.header("journey-dlq-error") or b"")
    finally:
        relay.close()
        keys.close()


class _RefusesOneCommit(EmbeddedLog):
    """The embedded log, whose consumers' first commit fails as a broker that went away
    right after the produce would: the relay's dead letters are on the DLQ already."""

    def consumer(self, *args: Any, **kwargs: Any) -> Any:
        inner = super().consumer(*args, **kwargs)
        real_commit = inner.commit
        refused = [False]

        def commit(offsets: Any = None) -> None:
            if not refused[0]:
                refused[0] = True
                raise LogUnavailable("committing: the broker went away (injected)")
            real_commit(offsets)

        inner.commit = commit  # type: ignore[method-assign]
        return inner


def test_a_dead_letter_reaches_the_dlq_once_when_the_commit_after_it_fails(
    tmp_path: Path, unique_topic: str
) -> None:
    """Issue 8: each poison message in the DLQ exactly once. The relay produces its dead
    letters before it commits; a commit that fails makes it read the batch again, and
    before, it produced the same dead letter a second time."""
    log = _RefusesOneCommit(str(tmp_path / "log.db"))
    keys = CustomerKeys(tmp_path / "views.db")
    relay = IntakeRelay(log, keys, topic=unique_topic, dlq_topic=f"{unique_topic}.dlq")
    try:
        broken = OutgoingMessage(key=b"c-1", value=b"{not json")
        log.produce(intake_topic(unique_topic), [inquiry("c-1"), broken])
        with pytest.raises(LogUnavailable):
            while True:
                relay.step()
        relay.run_until_empty(timeout_s=30)
        (letter,) = raw_records(log, f"{unique_topic}.dlq")
        assert letter.header("journey-dlq-reason") == b"not_json"
        relayed = raw_records(log, unique_topic)  # relayed again is fine: folded once
        assert relayed and {decode(m.value).customer_id for m in relayed} == {"c-1"}
    finally:
        relay.close()
        keys.close()
        log.close()


def test_a_dead_letter_the_dlq_refuses_for_good_becomes_a_stub_and_holds_up_nothing(
    log: Log, tmp_path: Path, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the runner: a dead letter the DLQ can never take (the broker's limit) goes as a
    stub — reason and origin, no value. Before, the relay retried it forever and every
    intake record behind it waited (and the intake's retention would delete them)."""
    from consumers.dead_letters import HEADER_OFFSET, HEADER_REFUSED
    from consumers.log import LogError

    dlq = f"{unique_topic}.dlq"
    keys = CustomerKeys(tmp_path / "views.db")
    relay = IntakeRelay(log, keys, topic=unique_topic, dlq_topic=dlq)
    real_produce = log.produce

    def refusing(topic: str, messages: list[OutgoingMessage]) -> object:
        if topic == dlq and any((HEADER_OFFSET, b"0") in m.headers and m.value for m in messages):
            raise LogError("MessageSizeTooLargeError (injected: the broker's limit)")
        return real_produce(topic, messages)

    try:
        log.produce(
            intake_topic(unique_topic),
            [OutgoingMessage(key=b"c-1", value=b"\xff refused by the DLQ"), inquiry("c-1")],
        )
        monkeypatch.setattr(log, "produce", refusing)
        relay.run_until_empty(timeout_s=30)
        (letter,) = raw_records(log, dlq)
        assert letter.header(HEADER_REFUSED) and letter.value == b""
        assert letter.header("journey-dlq-reason") == b"not_json"
        (relayed,) = raw_records(log, unique_topic)
        assert decode(relayed.value).customer_id == "c-1"
    finally:
        relay.close()
        keys.close()


def test_a_touchpoint_the_log_refuses_for_good_is_dead_lettered_and_holds_up_nothing(
    log: Log, tmp_path: Path, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relayed record the log of record can never take (e.g. its producer's headers plus
    the sealed value over the broker's limit) is dead-lettered ``too_large`` naming the
    refusal; the touchpoints beside it are relayed. Before, the relay retried the batch
    forever."""
    from consumers.log import LogError

    dlq = f"{unique_topic}.dlq"
    keys = CustomerKeys(tmp_path / "views.db")
    relay = IntakeRelay(log, keys, topic=unique_topic, dlq_topic=dlq)
    refused, fine = inquiry("c-1"), inquiry("c-2")
    real_produce = log.produce

    def refusing(topic: str, messages: list[OutgoingMessage]) -> object:
        if topic == unique_topic and any(m.headers == refused.headers for m in messages):
            raise LogError("MessageSizeTooLargeError (injected: the broker's limit)")
        return real_produce(topic, messages)

    try:
        log.produce(intake_topic(unique_topic), [refused, fine])
        monkeypatch.setattr(log, "produce", refusing)
        relay.run_until_empty(timeout_s=30)
        (letter,) = raw_records(log, dlq)
        assert letter.header("journey-dlq-reason") == b"too_large"
        assert b"MessageSizeTooLarge" in (letter.header("journey-dlq-error") or b"")
        (relayed,) = raw_records(log, unique_topic)
        assert decode(relayed.value).customer_id == "c-2"
    finally:
        relay.close()
        keys.close()


class _Crash(BaseException):
    """The process dies here (as a SIGKILL would: nothing after it runs)."""


class _DiesAtFirstCommit(EmbeddedLog):
    """The embedded log, whose consumers' first commit is where the process dies: after the
    relay produced the batch and its dead letters, before the intake moved past them."""

    died = False

    def consumer(self, *args: Any, **kwargs: Any) -> Any:
        inner = super().consumer(*args, **kwargs)
        real_commit = inner.commit

        def commit(offsets: Any = None) -> None:
            if not self.died:
                self.died = True
                raise _Crash
            real_commit(offsets)

        inner.commit = commit  # type: ignore[method-assign]
        return inner


def _relay_dies_then_another_relays(
    log: EmbeddedLog,
    tmp_path: Path,
    topic: str,
    monkeypatch: pytest.MonkeyPatch | None = None,
    arm: Any = None,
) -> list[Any]:
    """A relay that dies mid-batch, then a new one (a restarted process: nothing kept in
    memory) with the same group and key table; the DLQ's records at the end."""
    keys = CustomerKeys(tmp_path / "views.db")
    if arm is not None:
        arm(keys)
    first = IntakeRelay(log, keys, topic=topic, dlq_topic=f"{topic}.dlq", group="g-crash")
    broken = OutgoingMessage(key=b"c-1", value=b"{not json")
    log.produce(intake_topic(topic), [inquiry("c-1"), broken, inquiry("c-2")])
    with pytest.raises(_Crash):
        while True:
            first.step()
    if monkeypatch is not None:
        monkeypatch.undo()
    keys.close()  # the process is gone: its consumer never committed
    keys = CustomerKeys(tmp_path / "views.db")
    second = IntakeRelay(log, keys, topic=topic, dlq_topic=f"{topic}.dlq", group="g-crash")
    try:
        second.run_until_empty(timeout_s=30)
        return raw_records(log, f"{topic}.dlq")
    finally:
        second.close()
        keys.close()


def test_a_dead_letter_reaches_the_dlq_once_across_a_crash_after_it_was_produced(
    tmp_path: Path, unique_topic: str
) -> None:
    """Before: a relay that died between producing a dead letter and committing the intake
    left a process that produced it again (what it had sent was kept in memory only)."""
    log = _DiesAtFirstCommit(str(tmp_path / "log.db"))
    try:
        (letter,) = _relay_dies_then_another_relays(log, tmp_path, unique_topic)
        assert letter.header("journey-dlq-reason") == b"not_json"
        assert letter.header("journey-dlq-original-offset") == b"1"
    finally:
        log.close()


def test_a_dead_letter_recorded_but_not_produced_before_a_crash_is_produced_once(
    tmp_path: Path, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox row is written before the produce: a relay that died in between leaves a
    dead letter that is on no DLQ; the next one finds it missing there and produces it."""
    import consumers.intake

    def dies(*_: Any) -> None:
        raise _Crash

    monkeypatch.setattr(consumers.intake, "produce_dead_letters", dies)
    log = EmbeddedLog(str(tmp_path / "log.db"))
    try:
        (letter,) = _relay_dies_then_another_relays(log, tmp_path, unique_topic, monkeypatch)
        assert letter.header("journey-dlq-reason") == b"not_json"
    finally:
        log.close()


def test_a_dead_letter_produced_but_not_marked_before_a_crash_is_not_produced_again(
    tmp_path: Path, unique_topic: str
) -> None:
    """Between the produce and the outbox's mark: the next relay looks for it on the DLQ
    from the marks recorded before the produce, finds it, and only marks it."""

    def arm(keys: CustomerKeys) -> None:
        def dies(*_: Any) -> None:
            raise _Crash

        keys.outbox_published = dies  # type: ignore[method-assign]

    log = EmbeddedLog(str(tmp_path / "log.db"))
    try:
        log.ensure_topics([f"{unique_topic}.dlq"], 6)
        unrelated = OutgoingMessage(key=b"x", value=b"a dead letter of the runner")
        log.produce(f"{unique_topic}.dlq", [unrelated])  # the DLQ holds others too
        letters = _relay_dies_then_another_relays(log, tmp_path, unique_topic, arm=arm)
        ours = [m for m in letters if m.header("journey-dlq-reason") == b"not_json"]
        assert len(ours) == 1, letters
        assert len(letters) == 2
    finally:
        log.close()
