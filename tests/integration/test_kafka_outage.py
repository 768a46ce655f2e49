"""The Kafka adapter across a broker outage, on a broker of the test's own.

The shared broker (JOURNEY_TEST_KAFKA) is never stopped: this module starts a second one
with scripts/kafka.sh on another port and its own data directory, stops it by its pid and
starts it again. Before: after the broker returned, the offset reader stayed stuck (its
next look-up timed out once more, 10 s), every failure was a bare LogError the run loop
could not tell from a configuration error, and one lock guarded the producer and the
offset reader, so a produce waited behind a stuck high-water-mark look-up.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import structlog
from kafka import KafkaConsumer

from consumers.kafka_log import KafkaLog
from consumers.log import LogUnavailable, OutgoingMessage
from tests.integration.own_broker import OwnBroker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

# What the issue asks: produce works again within 10 s of the broker's return.
RECONNECT_WITHIN_S = 10.0


def test_after_the_broker_returns_produce_and_offsets_work_within_10s(
    broker: OwnBroker, unique_topic: str
) -> None:
    log = KafkaLog([broker.address], timeout_s=4.0)
    message = [OutgoingMessage(b"cust-1", b"{}")]
    try:
        log.ensure_topics([unique_topic], 3)
        log.produce(unique_topic, message)
        assert sum(log.high_watermarks(unique_topic).values()) == 1

        broker.stop()
        with structlog.testing.capture_logs() as logs:
            # Every failure is the transient kind, so a run loop knows to retry.
            for _ in range(3):
                with pytest.raises(LogUnavailable):
                    log.high_watermarks(unique_topic)
                with pytest.raises(LogUnavailable):
                    log.produce(unique_topic, message)
        # Not a flood: one line per client at most, however often it failed.
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert sorted(e["client"] for e in warnings) == ["offset reader", "producer"], warnings

        broker.start()
        back = time.monotonic()
        produced = offsets = False
        errors: list[str] = []
        while time.monotonic() - back < RECONNECT_WITHIN_S and not (produced and offsets):
            try:
                if not produced:
                    log.produce(unique_topic, message)
                    produced = True
                if not offsets:
                    log.high_watermarks(unique_topic)
                    offsets = True
            except LogUnavailable as exc:
                errors.append(str(exc))
                time.sleep(0.2)
        assert produced and offsets, errors
        # The produces that failed during the outage may have been written after all
        # (kafka-python delivered them once the broker was back); none was lost.
        assert sum(log.high_watermarks(unique_topic).values()) >= 2
    finally:
        log.close()


def test_a_stuck_offset_look_up_never_holds_up_a_produce(
    kafka_log: Any, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An end_offsets call that does not return (the broker went away under it) must not
    keep a produce from another thread waiting: the service's POST /events waited 13-95 s
    behind them."""
    log: KafkaLog = kafka_log
    log.ensure_topics([unique_topic], 3)
    log.high_watermarks(unique_topic)  # the reader exists and knows the topic
    entered, release = threading.Event(), threading.Event()
    real = KafkaConsumer.end_offsets

    def stuck(self: KafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(60)  # held here as a call to a vanished broker is
        return real(self, *args, **kwargs)

    monkeypatch.setattr(KafkaConsumer, "end_offsets", stuck)
    reader = threading.Thread(target=lambda: log.high_watermarks(unique_topic), daemon=True)
    reader.start()
    try:
        assert entered.wait(30)
        produced: list[object] = []
        producer = threading.Thread(
            target=lambda: produced.append(
                log.produce(unique_topic, [OutgoingMessage(b"cust-1", b"{}")])
            ),
            daemon=True,
        )
        producer.start()
        producer.join(timeout=30)
        still_stuck = reader.is_alive()
        assert produced, "the produce waited behind the stuck offset look-up"
        assert still_stuck, "the look-up was not stuck: the test proved nothing"
    finally:
        release.set()
        reader.join(timeout=30)
