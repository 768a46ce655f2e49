"""The Kafka adapter across a broker outage, on a broker of the test's own.

The shared broker (JOURNEY_TEST_KAFKA) is never stopped: this module starts a second one
with scripts/kafka.sh on another port and its own data directory, stops it by its pid and
starts it again. Before: after the broker returned, the offset reader stayed stuck (its
next look-up timed out once more, 10 s), every failure was a bare LogError the run loop
could not tell from a configuration error, and one lock guarded the producer and the
offset reader, so a produce waited behind a stuck high-water-mark look-up.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from kafka import KafkaConsumer

from consumers.kafka_log import KafkaLog
from consumers.log import LogUnavailable, OutgoingMessage

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka.sh"

# What the issue asks: produce works again within 10 s of the broker's return.
RECONNECT_WITHIN_S = 10.0


def _free_port_pair() -> int:
    """A port p with p and p+1 free (broker and controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two adjacent free ports")


def _jars() -> Path:
    """Broker jars already resolved by `make kafka` (this checkout's, or the main one's)."""
    for candidate in (ROOT / ".cache" / "kafka" / "libs", Path(os.environ.get("KAFKA_LIBS", ""))):
        if (candidate / ".pom").is_file():
            return candidate
    pytest.fail("no resolved Kafka jars: run `make kafka` once (or set KAFKA_LIBS)")


class OwnBroker:
    def __init__(self, state: Path, port: int) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "KAFKA_PORT": str(port),
            "KAFKA_STATE_DIR": str(state),
            "KAFKA_LIBS": str(_jars()),
            "KAFKA_HEAP": "384m",
        }

    def _script(self, command: str) -> None:
        done = subprocess.run(
            ["bash", str(SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        """Returns once the broker answers metadata requests."""
        self._script("start")

    def stop(self) -> None:
        """SIGTERM to the pid in its own pid file; waits until the process is gone."""
        self._script("stop")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    if shutil.which("java") is None:
        pytest.fail("java is needed to run a broker of the test's own")
    own = OwnBroker(tmp_path_factory.mktemp("kafka-own"), _free_port_pair())
    own.start()
    try:
        yield own
    finally:
        own.stop()


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
