"""Kafka security (issue 12, item 6): SASL/SCRAM over TLS through the settings, against a
broker of the test's own with a SASL_SSL listener (scripts/kafka.sh, KAFKA_SASL_SSL_PORT:
SCRAM credentials made at format time, a TLS key made with keytool); no secret in any error
or log line.

The shared broker is never touched: this module starts its own on free ports.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.log import Log, LogError, OutgoingMessage
from journey.settings import Settings
from tests.integration.own_broker import ROOT, OwnBroker, free_port, free_port_pair

pytestmark = pytest.mark.kafka

USER = "journey"
JOURNEY = str(Path(sys.executable).with_name("journey"))  # the console script of this venv
PASSWORD = "scram-" + secrets.token_hex(8)


@dataclass
class Secured:
    broker: OwnBroker
    address: str  # the SASL_SSL listener
    ca_file: Path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    if shutil.which("java") is None or shutil.which("keytool") is None:
        pytest.fail("java and keytool (Java 17) are needed for a broker with a TLS listener")
    sasl_port = free_port()
    state = tmp_path_factory.mktemp("kafka-scram")
    own = OwnBroker(
        state,
        free_port_pair(),
        {"KAFKA_SASL_SSL_PORT": str(sasl_port), "KAFKA_SCRAM_PASSWORD": PASSWORD},
    )
    own.start()
    try:
        yield Secured(own, f"127.0.0.1:{sasl_port}", state / "tls" / "ca.pem")
    finally:
        own.stop()


def _settings(s: Secured, mechanism: str, password: str = PASSWORD, **more: object) -> Settings:
    return Settings(
        broker=f"kafka://{USER}@{s.address}",
        kafka_password=password,  # type: ignore[arg-type]  # pydantic makes it a SecretStr
        kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
        kafka_tls=True,
        kafka_ca_file=s.ca_file,
        **more,  # type: ignore[arg-type]
    )


def _round_trip(log: Log) -> bytes:
    topic = f"secure.{uuid.uuid4().hex[:10]}"
    log.ensure_topics([topic], partitions=1)
    value = f"hello {uuid.uuid4()}".encode()
    (position,) = log.produce(topic, [OutgoingMessage(key=b"k", value=value)])
    assert position.offset == 0
    consumer = log.consumer(f"secure-{uuid.uuid4().hex[:8]}", [topic])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for message in consumer.poll(0.5, 10):
                return message.value
    finally:
        consumer.close()
    raise AssertionError("nothing consumed through SASL_SSL within 60 s")


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_produce_and_consume_through_scram_over_tls(secured: Secured, mechanism: str) -> None:
    log = _settings(secured, mechanism).open_log()
    try:
        assert _round_trip(log).startswith(b"hello ")
        assert PASSWORD not in repr(log)
    finally:
        log.close()


def test_a_wrong_password_is_one_line_without_the_password(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-" + secrets.token_hex(6)
    caplog.set_level("DEBUG")  # kafka-python's own lines too, the SASL exchange included
    log = _settings(secured, "SCRAM-SHA-512", password=wrong).open_log(timeout_s=3)
    try:
        with pytest.raises(LogError) as failed:
            log.ensure_topics([f"secure.{uuid.uuid4().hex[:10]}"], partitions=1)
    finally:
        log.close()
    message = str(failed.value)
    assert "\n" not in message
    assert wrong not in message and PASSWORD not in message
    assert "SCRAM-SHA-512" in message and "password" in message, message
    assert wrong not in caplog.text and PASSWORD not in caplog.text
    # kafka-python did try (the exchange is in its debug log): the check above means something
    assert "SaslAuthenticate" in caplog.text


def test_an_untrusted_broker_certificate_is_refused(secured: Secured) -> None:
    # No CA file: the system's trust store does not know the broker's self-signed certificate.
    settings = Settings(
        broker=f"kafka://{USER}@{secured.address}",
        kafka_password=PASSWORD,  # type: ignore[arg-type]
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_tls=True,
    )
    log = settings.open_log(timeout_s=3)
    try:
        with pytest.raises(LogError) as failed:
            log.ensure_topics([f"secure.{uuid.uuid4().hex[:10]}"], partitions=1)
    finally:
        log.close()
    assert "\n" not in str(failed.value) and PASSWORD not in str(failed.value)
    assert "CA file" in str(failed.value)


def test_the_cli_says_one_line_and_logs_no_secret_even_at_debug(secured: Secured) -> None:
    wrong = "wrong-" + secrets.token_hex(6)
    envelope = {
        "event_id": str(uuid.uuid4()),
        "type": "InquiryReceived",
        "schema_version": 1,
        "customer_id": "cust-secure",
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "test",
        "data": {"case_id": "k-1", "channel": "email"},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "JOURNEY_BROKER": f"kafka://{USER}@{secured.address}",
        "JOURNEY_KAFKA_PASSWORD": wrong,
        "JOURNEY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "JOURNEY_KAFKA_TLS": "true",
        "JOURNEY_KAFKA_CA_FILE": str(secured.ca_file),
        "JOURNEY_TOPIC": f"secure.{uuid.uuid4().hex[:10]}",
    }
    done = subprocess.run(
        [JOURNEY, "--log-level", "debug", "emit", json.dumps(envelope)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert wrong not in done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "SCRAM-SHA-512" in errors[0]
    # The same works with the right password: the settings reach every client.
    env["JOURNEY_KAFKA_PASSWORD"] = PASSWORD
    ok = subprocess.run(
        [JOURNEY, "emit", json.dumps(envelope)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert PASSWORD not in ok.stdout + ok.stderr


def test_settings_refuse_tls_files_without_tls_and_scram_without_a_user(tmp_path: Path) -> None:
    from journey.settings import ConfigError

    ca = tmp_path / "ca.pem"
    ca.write_text("not used")
    with pytest.raises(ConfigError, match="JOURNEY_KAFKA_TLS=true"):
        Settings.from_env(broker="kafka://h:9092", kafka_ca_file=ca)
    with pytest.raises(ConfigError, match="needs a user"):
        Settings.from_env(broker="kafka://h:9092", kafka_sasl_mechanism="SCRAM-SHA-512")
    with pytest.raises(ConfigError, match="no file"):
        Settings.from_env(broker="kafka://h:9092", kafka_tls=True, kafka_ca_file=tmp_path / "x")
    in_url, key = "url-" + secrets.token_hex(4), "key-" + secrets.token_hex(4)
    shown = Settings.from_env(broker=f"kafka://u:{in_url}@h:9092", kafka_key_password=key)
    assert in_url not in str(shown.safe_dict()) and key not in str(shown.safe_dict())
