"""The kcat commands docs/events.md shows produce what the engine reads: the right key, the
partition Kafka's murmur2 gives it (the one the engine's own emitter uses), a valid envelope
— to the intake topic, from which the engine relays it to the log of record with its
personal fields encrypted (kcat holds no keys: nothing plain reaches the log).

Run as written but for the broker address and the topic (uuid-named per test).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from consumers.intake import IntakeRelay
from consumers.kafka_log import KafkaLog
from consumers.log import Log, Message
from domain.envelope import decode
from journey.schema import example_envelope
from projections.keys import CustomerKeys

pytestmark = [pytest.mark.kafka, pytest.mark.kcat]

ROOT = Path(__file__).resolve().parents[2]
SAID = "my neighbour Vigdis Kcatsen took the parcel"


def kcat_commands() -> list[str]:
    text = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    start = text.index("### With kcat")
    part = text[start : text.index("\n### ", start + 1)]
    found = re.findall(r"^```sh\n(.*?)^```", part, flags=re.M | re.S)
    return [b for b in found if "kcat -P" in b]


def read(log: KafkaLog, topic: str, want: int) -> list[Message]:
    consumer = log.consumer(f"g-{uuid.uuid4().hex[:8]}", [topic])
    got: list[Message] = []
    try:
        for _ in range(40):  # bounded polling until the messages are there
            got.extend(consumer.poll(0.5))
            if len(got) >= want:
                break
            time.sleep(0.05)
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("which", [0, 1], ids=["one file", "json lines with jq"])
def test_the_documented_kcat_command_keys_and_partitions_like_the_engine(
    which: int, kafka_log: Log, unique_topic: str, tmp_path: Path
) -> None:
    assert isinstance(kafka_log, KafkaLog)
    for tool in ("kcat", "jq"):
        assert shutil.which(tool), f"{tool} not found: apt-get install -y {tool}"
    commands = kcat_commands()
    assert len(commands) == 2, commands
    keys = CustomerKeys(tmp_path / "views.db")
    relay = IntakeRelay(kafka_log, keys, topic=unique_topic, dlq_topic=f"{unique_topic}.dlq")
    customers = ["cust-4711", "cust-1", "cust-erik", "cust-sven"]
    complaint = example_envelope("ComplaintFiled", 1)
    complaint["customer_id"] = "cust-4711"
    complaint["event_id"] = "0f5c2b8e-4a7d-4c1b-9e3a-6d2f1b7c8a90"
    (tmp_path / "complaint.json").write_text(json.dumps(complaint, indent=2), encoding="utf-8")
    lines = []
    for cid in customers:
        env = example_envelope("InquiryReceived", 1)
        env.update(customer_id=cid, event_id=str(uuid.uuid4()))
        env["data"]["body"] = f"{SAID} ({cid})"
        lines.append(json.dumps(env))
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    bootstrap = ",".join(kafka_log.bootstrap_servers)
    script = (
        commands[which]
        .replace("localhost:19092", bootstrap)
        .replace("-t journey.touchpoints.intake", f"-t {unique_topic}.intake")
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    want = 1 if which == 0 else len(customers)
    try:
        assert relay.run_until_empty() == want
    finally:
        relay.close()
    got = read(kafka_log, unique_topic, want)
    assert len(got) == want
    ring = keys.for_reading(customers)
    keys.close()
    for msg in got:
        tp = decode(msg.value, keys=ring.lookup)
        assert msg.key == tp.customer_id.encode()
        assert msg.partition == kafka_log.partition_for(unique_topic, msg.key)
        assert SAID.encode() not in (msg.value or b"")  # sealed on the log of record
        if which == 1:
            assert getattr(tp.data, "body", None) == f"{SAID} ({tp.customer_id})"
    if which == 0:
        assert got[0].header("journey-type") == b"ComplaintFiled"
