"""The promise keeper: turns passed deadlines into facts on the log, by event time.

When a promise's deadline passes without a fulfilment that occurred by then it emits
``PromiseBroken``; when a reply target passes without a real answer it emits
``ReplyOverdue``. A deadline passes when the *clock of its partition* passes it:

* a partition's event clock is the latest ``occurred_at`` folded on it (kept in the store
  with the partition's position), less the allowed lateness — never the wall clock, so a
  replay of history at any pace decides exactly what the live run decided;
* the event clock never runs ahead of the wall clock (less the lateness): one touchpoint
  dated tomorrow does not break today's promises;
* a partition read to its head whose event clock has not moved for the idle timeout follows
  the busy partitions' clocks; when every partition is idle, the wall clock (less the
  lateness): promises still break on time when nothing happens.

Exactly one fact per deadline, also across restarts and rebuilds:
* the event id is derived from (kind, customer, ref, deadline), so a repeat is a duplicate
  the projection ignores;
* after a (re)start it decides for a partition only once the store has folded everything
  that partition held when the keeper first looked (facts an earlier run emitted included);
  from then on it remembers what it emitted until the store has folded it;
* the fact's ``occurred_at`` is the deadline itself, so a rebuild reproduces the same view;
* the fact goes to the partition the customer's touchpoints were folded from (the store's
  ``customers.partition``), not to the one its key hashes to: folded in order with them, by
  the worker that holds them.

The wall clock is injected: tests move time by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Literal

import structlog

from consumers.log import Log, OutgoingMessage, Position, TopicPartition
from domain import catalogue as c
from domain.envelope import encode_sealed, new_touchpoint
from domain.rules import ServiceRules
from projections.due import DueClocks
from projections.keys import CustomerKeys
from projections.store import JourneyStore

__all__ = [
    "DEFAULT_ALLOWED_LATENESS",
    "DEFAULT_IDLE_TIMEOUT",
    "PromiseKeeper",
    "derived_event_id",
]

logger = structlog.get_logger(__name__)

_NAMESPACE = uuid.UUID("0b8f2a64-3c55-4e0e-9a0f-5d2f1c7e9b11")

DEFAULT_ALLOWED_LATENESS = timedelta(minutes=5)
DEFAULT_IDLE_TIMEOUT = timedelta(seconds=30)


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
        allowed_lateness: timedelta = DEFAULT_ALLOWED_LATENESS,
        idle_timeout: timedelta | None = DEFAULT_IDLE_TIMEOUT,
        owned: Callable[[], Mapping[int, int]] | None = None,
        keys: CustomerKeys | None = None,
    ) -> None:
        self.log = log
        # A broken promise repeats what was promised (personal): sealed with the customer's
        # key; without keys it is left out.
        self.keys = keys
        # The partitions this keeper decides for: those its worker's runner holds now, each
        # with the number of the assignment that gave it (with several workers, each deadline
        # is decided by the one worker that folds its partition). None: every partition.
        self.owned = owned
        self._holding: dict[int, int] = {}
        self.store = store  # a callable: the runner may swap stores under us
        self.topic = topic
        self.rules = rules
        # What is due, asked of the store's index of deadlines (not every open clock).
        self._due = DueClocks(rules)
        self.clock = clock
        self.allowed_lateness = allowed_lateness
        # None: never follow the wall clock (a replay of history in slow steps).
        self.idle_timeout = idle_timeout
        self._in_flight: dict[uuid.UUID, Position] = {}
        # Per partition, the offset the store must reach before we decide for it (what the
        # partition held when this keeper first looked: earlier runs' facts included).
        self._barrier: dict[int, int] = {}
        # Per partition, (event clock, wall time we first saw it at): idleness.
        self._seen: dict[int, tuple[datetime | None, datetime]] = {}

    # ------------------------------------------------------------------ clocks

    def partition_clocks(
        self, store: JourneyStore, positions: Mapping[TopicPartition, int], now: datetime
    ) -> dict[int, datetime]:
        """The clock each partition decides by now; a partition without one decides nothing."""
        hwms = self.log.high_watermarks(self.topic)
        events = store.partition_clocks(self.topic)
        late = self.allowed_lateness
        wall = now - late
        idle: set[int] = set()
        owned = self.owned() if self.owned is not None else dict.fromkeys(hwms, 0)
        for p, hwm in hwms.items():
            if p not in owned:
                self._barrier.pop(p, None)
                self._holding.pop(p, None)
            elif self._holding.get(p) != owned[p]:
                # Newly ours (or lost and taken back between two looks): decide only once the
                # store has folded all it holds now, facts the previous owner emitted included.
                self._holding[p] = owned[p]
                self._barrier[p] = hwm - 1
            else:
                self._barrier.setdefault(p, hwm - 1)
            event = events.get(p)
            seen = self._seen.get(p)
            if seen is None or seen[0] != event:
                self._seen[p] = seen = (event, now)
            at_head = positions.get(TopicPartition(self.topic, p), -1) >= hwm - 1
            if self.idle_timeout is not None and at_head and now - seen[1] >= self.idle_timeout:
                idle.add(p)
        if hwms and idle == set(hwms):
            return dict.fromkeys(hwms, wall)
        busy = [events[p] - late for p in hwms if p not in idle and p in events]
        clocks: dict[int, datetime] = {}
        for p in hwms:
            own = events[p] - late if p in events else None
            if p in idle and busy:
                # Nothing arrives here while the others move on: a time-ordered producer
                # would have sent this partition's facts up to their time by now.
                own = max(own, min(busy)) if own is not None else min(busy)
            if own is not None:
                clocks[p] = min(own, wall)
        return clocks

    def _ready(self, positions: Mapping[TopicPartition, int]) -> set[int]:
        return {
            p
            for p, barrier in self._barrier.items()
            if positions.get(TopicPartition(self.topic, p), -1) >= barrier
        }

    # ------------------------------------------------------------------ deciding

    def tick(self) -> list[Position]:
        """Emit a fact for every deadline its partition's clock has passed, once."""
        now = self.clock()
        store = self.store()
        positions = store.positions()
        clocks = self.partition_clocks(store, positions, now)
        ready = self._ready(positions)
        # Facts in flight are settled once the store has folded them.
        self._in_flight = {
            eid: pos
            for eid, pos in self._in_flight.items()
            if positions.get(pos.topic_partition, -1) < pos.offset
        }
        if not clocks:
            return []
        emitted: list[Position] = []
        # Running clocks past due and reply clocks that stopped after their target, with
        # no breach on record: only those due by the latest partition clock are read.
        mine = self._holding.keys() if self.owned is not None else None
        # Each decided by the partition its customer's touchpoints were folded from, the one
        # the selection above went by: a producer whose partitioner is not murmur2 may have put
        # the customer elsewhere than ``partition_for`` says, and with several workers the
        # clock would then be selected by one worker and decided by none.
        for partition, item in self._due.due(store, positions, max(clocks.values()), mine):
            if item.recorded:
                continue
            clock = clocks.get(partition)
            if clock is None or item.due_at > clock or partition not in ready:
                continue
            if self.owned is not None and self.owned().get(partition) != self._holding.get(
                partition
            ):
                continue  # lost (or taken anew) since the look above: the holder decides
            event_id = derived_event_id(item.kind, item.customer_id, item.ref, item.due_at)
            if event_id in self._in_flight:
                continue
            data: c.TouchpointData
            if item.kind == "promise":
                what = item.label if self.keys is not None else None
                data = c.PromiseBroken(promise_id=item.ref, due_by=item.due_at, what=what)
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
            key = (
                self.keys.for_writing([tp.customer_id])[tp.customer_id]
                if self.keys is not None and isinstance(data, c.PromiseBroken) and data.what
                else None
            )
            message = OutgoingMessage(
                key=tp.customer_id.encode(),
                value=encode_sealed(tp, key),
                headers=(
                    ("journey-type", tp.type.encode()),
                    ("journey-event-id", str(event_id).encode()),
                ),
                # Logged when the keeper decided, by its clock (an input like every time):
                # a known-at view before this moment does not know of the breach yet.
                timestamp_ms=int(now.timestamp() * 1000),
                # Where the customer's touchpoints are, not where the key's hash says (they
                # differ for a producer with another partitioner, or a topic that grew): so
                # the fact is folded in order with them, by the worker that holds them, and
                # the customer stays in its partition.
                partition=partition,
            )
            (pos,) = self.log.produce(self.topic, [message])
            self._in_flight[event_id] = pos
            emitted.append(pos)
            logger.info(
                "deadline passed",
                kind=item.kind,
                ref=item.ref,
                due_at=item.due_at.isoformat(),
                clock=clock.isoformat(),
                event_id=str(event_id),
                customer_id=item.customer_id,
                topic=pos.topic,
                partition=pos.partition,
                offset=pos.offset,
            )
        return emitted
