"""The event-sourced aggregate behind every customer view (eventsourcing).

A ``CustomerJourney`` folds one customer's touchpoints, one eventsourcing event each
(``fold``), so its version counts the touchpoints folded. Those events are not stored: the
log of record is Kafka (or the embedded log), and the store keeps, per customer, a snapshot
of the folded state (eventsourcing's ``Snapshot``) plus one compact row per touchpoint. A
cold read is the snapshot and the few touchpoints folded since it. Erasure starts a new
*generation*: a new aggregate that remembers only that, and when, the customer asked to be
forgotten (see projections.store).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from eventsourcing.domain import Aggregate, event

from domain.envelope import Touchpoint
from domain.journey import Journey

__all__ = ["CustomerJourney", "journey_id"]

_NAMESPACE = uuid.UUID("6f1d3c1e-4a8b-4f7e-9a43-0c6b7f1a2d55")


def journey_id(customer_id: str, generation: int = 0) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{customer_id}#{generation}")


class CustomerJourney(Aggregate):
    @staticmethod
    def create_id(customer_id: str, generation: int = 0, erased_at: str | None = None) -> uuid.UUID:
        return journey_id(customer_id, generation)

    @event("Started")
    def __init__(self, customer_id: str, generation: int = 0, erased_at: str | None = None) -> None:
        self.customer_id = customer_id
        self.generation = generation
        self.journey = Journey(customer_id)
        if erased_at is not None:
            self.journey.erased_at = datetime.fromisoformat(erased_at)

    @event("TouchpointFolded")
    def fold(self, touchpoint: Touchpoint, raw: bytes) -> None:
        """Fold one touchpoint (decoded once, ``raw`` its wire envelope) into the journey."""
        self.journey.apply(touchpoint, raw)

    @property
    def touchpoints(self) -> int:
        return int(self.version) - 1
