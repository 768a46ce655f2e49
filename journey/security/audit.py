"""The audit trail: who read which customer, when, and how — one event per customer read, on
the log's audit topic (``<topic>.audit``: embedded or Kafka, like every other topic).

A record names the key (id, name, role), the customer id, the action (``view``,
``timeline``, ``cases``, ``case``, ``list``, ``live``, ``search``, ``console.customer``,
``console.list``, ``console.search``, ``service_levels``, ``defects``, ``console.work``), the
route *template* (``/customers/{key}``) and whether the customer was looked up by id, by
another identity, by a search, or shown on a ``list`` (a work list, a defect's outreach: a
record for each customer on the page answered). A customer's view shows the customers merged
with them too: each of those gets a record of the read as well. It never holds the identity
itself (an e-mail, a phone): the trail must not become a second copy of personal data.
Records are keyed by customer id, so one customer's trail is one partition, in order.
A bulk read of every customer (``journey export`` without ``--customer``) is one record with
the customer id ``*`` and the lookup ``bulk``: a customer's trail includes those records.

The query service appends the record *before* it answers, synchronously, and does not
answer when the append fails (503): no read goes unaudited. The cost is one produce per
customer read (the embedded log: one SQLite insert; Kafka: one acks=all round trip).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from consumers.log import Log, LogError, OutgoingMessage, Position, TopicPartition
from journey.security.keys import Principal

__all__ = ["ALL_CUSTOMERS", "MAX_AUDIT_LIMIT", "AuditRecord", "AuditTrail", "Lookup", "read_audit"]

MAX_AUDIT_LIMIT = 10_000
Lookup = Literal["id", "identity", "search", "list", "bulk"]
# The customer id of a record of a bulk read: every customer was read.
ALL_CUSTOMERS = "*"


class AuditRecord(BaseModel):
    """One read of one customer."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    audit_id: str
    at: datetime
    key_id: str
    key_name: str
    role: str
    customer_id: str
    action: str
    route: str
    lookup: Lookup


class AuditTrail:
    """Appends audit records to ``topic`` on ``log`` (the service's own log)."""

    def __init__(self, log: Log, topic: str, partitions: int) -> None:
        self.log = log
        self.topic = topic
        self.partitions = partitions
        self._ensured = False

    def ensure_topic(self) -> None:
        """Create the audit topic if it is missing (infinite retention, as every topic the
        engine creates); :meth:`record` does it first when it has not been done."""
        self.log.ensure_topics([self.topic], self.partitions)
        self._ensured = True

    def record(
        self,
        who: Principal,
        customer_ids: Sequence[str],
        *,
        action: str,
        route: str,
        lookup: Lookup,
    ) -> list[Position]:
        """Append one record per customer; returns once the log has them (raises LogError
        when it cannot: the caller must then not answer)."""
        if not customer_ids:
            return []
        if not self._ensured:
            self.ensure_topic()
        now = datetime.now(UTC)
        messages = [
            OutgoingMessage(
                key=cid.encode(),
                value=AuditRecord(
                    audit_id=str(uuid.uuid4()),
                    at=now,
                    key_id=who.key_id,
                    key_name=who.name,
                    role=who.role,
                    customer_id=cid,
                    action=action,
                    route=route,
                    lookup=lookup,
                )
                .model_dump_json()
                .encode(),
                timestamp_ms=int(now.timestamp() * 1000),
            )
            for cid in dict.fromkeys(customer_ids)
        ]
        return self.log.produce(self.topic, messages)


def read_audit(
    log: Log,
    topic: str,
    *,
    customer: str | None = None,
    key: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
    timeout_s: float = 60.0,
) -> list[AuditRecord]:
    """The records on ``topic`` matching every filter given, oldest first, at most ``limit``
    (the newest ``limit`` when more match). ``key`` matches the key's name or id. It reads
    the topic up to its head as it was when called — with ``customer`` only that
    customer's partition and that of bulk reads (which read every customer, so they are in
    every customer's trail)."""
    try:
        heads = log.high_watermarks(topic)
    except LogError:
        return []  # no audit topic yet: nothing was read through the service
    wanted = set(heads)
    if customer is not None:
        wanted = {
            log.partition_for(topic, customer.encode()),
            log.partition_for(topic, ALL_CUSTOMERS.encode()),
        }
    remaining = {p: heads[p] for p in wanted if heads.get(p, 0) > 0}
    if not remaining:
        return []

    def start(assigned: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        # Partitions not wanted start at their head: nothing of them is read.
        return {
            tp: (0 if tp.partition in remaining else heads.get(tp.partition, 0)) for tp in assigned
        }

    found: list[AuditRecord] = []
    consumer = log.consumer(None, [topic], on_assign=start)
    deadline = time.monotonic() + timeout_s
    try:
        while remaining and time.monotonic() < deadline:
            for message in consumer.poll(timeout_s=0.5, max_records=2000):
                head = remaining.get(message.partition)
                if head is None:
                    continue
                if message.offset + 1 >= head:
                    del remaining[message.partition]
                if message.offset >= head or message.value is None:
                    continue
                try:
                    record = AuditRecord.model_validate_json(message.value)
                except ValueError:
                    continue  # not a record of ours
                if customer is not None and record.customer_id not in (customer, ALL_CUSTOMERS):
                    continue
                if key is not None and key not in (record.key_name, record.key_id):
                    continue
                if since is not None and record.at < since:
                    continue
                found.append(record)
    finally:
        consumer.close()
    if remaining:
        raise LogError(f"the audit topic {topic} could not be read to its end in {timeout_s:g} s")
    found.sort(key=lambda r: (r.at, r.audit_id))
    return found[-limit:] if limit else found
