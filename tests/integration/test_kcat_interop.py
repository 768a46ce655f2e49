"""The wire format is the contract: a non-Python client (kcat, librdkafka) and the engine
understand each other's messages on a real broker.

kcat's own default partitioner is librdkafka's ``consistent_random`` (CRC32), not Kafka's
murmur2: a non-Java producer must set ``partitioner=murmur2_random`` so that a customer's
events land in the partition the engine's emitter uses, and stay ordered.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from consumers.kafka_log import KafkaLog
from consumers.log import Message
from domain.envelope import decode
from projections.keys import CustomerKeys

pytestmark = [pytest.mark.kafka, pytest.mark.kcat]

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schema"
JOURNEY = Path(sys.executable).with_name("journey")


def _bootstrap(log: KafkaLog) -> str:
    return ",".join(log.bootstrap_servers)


def _run(argv: list[str], stdin: str | None = None, timeout: float = 60) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv[0]} exited {done.returncode}: {done.stderr}"
    return done.stdout


def _inquiry(customer_id: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "InquiryReceived",
        "schema_version": 1,
        "customer_id": customer_id,
        "occurred_at": "2026-11-23T09:15:00+01:00",
        "source": "helpdesk-go",
        "data": {
            "case_id": f"case-{uuid.uuid4().hex[:6]}",
            "channel": "email",
            "subject": "Where is my parcel?",
        },
    }


def _read(log: KafkaLog, topic: str, want: int, timeout_s: float = 20) -> list[Message]:
    consumer = log.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    got: list[Message] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            got.extend(consumer.poll(0.5))
    finally:
        consumer.close()
    return got


def test_an_envelope_produced_by_kcat_is_read_and_decoded_by_the_engine(
    kcat: str, klog: KafkaLog, unique_topic: str
) -> None:
    klog.ensure_topics([unique_topic], partitions=6)
    customer_id = f"cust-{uuid.uuid4().hex[:8]}"
    envelope = _inquiry(customer_id)

    _run(
        [
            kcat,
            "-P",
            "-b",
            _bootstrap(klog),
            "-t",
            unique_topic,
            "-k",
            customer_id,
            "-H",
            "journey-type=InquiryReceived",
            # Kafka's default partitioner, as the Java client and the engine's emitter use.
            "-X",
            "partitioner=murmur2_random",
        ],
        stdin=json.dumps(envelope) + "\n",
    )

    (msg,) = _read(klog, unique_topic, 1)
    assert msg.key == customer_id.encode()
    assert msg.partition == klog.partition_for(unique_topic, customer_id.encode())
    assert msg.header("journey-type") == b"InquiryReceived"
    tp = decode(msg.value)
    assert str(tp.event_id) == envelope["event_id"]
    assert tp.type == "InquiryReceived"
    assert tp.schema_version == 1
    assert tp.customer_id == customer_id
    assert tp.occurred_at == datetime(2026, 11, 23, 8, 15, tzinfo=UTC)
    assert tp.occurred_at.utcoffset() == timedelta(hours=1)
    assert tp.source == "helpdesk-go"
    data = tp.data.model_dump(mode="json")
    assert data["case_id"] == envelope["data"]["case_id"]
    assert data["channel"] == "email"
    assert data["subject"] == "Where is my parcel?"


def _validator(name: str) -> jsonschema.protocols.Validator:
    path = SCHEMA_DIR / name
    assert path.is_file(), f"{path} is missing: run `make schema`"
    schema = json.loads(path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validator


def test_what_journey_emit_produces_kcat_reads_and_the_published_schemas_accept(
    kcat: str, klog: KafkaLog, unique_topic: str, tmp_path: Path
) -> None:
    customer_id = f"cust-{uuid.uuid4().hex[:8]}"
    envelope = _inquiry(customer_id)
    store = tmp_path / "views.db"  # the customers' keys live beside it

    out = _run(
        [
            str(JOURNEY),
            "--broker",
            klog.url,
            "--topic",
            unique_topic,
            "--store",
            f"sqlite:///{store}",
            "emit",
            json.dumps(envelope),
        ]
    )
    (line,) = out.splitlines()
    position = json.loads(line)
    assert position["topic"] == unique_topic
    assert position["partition"] == klog.partition_for(unique_topic, customer_id.encode())

    read = [
        kcat,
        "-C",
        "-b",
        _bootstrap(klog),
        "-t",
        unique_topic,
        "-p",
        str(position["partition"]),
        "-o",
        str(position["offset"]),
        "-c",
        "1",
        "-e",
    ]
    value = _run([*read, "-f", "%s"])
    key = _run([*read, "-f", "%k"])
    assert key == customer_id

    on_the_wire = json.loads(value)
    _validator("envelope.schema.json").validate(on_the_wire)
    _validator("InquiryReceived.v1.schema.json").validate(on_the_wire)
    assert on_the_wire["event_id"] == envelope["event_id"]
    assert on_the_wire["customer_id"] == customer_id
    assert on_the_wire["data"]["channel"] == "email"
    assert "Where is my parcel?" not in value  # personal: encrypted with the customer's key
    # And the engine decodes what it wrote (with the key) to the touchpoint it was given.
    keys = CustomerKeys(store)
    ring = keys.for_reading([customer_id])
    keys.close()
    opened = decode(value, keys=ring.lookup)
    assert opened.to_envelope().model_dump(mode="json", exclude_none=True) == (
        decode(json.dumps(envelope)).to_envelope().model_dump(mode="json", exclude_none=True)
    )
