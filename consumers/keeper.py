"""The promise keeper: turns passed deadlines into facts on the log.

When a promise's deadline passes unmet it emits ``PromiseBroken``; when a reply target
passes without a real answer it emits ``ReplyOverdue``. Exactly one per deadline, also across
restarts and rebuilds, because
* the event id is derived from (kind, customer, ref, deadline), so a repeat is a duplicate
  the projection ignores;
* it only decides for a partition the store has fully caught up with, so a fact it emitted
  before a restart is seen in the store and not emitted again;
* the fact's ``occurred_at`` is the deadline itself, so a rebuild reproduces the same view.
The clock is injected: tests move time by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import structlog

from consumers.log import Log, Position, TopicPartition
from domain import catalogue as c
from domain.envelope import new_touchpoint
from domain.rules import ServiceRules
from journey.emitter import Emitter
from projections.service_levels import open_items
from projections.store import JourneyStore

__all__ = ["PromiseKeeper", "derived_event_id"]

logger = structlog.get_logger(__name__)

_NAMESPACE = uuid.UUID("0b8f2a64-3c55-4e0e-9a0f-5d2f1c7e9b11")


def derived_event_id(kind: str, customer_id: str, ref: str, due: datetime) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{kind}|{customer_id}|{ref}|{due.isoformat()}")


class PromiseKeeper:
    def __init__(
        self,
        log: Log,
        store: Callable[[], JourneyStore],
        *,
        topic: str,
        rules: ServiceRules,
        clock: Callable[[], datetime],
    ) -> None:
        self.log = log
        self.store = store  # a callable: the runner may swap stores under us
        self.topic = topic
        self.rules = rules
        self.clock = clock
        self.emitter = Emitter(log, topic=topic, source="promise-keeper")
        self._in_flight: dict[uuid.UUID, Position] = {}

    def _caught_up(self, store: JourneyStore) -> set[int]:
        """Partitions whose every message (ours included) the store has folded."""
        positions = store.positions()
        return {
            p
            for p, hwm in self.log.high_watermarks(self.topic).items()
            if positions.get(TopicPartition(self.topic, p), -1) >= hwm - 1
        }

    def tick(self) -> list[Position]:
        """Emit a fact for every deadline that has passed and is not yet on the log."""
        now = self.clock()
        store = self.store()
        ready = self._caught_up(store)
        # Facts in flight are settled once their partition is caught up past them.
        positions = store.positions()
        self._in_flight = {
            eid: pos
            for eid, pos in self._in_flight.items()
            if positions.get(pos.topic_partition, -1) < pos.offset
        }
        emitted: list[Position] = []
        for item in open_items(store, self.rules, now, with_names=False):
            if item.state != "breached" or item.recorded:
                continue
            partition = self.log.partition_for(self.topic, item.customer_id.encode())
            if partition not in ready:
                continue
            event_id = derived_event_id(item.kind, item.customer_id, item.ref, item.due_at)
            if event_id in self._in_flight:
                continue
            data: c.TouchpointData
            if item.kind == "promise":
                data = c.PromiseBroken(promise_id=item.ref, due_by=item.due_at, what=item.label)
            else:
                target: Literal["first_reply", "next_reply"] = (
                    "first_reply" if item.kind == "first_reply" else "next_reply"
                )
                data = c.ReplyOverdue(case_id=item.ref, target=target, due_by=item.due_at)
            tp = new_touchpoint(
                data,
                customer_id=item.customer_id,
                occurred_at=item.due_at,
                source="promise-keeper",
                event_id=event_id,
            )
            pos = self.emitter.emit_touchpoints([tp])[0]
            self._in_flight[event_id] = pos
            emitted.append(pos)
            logger.info(
                "deadline passed",
                kind=item.kind,
                ref=item.ref,
                due_at=item.due_at.isoformat(),
                event_id=str(event_id),
                customer_id=item.customer_id,
                topic=pos.topic,
                partition=pos.partition,
                offset=pos.offset,
            )
        return emitted
